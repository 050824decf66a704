//! Acknowledgements of the source's messages: they move the partitions' watermarks.

use std::sync::Arc;
use std::time::Duration;

use ferroway::telemetry::LogThrottle;

use ferroway::pipeline::{AckToken, Acknowledger, Acks, BoxFuture, OnFailure};
use tracing::{debug, error, warn};

use super::shared::Shared;
use crate::options::OnFailed;

/// Acknowledgements of the source's messages.
pub(super) struct SourceAcker {
    pub(super) shared: Arc<Shared>,
    /// A flood of failures logs one line per kind every few seconds; metrics count them all.
    pub(super) held_log: LogThrottle,
    pub(super) skipped_log: LogThrottle,
}

impl SourceAcker {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        SourceAcker {
            shared,
            held_log: LogThrottle::new(Duration::from_secs(5)),
            skipped_log: LogThrottle::new(Duration::from_secs(5)),
        }
    }
}

impl Acknowledger for SourceAcker {
    /// The pipeline has drained: wait for the final commit (and the group leave), so that
    /// `pipeline.stop()` returning means every acknowledged offset is committed.
    fn flush(&self) -> BoxFuture<'_, ()> {
        self.shared.start_draining();
        let mut closed = self.shared.closed.subscribe();
        Box::pin(async move {
            let _ = closed.wait_for(|c| *c).await;
        })
    }

    fn ack(&self, acks: Acks) {
        let sh = &self.shared;
        let mut dropped = 0u64;
        let mut failures = Vec::new();
        {
            let mut s = sh.lock();
            dropped += s.book.complete_all(&acks.successful) as u64;
            for f in &acks.failed {
                let hold = match f.on_failure {
                    OnFailure::Requeue => true,
                    OnFailure::Ack | OnFailure::Reject => false,
                    _ => sh.opts.on_failed == OnFailed::Hold,
                };
                let AckToken(offset, slot) = f.token;
                let Some(p) = s.book.get(slot) else {
                    dropped += 1;
                    continue;
                };
                let (topic, partition) = (p.topic.clone(), p.partition);
                if hold {
                    s.book.hold(slot);
                } else {
                    s.book.complete(slot, offset as i64);
                }
                failures.push((topic, partition, offset, f.reason.clone(), hold));
            }
        }
        sh.acked.notify_all();
        if dropped > 0 {
            sh.metrics.acks_dropped.increment(dropped);
            debug!(group = %sh.opts.group_id, dropped, "acknowledgements for revoked partitions dropped");
        }
        for (topic, partition, offset, reason, hold) in failures {
            if hold {
                sh.metrics.failed_held.increment(1);
                if let Some(suppressed) = self.held_log.allow() {
                    warn!(group = %sh.opts.group_id, %topic, partition, offset, %reason, suppressed,
                        "message failed: holding the partition's commit below it (redelivered after a restart or rebalance)");
                }
            } else {
                sh.metrics.failed_committed.increment(1);
                if let Some(suppressed) = self.skipped_log.allow() {
                    error!(group = %sh.opts.group_id, %topic, partition, offset, %reason, suppressed,
                        "message failed and was not dead-lettered: committing past it (skipped)");
                }
            }
        }
    }
}
