//! Backoff policies: composable, cloneable descriptions of a delay sequence.
//!
//! A [`Backoff`] is a template. Turning it into an iterator ([`Backoff::delays`] or
//! `IntoIterator`) starts a fresh sequence, so one policy value can drive any number of
//! independent retry loops. [`StatefulBackoff`] wraps the same sequence for long-lived
//! loops that alternate between failures and successes.

use std::time::Duration;

/// How randomness is mixed into each delay.
///
/// Randomising delays keeps many clients that failed at the same moment from retrying in
/// lock-step and hammering a recovering dependency together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Use the computed delay unchanged.
    #[default]
    None,
    /// Uniform in `[0, d]`: the widest spread, and the lowest average wait.
    Full,
    /// Uniform in `[d/2, d]`: keeps at least half of the computed delay.
    Equal,
    /// Uniform in `[initial, min(cap, 3 * previous)]`, where `previous` is the last
    /// delay handed out (starting at the initial delay).
    ///
    /// The growth comes from the jitter itself, so the policy's own progression
    /// (exponential, linear, …) is ignored and only its initial delay and cap matter.
    Decorrelated,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Progression {
    Constant,
    Linear { step: Duration },
    Exponential { factor: f64 },
    Fibonacci,
}

/// A backoff policy: the recipe for a sequence of [`Duration`] delays.
///
/// Build one with [`constant`](Backoff::constant), [`linear`](Backoff::linear),
/// [`exponential`](Backoff::exponential) or [`fibonacci`](Backoff::fibonacci), then
/// refine it with [`cap`](Backoff::cap), [`take`](Backoff::take),
/// [`max_elapsed`](Backoff::max_elapsed), [`jitter`](Backoff::jitter) and
/// [`seed`](Backoff::seed). The modifiers commute: each delay is computed from the
/// progression, capped, jittered, then cut to fit the elapsed budget, whatever order the
/// builder calls were made in.
///
/// A policy is `Clone + Send + Sync` and is consumed by iterating it; iterating a clone
/// leaves the template untouched. An unseeded policy draws a new random seed each time a
/// sequence starts, so clones of a template do not jitter in unison.
///
/// # Example
///
/// ```rust
/// use std::time::Duration;
/// use ferroway::resilience::{Backoff, Jitter};
///
/// let policy = Backoff::exponential(Duration::from_millis(100))
///     .factor(2.0)
///     .cap(Duration::from_millis(500))
///     .take(5);
///
/// let delays: Vec<_> = policy.delays().map(|d| d.as_millis()).collect();
/// assert_eq!(delays, [100, 200, 400, 500, 500]);
///
/// // The same template, with full jitter: every delay lies in [0, computed].
/// let jittered = policy.clone().jitter(Jitter::Full).seed(7);
/// for (plain, jittered) in policy.delays().zip(jittered.delays()) {
///     assert!(jittered <= plain);
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    progression: Progression,
    cap: Option<Duration>,
    max_attempts: Option<usize>,
    max_elapsed: Option<Duration>,
    jitter: Jitter,
    seed: Option<u64>,
}

impl Backoff {
    fn with(initial: Duration, progression: Progression) -> Self {
        Self {
            initial,
            progression,
            cap: None,
            max_attempts: None,
            max_elapsed: None,
            jitter: Jitter::None,
            seed: None,
        }
    }

    /// The same delay every time: `d, d, d, …`.
    pub fn constant(delay: Duration) -> Self {
        Self::with(delay, Progression::Constant)
    }

    /// Delays growing by a fixed step: `d, 2d, 3d, …` (change the step with
    /// [`step`](Backoff::step)).
    pub fn linear(initial: Duration) -> Self {
        Self::with(initial, Progression::Linear { step: initial })
    }

    /// Delays multiplied by a factor each time: `d, 2d, 4d, …` (change the factor with
    /// [`factor`](Backoff::factor)).
    pub fn exponential(initial: Duration) -> Self {
        Self::with(initial, Progression::Exponential { factor: 2.0 })
    }

    /// Delays following the Fibonacci sequence: `d, d, 2d, 3d, 5d, 8d, …`.
    ///
    /// Grows more gently than doubling, which suits dependencies that usually recover
    /// within a few seconds.
    pub fn fibonacci(initial: Duration) -> Self {
        Self::with(initial, Progression::Fibonacci)
    }

    /// Sets the increment of a [`linear`](Backoff::linear) policy: `d, d + step, d + 2·step, …`.
    ///
    /// Has no effect on other progressions.
    pub fn step(mut self, step: Duration) -> Self {
        if let Progression::Linear { step: s } = &mut self.progression {
            *s = step;
        }
        self
    }

    /// Sets the multiplier of an [`exponential`](Backoff::exponential) policy (default 2.0).
    ///
    /// Has no effect on other progressions.
    ///
    /// # Panics
    ///
    /// If `factor` is not finite or is below 1.0: a shrinking "backoff" is almost
    /// certainly a mistake.
    pub fn factor(mut self, factor: f64) -> Self {
        assert!(
            factor.is_finite() && factor >= 1.0,
            "backoff factor must be finite and >= 1.0, got {factor}"
        );
        if let Progression::Exponential { factor: f } = &mut self.progression {
            *f = factor;
        }
        self
    }

    /// Caps every delay at `max`, before jitter is applied.
    pub fn cap(mut self, max: Duration) -> Self {
        self.cap = Some(max);
        self
    }

    /// Ends the sequence after `n` delays. Used by [`retry`](super::retry()), that means at
    /// most `n + 1` attempts.
    pub fn take(mut self, n: usize) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Ends the sequence once the delays handed out add up to `budget`; the last delay is
    /// shortened so the total lands exactly on it.
    ///
    /// The budget counts waiting time only, not the time spent in the operation being
    /// retried, which keeps the sequence a pure function of the policy. For a wall-clock
    /// deadline, wrap the whole retry in [`tokio::time::timeout`].
    pub fn max_elapsed(mut self, budget: Duration) -> Self {
        self.max_elapsed = Some(budget);
        self
    }

    /// Sets the jitter mode (default [`Jitter::None`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter's random generator, making every sequence started from this
    /// policy identical. Meant for tests and reproducible simulations.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts a fresh sequence of delays from this policy.
    pub fn delays(&self) -> Delays {
        let rng = match self.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        Delays {
            next_base: self.initial,
            fib_prev: Duration::ZERO,
            prev_jittered: self.initial,
            yielded: 0,
            spent: Duration::ZERO,
            done: false,
            rng,
            policy: self.clone(),
        }
    }

    /// Wraps the policy for long-lived loops: call [`StatefulBackoff::fail`] after each
    /// failure to learn how long to wait, and [`StatefulBackoff::succeed`] to start over.
    ///
    /// ```rust
    /// use std::time::Duration;
    /// use ferroway::resilience::Backoff;
    ///
    /// let mut backoff = Backoff::exponential(Duration::from_secs(1)).take(2).stateful();
    /// assert_eq!(backoff.fail(), Some(Duration::from_secs(1)));
    /// assert_eq!(backoff.fail(), Some(Duration::from_secs(2)));
    /// assert_eq!(backoff.fail(), None); // gave up
    /// assert_eq!(backoff.attempts(), 3);
    ///
    /// backoff.succeed();
    /// assert_eq!(backoff.attempts(), 0);
    /// assert_eq!(backoff.fail(), Some(Duration::from_secs(1)));
    /// ```
    pub fn stateful(&self) -> StatefulBackoff {
        StatefulBackoff {
            delays: self.delays(),
            policy: self.clone(),
            attempts: 0,
        }
    }

    fn capped(&self, d: Duration) -> Duration {
        self.cap.map_or(d, |cap| d.min(cap))
    }
}

impl IntoIterator for Backoff {
    type Item = Duration;
    type IntoIter = Delays;

    fn into_iter(self) -> Delays {
        self.delays()
    }
}

impl IntoIterator for &Backoff {
    type Item = Duration;
    type IntoIter = Delays;

    fn into_iter(self) -> Delays {
        self.delays()
    }
}

/// One running sequence of delays produced by a [`Backoff`] policy.
///
/// Cloning it forks the sequence at its current position (including the random state).
#[derive(Debug, Clone)]
pub struct Delays {
    policy: Backoff,
    next_base: Duration,
    fib_prev: Duration,
    prev_jittered: Duration,
    yielded: usize,
    spent: Duration,
    done: bool,
    rng: fastrand::Rng,
}

impl Delays {
    /// The number of delays handed out so far.
    pub fn yielded(&self) -> usize {
        self.yielded
    }

    fn advance_base(&mut self) -> Duration {
        let current = self.next_base;
        // Once the cap is reached further growth is invisible, so stop growing: that
        // keeps the arithmetic far away from overflow in endless loops.
        let saturated = self.policy.cap.is_some_and(|cap| current >= cap);
        if !saturated {
            self.next_base = match self.policy.progression {
                Progression::Constant => current,
                Progression::Linear { step } => current.saturating_add(step),
                Progression::Exponential { factor } => scale(current, factor),
                Progression::Fibonacci => {
                    let next = if self.yielded == 0 {
                        current
                    } else {
                        current.saturating_add(self.fib_prev)
                    };
                    self.fib_prev = current;
                    next
                }
            };
        }
        current
    }

    fn jittered(&mut self, computed: Duration) -> Duration {
        match self.policy.jitter {
            Jitter::None => computed,
            Jitter::Full => uniform(&mut self.rng, Duration::ZERO, computed),
            Jitter::Equal => {
                let half = computed / 2;
                uniform(&mut self.rng, computed - half, computed)
            }
            Jitter::Decorrelated => {
                let base = self.policy.initial;
                let upper = self
                    .policy
                    .capped(self.prev_jittered.saturating_mul(3))
                    .max(base.min(self.policy.cap.unwrap_or(base)));
                let lower = base.min(upper);
                let d = uniform(&mut self.rng, lower, upper);
                self.prev_jittered = d;
                d
            }
        }
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.done {
            return None;
        }
        if self.policy.max_attempts.is_some_and(|n| self.yielded >= n) {
            self.done = true;
            return None;
        }
        let base = self.advance_base();
        let computed = self.policy.capped(base);
        let mut delay = self.jittered(computed);

        if let Some(budget) = self.policy.max_elapsed {
            let remaining = budget.saturating_sub(self.spent);
            if remaining.is_zero() {
                self.done = true;
                return None;
            }
            delay = delay.min(remaining);
        }
        self.spent = self.spent.saturating_add(delay);
        self.yielded += 1;
        Some(delay)
    }
}

impl std::iter::FusedIterator for Delays {}

/// A backoff sequence with memory, for loops that keep running after a success — the
/// reconnect loop of a connection owner, a poller, a supervisor.
///
/// Created by [`Backoff::stateful`].
#[derive(Debug, Clone)]
pub struct StatefulBackoff {
    policy: Backoff,
    delays: Delays,
    attempts: u32,
}

impl StatefulBackoff {
    /// Records a failure and returns how long to wait before the next attempt, or `None`
    /// once the policy is exhausted.
    pub fn fail(&mut self) -> Option<Duration> {
        self.attempts = self.attempts.saturating_add(1);
        self.delays.next()
    }

    /// Records a success: the next failure starts the sequence from the beginning.
    pub fn succeed(&mut self) {
        self.attempts = 0;
        self.delays = self.policy.delays();
    }

    /// Consecutive failures recorded since the last success (or since creation).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The policy this state was created from.
    pub fn policy(&self) -> &Backoff {
        &self.policy
    }
}

/// `d * factor`, rounded to the nanosecond and saturating at `Duration::MAX`.
fn scale(d: Duration, factor: f64) -> Duration {
    // Working in integer nanoseconds keeps power-of-two factors exact, which floating
    // point seconds (0.1 s is not representable) would not.
    let nanos = d.as_nanos() as f64 * factor;
    if nanos >= Duration::MAX.as_nanos() as f64 {
        return Duration::MAX;
    }
    let nanos = nanos.round() as u128;
    let secs = (nanos / 1_000_000_000).min(u64::MAX as u128) as u64;
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

/// Uniform duration in `[lo, hi]` at nanosecond resolution.
fn uniform(rng: &mut fastrand::Rng, lo: Duration, hi: Duration) -> Duration {
    if hi <= lo {
        return lo;
    }
    let to_u64 = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let (lo_n, hi_n) = (to_u64(lo), to_u64(hi));
    Duration::from_nanos(rng.u64(lo_n..=hi_n))
}
