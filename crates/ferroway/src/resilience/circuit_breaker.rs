//! A circuit breaker: stop calling a dependency that keeps failing, probe it after a
//! while, resume when it answers again.
//!
//! # Concurrency design
//!
//! The closed state is the hot path, so it takes no lock: the state, the epoch and the
//! consecutive-failure counter are atomics, and the failure-rate window is a ring of
//! atomic slots with an atomic failure tally. The mutex is taken only for transitions,
//! for half-open bookkeeping and when the open period has elapsed — all rare events.
//! Rejections while open are lock-free too, because a struggling dependency is exactly
//! when callers hammer the breaker hardest.
//!
//! The price of the lock-free window is precision under contention: outcomes racing
//! with a transition may land in the window of the next closed period, and the rate is
//! read while other calls are still writing. Each such error is at most one sample per
//! racing call, and it can never trip a breaker without a real majority of failures.
//! Every outcome carries the epoch it was admitted in, so an outcome from a previous
//! state (a slow call that started before the breaker opened) never drives a transition.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::backoff::{Backoff, Delays};

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls flow normally; failures are being counted.
    Closed,
    /// Calls are rejected until the open period ends.
    ///
    /// The switch to half-open happens lazily, on the first call made after the open
    /// period has elapsed, so observers see `Open` until then.
    Open,
    /// A limited number of trial calls probe whether the dependency has recovered.
    HalfOpen,
}

impl CircuitState {
    fn from_u8(v: u8) -> Self {
        match v {
            CLOSED => Self::Closed,
            OPEN => Self::Open,
            _ => Self::HalfOpen,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::Closed => CLOSED,
            Self::Open => OPEN,
            Self::HalfOpen => HALF_OPEN,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Returned by [`CircuitBreaker::try_acquire`] when the breaker admits no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open; retry in {retry_in:?}")]
pub struct CircuitOpen {
    /// Time left in the open period. Zero when the breaker is half-open and all its
    /// trial calls are taken: the verdict is expected soon.
    pub retry_in: Duration,
}

/// The error of a call made through [`CircuitBreaker::call`].
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker rejected the call without running it.
    #[error("circuit breaker is open; retry in {retry_in:?}")]
    Open {
        /// Time left in the open period (zero when half-open and busy).
        retry_in: Duration,
    },
    /// The call ran and failed.
    #[error(transparent)]
    Inner(E),
}

impl<E> From<CircuitOpen> for BreakerError<E> {
    fn from(open: CircuitOpen) -> Self {
        Self::Open {
            retry_in: open.retry_in,
        }
    }
}

/// Trip condition: the share of failures among the last calls.
///
/// ```rust
/// use ferroway::resilience::FailureRate;
///
/// // Open when at least half of the last 20 calls failed, once 10 calls were seen.
/// let rate = FailureRate::percent(50.0).window(20).min_calls(10);
/// # let _ = rate;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRate {
    percent: f64,
    window: usize,
    min_calls: usize,
}

impl FailureRate {
    /// Trips when at least `percent` % of the calls in the window failed. Defaults to a
    /// window of 100 calls and a minimum of 20 calls.
    ///
    /// # Panics
    ///
    /// If `percent` is not in `(0, 100]`.
    pub fn percent(percent: f64) -> Self {
        assert!(
            percent > 0.0 && percent <= 100.0,
            "failure rate must be in (0, 100], got {percent}"
        );
        Self {
            percent,
            window: 100,
            min_calls: 20,
        }
    }

    /// The number of most recent calls the rate is computed over.
    ///
    /// # Panics
    ///
    /// If `calls` is zero.
    pub fn window(mut self, calls: usize) -> Self {
        assert!(calls > 0, "failure-rate window must hold at least one call");
        self.window = calls;
        self
    }

    /// The rate is ignored until this many calls are in the window, so that one early
    /// failure is not a 100 % failure rate. Values above the window size are clamped.
    pub fn min_calls(mut self, calls: usize) -> Self {
        self.min_calls = calls;
        self
    }
}

/// Configures a [`CircuitBreaker`]; created by [`CircuitBreaker::builder`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerBuilder {
    name: Arc<str>,
    consecutive_failures: Option<u32>,
    failure_rate: Option<FailureRate>,
    open_backoff: Backoff,
    half_open_calls: u32,
    success_threshold: u32,
}

impl CircuitBreakerBuilder {
    /// Trips after `n` failures in a row. This is the default trip condition (with
    /// `n = 5`) when no other is configured.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        assert!(n > 0, "consecutive-failure threshold must be at least 1");
        self.consecutive_failures = Some(n);
        self
    }

    /// Trips when the failure rate over a sliding window reaches a threshold; combined
    /// with [`consecutive_failures`](Self::consecutive_failures), whichever fires first
    /// trips the breaker. The rate is evaluated as each failure is recorded, so a
    /// success never trips the breaker.
    pub fn failure_rate(mut self, rate: FailureRate) -> Self {
        self.failure_rate = Some(rate);
        self
    }

    /// How long the breaker stays open: each successive re-open without an intervening
    /// close takes the next delay of this policy, and closing starts it over. Once the
    /// policy is exhausted its last delay repeats. Defaults to exponential from 1 s,
    /// capped at 60 s.
    pub fn open_backoff(mut self, policy: Backoff) -> Self {
        self.open_backoff = policy;
        self
    }

    /// How many trial calls the half-open state admits (default 1).
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub fn half_open_calls(mut self, n: u32) -> Self {
        assert!(n > 0, "half-open state must admit at least one call");
        self.half_open_calls = n;
        self
    }

    /// How many trial calls must succeed to close again (default 1). Raised to at most
    /// [`half_open_calls`](Self::half_open_calls) at build time.
    ///
    /// # Panics
    ///
    /// If `n` is zero.
    pub fn success_threshold(mut self, n: u32) -> Self {
        assert!(n > 0, "success threshold must be at least 1");
        self.success_threshold = n;
        self
    }

    /// Builds the breaker, closed.
    pub fn build(self) -> CircuitBreaker {
        let consecutive = match (self.consecutive_failures, &self.failure_rate) {
            (None, None) => Some(5),
            (n, _) => n,
        };
        let window = self.failure_rate.map(|rate| Window {
            slots: (0..rate.window).map(|_| AtomicU8::new(EMPTY)).collect(),
            head: AtomicU64::new(0),
            failures: AtomicI64::new(0),
            percent: rate.percent,
            min_calls: rate.min_calls.clamp(1, rate.window),
        });
        let (state_tx, _) = watch::channel(CircuitState::Closed);
        metrics::gauge!("ferroway_circuit_breaker_state", "breaker" => self.name.clone()).set(0.0);
        CircuitBreaker {
            shared: Arc::new(Shared {
                consecutive_threshold: consecutive,
                window,
                half_open_calls: self.half_open_calls,
                success_threshold: self.success_threshold.min(self.half_open_calls),
                state: AtomicU8::new(CLOSED),
                epoch: AtomicU64::new(0),
                consecutive: AtomicU32::new(0),
                open_until: AtomicU64::new(0),
                origin: Instant::now(),
                control: Mutex::new(Control {
                    open_delays: self.open_backoff.delays(),
                    last_open: Duration::ZERO,
                    admitted: 0,
                    successes: 0,
                }),
                open_backoff: self.open_backoff,
                state_tx,
                name: self.name,
            }),
        }
    }
}

/// A circuit breaker shared by every task calling one dependency.
///
/// Cloning is cheap and clones share state. Trip conditions are consecutive failures
/// and/or a failure rate over the last calls; once tripped the breaker rejects calls for
/// an open period taken from a [`Backoff`] policy, then lets a few trial calls through
/// (half-open): enough successes close it, any failure re-opens it for the next, longer
/// period.
///
/// # Example
///
/// ```rust
/// use std::time::Duration;
/// use ferroway::resilience::{Backoff, BreakerError, CircuitBreaker, CircuitState};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let breaker = CircuitBreaker::builder("inventory")
///     .consecutive_failures(2)
///     .open_backoff(Backoff::exponential(Duration::from_secs(1)))
///     .build();
///
/// for _ in 0..2 {
///     let result = breaker.call(|| async { Err::<(), _>("timeout") }).await;
///     assert!(matches!(result, Err(BreakerError::Inner("timeout"))));
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
///
/// // Rejected without running the operation.
/// let result = breaker.call(|| async { Ok::<_, &str>(1) }).await;
/// assert!(matches!(result, Err(BreakerError::Open { .. })));
///
/// // After the open period, one trial call closes it again.
/// tokio::time::sleep(Duration::from_secs(1)).await;
/// assert_eq!(breaker.call(|| async { Ok::<_, &str>(1) }).await.unwrap(), 1);
/// assert_eq!(breaker.state(), CircuitState::Closed);
///
/// // Callers that cannot wrap a closure take a permit and report the outcome.
/// let permit = breaker.try_acquire().expect("closed");
/// permit.success();
/// # }
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// Starts configuring a breaker; `name` labels its logs and metrics.
    pub fn builder(name: impl AsRef<str>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            name: Arc::from(name.as_ref()),
            consecutive_failures: None,
            failure_rate: None,
            open_backoff: Backoff::exponential(Duration::from_secs(1)).cap(Duration::from_secs(60)),
            half_open_calls: 1,
            success_threshold: 1,
        }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The current state. See [`CircuitState::Open`] for when half-open begins.
    pub fn state(&self) -> CircuitState {
        CircuitState::from_u8(self.shared.state.load(Ordering::Acquire))
    }

    /// Observes state changes.
    pub fn subscribe(&self) -> watch::Receiver<CircuitState> {
        self.shared.state_tx.subscribe()
    }

    /// Runs `operation` if the breaker admits it; every error counts as a failure.
    pub async fn call<F, Fut, T, E>(&self, operation: F) -> Result<T, BreakerError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_with(|_| true, operation).await
    }

    /// Runs `operation` if the breaker admits it; an error counts as a failure only when
    /// `is_failure` returns `true`.
    ///
    /// Errors that do not count are still returned as [`BreakerError::Inner`], and are
    /// recorded as successes: the dependency answered, it just said no (think "not
    /// found" or a validation error).
    pub async fn call_with<F, Fut, T, E, P>(&self, is_failure: P, operation: F) -> Result<T, BreakerError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        P: FnOnce(&E) -> bool,
    {
        let permit = self.try_acquire()?;
        match operation().await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(err) => {
                if is_failure(&err) {
                    permit.failure();
                } else {
                    permit.success();
                }
                Err(BreakerError::Inner(err))
            }
        }
    }

    /// Asks to make one call. The returned permit must be resolved with
    /// [`Permit::success`] or [`Permit::failure`]; dropping it unresolved records
    /// nothing (and frees its half-open trial slot).
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpen> {
        let shared = &self.shared;
        let epoch = shared.epoch.load(Ordering::Acquire);
        match shared.state.load(Ordering::Acquire) {
            CLOSED => Ok(Permit::new(shared, epoch, false)),
            OPEN => {
                let now = shared.now();
                let until = shared.open_until.load(Ordering::Acquire);
                if now < until {
                    return Err(shared.reject(Duration::from_nanos(until - now)));
                }
                shared.acquire_slow()
            }
            _ => shared.acquire_slow(),
        }
    }
}

/// Permission to make one call through a [`CircuitBreaker`].
#[must_use = "report the outcome with `success()` or `failure()`"]
pub struct Permit {
    shared: Arc<Shared>,
    epoch: u64,
    half_open: bool,
    resolved: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.shared.name)
            .field("half_open", &self.half_open)
            .finish_non_exhaustive()
    }
}

impl Permit {
    fn new(shared: &Arc<Shared>, epoch: u64, half_open: bool) -> Self {
        Self {
            shared: Arc::clone(shared),
            epoch,
            half_open,
            resolved: false,
        }
    }

    /// Records that the call succeeded.
    pub fn success(mut self) {
        self.resolved = true;
        self.shared.on_outcome(self.epoch, self.half_open, false);
    }

    /// Records that the call failed.
    pub fn failure(mut self) {
        self.resolved = true;
        self.shared.on_outcome(self.epoch, self.half_open, true);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.resolved && self.half_open {
            self.shared.release_trial(self.epoch);
        }
    }
}

const EMPTY: u8 = 0;
const SUCCESS: u8 = 1;
const FAILURE: u8 = 2;

/// Ring of the last N outcomes with a running failure tally, updated without locks.
struct Window {
    slots: Box<[AtomicU8]>,
    head: AtomicU64,
    // Signed so that a tally briefly knocked off by a reset racing an update cannot wrap.
    failures: AtomicI64,
    percent: f64,
    min_calls: usize,
}

impl Window {
    /// Records an outcome; returns whether the failure rate now calls for tripping.
    fn record(&self, failed: bool) -> bool {
        let index = self.head.fetch_add(1, Ordering::AcqRel);
        let len = self.slots.len() as u64;
        let new = if failed { FAILURE } else { SUCCESS };
        let old = self.slots[(index % len) as usize].swap(new, Ordering::AcqRel);
        let failures = match (old == FAILURE, failed) {
            (false, true) => self.failures.fetch_add(1, Ordering::AcqRel) + 1,
            (true, false) => self.failures.fetch_sub(1, Ordering::AcqRel) - 1,
            _ => self.failures.load(Ordering::Acquire),
        };
        let calls = (index + 1).min(len) as f64;
        failed && calls >= self.min_calls as f64 && failures.max(0) as f64 * 100.0 >= self.percent * calls
    }

    fn reset(&self) {
        for slot in &self.slots {
            slot.store(EMPTY, Ordering::Release);
        }
        self.head.store(0, Ordering::Release);
        self.failures.store(0, Ordering::Release);
    }
}

struct Control {
    open_delays: Delays,
    last_open: Duration,
    admitted: u32,
    successes: u32,
}

struct Shared {
    name: Arc<str>,
    consecutive_threshold: Option<u32>,
    window: Option<Window>,
    half_open_calls: u32,
    success_threshold: u32,
    open_backoff: Backoff,
    state: AtomicU8,
    // Bumped on every transition; permits remember it so stale outcomes are ignored.
    epoch: AtomicU64,
    consecutive: AtomicU32,
    // Nanoseconds since `origin`, so the open deadline fits in an atomic.
    open_until: AtomicU64,
    origin: Instant,
    control: Mutex<Control>,
    state_tx: watch::Sender<CircuitState>,
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(Instant::now().saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        // The guarded data is plain counters that are valid at every step, so a panic
        // elsewhere while holding the lock leaves nothing to repair.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reject(&self, retry_in: Duration) -> CircuitOpen {
        metrics::counter!("ferroway_circuit_breaker_rejected_total", "breaker" => self.name.clone()).increment(1);
        CircuitOpen { retry_in }
    }

    fn load_state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Admission when not closed: moves open to half-open once the period is over and
    /// hands out trial permits.
    fn acquire_slow(self: &Arc<Self>) -> Result<Permit, CircuitOpen> {
        let mut control = self.lock();
        let now = self.now();
        match self.load_state() {
            // Closed while we waited for the lock.
            CLOSED => Ok(Permit::new(self, self.epoch.load(Ordering::Acquire), false)),
            OPEN => {
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    return Err(self.reject(Duration::from_nanos(until - now)));
                }
                self.transition(&mut control, CircuitState::HalfOpen, now);
                control.admitted = 1;
                Ok(Permit::new(self, self.epoch.load(Ordering::Acquire), true))
            }
            _ => {
                if control.admitted < self.half_open_calls {
                    control.admitted += 1;
                    Ok(Permit::new(self, self.epoch.load(Ordering::Acquire), true))
                } else {
                    Err(self.reject(Duration::ZERO))
                }
            }
        }
    }

    fn on_outcome(&self, epoch: u64, half_open: bool, failed: bool) {
        if half_open {
            let mut control = self.lock();
            if self.load_state() != HALF_OPEN || self.epoch.load(Ordering::Acquire) != epoch {
                return;
            }
            if failed {
                self.transition(&mut control, CircuitState::Open, self.now());
            } else {
                control.successes += 1;
                if control.successes >= self.success_threshold {
                    self.transition(&mut control, CircuitState::Closed, self.now());
                }
            }
            return;
        }

        if self.load_state() != CLOSED || self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if !failed {
            // Skip the store when already zero so that a stream of successes does not
            // keep bouncing the cache line between cores.
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            if let Some(window) = &self.window {
                window.record(false);
            }
            return;
        }
        let in_a_row = self.consecutive.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let by_count = self.consecutive_threshold.is_some_and(|n| in_a_row >= n);
        let by_rate = self.window.as_ref().is_some_and(|w| w.record(true));
        if by_count || by_rate {
            let mut control = self.lock();
            if self.load_state() == CLOSED && self.epoch.load(Ordering::Acquire) == epoch {
                tracing::debug!(
                    breaker = %self.name,
                    consecutive_failures = in_a_row,
                    by_rate,
                    "trip condition met"
                );
                self.transition(&mut control, CircuitState::Open, self.now());
            }
        }
    }

    fn release_trial(&self, epoch: u64) {
        let mut control = self.lock();
        if self.load_state() == HALF_OPEN && self.epoch.load(Ordering::Acquire) == epoch {
            control.admitted = control.admitted.saturating_sub(1);
        }
    }

    /// Performs a transition; the caller holds the control lock.
    fn transition(&self, control: &mut Control, to: CircuitState, now: u64) {
        let from = CircuitState::from_u8(self.load_state());
        match to {
            CircuitState::Open => {
                let delay = control.open_delays.next().unwrap_or(control.last_open);
                control.last_open = delay;
                let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
                self.open_until.store(now.saturating_add(nanos), Ordering::Release);
                tracing::warn!(breaker = %self.name, %from, open_for = ?delay, "circuit opened");
            }
            CircuitState::HalfOpen => {
                control.admitted = 0;
                control.successes = 0;
                tracing::info!(breaker = %self.name, "circuit half-open, probing");
            }
            CircuitState::Closed => {
                control.open_delays = self.open_backoff.delays();
                control.last_open = Duration::ZERO;
                self.consecutive.store(0, Ordering::Release);
                if let Some(window) = &self.window {
                    window.reset();
                }
                tracing::info!(breaker = %self.name, "circuit closed");
            }
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.state.store(to.as_u8(), Ordering::Release);
        self.state_tx.send_replace(to);
        metrics::gauge!("ferroway_circuit_breaker_state", "breaker" => self.name.clone()).set(f64::from(to.as_u8()));
        metrics::counter!(
            "ferroway_circuit_breaker_transitions_total",
            "breaker" => self.name.clone(),
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1);
    }
}
