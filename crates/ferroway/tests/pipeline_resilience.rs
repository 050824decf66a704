//! Dead-letter routing, per-message retries, and producers restarted under supervision.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::Sink;
use ferroway::pipeline::testing::{Outcome, TestProducer};
use ferroway::pipeline::{
    AckToken, Acknowledger, Acks, BatchInfo, Batcher, BoxFuture, DeadLetterInfo, Handler, Message, Pipeline,
    PipelineError, Processors,
};
use ferroway::resilience::Backoff;
use ferroway::stage::{Emit, Producer};
use tokio::sync::mpsc;

/// Fails messages divisible by 4 in the processor and batches holding a multiple of 25.
struct Sometimes;

impl Handler for Sometimes {
    type Data = u64;
    async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
        if m.data().is_multiple_of(4) {
            return Err(format!("{} is divisible by 4", m.data()).into());
        }
        Ok(())
    }
    async fn handle_batch(&self, b: &mut [Message<u64>], _: &BatchInfo) -> Result<(), BoxError> {
        for m in b.iter_mut().filter(|m| *m.data() % 25 == 0) {
            m.fail("multiple of 25");
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_message_reaches_the_dead_letter_sink_exactly_once_with_its_reason() {
    let (tx, mut rx) = mpsc::channel::<Message<u64>>(16);
    let p = Pipeline::builder("dlq", Sometimes)
        .producer(TestProducer::new)
        .processors(Processors::new().concurrency(2).max_demand(16))
        .batcher(
            Batcher::new("b")
                .batch_size(10)
                .batch_timeout(Duration::from_millis(5))
                .concurrency(2),
        )
        .dead_letter(tx)
        .start()
        .await
        .unwrap();
    let collector = tokio::spawn(async move {
        let mut got = HashMap::new();
        while let Some(m) = rx.recv().await {
            let info = m.metadata::<DeadLetterInfo>().cloned().expect("reason attached");
            assert!(
                got.insert(*m.data(), info).is_none(),
                "{} dead-lettered twice",
                m.data()
            );
        }
        got
    });
    let n = 1_000u64;
    let outcomes = p.push_messages(1..=n).outcomes().await;
    // Dead-lettered messages count as done: acknowledged as successful.
    assert!(outcomes.iter().all(|o| *o == Outcome::Successful));
    p.stop().await.unwrap();
    let got = collector.await.unwrap();
    let expected: Vec<u64> = (1..=n).filter(|v| v % 4 == 0 || v % 25 == 0).collect();
    let mut keys: Vec<u64> = got.keys().copied().collect();
    keys.sort_unstable();
    assert_eq!(keys, expected);
    for (v, info) in got {
        assert_eq!(&*info.pipeline, "dlq");
        if v % 4 == 0 {
            assert_eq!(
                (info.stage, &*info.reason),
                ("processor", format!("{v} is divisible by 4").as_str())
            );
        } else {
            assert_eq!((info.stage, &*info.reason), ("batch_processor", "multiple of 25"));
        }
    }
}

struct Broken;

impl Sink<u64> for Broken {
    fn write<'a>(&'a self, _: &'a mut [Message<u64>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async { Err("dead-letter store unavailable".into()) })
    }
}

#[tokio::test]
async fn when_the_dead_letter_sink_fails_messages_are_acknowledged_as_failed() {
    let p = Pipeline::builder("dlq-down", Sometimes)
        .producer(TestProducer::new)
        .dead_letter(Broken)
        .start()
        .await
        .unwrap();
    let o = p.push_messages([3, 4]).outcomes().await;
    assert_eq!(
        o,
        vec![Outcome::Successful, Outcome::Failed("4 is divisible by 4".into())]
    );
    p.stop().await.unwrap();
}

/// Fails each message the first `fails` times it is seen.
struct Flaky {
    fails: u64,
    attempts: Mutex<HashMap<u64, u64>>,
    order: Mutex<Vec<u64>>,
}

impl Handler for Flaky {
    type Data = u64;
    async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
        let v = *m.data();
        let n = {
            let mut a = self.attempts.lock().unwrap();
            let n = a.entry(v).or_default();
            *n += 1;
            *n
        };
        if v.is_multiple_of(2) && n <= self.fails {
            if v == 4 {
                panic!("attempt {n} of 4 panics");
            }
            return Err(format!("attempt {n} of {v} failed").into());
        }
        self.order.lock().unwrap().push(v);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn retries_with_backoff_before_failing_and_keep_order() {
    let h = Arc::new(Flaky {
        fails: 2,
        attempts: Mutex::default(),
        order: Mutex::default(),
    });
    struct Shared(Arc<Flaky>);
    impl Handler for Shared {
        type Data = u64;
        async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
            self.0.handle_message(m).await
        }
    }
    let p = Pipeline::builder("retry", Shared(h.clone()))
        .producer(TestProducer::new)
        .processors(Processors::new().concurrency(1))
        .retry(Backoff::constant(Duration::from_millis(100)), 2)
        .start()
        .await
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let o = p.push_messages([1, 2, 3, 4]).outcomes().await;
    assert!(o.iter().all(|o| *o == Outcome::Successful), "{o:?}");
    assert_eq!(*h.order.lock().unwrap(), vec![1, 2, 3, 4], "retries keep order");
    assert_eq!(h.attempts.lock().unwrap()[&2], 3);
    // Two messages, two retries each, 100 ms apart.
    assert!(t0.elapsed() >= Duration::from_millis(400));
    p.stop().await.unwrap();

    // With too few retries the message fails with the last error.
    let h = Arc::new(Flaky {
        fails: 5,
        attempts: Mutex::default(),
        order: Mutex::default(),
    });
    let p = Pipeline::builder("retry2", Shared(h.clone()))
        .producer(TestProducer::new)
        .retry(Backoff::constant(Duration::from_millis(10)), 2)
        .start()
        .await
        .unwrap();
    let o = p.push_messages([6, 4]).outcomes().await;
    assert_eq!(o[0], Outcome::Failed("attempt 3 of 6 failed".into()));
    assert_eq!(
        o[1],
        Outcome::Failed("handle_message panicked: attempt 3 of 4 panics".into())
    );
    p.stop().await.unwrap();
}

#[derive(Default)]
struct Count(AtomicU64);

impl Acknowledger for Count {
    fn ack(&self, acks: Acks) {
        self.0.fetch_add(acks.successful.len() as u64, Ordering::SeqCst);
    }
}

/// Emits ten messages, then crashes (panics or errors), on every incarnation.
struct Crashy {
    emitted: u64,
    panic: bool,
    acker: Arc<Count>,
}

impl Producer for Crashy {
    type Output = Message<u64>;
    async fn handle_demand(&mut self, _: usize) -> Result<Emit<Message<u64>>, BoxError> {
        if self.emitted >= 10 {
            if self.panic {
                panic!("producer crashed");
            }
            return Err("connection lost".into());
        }
        self.emitted = 10;
        let acker: Arc<dyn Acknowledger> = self.acker.clone();
        Ok(Emit::Events(
            (0..10)
                .map(|i| Message::with_acker(i, acker.clone(), AckToken(i, 0)))
                .collect(),
        ))
    }
}

#[tokio::test(start_paused = true)]
async fn a_crashed_producer_is_restarted_until_the_restart_limit() {
    let count = Arc::new(Count::default());
    let incarnations = Arc::new(AtomicUsize::new(0));
    let (c, i) = (count.clone(), incarnations.clone());
    let p = Pipeline::builder("restarts", Sometimes)
        .producer(move || {
            let n = i.fetch_add(1, Ordering::SeqCst);
            Crashy {
                emitted: 0,
                panic: n % 2 == 0,
                acker: c.clone(),
            }
        })
        .max_restarts(3, Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    match p.join().await {
        Err(PipelineError::Producers { source, .. }) => assert!(source.to_string().contains("restart"), "{source}"),
        other => panic!("unexpected {other:?}"),
    }
    // The first run and three restarts each delivered their ten messages before crashing;
    // the processors kept running across restarts.
    assert_eq!(incarnations.load(Ordering::SeqCst), 4);
    let acked = count.0.load(Ordering::SeqCst);
    // Multiples of 4 fail (no dead-letter sink here): 0, 4, 8 of each ten. The last run's
    // messages may be cut off when the pipeline gives up.
    assert!((3 * 7..=4 * 7).contains(&acked), "{acked} acknowledged");
}
