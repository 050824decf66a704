//! The source: a consumer-group member as a pipeline producer.
//!
//! A dedicated thread owns the librdkafka consumer. It polls all the time (so the member
//! stays in its group and rebalances are served even when the pipeline has no demand), fetches
//! only as many messages as the pipeline demanded plus a small prefetch, and pauses every
//! assigned partition when that many are ready. Rebalance callbacks run on that thread, so a
//! revoke can wait for in-flight messages without blocking the pipeline.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::pipeline::{AckToken, Acknowledger, Acks, BoxFuture, Message, OnFailure};
use ferroway::stage::{Emit, Producer};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use crate::error::{ConfigError, KafkaError};
use crate::metadata::KafkaMetadata;
use crate::offsets::{Commit, OffsetBook};
use crate::options::{KafkaSourceOptions, OnFailed, OnRevoke};
use crate::telemetry;

/// The most messages moved from librdkafka to the source in one go.
const MAX_BATCH: usize = 4096;
/// How often the poller serves librdkafka's events while it has nothing to fetch.
const PAUSED_POLL: Duration = Duration::from_millis(20);
/// How long without demand before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_millis(500);

/// Makes [`KafkaSource`]s: give [`create`](Self::create) to
/// [`PipelineBuilder::producer`](ferroway::pipeline::PipelineBuilder::producer).
///
/// The options are validated once, here. Each source is one member of the consumer group, so
/// `producer_concurrency(n)` runs `n` members.
///
/// When [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop) (or `join`) returns, every
/// message is acknowledged and every source that emitted messages has made its final commit
/// and left the group: the pipeline flushes the source's acknowledger. [`closed`](Self::closed)
/// also covers sources that never emitted anything.
#[derive(Debug, Clone)]
pub struct KafkaSourceFactory {
    opts: Arc<KafkaSourceOptions>,
    live: Arc<watch::Sender<usize>>,
}

impl KafkaSourceFactory {
    /// A new source (a new consumer-group member). Never fails: a client that cannot be
    /// created makes the source's first `handle_demand` fail, so the pipeline's producer
    /// supervision applies.
    pub fn create(&self) -> KafkaSource {
        KafkaSource::start(self.opts.clone(), self.live.clone())
    }

    /// Waits until every source made by this factory has stopped: acknowledgements awaited
    /// (at most `close_timeout`), final offsets committed, group left.
    pub async fn closed(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// The options.
    pub fn options(&self) -> &KafkaSourceOptions {
        &self.opts
    }
}

/// A Kafka consumer-group member as a pipeline producer of `Message<Vec<u8>>` (the record's
/// payload; a null payload is empty), each carrying [`KafkaMetadata`].
///
/// Offsets are committed only up to the first message of each partition that is not yet
/// acknowledged (a [`Watermark`](ferroway::pipeline::Watermark) per partition), every
/// `commit_interval`, on revoke and on shutdown; never automatically by librdkafka. See the
/// [crate documentation](crate) for the guarantees and an example.
pub struct KafkaSource {
    shared: Arc<Shared>,
    startup_error: Option<KafkaError>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("group", &self.shared.opts.group_id)
            .field("topics", &self.shared.opts.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Validates `opts` and returns a factory of sources.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first invalid option.
    pub fn factory(opts: KafkaSourceOptions) -> Result<KafkaSourceFactory, ConfigError> {
        opts.validate()?;
        Ok(KafkaSourceFactory {
            opts: Arc::new(opts),
            live: Arc::new(watch::Sender::new(0)),
        })
    }

    fn start(opts: Arc<KafkaSourceOptions>, live: Arc<watch::Sender<usize>>) -> KafkaSource {
        let shared = Arc::new(Shared::new(opts.clone()));
        let startup = (|| -> Result<(), KafkaError> {
            let ctx = SourceContext { shared: shared.clone() };
            let consumer: BaseConsumer<SourceContext> = opts
                .client_config()
                .create_with_context(ctx)
                .map_err(KafkaError::client)?;
            let topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(|e| KafkaError::broker("subscribe", &e))?;
            let acker = Arc::new(SourceAcker { shared: shared.clone() });
            live.send_modify(|n| *n += 1);
            let guard = LiveGuard(live.clone());
            let sh = shared.clone();
            std::thread::Builder::new()
                .name(format!("kafka-source-{}", opts.group_id))
                .spawn(move || poll_loop(consumer, sh, acker, guard))
                .map_err(|e| KafkaError::Client(format!("could not start the poller thread: {e}")))?;
            Ok(())
        })();
        if let Err(e) = &startup {
            error!(group = %opts.group_id, error = %e, "Kafka source could not start");
        }
        KafkaSource {
            shared,
            startup_error: startup.err(),
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.shared.start_draining();
    }
}

impl Producer for KafkaSource {
    type Output = Message<Vec<u8>>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Vec<u8>>>, BoxError> {
        if let Some(e) = &self.startup_error {
            return Err(Box::new(e.clone()));
        }
        loop {
            // Cancel-safe: messages leave the buffer only in this block, which does not await.
            {
                let mut s = self.shared.lock();
                if let Some(e) = &s.error {
                    return Err(Box::new(e.clone()));
                }
                if !s.buffer.is_empty() {
                    let n = demand.min(s.buffer.len());
                    let out: Vec<_> = s.buffer.drain(..n).collect();
                    for m in &out {
                        let AckToken(offset, slot) = m.ack_token();
                        s.book.track(slot, offset as i64);
                    }
                    s.wanted = demand - n;
                    drop(s);
                    self.shared.demand.notify_one();
                    self.shared.metrics.emitted.increment(n as u64);
                    return Ok(Emit::Events(out));
                }
                s.wanted = demand;
            }
            self.shared.demand.notify_one();
            self.shared.ready.notified().await;
        }
    }

    async fn prepare_for_draining(&mut self) {
        self.shared.start_draining();
    }
}

struct Metrics {
    received: metrics::Counter,
    emitted: metrics::Counter,
    commits_ok: metrics::Counter,
    commits_failed: metrics::Counter,
    failed_committed: metrics::Counter,
    failed_held: metrics::Counter,
    acks_dropped: metrics::Counter,
    abandoned: metrics::Counter,
    assigned: metrics::Counter,
    revoked: metrics::Counter,
    errors: metrics::Counter,
    pauses: metrics::Counter,
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

struct State {
    book: OffsetBook,
    /// Fetched, not yet emitted (so not tracked): dropped freely on revoke.
    buffer: VecDeque<Message<Vec<u8>>>,
    /// The demand of the pending `handle_demand`, minus what it got.
    wanted: usize,
    draining: bool,
    /// Set once the consumer is closing: revokes no longer wait.
    closing: bool,
    error: Option<KafkaError>,
    assignment_changed: bool,
}

struct Shared {
    opts: Arc<KafkaSourceOptions>,
    state: Mutex<State>,
    /// Signalled after acknowledgements (a revoke or the close may be waiting).
    acked: Condvar,
    /// Signalled when the pipeline asks for more (the poller may be waiting).
    demand: Condvar,
    /// Signalled when messages are ready or the source failed.
    ready: Notify,
    /// Bumped by every rebalance: the poller refreshes its partition -> slot cache.
    generation: AtomicU64,
    /// True once the poller made its final commit and left the group.
    closed: watch::Sender<bool>,
    metrics: Metrics,
}

impl Shared {
    fn new(opts: Arc<KafkaSourceOptions>) -> Self {
        Shared {
            metrics: Metrics::new(&opts.group_id),
            opts,
            state: Mutex::new(State {
                book: OffsetBook::default(),
                buffer: VecDeque::new(),
                wanted: 0,
                draining: false,
                closing: false,
                error: None,
                assignment_changed: false,
            }),
            acked: Condvar::new(),
            demand: Condvar::new(),
            ready: Notify::new(),
            generation: AtomicU64::new(0),
            closed: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is a single
        // step): keep going rather than poison every later caller.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_draining(&self) {
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

/// Acknowledgements of the source's messages.
struct SourceAcker {
    shared: Arc<Shared>,
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
            for t in &acks.successful {
                if !s.book.complete(t.1, t.0 as i64) {
                    dropped += 1;
                }
            }
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
                if !hold {
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

/// The consumer's context: rebalances, commit results, librdkafka logs and errors.
struct SourceContext {
    shared: Arc<Shared>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        crate::log_librdkafka("consumer", level, fac, msg);
    }

    fn error(&self, e: RdKafkaError, reason: &str) {
        self.shared.metrics.errors.increment(1);
        warn!(group = %self.shared.opts.group_id, error = %e, reason, "Kafka consumer error");
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                self.shared.metrics.errors.increment(1);
                warn!(group = %self.shared.opts.group_id, error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let sh = &self.shared;
            let mut names = Vec::new();
            {
                let mut s = sh.lock();
                for e in tpl.elements() {
                    s.book.assign(e.topic(), e.partition());
                    names.push(format!("{}/{}", e.topic(), e.partition()));
                }
                s.assignment_changed = true;
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
                warn!(group = %sh.opts.group_id, error = %e, "offset commit failed; retrying at the next interval");
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
        s.buffer.retain(|m| !slots.contains(&m.ack_token().1));
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
        warn!(group = %sh.opts.group_id, error = %e, "offset commit failed");
        let mut s = sh.lock();
        for c in commits {
            s.book.commit_failed(&c.topic, c.partition, c.offset);
        }
    } else {
        debug!(group = %sh.opts.group_id, n = commits.len(), ?mode, "offset commit sent");
    }
}

fn commit_pending(consumer: &BaseConsumer<SourceContext>, sh: &Shared, mode: CommitMode) {
    let commits = sh.lock().book.take_commits(None);
    if !commits.is_empty() {
        commit_now(consumer, sh, &commits, mode);
    }
}

/// Decrements the factory's count of live sources when the poller thread ends.
struct LiveGuard(Arc<watch::Sender<usize>>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Errors after which the consumer cannot go on (the source fails, and the pipeline restarts
/// it or gives up); anything else is logged and librdkafka recovers by itself.
fn consumer_fatal(e: &RdKafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::AutoOffsetReset
                | C::Authentication
                | C::SaslAuthenticationFailed
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
        )
    )
}

/// The partition -> slot map of the current assignment, as the poller thread sees it.
#[derive(Default)]
struct SlotCache {
    generation: u64,
    /// Topic name -> (shared name, partition -> slot).
    topics: HashMap<Box<str>, TopicSlots>,
    /// The last hit: consecutive messages mostly come from the same partition, so most
    /// lookups hash nothing.
    last: Option<(i32, Arc<str>, u64)>,
}

type TopicSlots = (Arc<str>, HashMap<i32, u64>);

impl SlotCache {
    fn lookup(&mut self, sh: &Shared, topic: &str, partition: i32) -> Option<(Arc<str>, u64)> {
        let generation = sh.generation.load(Ordering::Acquire);
        if generation == self.generation
            && let Some((p, name, slot)) = &self.last
            && *p == partition
            && **name == *topic
        {
            return Some((name.clone(), *slot));
        }
        if generation != self.generation || self.topics.is_empty() {
            self.generation = generation;
            self.last = None;
            self.topics.clear();
            let s = sh.lock();
            for slot in s.book.slots() {
                if let Some(p) = s.book.get(slot) {
                    let entry = self
                        .topics
                        .entry(Box::from(&*p.topic))
                        .or_insert_with(|| (p.topic.clone(), HashMap::new()));
                    entry.1.insert(p.partition, slot);
                }
            }
        }
        let (name, parts) = self.topics.get(topic)?;
        let slot = *parts.get(&partition)?;
        self.last = Some((partition, name.clone(), slot));
        Some((name.clone(), slot))
    }
}

fn convert(
    m: &BorrowedMessage<'_>,
    topic: Arc<str>,
    slot: u64,
    acker: &Arc<dyn Acknowledger>,
    with_headers: bool,
) -> Message<Vec<u8>> {
    let payload = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
    let mut msg = Message::with_acker(payload, acker.clone(), AckToken(m.offset() as u64, slot));
    let headers = match (with_headers, m.headers()) {
        (true, Some(h)) => h
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect(),
        _ => Vec::new(),
    };
    msg.put_metadata(KafkaMetadata {
        topic,
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        headers,
        timestamp: m.timestamp().to_millis(),
    });
    msg
}

fn set_paused(consumer: &BaseConsumer<SourceContext>, sh: &Shared, pause: bool) {
    let Ok(assignment) = consumer.assignment() else { return };
    if assignment.count() == 0 {
        return;
    }
    let r = if pause {
        sh.metrics.pauses.increment(1);
        consumer.pause(&assignment)
    } else {
        consumer.resume(&assignment)
    };
    if let Err(e) = r {
        warn!(group = %sh.opts.group_id, error = %e, pause, "could not pause/resume partitions");
    }
}

/// Marks the source closed when the poller thread ends, however it ends.
struct ClosedOnDrop(Arc<Shared>);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.closed.send_replace(true);
    }
}

fn poll_loop(consumer: BaseConsumer<SourceContext>, sh: Arc<Shared>, acker: Arc<SourceAcker>, _live: LiveGuard) {
    let _closed = ClosedOnDrop(sh.clone());
    let weak: Weak<SourceAcker> = Arc::downgrade(&acker);
    let mut acker: Option<Arc<dyn Acknowledger>> = Some(acker);
    let opts = sh.opts.clone();
    let mut paused = false;
    let mut last_commit = Instant::now();
    let mut cache = SlotCache::default();
    let mut close_deadline: Option<Instant> = None;
    let mut stale = 0u64;
    // Since when the source has held a full buffer with no demand (None: it has not).
    let mut full_since: Option<Instant> = None;
    loop {
        // What to do next, from the pipeline's demand.
        let (budget, changed, draining) = {
            let mut s = sh.lock();
            let changed = std::mem::take(&mut s.assignment_changed);
            if s.draining {
                if close_deadline.is_none() {
                    close_deadline = Some(Instant::now() + opts.close_timeout);
                    // Unemitted messages are never tracked: dropping them loses nothing.
                    s.buffer.clear();
                    acker = None;
                }
                (0, changed, true)
            } else {
                let (len, cap) = (s.buffer.len(), s.wanted + opts.prefetch);
                if len >= cap {
                    // Enough is ready: wait (briefly) for demand rather than spin.
                    s = sh
                        .demand
                        .wait_timeout(s, PAUSED_POLL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                let (len, cap) = (s.buffer.len(), s.wanted + opts.prefetch);
                (cap.saturating_sub(len).min(MAX_BATCH), changed, false)
            }
        };
        if let Some(deadline) = close_deadline {
            let s = sh.lock();
            let in_flight = s.book.in_flight();
            if in_flight == 0 || weak.strong_count() == 0 || Instant::now() >= deadline {
                if in_flight > 0 {
                    warn!(group = %opts.group_id, in_flight,
                        "closing with messages unacknowledged: they will be delivered again");
                }
                break;
            }
        }
        // Pausing makes librdkafka drop what it prefetched, and resuming costs a fetch round
        // trip: pause only when there has been no demand for a while (or when draining), and
        // resume as soon as there is.
        let pause = if budget > 0 {
            full_since = None;
            false
        } else {
            draining || full_since.get_or_insert_with(Instant::now).elapsed() >= PAUSE_AFTER
        };
        if pause != paused || (changed && paused) {
            set_paused(&consumer, &sh, pause);
            paused = pause;
        }

        let mut batch: Vec<Message<Vec<u8>>> = Vec::new();
        // With nothing to fetch, one non-blocking poll serves rebalances and other events (and
        // takes at most one message: the buffer overshoots by at most one per PAUSED_POLL).
        let mut timeout = if budget > 0 {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        loop {
            match consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    let Some(acker) = &acker else {
                        continue;
                    };
                    match cache.lookup(&sh, m.topic(), m.partition()) {
                        Some((topic, slot)) => batch.push(convert(&m, topic, slot, acker, opts.with_headers)),
                        None => stale += 1,
                    }
                }
                Some(Err(e)) => {
                    if consumer_fatal(&e) {
                        error!(group = %opts.group_id, error = %e, "Kafka source failed");
                        let mut s = sh.lock();
                        if s.error.is_none() {
                            s.error = Some(KafkaError::broker("consume", &e));
                        }
                        drop(s);
                        sh.ready.notify_one();
                    } else {
                        sh.metrics.errors.increment(1);
                        warn!(group = %opts.group_id, error = %e, "Kafka consumer error");
                    }
                    break;
                }
            }
            if batch.len() >= budget {
                break;
            }
            timeout = Duration::ZERO;
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            {
                let mut s = sh.lock();
                for m in batch {
                    // A rebalance may have run during this batch's polls.
                    if s.book.get(m.ack_token().1).is_some() {
                        s.buffer.push_back(m);
                    } else {
                        stale += 1;
                    }
                }
            }
            sh.metrics.received.increment(n);
            sh.ready.notify_one();
        }
        if stale > 0 {
            debug!(group = %opts.group_id, stale, "dropped messages fetched for partitions no longer owned");
            stale = 0;
        }
        if last_commit.elapsed() >= opts.commit_interval {
            commit_pending(&consumer, &sh, CommitMode::Async);
            last_commit = Instant::now();
        }
    }
    // Final commit of everything acknowledged, then leave the group.
    commit_pending(&consumer, &sh, CommitMode::Sync);
    sh.lock().closing = true;
    consumer.unsubscribe();
    drop(consumer);
    info!(group = %opts.group_id, "Kafka source closed");
}
