//! Saying what a source waits for: reaching a broker at all (bounded by `connect_timeout`,
//! then the source fails), and partitions to read (a rate-limited warning).
//!
//! librdkafka never reports that it reached a broker, only failures: the poller asks for
//! topic metadata (once a second, waiting at most a second) until one answers, or until the
//! group assigns partitions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ferroway::telemetry::LogThrottle;
use rdkafka::consumer::Consumer;
use tracing::{info, warn};

use super::fetched::Client;
use super::shared::Shared;
use crate::error::{ErrorClass, KafkaError};

/// How often an unreached cluster is asked for metadata, and how long each ask waits.
const PROBE: Duration = Duration::from_secs(1);
/// How long without partitions before the first warning.
const WAIT_WARN_AFTER: Duration = Duration::from_secs(10);
/// At most one "still waiting" warning this often.
const WAIT_WARN_EVERY: Duration = Duration::from_secs(30);

/// Whether the sources of one factory ever reached the cluster: the connect timeout runs from
/// the first source's start and only until then, so restarted sources fail at once and the
/// pipeline gives up instead of retrying an unreachable cluster unseen.
#[derive(Debug, Default)]
pub(super) struct Reach {
    started: OnceLock<Instant>,
    reached: AtomicBool,
}

impl Reach {
    /// Notes a source starting; the error if the cluster was never reached within `timeout`.
    pub(super) fn check(&self, timeout: Duration, servers: &str) -> Result<(), KafkaError> {
        let started = *self.started.get_or_init(Instant::now);
        if self.reached.load(Ordering::Relaxed) || started.elapsed() < timeout {
            return Ok(());
        }
        Err(unreachable(servers, started.elapsed(), None))
    }

    pub(super) fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }
}

fn unreachable(servers: &str, waited: Duration, last: Option<&str>) -> KafkaError {
    let mut message = format!("no broker answered for {}s", waited.as_secs());
    if let Some(last) = last {
        message.push_str(&format!(" (last error: {last})"));
    }
    KafkaError::from_code("connect", None, ErrorClass::Unavailable, message, servers)
}

/// The poller's watch over the source's start and its assignment.
pub(super) struct Watch {
    reach: Arc<Reach>,
    started: Instant,
    reached: bool,
    failed: bool,
    next_check: Instant,
    waiting_since: Option<Instant>,
    wait_log: LogThrottle,
}

impl Watch {
    /// Whether a broker has answered.
    pub(super) fn reached(&self) -> bool {
        self.reached
    }

    pub(super) fn new(reach: Arc<Reach>) -> Self {
        Watch {
            reach,
            started: Instant::now(),
            reached: false,
            failed: false,
            next_check: Instant::now(),
            waiting_since: Some(Instant::now()),
            wait_log: LogThrottle::new(WAIT_WARN_EVERY),
        }
    }

    /// Called on every turn of the poller; does something about once a second.
    pub(super) fn tick(&mut self, client: &Client, sh: &Shared) {
        let now = Instant::now();
        if now < self.next_check {
            return;
        }
        self.next_check = now + PROBE;
        let (assigned, joined, last_error) = {
            let s = sh.lock();
            (s.book.len(), s.joined, s.last_error.clone())
        };
        if !self.reached && (joined || assigned > 0) {
            self.reach_now(sh, "joined its group");
        }
        if !self.reached && !self.failed {
            self.probe(client, sh, last_error.as_deref());
        }
        if assigned > 0 {
            if self.waiting_since.take().is_some() {
                self.wait_log.reset();
            }
            return;
        }
        let since = *self.waiting_since.get_or_insert(now);
        if since.elapsed() >= WAIT_WARN_AFTER
            && let Some(suppressed) = self.wait_log.allow()
        {
            warn!(group = %sh.opts.group_id, topics = ?sh.opts.topics, reached = self.reached, joined,
                last_error = last_error.as_deref().unwrap_or("none"), suppressed,
                "still waiting for partition assignment after {}s (does the topic exist? a group with more \
                 members than partitions leaves some without)", since.elapsed().as_secs());
        }
    }

    fn probe(&mut self, client: &Client, sh: &Shared, last_error: Option<&str>) {
        let topic = sh.opts.topics.iter().find(|t| !t.starts_with('^')).map(String::as_str);
        match client.fetch_metadata(topic, PROBE) {
            Ok(md) => {
                let brokers = md.brokers().len();
                self.reach_now(sh, &format!("metadata from {brokers} broker(s)"));
            }
            Err(_) if self.reach.reached() => {}
            Err(e) => {
                let waited = self.reach.started.get().copied().unwrap_or(self.started).elapsed();
                if waited >= sh.opts.connect_timeout {
                    self.failed = true;
                    let last = last_error.map_or_else(|| e.to_string(), str::to_owned);
                    sh.fail(unreachable(&sh.opts.connection.bootstrap_servers, waited, Some(&last)));
                }
            }
        }
    }

    fn reach_now(&mut self, sh: &Shared, how: &str) {
        self.reached = true;
        self.reach.reached.store(true, Ordering::Relaxed);
        info!(group = %sh.opts.group_id, servers = %sh.opts.connection.bootstrap_servers, how,
            elapsed_ms = self.started.elapsed().as_millis() as u64, "Kafka source connected");
    }
}
