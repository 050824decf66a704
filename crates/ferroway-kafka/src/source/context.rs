//! The consumer's context: rebalances and commits, run on the poller thread.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::native::{MessageQueue, member_id};
use super::shared::Shared;
use crate::client_log::ClientLog;
use crate::error::KafkaError;
use crate::offsets::Commit;
use crate::options::OnRevoke;

/// The consumer's context: rebalances, commit results, librdkafka logs and errors.
pub(super) struct SourceContext {
    pub(super) shared: Arc<Shared>,
    /// The source's message queue, from when the client exists until it closes.
    pub(super) queue: Mutex<Option<Arc<MessageQueue>>>,
    pub(super) log: ClientLog,
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.log.librdkafka(level, fac, msg);
    }

    /// The one place client-wide consumer errors are logged (the poller only decides whether
    /// one is fatal).
    fn error(&self, e: RdKafkaError, reason: &str) {
        self.shared.metrics.errors.increment(1);
        self.log.error(&e, reason);
        self.shared.lock().last_error = Some(format!("{e}: {reason}"));
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.revoke(consumer, tpl),
            Rebalance::Assign(tpl) => self.capture(consumer, tpl),
            Rebalance::Error(e) => {
                self.shared.metrics.errors.increment(1);
                warn!(group = %self.shared.opts.group_id, error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let sh = &self.shared;
            let mut names = Vec::new();
            let first = {
                let mut s = sh.lock();
                for e in tpl.elements() {
                    s.book.assign(e.topic(), e.partition());
                    names.push(format!("{}/{}", e.topic(), e.partition()));
                }
                s.assignment_changed = true;
                !std::mem::replace(&mut s.joined, true)
            };
            if first {
                info!(group = %sh.opts.group_id, member = %member_id(consumer).unwrap_or_default(), "joined the consumer group");
            }
            sh.generation.fetch_add(1, Ordering::Release);
            sh.metrics.assigned.increment(1);
            info!(group = %sh.opts.group_id, partitions = ?names, "partitions assigned");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let sh = &self.shared;
        match result {
            Ok(()) => {
                sh.metrics.commits_ok.increment(1);
                debug!(group = %sh.opts.group_id, ?offsets, "offsets committed");
            }
            Err(e) => {
                sh.metrics.commits_failed.increment(1);
                // Rate-limited: while a broker is away this fails every commit interval.
                self.log.error(&e, "offset commit; retried at the next interval");
                let mut s = sh.lock();
                for el in offsets.elements() {
                    if let Offset::Offset(o) = el.offset() {
                        s.book.commit_failed(el.topic(), el.partition(), o);
                    }
                }
            }
        }
    }
}

impl SourceContext {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        SourceContext {
            log: ClientLog::new("consumer", &shared.opts.group_id),
            shared,
            queue: Mutex::new(None),
        }
    }

    /// Partitions are about to be assigned: route their messages to the source's queue
    /// before fetching starts.
    fn capture(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // No queue: the client is being destroyed, nothing will be read any more.
        let Some(queue) = queue else { return };
        for e in tpl.elements() {
            if !queue.capture(consumer, e.topic(), e.partition()) {
                // librdkafka only refuses for a producer, but a partition not captured could
                // stall unseen (see `MessageQueue::capture`): fail the source instead.
                self.shared.fail(KafkaError::Client(format!(
                    "could not route {}/{} to the source's queue",
                    e.topic(),
                    e.partition()
                )));
                return;
            }
        }
    }

    /// Partitions are being taken away: stop emitting them, drain (bounded) or abandon their
    /// in-flight messages, commit what is complete, forget them.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let sh = &self.shared;
        let lost = consumer.assignment_lost();
        let started = Instant::now();
        let mut s = sh.lock();
        let slots: Vec<u64> = tpl
            .elements()
            .iter()
            .filter_map(|e| s.book.slot_of(e.topic(), e.partition()))
            .collect();
        s.fetched.remove_slots(&slots);
        for slot in &slots {
            if let Some(p) = s.book.get_mut(*slot) {
                p.revoking = true;
            }
        }
        sh.generation.fetch_add(1, Ordering::Release);
        if sh.opts.on_revoke == OnRevoke::Drain && !lost && !s.closing {
            let deadline = started + sh.opts.revoke_drain_timeout;
            while !s.book.idle(&slots) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                s = sh.acked.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
            }
        }
        // Commit and forget under one lock: acknowledgements arriving later find no slot.
        let commits = if lost {
            Vec::new()
        } else {
            s.book.take_commits(Some(&slots))
        };
        let mut abandoned = 0;
        for slot in &slots {
            if let Some(p) = s.book.remove(*slot) {
                abandoned += p.in_flight();
            }
        }
        drop(s);
        if !commits.is_empty() {
            commit_now(consumer, sh, &commits, CommitMode::Sync);
        }
        sh.metrics.revoked.increment(1);
        if abandoned > 0 {
            sh.metrics.abandoned.increment(abandoned as u64);
            warn!(group = %sh.opts.group_id, abandoned, lost,
                "partitions revoked with messages in flight: the next owner processes them again");
        }
        info!(group = %sh.opts.group_id, partitions = tpl.count(), lost,
            elapsed_ms = started.elapsed().as_millis() as u64, "partitions revoked");
    }
}

fn tpl_of(commits: &[Commit]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(commits.len());
    for c in commits {
        // Only fails for an invalid offset, and these are valid.
        let _ = tpl.add_partition_offset(&c.topic, c.partition, Offset::Offset(c.offset));
    }
    tpl
}

fn commit_now(consumer: &BaseConsumer<SourceContext>, sh: &Shared, commits: &[Commit], mode: CommitMode) {
    if let Err(e) = consumer.commit(&tpl_of(commits), mode) {
        // With a sync commit the callback also reports this; with async, only this does when
        // the request could not even be queued. Either way: retry next interval.
        consumer
            .context()
            .log
            .error(&e, "offset commit; retried at the next interval");
        let mut s = sh.lock();
        for c in commits {
            s.book.commit_failed(&c.topic, c.partition, c.offset);
        }
    } else {
        debug!(group = %sh.opts.group_id, n = commits.len(), ?mode, "offset commit sent");
    }
}

pub(super) fn commit_pending(consumer: &BaseConsumer<SourceContext>, sh: &Shared, mode: CommitMode) {
    let commits = sh.lock().book.take_commits(None);
    if !commits.is_empty() {
        commit_now(consumer, sh, &commits, mode);
    }
}
