//! Acknowledgements of the source's messages: they move the partitions' watermarks.

use std::sync::Arc;

use ferroway::pipeline::{AckToken, Acknowledger, Acks, BoxFuture, OnFailure};
use tracing::{debug, error, warn};

use super::shared::Shared;
use crate::options::OnFailed;

/// Acknowledgements of the source's messages.
pub(super) struct SourceAcker {
    pub(super) shared: Arc<Shared>,
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
                warn!(group = %sh.opts.group_id, %topic, partition, offset, %reason,
                    "message failed: holding the partition's commit below it (redelivered after a restart or rebalance)");
            } else {
                sh.metrics.failed_committed.increment(1);
                error!(group = %sh.opts.group_id, %topic, partition, offset, %reason,
                    "message failed and was not dead-lettered: committing past it (skipped)");
            }
        }
    }
}
