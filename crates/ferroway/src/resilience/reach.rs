//! Whether a source ever reached its server. The connect timeout runs from the first source's
//! start and only until a connection succeeds: a source that never gets one fails, and the
//! sources its pipeline starts again fail at once, so `join`/`run_until` returns the error
//! instead of a program retrying a wrong host unseen. Once the server answered, an outage
//! never fails the source: it waits and warns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The record, shared by every source of one consumer in this process, of whether its server
/// was ever reached — what [`Source::connected`](crate::connector::Source::connected) reports
/// and what bounds the first connection attempts by a connect timeout.
///
/// ```
/// use std::time::Duration;
/// use ferroway::resilience::Reach;
///
/// let reach = Reach::of("doc: amqp://127.0.0.1:1 orders");
/// // Not reached yet: wait at most what is left of the 60 s timeout, 5 s at a time.
/// assert_eq!(reach.wait(Duration::from_secs(60), Duration::from_secs(5)), Some(Duration::from_secs(5)));
/// reach.failed(Some("connection refused".into()));
/// assert_eq!(reach.last_error(), "connection refused");
/// reach.mark_reached();
/// assert!(reach.reached());
/// // The same consumer restarted finds the record.
/// assert!(Reach::of("doc: amqp://127.0.0.1:1 orders").reached());
/// ```
#[derive(Debug)]
pub struct Reach {
    started: Instant,
    reached: AtomicBool,
    /// Why the last attempt of any of these sources failed: a restarted source that fails at
    /// once has made none of its own.
    last_error: Mutex<Option<String>>,
}

impl Reach {
    /// The record shared by every source of consumer `key` in this process (kept for the
    /// process's life: restarts must find it). Make the key name the server and the
    /// consumer (URL, group, consumer name).
    pub fn of(key: &str) -> Arc<Reach> {
        static ALL: LazyLock<Mutex<HashMap<String, Arc<Reach>>>> = LazyLock::new(Default::default);
        let mut all = ALL.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Reach {
                    started: Instant::now(),
                    reached: AtomicBool::new(false),
                    last_error: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Whether the server answered since the first source started.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    /// The server answered.
    pub fn mark_reached(&self) {
        self.reached.store(true, Ordering::Relaxed);
    }

    /// How long to wait now for a connection, at most `wait`: `None` once `timeout` has
    /// passed without the server ever answering.
    pub fn wait(&self, timeout: Duration, wait: Duration) -> Option<Duration> {
        if self.reached.load(Ordering::Relaxed) {
            return Some(wait);
        }
        let left = timeout.saturating_sub(self.started.elapsed());
        (!left.is_zero()).then(|| left.min(wait))
    }

    /// How long since the first source started.
    pub fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records why an attempt failed (`None` keeps the last reason).
    pub fn failed(&self, why: Option<String>) {
        if let Some(why) = why {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        }
    }

    /// Why the last attempt failed.
    pub fn last_error(&self) -> String {
        let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        last.clone().unwrap_or_else(|| "no attempt finished".to_owned())
    }
}
