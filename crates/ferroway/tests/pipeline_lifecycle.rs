//! Draining, shutdown timeout, bounded memory, rate limiting, option validation.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::testing::TestProducer;
use ferroway::pipeline::{
    AckToken, Acknowledger, Acks, BatchInfo, BatchTrigger, Batcher, Handler, Message, Pipeline, PipelineError,
    Processors,
};
use ferroway::stage::{Emit, Producer};

#[derive(Default)]
struct Count {
    ok: AtomicU64,
    failed: AtomicU64,
    /// How many were acknowledged when `flush` ran (once per flush).
    flushed_at: Mutex<Vec<u64>>,
}

impl Acknowledger for Count {
    fn ack(&self, acks: Acks) {
        self.ok.fetch_add(acks.successful.len() as u64, Ordering::SeqCst);
        self.failed.fetch_add(acks.failed.len() as u64, Ordering::SeqCst);
    }

    fn flush(&self) -> ferroway::pipeline::BoxFuture<'_, ()> {
        Box::pin(async move { self.flushed_at.lock().unwrap().push(self.ok.load(Ordering::SeqCst)) })
    }
}

/// Never finishes; counts what it emitted and whether it was asked to drain.
struct Endless {
    next: u64,
    acker: Arc<Count>,
    emitted: Arc<AtomicU64>,
    drained: Arc<AtomicUsize>,
}

impl Producer for Endless {
    type Output = Message<u64>;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<u64>>, BoxError> {
        let acker: Arc<dyn Acknowledger> = self.acker.clone();
        let batch: Vec<_> = (self.next..self.next + demand as u64)
            .map(|i| Message::with_acker(i, acker.clone(), AckToken(i, 0)))
            .collect();
        self.next += demand as u64;
        self.emitted.fetch_add(demand as u64, Ordering::SeqCst);
        Ok(Emit::Events(batch))
    }
    async fn prepare_for_draining(&mut self) -> Vec<Message<u64>> {
        self.drained.fetch_add(1, Ordering::SeqCst);
        Vec::new()
    }
}

#[derive(Clone, Default)]
struct Slow {
    delay: Duration,
    triggers: Arc<Mutex<Vec<BatchTrigger>>>,
    batched: Arc<AtomicU64>,
}

impl Handler for Slow {
    type Data = u64;
    async fn handle_message(&self, _: &mut Message<u64>) -> Result<(), BoxError> {
        tokio::time::sleep(self.delay).await;
        Ok(())
    }
    async fn handle_batch(&self, b: &mut [Message<u64>], info: &BatchInfo) -> Result<(), BoxError> {
        self.triggers.lock().unwrap().push(info.trigger);
        self.batched.fetch_add(b.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

struct Fixture {
    count: Arc<Count>,
    emitted: Arc<AtomicU64>,
    drained: Arc<AtomicUsize>,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            count: Arc::default(),
            emitted: Arc::default(),
            drained: Arc::default(),
        }
    }
    fn producer(&self) -> impl Fn() -> Endless + Send + Sync + 'static {
        let (acker, emitted, drained) = (self.count.clone(), self.emitted.clone(), self.drained.clone());
        move || Endless {
            next: 0,
            acker: acker.clone(),
            emitted: emitted.clone(),
            drained: drained.clone(),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn stop_drains_everything_in_flight_including_partial_batches() {
    let f = Fixture::new();
    let h = Slow {
        delay: Duration::from_millis(1),
        ..Default::default()
    };
    let p = Pipeline::builder("drain", h.clone())
        .producer(f.producer())
        .producer_concurrency(2)
        .processors(Processors::new().concurrency(2).max_demand(10))
        .batcher(
            Batcher::new("b")
                .batch_size(7)
                .batch_timeout(Duration::from_secs(3600))
                .concurrency(2),
        )
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    p.stop().await.unwrap();
    let emitted = f.emitted.load(Ordering::SeqCst);
    assert!(emitted > 0);
    assert_eq!(
        f.count.ok.load(Ordering::SeqCst),
        emitted,
        "every emitted message acknowledged"
    );
    assert_eq!(h.batched.load(Ordering::SeqCst), emitted);
    assert_eq!(
        f.drained.load(Ordering::SeqCst),
        2,
        "each producer's drain hook ran once"
    );
    assert!(
        h.triggers.lock().unwrap().contains(&BatchTrigger::Flush),
        "partial batches were flushed"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_bounds_the_drain_and_reports_unacknowledged_messages() {
    let f = Fixture::new();
    let h = Slow {
        delay: Duration::from_secs(3600),
        ..Default::default()
    };
    let p = Pipeline::builder("stuck", h)
        .producer(f.producer())
        .processors(Processors::new().concurrency(1).max_demand(5))
        .shutdown_timeout(Duration::from_secs(2))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    match p.stop().await {
        Err(PipelineError::ShutdownTimeout { unacked, timeout, .. }) => {
            assert_eq!(timeout, Duration::from_secs(2));
            assert_eq!(unacked, f.emitted.load(Ordering::SeqCst));
            assert!(unacked > 0);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn memory_is_bounded_by_demand_not_by_stream_length() {
    let f = Fixture::new();
    let h = Slow {
        delay: Duration::from_millis(10),
        ..Default::default()
    };
    let p = Pipeline::builder("bounded", h)
        .producer(f.producer())
        .processors(Processors::new().concurrency(2).max_demand(20))
        .batcher(
            Batcher::new("b")
                .batch_size(10)
                .batch_timeout(Duration::from_millis(50))
                .max_demand(30),
        )
        .start()
        .await
        .unwrap();
    // Processors hold at most 2 x 20; the batcher takes at most 30 from each processor and
    // holds one batch ready per batch processor demand (2 x 10).
    let bound = 2 * 20 + 2 * 30 + 2 * 10 + 10;
    let mut peak = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(7)).await;
        peak = peak.max(p.in_flight());
    }
    assert!(f.count.ok.load(Ordering::SeqCst) > 200, "the pipeline made progress");
    assert!(peak <= bound, "in flight peaked at {peak}, bound {bound}");
    p.stop().await.unwrap();
}

/// Peak of `in_flight` over `rounds` samples 7 ms apart.
async fn peak_in_flight(p: &Pipeline<u64>, rounds: usize) -> u64 {
    let mut peak = 0;
    for _ in 0..rounds {
        tokio::time::sleep(Duration::from_millis(7)).await;
        peak = peak.max(p.in_flight());
    }
    peak
}

#[tokio::test(start_paused = true)]
async fn partition_by_with_one_hot_key_stays_within_the_documented_bound() {
    let f = Fixture::new();
    let h = Slow {
        delay: Duration::from_millis(1),
        ..Default::default()
    };
    // Every message on one lane: the other lane's demand must not keep the producer emitting.
    let p = Pipeline::builder("one-key", h)
        .producer(f.producer())
        .producer_concurrency(2)
        .processors(Processors::new().concurrency(2).max_demand(20))
        .partition_by(|_| 7)
        .shutdown_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let peak = peak_in_flight(&p, 200).await;
    // producer_concurrency x (3 x processors - 1) x max_demand
    let bound = 2 * 5 * 20;
    assert!(f.count.ok.load(Ordering::SeqCst) > 500, "the hot lane made progress");
    assert!(peak <= bound, "in flight peaked at {peak}, bound {bound}");
    let emitted_at_stop = f.emitted.load(Ordering::SeqCst);
    p.stop().await.unwrap();
    assert!(
        f.emitted.load(Ordering::SeqCst) <= emitted_at_stop + bound,
        "the drain does not keep pulling, from either producer"
    );
    assert_eq!(f.count.ok.load(Ordering::SeqCst), f.emitted.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn partition_by_with_a_skewed_key_and_batchers_stays_within_the_documented_bound() {
    let f = Fixture::new();
    let h = Slow {
        delay: Duration::from_millis(1),
        ..Default::default()
    };
    // 9 in 10 messages on one key, the rest over 15 others; two producers.
    let p = Pipeline::builder("skewed", h.clone())
        .producer(f.producer())
        .producer_concurrency(2)
        .processors(Processors::new().concurrency(3).max_demand(10))
        .batcher(
            Batcher::new("b")
                .batch_size(10)
                .batch_timeout(Duration::from_millis(20))
                .max_demand(30)
                .concurrency(2),
        )
        .partition_by(|m| if m.data() % 10 != 0 { 0 } else { 1 + m.data() % 15 })
        .shutdown_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let peak = peak_in_flight(&p, 200).await;
    // Before the batchers: producers x (3 x processors - 1) x max_demand. The batcher: what
    // it takes from each processor (processors x max_demand), two batches in hand per batch
    // processor and, queued for busy ones, at most (concurrency - 1) x 2 more.
    let bound = 2 * (3 * 3 - 1) * 10 + 3 * 30 + (2 * 2 + 2) * 10;
    assert!(h.batched.load(Ordering::SeqCst) > 500, "the pipeline made progress");
    assert!(peak <= bound as u64, "in flight peaked at {peak}, bound {bound}");
    p.stop().await.unwrap();
    assert_eq!(f.count.ok.load(Ordering::SeqCst), f.emitted.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_is_shared_by_all_producers() {
    let f = Fixture::new();
    let p = Pipeline::builder("limited", Slow::default())
        .producer(f.producer())
        .producer_concurrency(3)
        .processors(Processors::new().concurrency(2))
        .rate_limit(50, Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let emitted = f.emitted.load(Ordering::SeqCst);
    // 11 intervals started (t = 0 s .. 10 s) at 50 each.
    assert!(emitted <= 11 * 50, "{emitted} messages in 10.5 s");
    assert!(emitted >= 10 * 50, "{emitted} messages in 10.5 s");
    p.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_options_are_rejected_up_front_with_clear_messages() {
    struct H;
    impl Handler for H {
        type Data = u64;
        async fn handle_message(&self, _: &mut Message<u64>) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let err = |b: ferroway::pipeline::PipelineBuilder<H, TestProducer<u64>>| async move {
        b.start().await.unwrap_err().to_string()
    };
    let base = || Pipeline::builder("cfg", H).producer(TestProducer::new);
    assert_eq!(
        err(base().processors(Processors::new().max_demand(0))).await,
        "pipeline `cfg`: invalid option `processors.max_demand`: must be at least 1"
    );
    assert_eq!(
        err(base().processors(Processors::new().max_demand(10).min_demand(10))).await,
        "pipeline `cfg`: invalid option `processors.min_demand`: must be below max_demand (10), got 10"
    );
    assert_eq!(
        err(base().batcher(Batcher::new("x").batch_size(0))).await,
        "pipeline `cfg`: invalid option `batchers[x].batch_size`: must be at least 1"
    );
    assert_eq!(
        err(base().batcher(Batcher::new("x")).batcher(Batcher::new("x"))).await,
        "pipeline `cfg`: invalid option `batchers[x].name`: is used by two batchers"
    );
    assert_eq!(
        err(base().batcher(Batcher::new("x").batch_timeout(Duration::ZERO))).await,
        "pipeline `cfg`: invalid option `batchers[x].batch_timeout`: must be longer than zero"
    );
    assert_eq!(
        err(base().rate_limit(0, Duration::from_secs(1))).await,
        "pipeline `cfg`: invalid option `rate_limit.allowed`: must be at least 1"
    );
    assert_eq!(
        err(base().producer_concurrency(0)).await,
        "pipeline `cfg`: invalid option `producer.concurrency`: must be at least 1"
    );
}

#[tokio::test]
async fn topology_names_every_stage() {
    let p = Pipeline::builder("shop", Slow::default())
        .producer(TestProducer::new)
        .processors(Processors::new().concurrency(2))
        .batcher(Batcher::new("db").concurrency(2))
        .start()
        .await
        .unwrap();
    let t = p.topology().clone();
    assert_eq!(t.producers, vec!["shop.producer.0"]);
    assert_eq!(t.processors, vec!["shop.processor.0", "shop.processor.1"]);
    assert_eq!(t.batchers[0].batcher, "shop.batcher.db");
    assert_eq!(
        t.batchers[0].batch_processors,
        vec!["shop.batch_processor.db.0", "shop.batch_processor.db.1"]
    );
    p.stop().await.unwrap();
}
