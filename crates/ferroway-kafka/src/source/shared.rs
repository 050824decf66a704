//! What the poller thread, the pipeline's task and the acknowledgements share.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::{Notify, watch};
use tracing::{debug, error};

use super::fetched::{FetchQueue, Fetched};
use crate::error::KafkaError;
use crate::offsets::OffsetBook;
use crate::options::KafkaSourceOptions;
use crate::telemetry;

pub(super) struct Metrics {
    pub(super) received: metrics::Counter,
    pub(super) emitted: metrics::Counter,
    pub(super) commits_ok: metrics::Counter,
    pub(super) commits_failed: metrics::Counter,
    pub(super) failed_committed: metrics::Counter,
    pub(super) failed_held: metrics::Counter,
    pub(super) acks_dropped: metrics::Counter,
    pub(super) abandoned: metrics::Counter,
    pub(super) assigned: metrics::Counter,
    pub(super) revoked: metrics::Counter,
    pub(super) errors: metrics::Counter,
    pub(super) pauses: metrics::Counter,
}

impl Metrics {
    fn new(group: &str) -> Self {
        let g = group.to_owned();
        Metrics {
            received: metrics::counter!(telemetry::SOURCE_RECEIVED, "group" => g.clone()),
            emitted: metrics::counter!(telemetry::SOURCE_EMITTED, "group" => g.clone()),
            commits_ok: metrics::counter!(telemetry::SOURCE_COMMITS, "group" => g.clone(), "outcome" => "ok"),
            commits_failed: metrics::counter!(telemetry::SOURCE_COMMITS, "group" => g.clone(), "outcome" => "error"),
            failed_committed: metrics::counter!(telemetry::SOURCE_FAILED, "group" => g.clone(), "action" => "committed"),
            failed_held: metrics::counter!(telemetry::SOURCE_FAILED, "group" => g.clone(), "action" => "held"),
            acks_dropped: metrics::counter!(telemetry::SOURCE_ACKS_DROPPED, "group" => g.clone()),
            abandoned: metrics::counter!(telemetry::SOURCE_ABANDONED, "group" => g.clone()),
            assigned: metrics::counter!(telemetry::SOURCE_REBALANCES, "group" => g.clone(), "kind" => "assign"),
            revoked: metrics::counter!(telemetry::SOURCE_REBALANCES, "group" => g.clone(), "kind" => "revoke"),
            errors: metrics::counter!(telemetry::SOURCE_ERRORS, "group" => g.clone()),
            pauses: metrics::counter!(telemetry::SOURCE_PAUSES, "group" => g),
        }
    }
}

pub(super) struct State {
    pub(super) book: OffsetBook,
    /// Fetched, not yet emitted (so not tracked): dropped freely on revoke.
    pub(super) fetched: FetchQueue,
    /// Batches the pipeline's task converted, for the poller thread to destroy: freeing
    /// memory on the thread that allocated it is cheaper.
    pub(super) spent: Vec<Fetched>,
    /// The demand of the pending `handle_demand`, minus what it got.
    pub(super) wanted: usize,
    pub(super) draining: bool,
    /// Set once the consumer is closing: revokes no longer wait.
    pub(super) closing: bool,
    pub(super) error: Option<KafkaError>,
    pub(super) assignment_changed: bool,
    /// Set by the first assignment (possibly empty): the member is in its group.
    pub(super) joined: bool,
    /// The last client-wide error librdkafka reported (for the "still waiting" warning).
    pub(super) last_error: Option<String>,
}

pub(super) struct Shared {
    pub(super) opts: Arc<KafkaSourceOptions>,
    pub(super) state: Mutex<State>,
    /// Signalled after acknowledgements (a revoke or the close may be waiting).
    pub(super) acked: Condvar,
    /// Signalled when the pipeline asks for more (the poller may be waiting).
    pub(super) demand: Condvar,
    /// Signalled when messages are ready or the source failed.
    pub(super) ready: Notify,
    /// Bumped by every rebalance: the poller refreshes its partition -> slot cache.
    pub(super) generation: AtomicU64,
    /// True once the poller made its final commit and left the group.
    pub(super) closed: watch::Sender<bool>,
    pub(super) metrics: Metrics,
}

impl Shared {
    pub(super) fn new(opts: Arc<KafkaSourceOptions>) -> Self {
        Shared {
            metrics: Metrics::new(&opts.group_id),
            opts,
            state: Mutex::new(State {
                book: OffsetBook::default(),
                fetched: FetchQueue::default(),
                spent: Vec::new(),
                wanted: 0,
                draining: false,
                closing: false,
                error: None,
                assignment_changed: false,
                joined: false,
                last_error: None,
            }),
            acked: Condvar::new(),
            demand: Condvar::new(),
            ready: Notify::new(),
            generation: AtomicU64::new(0),
            closed: watch::Sender::new(false),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is a single
        // step): keep going rather than poison every later caller.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every fetched message not yet emitted (never tracked: nothing is lost), and the
    /// spent ones, outside the lock.
    pub(super) fn release_fetched(&self) {
        let released = {
            let mut s = self.lock();
            (std::mem::take(&mut s.fetched), std::mem::take(&mut s.spent))
        };
        drop(released);
    }

    /// Fails the source: its next `handle_demand` returns the first such error.
    pub(super) fn fail(&self, e: KafkaError) {
        error!(group = %self.opts.group_id, error = %ferroway::error::Chain(&e), "Kafka source failed");
        let mut s = self.lock();
        if s.error.is_none() {
            s.error = Some(e);
        }
        drop(s);
        self.ready.notify_one();
    }

    pub(super) fn start_draining(&self) {
        let mut s = self.lock();
        if !s.draining {
            s.draining = true;
            s.wanted = 0;
            debug!(group = %self.opts.group_id, "Kafka source draining");
        }
        drop(s);
        self.demand.notify_one();
    }
}

/// Held by the poller thread; when it ends, however it ends (or never starts), the source is
/// over: the fetched messages are released (they hold the client, whose context holds this
/// state: kept, both would leak), the source reports closed and the factory counts one live
/// source less.
pub(super) struct PollerEnd {
    shared: Arc<Shared>,
    live: Arc<watch::Sender<usize>>,
}

impl PollerEnd {
    /// Counts one more live source.
    pub(super) fn new(shared: Arc<Shared>, live: Arc<watch::Sender<usize>>) -> Self {
        live.send_modify(|n| *n += 1);
        PollerEnd { shared, live }
    }
}

impl Drop for PollerEnd {
    fn drop(&mut self) {
        self.shared.release_fetched();
        self.shared.closed.send_replace(true);
        self.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}
