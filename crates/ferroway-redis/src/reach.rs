//! Whether a consumer ever reached its Redis. The connect timeout runs from the first source's
//! start and only until a connection succeeds: a source that never gets one fails, and the
//! sources its pipeline starts again fail at once, so `join`/`run_until` returns the error
//! instead of a program retrying a wrong host unseen. Once Redis answered, an outage never
//! fails the source: it waits and warns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Reach {
    started: Instant,
    reached: AtomicBool,
    /// Why the last attempt of any of these sources failed: a restarted source that fails at
    /// once has made none of its own.
    last_error: Mutex<Option<String>>,
}

impl Reach {
    /// The record shared by every source of consumer `key` in this process (kept for the
    /// process's life: restarts must find it).
    pub(crate) fn of(key: &str) -> Arc<Reach> {
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

    pub(crate) fn reached(&self) -> bool {
        self.reached.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_reached(&self) {
        self.reached.store(true, Ordering::Relaxed);
    }

    /// How long to wait now for a connection, at most `wait`: `None` once `timeout` has
    /// passed without Redis ever answering.
    pub(crate) fn wait(&self, timeout: Duration, wait: Duration) -> Option<Duration> {
        if self.reached.load(Ordering::Relaxed) {
            return Some(wait);
        }
        let left = timeout.saturating_sub(self.started.elapsed());
        (!left.is_zero()).then(|| left.min(wait))
    }

    pub(crate) fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn failed(&self, why: Option<String>) {
        if let Some(why) = why {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        }
    }

    pub(crate) fn last_error(&self) -> String {
        let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        last.clone().unwrap_or_else(|| "no attempt finished".to_owned())
    }
}
