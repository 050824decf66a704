//! The poller thread: owns the consumer's polling, fetches what the pipeline demanded plus
//! a prefetch, pauses partitions when nobody asks, commits on the interval and closes.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use tracing::{debug, info, warn};

use super::acker::SourceAcker;
use super::context::commit_pending;
use super::fetched::{Client, Fetched, Intake};
use super::native::MessageQueue;
use super::shared::{PollerEnd, Shared};
use super::startup::Watch;
use crate::client_log::ClientLog;
use crate::error::KafkaError;

/// The most messages moved from librdkafka to the source in one go.
const MAX_BATCH: usize = 4096;
/// How long the poller waits for a message before serving librdkafka's events again.
const FETCH_WAIT_MS: i32 = 50;
/// How often the poller serves librdkafka's events while it has nothing to fetch.
const PAUSED_POLL: Duration = Duration::from_millis(20);
/// How long without demand before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// After how long a close still waiting for the pipeline's task to release the consumer says so.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// The consumer and the source's queue. The queue goes first: a librdkafka queue must not
/// outlive its client.
pub(super) struct Member {
    queue: Arc<MessageQueue>,
    pub(super) client: Arc<Client>,
}

impl Member {
    /// Gives `client` its source queue.
    pub(super) fn new(client: Client) -> Result<Member, KafkaError> {
        let queue = MessageQueue::new(&client)
            .map(Arc::new)
            .ok_or_else(|| KafkaError::Client("could not create the source's message queue".into()))?;
        *client.context().queue.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue.clone());
        Ok(Member {
            queue,
            client: Arc::new(client),
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.client
            .context()
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// Runs until the source drains: every acknowledgement in (or `close_timeout`), final
/// commit, group left.
pub(super) fn poll_loop(member: Member, sh: Arc<Shared>, acker: Weak<SourceAcker>, _end: PollerEnd, mut watch: Watch) {
    let (client, queue) = (member.client.clone(), member.queue.clone());
    let opts = sh.opts.clone();
    let mut paused = false;
    let mut last_commit = Instant::now();
    let mut intake = Intake::default();
    let mut close_deadline: Option<Instant> = None;
    // Until when a stop waits for a join in flight (set with `close_deadline`).
    let mut join_deadline = Instant::now();
    // Since when the source has held a full buffer with no demand (None: it has not).
    let mut full_since: Option<Instant> = None;
    loop {
        // What to do next, from the pipeline's demand.
        let (budget, changed, draining, spent) = {
            let mut s = sh.lock();
            let changed = std::mem::take(&mut s.assignment_changed);
            let spent = std::mem::take(&mut s.spent);
            if s.draining {
                if close_deadline.is_none() {
                    close_deadline = Some(Instant::now() + opts.close_timeout);
                    join_deadline = Instant::now() + opts.session_timeout.min(JOIN_WAIT);
                    // Unemitted messages are never tracked: dropping them loses nothing.
                    s.fetched.clear();
                }
                (0, changed, true, spent)
            } else {
                let (len, cap) = (s.fetched.len(), s.wanted + opts.prefetch);
                if len >= cap {
                    // Enough is ready: wait (briefly) for demand rather than spin.
                    s = sh
                        .demand
                        .wait_timeout(s, PAUSED_POLL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                let (len, cap) = (s.fetched.len(), s.wanted + opts.prefetch);
                (cap.saturating_sub(len).min(MAX_BATCH), changed, false, spent)
            }
        };
        drop(spent);
        if let Some(deadline) = close_deadline {
            let (in_flight, joined) = {
                let s = sh.lock();
                (s.book.in_flight(), s.joined)
            };
            // A stop while the join is in flight waits for it (JOIN_WAIT at most), so
            // the leave that follows is a real one: a member the broker admitted but never
            // heard leave keeps partitions from the next member until the broker gives up on
            // it (tansu: never).
            let joining = watch.reached() && !joined && Instant::now() < join_deadline.min(deadline);
            if !joining && (in_flight == 0 || acker.strong_count() == 0 || Instant::now() >= deadline) {
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
        // Applied again after every assignment change, both ways: librdkafka keeps a pause on a
        // partition across unassign and reassign, so a resume made while nothing was assigned
        // (between a revoke and the next assign) would leave it paused for good.
        if (pause != paused || changed) && set_paused(&client, &sh, pause) {
            paused = pause;
        }

        let mut batch = Fetched::new(&client, budget);
        // Rebalances and other events first, then messages: waiting for them only when there
        // is demand. With no demand, this serves events and takes no message.
        while intake.serve_events(&client) {}
        let wait = if budget > 0 && batch.is_empty() {
            FETCH_WAIT_MS
        } else {
            0
        };
        intake.take(&mut batch, &queue, wait, budget, &sh);
        for e in intake.errors.drain(..) {
            fail_or_log(&sh, &e, None);
        }
        for e in intake.fetch_errors.drain(..) {
            fail_or_log(&sh, &e, Some(&client.context().log));
        }
        // While draining, what was polled is dropped: never emitted, never tracked.
        if !draining && !batch.is_empty() {
            let n = batch.len() as u64;
            sh.lock().fetched.push(batch);
            sh.metrics.received.increment(n);
            sh.ready.notify_one();
        }
        if intake.stale > 0 {
            debug!(group = %opts.group_id, stale = intake.stale, "dropped messages fetched for partitions no longer owned");
            intake.stale = 0;
        }
        if !draining {
            watch.tick(&client, &sh);
        }
        if last_commit.elapsed() >= opts.commit_interval {
            commit_pending(&client, &sh, CommitMode::Async);
            last_commit = Instant::now();
        }
    }
    // Final commit of everything acknowledged, then leave the group.
    commit_pending(&client, &sh, CommitMode::Sync);
    sh.lock().closing = true;
    client.unsubscribe();
    drop((client, queue));
    close(member, &sh);
    info!(group = %opts.group_id, "Kafka source closed");
}

/// The longest a stop waits for a join in flight (below the pipeline's default 30 s shutdown
/// timeout); a broker never reached has no join to wait for.
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// Destroys the client here, so the close (and the last rebalance callbacks) run on this
/// thread and are over when the source reports closed. The pipeline's task holds a share of
/// the client only while it converts a batch, which never waits on anything: wait for it.
fn close(member: Member, sh: &Shared) {
    sh.release_fetched();
    let started = Instant::now();
    let mut warned = false;
    while Arc::strong_count(&member.client) > 1 {
        if !warned && started.elapsed() >= RELEASE_WAIT {
            warn!(group = %sh.opts.group_id, "Kafka source close waiting for the pipeline's task to release the consumer");
            warned = true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(member);
}

/// A fatal consumer error fails the source (the pipeline restarts it or gives up); any
/// other librdkafka recovers from by itself. Client-wide errors are logged by the context;
/// errors delivered in place of messages (of a partition) are logged here, rate-limited.
fn fail_or_log(sh: &Shared, e: &RdKafkaError, log: Option<&ClientLog>) {
    if consumer_fatal(e) {
        sh.fail(KafkaError::broker("consume", e, &sh.opts.connection.bootstrap_servers));
    } else if let Some(log) = log {
        sh.metrics.errors.increment(1);
        log.error(e, "a partition's fetch");
    }
}

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

/// Pauses or resumes every assigned partition; false when nothing is assigned (nothing done).
fn set_paused(client: &Client, sh: &Shared, pause: bool) -> bool {
    let Ok(assignment) = client.assignment() else {
        return false;
    };
    if assignment.count() == 0 {
        return false;
    }
    let r = if pause {
        sh.metrics.pauses.increment(1);
        client.pause(&assignment)
    } else {
        client.resume(&assignment)
    };
    if let Err(e) = r {
        warn!(group = %sh.opts.group_id, error = %e, pause, "could not pause/resume partitions");
    }
    true
}
