//! The sink with its broker gone: an outage is not a bad message. A pipeline producing to a
//! private broker (see `common::PrivateBroker`) keeps its messages through a 30 s outage —
//! a frozen broker, then a killed and restarted one — and dead-letters or loses none.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ferroway::BoxError;
use ferroway::connector::Sink;
use ferroway::pipeline::{
    AckToken, Acknowledger, Acks, BatchInfo, Batcher, BoxFuture, Handler, Message, Pipeline, Processors,
};
use ferroway::stage::{Emit, Producer};
use ferroway_kafka::{Connection, KafkaError, KafkaSink, KafkaSinkOptions};

const N: u64 = 4_000;
const PARTITIONS: i32 = 3;

/// Emits messages `0..N` at about 200 a second, so some are produced during the outage.
struct Paced {
    next: u64,
    acks: Arc<Acked>,
}

impl Producer for Paced {
    type Output = Message<Vec<u8>>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Vec<u8>>>, BoxError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let end = (self.next + demand.min(2) as u64).min(N);
        let acker: Arc<dyn Acknowledger> = self.acks.clone();
        let out = (self.next..end)
            .map(|i| Message::with_acker(i.to_string().into_bytes(), acker.clone(), AckToken(i, 0)))
            .collect();
        self.next = end;
        Ok(if end == N { Emit::Done(out) } else { Emit::Events(out) })
    }
}

/// Every acknowledgement, with when it came.
#[derive(Default)]
struct Acked {
    ok: Mutex<Vec<(u64, Instant)>>,
    failed: AtomicUsize,
}

impl Acknowledger for Acked {
    fn ack(&self, acks: Acks) {
        let now = Instant::now();
        self.ok
            .lock()
            .unwrap()
            .extend(acks.successful.iter().map(|t| (t.0, now)));
        self.failed.fetch_add(acks.failed.len(), Ordering::Relaxed);
    }
}

impl Acked {
    fn ok(&self) -> usize {
        self.ok.lock().unwrap().len()
    }
}

struct Forward(KafkaSink);

impl Handler for Forward {
    type Data = Vec<u8>;

    async fn handle_message(&self, _: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<Vec<u8>>], _: &BatchInfo) -> Result<(), BoxError> {
        self.0.send_batch(batch).await?;
        Ok(())
    }
}

/// Counts dead letters (there must be none).
struct CountDeadLetters(Arc<AtomicUsize>);

impl Sink<Vec<u8>> for CountDeadLetters {
    fn write<'a>(&'a self, messages: &'a mut [Message<Vec<u8>>]) -> BoxFuture<'a, Result<(), BoxError>> {
        self.0.fetch_add(messages.len(), Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
}

struct Run {
    pipeline: Pipeline<Vec<u8>>,
    acks: Arc<Acked>,
    dead: Arc<AtomicUsize>,
}

async fn start(sink: KafkaSink) -> Run {
    init_tracing();
    let acks = Arc::new(Acked::default());
    let dead = Arc::new(AtomicUsize::new(0));
    let a = acks.clone();
    let pipeline = Pipeline::builder("sink-outage", Forward(sink))
        .producer(move || Paced {
            next: 0,
            acks: a.clone(),
        })
        .processors(Processors::new().concurrency(2))
        .batcher(
            Batcher::new("kafka")
                .batch_size(50)
                .batch_timeout(Duration::from_millis(20))
                .concurrency(2),
        )
        .dead_letter(CountDeadLetters(dead.clone()))
        .start()
        .await
        .unwrap();
    Run { pipeline, acks, dead }
}

impl Run {
    /// Waits for every message to be acknowledged, stops; checks none was dead-lettered or
    /// failed and each was acknowledged once. Returns the acknowledgements.
    async fn finish(self) -> Vec<(u64, Instant)> {
        let acks = self.acks.clone();
        eventually(240, "every message acknowledged", || acks.ok() >= N as usize).await;
        self.pipeline.stop().await.unwrap();
        assert_eq!(
            self.dead.load(Ordering::Relaxed),
            0,
            "messages dead-lettered because of the outage"
        );
        assert_eq!(
            self.acks.failed.load(Ordering::Relaxed),
            0,
            "messages failed because of the outage"
        );
        let ok = self.acks.ok.lock().unwrap().clone();
        let ids: HashSet<u64> = ok.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            (ids.len(), ok.len()),
            (N as usize, N as usize),
            "each message acknowledged once"
        );
        ok
    }
}

fn ids_in(payloads: &[Vec<u8>]) -> HashSet<u64> {
    payloads
        .iter()
        .filter_map(|p| std::str::from_utf8(p).ok()?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_for_30s_loses_and_dead_letters_nothing() {
    let broker = PrivateBroker::start();
    let topic = unique("frozen");
    create_topic_on(&broker.addr(), &topic, PARTITIONS).await;
    // A delivery timeout well below the outage: records time out during it, and must be kept.
    let sink = KafkaSink::new(
        KafkaSinkOptions::new(Connection::new(broker.addr()))
            .topic(&topic)
            .delivery_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let run = start(sink).await;
    let acks = run.acks.clone();
    eventually(60, "500 messages through", || acks.ok() >= 500).await;

    broker.freeze();
    // With the default options, an outage is noticed within the delivery timeout (30 s), as
    // an error a pipeline recognises — not after minutes, not as a failed record.
    let probe = KafkaSink::new(KafkaSinkOptions::new(Connection::new(broker.addr())).topic(&topic)).unwrap();
    let mut msgs = vec![Message::new(b"probe".to_vec())];
    let noticed = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), probe.send_batch(&mut msgs))
        .await
        .expect("the outage is noticed within a minute");
    let e = r.expect_err("nothing is delivered by a frozen broker");
    assert!(matches!(e, KafkaError::Unavailable { .. }), "{e:?}");
    assert!(ferroway::error::is_unavailable(&e));
    assert!(!msgs[0].is_failed(), "an outage does not fail the message");
    eprintln!(
        "outage noticed after {:?}: {}",
        noticed.elapsed(),
        ferroway::error::Chain(&e)
    );
    let frozen_for = noticed.elapsed();
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(frozen_for)).await;
    broker.thaw();

    run.finish().await;
    let all = ids_in(&read_topic(&broker.addr(), &topic, PARTITIONS, 60, |p| {
        ids_in(p).len() >= N as usize
    }));
    let missing: Vec<u64> = (0..N).filter(|i| !all.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages not in the topic: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_broker_loses_and_dead_letters_nothing() {
    let mut broker = PrivateBroker::start();
    let topic = unique("killed");
    create_topic_on(&broker.addr(), &topic, PARTITIONS).await;
    // Default options.
    let sink = KafkaSink::new(KafkaSinkOptions::new(Connection::new(broker.addr())).topic(&topic)).unwrap();
    let run = start(sink).await;
    let acks = run.acks.clone();
    eventually(60, "500 messages through", || acks.ok() >= 500).await;

    broker.kill();
    // Connections refused for 30 s, then the broker is back with its topic and records.
    tokio::time::sleep(Duration::from_secs(30)).await;
    broker.restart();
    let restarted = Instant::now();

    let ok = run.finish().await;
    let after = ok.iter().filter(|(_, at)| *at >= restarted).count();
    assert!(after > 1000, "most messages went through after the restart: {after}");
    // Everything acknowledged, before the kill and since the restart, is in the topic.
    let acked: Vec<u64> = ok.iter().map(|(i, _)| *i).collect();
    let all = ids_in(&read_topic(&broker.addr(), &topic, PARTITIONS, 60, |p| {
        let have = ids_in(p);
        acked.iter().all(|i| have.contains(i))
    }));
    let missing: Vec<u64> = acked.iter().copied().filter(|i| !all.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages not in the topic: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}
