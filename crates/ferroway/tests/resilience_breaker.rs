//! Circuit breaker: trip conditions, open backoff, half-open trials, permits, and a
//! model-based property test.

use std::collections::VecDeque;
use std::time::Duration;

use ferroway::resilience::{Backoff, BreakerError, CircuitBreaker, CircuitOpen, CircuitState, FailureRate};
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn fail(breaker: &CircuitBreaker) -> Result<(), BreakerError<&'static str>> {
    breaker.call(|| async { Err("boom") }).await
}

async fn succeed(breaker: &CircuitBreaker) -> Result<(), BreakerError<&'static str>> {
    breaker.call(|| async { Ok(()) }).await
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_a_success_resets_the_count() {
    let breaker = CircuitBreaker::builder("db").consecutive_failures(3).build();
    for _ in 0..2 {
        assert!(matches!(fail(&breaker).await, Err(BreakerError::Inner("boom"))));
    }
    succeed(&breaker).await.unwrap();
    for _ in 0..2 {
        fail(&breaker).await.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Closed, "the success reset the streak");
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_without_calling_and_reports_the_remaining_time() {
    let breaker = CircuitBreaker::builder("db")
        .consecutive_failures(1)
        .open_backoff(Backoff::constant(Duration::from_secs(10)))
        .build();
    fail(&breaker).await.unwrap_err();

    tokio::time::advance(Duration::from_secs(4)).await;
    let mut called = false;
    let result = breaker
        .call(|| {
            called = true;
            async { Ok::<_, &str>(()) }
        })
        .await;
    assert!(!called);
    match result {
        Err(BreakerError::Open { retry_in }) => assert_eq!(retry_in, Duration::from_secs(6)),
        other => panic!("expected Open, got {other:?}"),
    }
    assert_eq!(
        breaker.try_acquire().unwrap_err(),
        CircuitOpen {
            retry_in: Duration::from_secs(6)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn each_reopen_waits_longer_and_closing_resets_the_open_backoff() {
    let breaker = CircuitBreaker::builder("api")
        .consecutive_failures(1)
        .open_backoff(Backoff::exponential(Duration::from_secs(1)).take(3))
        .build();

    fail(&breaker).await.unwrap_err();
    let expected_open = [1, 2, 4, 4]; // the exhausted policy repeats its last delay
    for (i, secs) in expected_open.iter().enumerate() {
        assert_eq!(breaker.state(), CircuitState::Open, "round {i}");
        let retry_in = breaker.try_acquire().unwrap_err().retry_in;
        assert_eq!(retry_in, Duration::from_secs(*secs), "round {i}");
        tokio::time::advance(retry_in - ms(1)).await;
        assert!(breaker.try_acquire().is_err(), "still open just before the end");
        tokio::time::advance(ms(1)).await;
        // The trial call fails: re-open for the next delay.
        fail(&breaker).await.unwrap_err();
    }

    tokio::time::advance(Duration::from_secs(4)).await;
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    fail(&breaker).await.unwrap_err();
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_in,
        Duration::from_secs(1),
        "closing restarted the open backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn failure_rate_trips_over_the_sliding_window_after_min_calls() {
    let breaker = CircuitBreaker::builder("rate")
        .failure_rate(FailureRate::percent(50.0).window(6).min_calls(4))
        .build();

    // Three failures out of three calls: 100 %, but below min_calls.
    for _ in 0..3 {
        fail(&breaker).await.unwrap_err();
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    // Only the rate condition is configured, so long failure streaks alone do not trip
    // it; a fourth call that succeeds gives 3/4 = 75 % but rate is checked on failures.
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
    // Push the failures out of the window with successes: window = S S S S S S.
    for _ in 0..5 {
        succeed(&breaker).await.unwrap();
    }
    // Two failures in six: 33 %.
    fail(&breaker).await.unwrap_err();
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Closed);
    // Third failure: window = S S S F F F -> 50 %.
    fail(&breaker).await.unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn either_trip_condition_can_fire() {
    let breaker = CircuitBreaker::builder("both")
        .consecutive_failures(3)
        .failure_rate(FailureRate::percent(60.0).window(10).min_calls(5))
        .build();
    // F S F S F: 60 % of 5 calls, never 3 in a row.
    for outcome in [false, true, false, true, false] {
        if outcome {
            succeed(&breaker).await.unwrap();
        } else {
            fail(&breaker).await.unwrap_err();
        }
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_limited_trials_and_needs_enough_successes() {
    let breaker = CircuitBreaker::builder("trial")
        .consecutive_failures(1)
        .open_backoff(Backoff::constant(Duration::from_secs(1)))
        .half_open_calls(2)
        .success_threshold(2)
        .build();
    fail(&breaker).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;

    let first = breaker.try_acquire().expect("first trial");
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    let second = breaker.try_acquire().expect("second trial");
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_in,
        Duration::ZERO,
        "trials are all taken"
    );

    // A dropped permit gives its slot back without deciding anything.
    drop(second);
    let second = breaker.try_acquire().expect("slot freed by the dropped permit");

    first.success();
    assert_eq!(breaker.state(), CircuitState::HalfOpen, "one success is not enough");
    second.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn any_half_open_failure_reopens() {
    let breaker = CircuitBreaker::builder("trial")
        .consecutive_failures(1)
        .open_backoff(Backoff::constant(Duration::from_secs(1)))
        .half_open_calls(3)
        .success_threshold(3)
        .build();
    fail(&breaker).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    let a = breaker.try_acquire().unwrap();
    let b = breaker.try_acquire().unwrap();
    a.success();
    b.failure();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn outcomes_from_an_earlier_state_are_ignored() {
    let breaker = CircuitBreaker::builder("stale")
        .consecutive_failures(1)
        .open_backoff(Backoff::constant(Duration::from_secs(1)))
        .build();
    let slow_call = breaker.try_acquire().unwrap();
    fail(&breaker).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    let trial = breaker.try_acquire().unwrap();
    // The slow call admitted while closed finally fails: it must not re-open.
    slow_call.failure();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    trial.success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_predicate_decides_which_errors_count() {
    #[derive(Debug, PartialEq)]
    enum ApiError {
        NotFound,
        Unavailable,
    }
    let breaker = CircuitBreaker::builder("api").consecutive_failures(2).build();
    let counts = |e: &ApiError| *e == ApiError::Unavailable;
    for _ in 0..5 {
        let result = breaker
            .call_with(counts, || async { Err::<(), _>(ApiError::NotFound) })
            .await;
        assert!(matches!(result, Err(BreakerError::Inner(ApiError::NotFound))));
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    breaker
        .call_with(counts, || async { Err::<(), _>(ApiError::Unavailable) })
        .await
        .unwrap_err();
    // A not-found in between counts as a success and breaks the streak.
    breaker
        .call_with(counts, || async { Err::<(), _>(ApiError::NotFound) })
        .await
        .unwrap_err();
    breaker
        .call_with(counts, || async { Err::<(), _>(ApiError::Unavailable) })
        .await
        .unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Closed);
    breaker
        .call_with(counts, || async { Err::<(), _>(ApiError::Unavailable) })
        .await
        .unwrap_err();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn subscribers_observe_every_transition() {
    let breaker = CircuitBreaker::builder("watched")
        .consecutive_failures(1)
        .open_backoff(Backoff::constant(Duration::from_secs(1)))
        .build();
    let mut states = breaker.subscribe();
    assert_eq!(*states.borrow_and_update(), CircuitState::Closed);

    fail(&breaker).await.unwrap_err();
    assert!(states.has_changed().unwrap());
    assert_eq!(*states.borrow_and_update(), CircuitState::Open);

    tokio::time::advance(Duration::from_secs(1)).await;
    let permit = breaker.try_acquire().unwrap();
    assert_eq!(*states.borrow_and_update(), CircuitState::HalfOpen);
    permit.success();
    assert_eq!(*states.borrow_and_update(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn clones_share_state_across_tasks() {
    let breaker = CircuitBreaker::builder("shared").consecutive_failures(4).build();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let breaker = breaker.clone();
            tokio::spawn(async move { fail(&breaker).await })
        })
        .collect();
    for task in tasks {
        assert!(matches!(task.await.unwrap(), Err(BreakerError::Inner(_))));
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.name(), "shared");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_trial_call_frees_its_slot() {
    let breaker = CircuitBreaker::builder("cancel")
        .consecutive_failures(1)
        .open_backoff(Backoff::constant(Duration::from_secs(1)))
        .build();
    fail(&breaker).await.unwrap_err();
    tokio::time::advance(Duration::from_secs(1)).await;
    // The trial call times out: its future (and permit) is dropped mid-flight.
    let hung = tokio::time::timeout(ms(10), breaker.call(std::future::pending::<Result<(), &str>>)).await;
    assert!(hung.is_err());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

// ---------------------------------------------------------------------------
// Model-based test: the breaker against a deliberately naive reference.

#[derive(Debug, Clone)]
struct Config {
    consecutive: Option<u32>,
    rate: Option<(f64, usize, usize)>,
    half_open_calls: u32,
    success_threshold: u32,
}

const OPEN_DELAYS_MS: [u64; 3] = [100, 200, 400];

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Success,
    Failure,
    Drop,
}

#[derive(Debug, Clone)]
enum Op {
    /// Acquire and resolve at once.
    Call(bool),
    /// Acquire and keep the permit for later.
    Hold,
    /// Resolve the held permit at this index (modulo the number held).
    Resolve(usize, Outcome),
    Advance(u64),
}

#[derive(Debug, Clone, Copy)]
struct ModelPermit {
    epoch: u64,
    half_open: bool,
}

struct Model {
    cfg: Config,
    state: CircuitState,
    epoch: u64,
    consecutive: u32,
    window: VecDeque<bool>,
    open_until: u64,
    reopens: usize,
    admitted: u32,
    successes: u32,
}

impl Model {
    fn new(cfg: Config) -> Self {
        Self {
            cfg,
            state: CircuitState::Closed,
            epoch: 0,
            consecutive: 0,
            window: VecDeque::new(),
            open_until: 0,
            reopens: 0,
            admitted: 0,
            successes: 0,
        }
    }

    /// `Ok(permit)` or `Err(retry_in_ms)`.
    fn acquire(&mut self, now: u64) -> Result<ModelPermit, u64> {
        match self.state {
            CircuitState::Closed => Ok(ModelPermit {
                epoch: self.epoch,
                half_open: false,
            }),
            CircuitState::Open if now < self.open_until => Err(self.open_until - now),
            CircuitState::Open => {
                self.state = CircuitState::HalfOpen;
                self.epoch += 1;
                self.admitted = 1;
                self.successes = 0;
                Ok(ModelPermit {
                    epoch: self.epoch,
                    half_open: true,
                })
            }
            CircuitState::HalfOpen if self.admitted < self.cfg.half_open_calls => {
                self.admitted += 1;
                Ok(ModelPermit {
                    epoch: self.epoch,
                    half_open: true,
                })
            }
            CircuitState::HalfOpen => Err(0),
        }
    }

    fn resolve(&mut self, permit: ModelPermit, outcome: Outcome, now: u64) {
        if permit.epoch != self.epoch {
            return;
        }
        if permit.half_open {
            if self.state != CircuitState::HalfOpen {
                return;
            }
            match outcome {
                Outcome::Drop => self.admitted -= 1,
                Outcome::Failure => self.open(now),
                Outcome::Success => {
                    self.successes += 1;
                    if self.successes >= self.cfg.success_threshold {
                        self.state = CircuitState::Closed;
                        self.epoch += 1;
                        self.consecutive = 0;
                        self.window.clear();
                        self.reopens = 0;
                    }
                }
            }
            return;
        }
        if self.state != CircuitState::Closed {
            return;
        }
        match outcome {
            Outcome::Drop => {}
            Outcome::Success => {
                self.consecutive = 0;
                self.push(false);
            }
            Outcome::Failure => {
                self.consecutive += 1;
                self.push(true);
                let by_count = self.cfg.consecutive.is_some_and(|n| self.consecutive >= n);
                let by_rate = self.cfg.rate.is_some_and(|(percent, _, min_calls)| {
                    let calls = self.window.len();
                    let failures = self.window.iter().filter(|f| **f).count();
                    calls >= min_calls && failures as f64 * 100.0 >= percent * calls as f64
                });
                if by_count || by_rate {
                    self.open(now);
                }
            }
        }
    }

    fn push(&mut self, failed: bool) {
        if let Some((_, size, _)) = self.cfg.rate {
            self.window.push_back(failed);
            if self.window.len() > size {
                self.window.pop_front();
            }
        }
    }

    fn open(&mut self, now: u64) {
        let delay = OPEN_DELAYS_MS[self.reopens.min(OPEN_DELAYS_MS.len() - 1)];
        self.reopens += 1;
        self.open_until = now + delay;
        self.state = CircuitState::Open;
        self.epoch += 1;
    }
}

fn config() -> impl Strategy<Value = Config> {
    let rate = (prop_oneof![Just(50.0), Just(75.0), Just(100.0)], 1usize..6)
        .prop_flat_map(|(percent, size)| (Just(percent), Just(size), 1..=size));
    (proptest::option::of(1u32..4), proptest::option::of(rate), 1u32..4).prop_flat_map(
        |(consecutive, rate, half_open_calls)| {
            (1..=half_open_calls).prop_map(move |success_threshold| Config {
                // With no condition at all the breaker defaults to 5 in a row.
                consecutive: if consecutive.is_none() && rate.is_none() {
                    Some(5)
                } else {
                    consecutive
                },
                rate,
                half_open_calls,
                success_threshold,
            })
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Call),
        1 => Just(Op::Hold),
        2 => (any::<usize>(), prop_oneof![
            Just(Outcome::Success),
            Just(Outcome::Failure),
            Just(Outcome::Drop)
        ])
        .prop_map(|(i, o)| Op::Resolve(i, o)),
        2 => (0u64..300).prop_map(Op::Advance),
    ]
}

fn build(cfg: &Config) -> CircuitBreaker {
    let mut builder = CircuitBreaker::builder("model")
        .open_backoff(Backoff::exponential(ms(OPEN_DELAYS_MS[0])).take(OPEN_DELAYS_MS.len()))
        .half_open_calls(cfg.half_open_calls)
        .success_threshold(cfg.success_threshold);
    if let Some(n) = cfg.consecutive {
        builder = builder.consecutive_failures(n);
    }
    if let Some((percent, size, min_calls)) = cfg.rate {
        builder = builder.failure_rate(FailureRate::percent(percent).window(size).min_calls(min_calls));
    }
    builder.build()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn breaker_matches_the_reference_model(cfg in config(), ops in proptest::collection::vec(op(), 0..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let breaker = build(&cfg);
            let mut model = Model::new(cfg.clone());
            let mut now = 0u64;
            let mut held = Vec::new();
            for (step, op) in ops.iter().enumerate() {
                match op {
                    Op::Advance(n) => {
                        tokio::time::advance(ms(*n)).await;
                        now += n;
                    }
                    Op::Call(_) | Op::Hold => {
                        let real = breaker.try_acquire();
                        let expected = model.acquire(now);
                        match (real, expected) {
                            (Ok(permit), Ok(model_permit)) => match op {
                                Op::Call(true) => {
                                    permit.success();
                                    model.resolve(model_permit, Outcome::Success, now);
                                }
                                Op::Call(false) => {
                                    permit.failure();
                                    model.resolve(model_permit, Outcome::Failure, now);
                                }
                                _ => held.push((permit, model_permit)),
                            },
                            (Err(open), Err(retry_in)) => {
                                prop_assert_eq!(open.retry_in, ms(retry_in), "step {}: {:?}", step, op);
                            }
                            (real, expected) => {
                                prop_assert!(
                                    false,
                                    "step {}: {:?}: breaker {:?}, model {:?}",
                                    step, op, real.map(|_| ()), expected
                                );
                            }
                        }
                    }
                    Op::Resolve(index, outcome) => {
                        if held.is_empty() {
                            continue;
                        }
                        let (permit, model_permit) = held.remove(index % held.len());
                        match outcome {
                            Outcome::Success => permit.success(),
                            Outcome::Failure => permit.failure(),
                            Outcome::Drop => drop(permit),
                        }
                        model.resolve(model_permit, *outcome, now);
                    }
                }
                prop_assert_eq!(breaker.state(), model.state, "step {}: {:?}", step, op);
            }
            Ok(())
        })?;
    }
}
