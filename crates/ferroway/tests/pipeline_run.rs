//! Running a pipeline the way a service does: until a signal, with every way of stopping
//! bounded, failures reaching the caller, and producers that poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::{AckToken, Acknowledger, Acks, Handler, Message, Pipeline, PipelineError, Processors};
use ferroway::stage::{Emit, Producer};
use tokio::time::Instant;

#[derive(Default)]
struct Acked(AtomicU64);

impl Acknowledger for Acked {
    fn ack(&self, acks: Acks) {
        self.0.fetch_add(acks.successful.len() as u64, Ordering::SeqCst);
    }
}

/// Takes `delay` per message.
struct Work {
    delay: Duration,
}

impl Handler for Work {
    type Data = u64;
    async fn handle_message(&self, _: &mut Message<u64>) -> Result<(), BoxError> {
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
}

/// Polls an external system: most polls find nothing (an empty answer), every fifth finds
/// three messages. With `finish_at`, it is done after that many messages.
struct Poller {
    polls: Arc<AtomicU64>,
    next: u64,
    acker: Arc<Acked>,
}

impl Producer for Poller {
    type Output = Message<u64>;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<u64>>, BoxError> {
        let n = self.polls.fetch_add(1, Ordering::SeqCst);
        if n % 5 != 4 {
            return Ok(Emit::Events(Vec::new()));
        }
        let acker: Arc<dyn Acknowledger> = self.acker.clone();
        let k = demand.min(3) as u64;
        let out = (self.next..self.next + k)
            .map(|i| Message::with_acker(i, acker.clone(), AckToken(i, 0)))
            .collect();
        self.next += k;
        Ok(Emit::Events(out))
    }
}

#[tokio::test(start_paused = true)]
async fn a_producer_that_polls_and_often_finds_nothing_keeps_being_asked() {
    let polls = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Acked::default());
    let (p2, a2) = (polls.clone(), acked.clone());
    let p = Pipeline::builder("poller", Work { delay: Duration::ZERO })
        .producer(move || Poller {
            polls: p2.clone(),
            next: 0,
            acker: a2.clone(),
        })
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Empty answers back off from 10 ms to 1 s, so 10 s hold more than ten polls and far
    // fewer than a spinning loop would make.
    let n = polls.load(Ordering::SeqCst);
    assert!((10..2_000).contains(&n), "{n} polls in 10 s");
    assert!(
        acked.0.load(Ordering::SeqCst) >= 6,
        "messages found by later polls flowed"
    );
    p.stop().await.unwrap();
}

/// Never finishes; emits what is demanded.
struct Endless {
    next: u64,
    acker: Arc<Acked>,
    emitted: Arc<AtomicU64>,
    /// Returned by `prepare_for_draining`: a read the broker already answered.
    last: Option<u64>,
}

impl Producer for Endless {
    type Output = Message<u64>;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<u64>>, BoxError> {
        let acker: Arc<dyn Acknowledger> = self.acker.clone();
        let out = (self.next..self.next + demand as u64)
            .map(|i| Message::with_acker(i, acker.clone(), AckToken(i, 0)))
            .collect();
        self.next += demand as u64;
        self.emitted.fetch_add(demand as u64, Ordering::SeqCst);
        Ok(Emit::Events(out))
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<u64>> {
        let acker: Arc<dyn Acknowledger> = self.acker.clone();
        let last: Vec<_> = self
            .last
            .take()
            .map(|n| {
                (0..n)
                    .map(|i| Message::with_acker(1_000_000 + i, acker.clone(), AckToken(i, 1)))
                    .collect()
            })
            .unwrap_or_default();
        self.emitted.fetch_add(last.len() as u64, Ordering::SeqCst);
        last
    }
}

struct Fixture {
    acked: Arc<Acked>,
    emitted: Arc<AtomicU64>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            acked: Arc::default(),
            emitted: Arc::default(),
        }
    }

    fn producer(&self, last: Option<u64>) -> impl Fn() -> Endless + Send + Sync + 'static {
        let (acker, emitted) = (self.acked.clone(), self.emitted.clone());
        move || Endless {
            next: 0,
            acker: acker.clone(),
            emitted: emitted.clone(),
            last,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn run_until_drains_at_the_signal_including_the_producers_last_read() {
    let f = Fixture::new();
    let p = Pipeline::builder(
        "svc",
        Work {
            delay: Duration::from_millis(1),
        },
    )
    .producer(f.producer(Some(25)))
    .processors(Processors::new().concurrency(2).max_demand(10))
    .start()
    .await
    .unwrap();
    p.run_until(tokio::time::sleep(Duration::from_millis(200)))
        .await
        .unwrap();
    let emitted = f.emitted.load(Ordering::SeqCst);
    assert!(emitted > 100);
    assert_eq!(
        f.acked.0.load(Ordering::SeqCst),
        emitted,
        "everything emitted — the 25 handed over at drain too — was acknowledged"
    );
}

#[tokio::test(start_paused = true)]
async fn drain_then_join_is_bounded_by_the_shutdown_timeout() {
    let f = Fixture::new();
    let p = Pipeline::builder(
        "stuck",
        Work {
            delay: Duration::from_secs(3600),
        },
    )
    .producer(f.producer(None))
    .shutdown_timeout(Duration::from_secs(2))
    .start()
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    p.drain();
    match p.join().await {
        Err(PipelineError::ShutdownTimeout { unacked, .. }) => assert!(unacked > 0),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

/// Fails at once, like a producer given an invalid client property.
struct Misconfigured(Arc<Mutex<Vec<Instant>>>);

impl Producer for Misconfigured {
    type Output = Message<u64>;
    async fn handle_demand(&mut self, _: usize) -> Result<Emit<Message<u64>>, BoxError> {
        self.0.lock().unwrap().push(Instant::now());
        Err("invalid property fetch.wait.max.ms=-5".into())
    }
}

#[tokio::test(start_paused = true)]
async fn a_producer_that_fails_at_start_reaches_run_until_in_under_a_second_with_its_error() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s2 = starts.clone();
    let p = Pipeline::builder("bad", Work { delay: Duration::ZERO })
        .producer(move || Misconfigured(s2.clone()))
        .start()
        .await
        .unwrap();
    let t0 = Instant::now();
    let err = p.run_until(std::future::pending()).await.unwrap_err();
    assert!(matches!(err, PipelineError::Producers { .. }), "{err}");
    assert!(
        err.to_string().contains("fetch.wait.max.ms=-5"),
        "the cause reaches the caller: {err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    let starts = starts.lock().unwrap();
    let gaps: Vec<_> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(100)),
        "restarts back off: {gaps:?}"
    );
}

/// A partition function that panics on one message: the producer fails for good.
#[tokio::test(start_paused = true)]
async fn a_panicking_partition_function_ends_run_until_within_a_second_with_its_message() {
    let f = Fixture::new();
    let p = Pipeline::builder("broken", Work { delay: Duration::ZERO })
        .producer(f.producer(None))
        .processors(Processors::new().concurrency(2))
        .partition_by(|m: &Message<u64>| if *m.data() == 50 { panic!("bad key") } else { 0 })
        .start()
        .await
        .unwrap();
    let t0 = Instant::now();
    let err = p.run_until(std::future::pending()).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(err.to_string().contains("bad key"), "{err}");
}
