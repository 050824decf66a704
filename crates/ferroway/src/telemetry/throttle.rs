//! Rate-limited logging: one line per interval for a condition that repeats.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lets a repeated log line through at most once per interval and counts the ones it held
/// back, so an outage that fails every call shows as one warning every few seconds with a
/// count, not thousands of identical lines.
///
/// ```
/// use std::time::Duration;
/// use ferroway::telemetry::LogThrottle;
///
/// let throttle = LogThrottle::new(Duration::from_secs(5));
/// for _ in 0..1000 {
///     if let Some(suppressed) = throttle.allow() {
///         tracing::warn!(suppressed, "broker unreachable; retrying");
///     }
/// }
/// assert!(throttle.allow().is_none()); // the first call got through; the rest wait 5 s
/// ```
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// At most one line per `interval`.
    pub const fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            state: Mutex::new(State {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back since the
    /// last one; `None` when this one should be skipped.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if s.last.is_some_and(|t| now.duration_since(t) < self.interval) {
            s.suppressed += 1;
            return None;
        }
        s.last = Some(now);
        Some(std::mem::take(&mut s.suppressed))
    }

    /// Forgets the last line (the condition cleared): the next occurrence is logged at once.
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
    }
}
