//! `retry`: attempt counts, predicates, hooks, virtual elapsed time and metrics.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::resilience::{Backoff, Jitter, RetryError, retry};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Failure {
    #[error("transient failure #{0}")]
    Transient(u32),
    #[error("permanent failure")]
    Permanent,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn succeeds_after_transient_failures_and_waits_exactly_the_policy_delays() {
    let policy = Backoff::exponential(ms(100)).take(10);
    let calls = AtomicU32::new(0);
    let hooked = Mutex::new(Vec::new());
    let start = Instant::now();

    let value = retry(policy.clone(), || async {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n < 4 { Err(Failure::Transient(n)) } else { Ok(n * 10) }
    })
    .notify(|err, attempt, delay| hooked.lock().unwrap().push((err.clone(), attempt, delay)))
    .await
    .unwrap();

    assert_eq!(value, 40);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let expected_delays: Vec<Duration> = policy.delays().take(3).collect();
    assert_eq!(
        *hooked.lock().unwrap(),
        vec![
            (Failure::Transient(1), 1, expected_delays[0]),
            (Failure::Transient(2), 2, expected_delays[1]),
            (Failure::Transient(3), 3, expected_delays[2]),
        ]
    );
    assert_eq!(start.elapsed(), expected_delays.iter().sum::<Duration>());
    assert_eq!(start.elapsed(), ms(700));
}

#[tokio::test(start_paused = true)]
async fn first_try_success_neither_waits_nor_notifies() {
    let start = Instant::now();
    let notified = AtomicU32::new(0);
    let value = retry(Backoff::constant(Duration::from_secs(1)), || async {
        Ok::<_, Failure>("ok")
    })
    .notify(|_, _, _| {
        notified.fetch_add(1, Ordering::SeqCst);
    })
    .await
    .unwrap();
    assert_eq!(value, "ok");
    assert_eq!(notified.load(Ordering::SeqCst), 0);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn gives_up_with_the_last_error_when_the_policy_is_exhausted() {
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let err = retry(Backoff::linear(ms(10)).take(3), || async {
        Err::<(), _>(Failure::Transient(calls.fetch_add(1, Ordering::SeqCst) + 1))
    })
    .await
    .unwrap_err();

    match &err {
        RetryError::Exhausted { attempts, last } => {
            assert_eq!(*attempts, 4, "take(3) means one call plus three retries");
            assert_eq!(*last, Failure::Transient(4));
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(err.to_string(), "gave up after 4 attempts");
    assert_eq!(
        std::error::Error::source(&err).map(|s| s.to_string()),
        Some("transient failure #4".to_owned())
    );
    assert_eq!(start.elapsed(), ms(10 + 20 + 30));
    assert_eq!(err.into_inner(), Failure::Transient(4));
}

#[tokio::test(start_paused = true)]
async fn predicate_stops_on_non_retryable_errors() {
    let calls = AtomicU32::new(0);
    let start = Instant::now();
    let err = retry(Backoff::constant(ms(50)), || async {
        match calls.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err::<(), _>(Failure::Transient(1)),
            _ => Err(Failure::Permanent),
        }
    })
    .when(|err| matches!(err, Failure::Transient(_)))
    .await
    .unwrap_err();

    assert!(matches!(err, RetryError::NotRetryable(Failure::Permanent)));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), ms(100));
}

#[tokio::test(start_paused = true)]
async fn a_policy_with_no_delays_makes_exactly_one_attempt() {
    let calls = AtomicU32::new(0);
    let err = retry(Backoff::constant(ms(5)).take(0), || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err::<(), _>(Failure::Permanent)
    })
    .await
    .unwrap_err();
    assert!(matches!(err, RetryError::Exhausted { attempts: 1, .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn jittered_retry_sleeps_exactly_the_jittered_delays() {
    let policy = Backoff::exponential(ms(100)).jitter(Jitter::Full).seed(99).take(5);
    let start = Instant::now();
    let err = retry(policy.clone(), || async { Err::<(), _>(Failure::Permanent) })
        .await
        .unwrap_err();
    assert!(matches!(err, RetryError::Exhausted { attempts: 6, .. }));
    // Tokio timers fire on millisecond ticks, so each sleep of a sub-millisecond
    // precise jittered delay ends on the next whole millisecond.
    let ceil_ms = |d: Duration| Duration::from_millis(d.as_nanos().div_ceil(1_000_000) as u64);
    assert_eq!(start.elapsed(), policy.delays().map(ceil_ms).sum::<Duration>());
}

#[tokio::test(start_paused = true)]
async fn the_retry_future_is_send_and_can_be_spawned() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let task = tokio::spawn(
        retry(Backoff::constant(ms(1)).take(2), move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Failure::Permanent)
            }
        })
        .name("spawned")
        .into_future(),
    );
    assert!(task.await.unwrap().is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Counts counter increments by `name{label=value,...}`.
#[derive(Default)]
struct CountingRecorder {
    counters: Mutex<BTreeMap<String, Arc<CounterCell>>>,
}

#[derive(Default)]
struct CounterCell(AtomicU64);

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }

    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

impl CountingRecorder {
    fn render(key: &Key) -> String {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    fn get(&self, rendered: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(rendered)
            .map_or(0, |c| c.0.load(Ordering::SeqCst))
    }
}

impl Recorder for CountingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = self
            .counters
            .lock()
            .unwrap()
            .entry(Self::render(key))
            .or_default()
            .clone();
        Counter::from_arc(cell)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn attempts_and_exhaustion_are_counted_per_operation() {
    let recorder = CountingRecorder::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let exhausted = retry(Backoff::constant(ms(10)).take(2), || async {
                Err::<(), _>(Failure::Permanent)
            })
            .name("fetch")
            .await;
            assert!(exhausted.is_err());

            let calls = AtomicU32::new(0);
            let recovered = retry(Backoff::constant(ms(10)).take(5), || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(Failure::Transient(1))
                } else {
                    Ok(())
                }
            })
            .name("fetch")
            .await;
            assert!(recovered.is_ok());

            let unnamed = retry(Backoff::constant(ms(10)), || async { Err::<(), _>(Failure::Permanent) })
                .when(|_| false)
                .await;
            assert!(unnamed.is_err());
        });
    });

    assert_eq!(recorder.get("ferroway_retry_attempts_total{operation=fetch}"), 3 + 2);
    assert_eq!(recorder.get("ferroway_retry_exhausted_total{operation=fetch}"), 1);
    assert_eq!(recorder.get("ferroway_retry_attempts_total{operation=unnamed}"), 1);
    assert_eq!(recorder.get("ferroway_retry_exhausted_total{operation=unnamed}"), 0);
}
