//! `kafka` and `kafka-sink`, against the test broker on 127.0.0.1:9092
//! (`bash scripts/services/kafka.sh`).
//!
//! `kafka`: 1,000,000 messages of 100 bytes are produced to a fresh 4-partition topic first.
//! Then, in the same run, a bare rdkafka `BaseConsumer` loop reads them all (baseline), and a
//! pipeline — `KafkaSource`, 2 processors, every message acknowledged and its offset committed
//! — reads them all in another group. Both clocks run from the first message received to the
//! last, so the group join (about 5 s on the test broker) is not counted. `checksum_ok`: every
//! message seen once by each, and the pipeline's group committed the end of every partition.
//!
//! `kafka-sink`: 1,000,000 messages of 100 bytes produced to fresh topics by a bare rdkafka
//! `BaseProducer` loop (baseline: send, poll, flush) and by a pipeline — an in-memory producer,
//! 2 processors, a batcher of 5,000 with 4 batch processors calling `KafkaSink::send_batch`.
//! Same producer settings for both: idempotent, `acks=all`, `linger.ms=5`. Clocks include
//! waiting for every delivery report. `checksum_ok`: no delivery failed.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway::stage::{Emit, Producer};
use ferroway_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use ferroway_kafka::rdkafka::client::DefaultClientContext;
use ferroway_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use ferroway_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use ferroway_kafka::rdkafka::message::Message as _;
use ferroway_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use ferroway_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use ferroway_kafka::{Connection, KafkaSink, KafkaSinkOptions, KafkaSource, KafkaSourceOptions};
use serde_json::json;

use crate::report::Report;

const BROKER: &str = "127.0.0.1:9092";
const N: u64 = 1_000_000;
const SIZE: usize = 100;
const PARTITIONS: i32 = 4;

/// Exits with a message saying how to start the broker when it is not there.
fn require_broker() {
    let addr: SocketAddr = BROKER.parse().expect("address");
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        eprintln!(
            "the kafka workloads need a Kafka-compatible broker on {BROKER}: start the test broker with \
             `bash scripts/services/kafka.sh` (from the repository root)"
        );
        std::process::exit(1);
    }
}

fn payload(i: u64) -> Vec<u8> {
    format!("{i:0SIZE$}").into_bytes()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand_u32())
}

fn fastrand_u32() -> u32 {
    // No extra dependency: the clock's nanoseconds are unique enough for topic names.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .create()
        .expect("admin client")
}

async fn create_topic(name: &str) {
    let t = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1));
    let res = admin()
        .create_topics(
            [&t],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

async fn delete_topics(names: &[&str]) {
    let _ = admin().delete_topics(names, &AdminOptions::new()).await;
}

fn producer_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", BROKER)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "100000")
        .set("partitioner", "murmur2_random");
    c
}

/// Bare producer loop: send all, polling for delivery reports, then flush. Returns seconds.
fn bare_produce(topic: &str) -> f64 {
    let p: BaseProducer = producer_config().create().expect("producer");
    let started = Instant::now();
    for i in 0..N {
        let data = payload(i);
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(&data);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    started.elapsed().as_secs_f64()
}

/// Bare consumer loop over the whole topic. Returns (seconds from the first message, count).
fn bare_consume(topic: &str) -> (f64, u64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("group.id", unique("bench-bare"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while n < N && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, <[u8]>::len);
                n += 1;
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
    }
    assert!(bytes >= n as usize * SIZE || n < N);
    (first.map_or(0.0, |f| f.elapsed().as_secs_f64()), n)
}

struct Count {
    n: AtomicU64,
    bytes: AtomicU64,
    first: std::sync::Mutex<Option<Instant>>,
    done: tokio::sync::Notify,
}

struct CountHandler(Arc<Count>);

impl Handler for CountHandler {
    type Data = Vec<u8>;

    async fn handle_message(&self, m: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
        let c = &self.0;
        let n = c.n.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 {
            c.first.lock().expect("lock").get_or_insert_with(Instant::now);
        }
        c.bytes.fetch_add(m.data().len() as u64, Ordering::Relaxed);
        if n == N {
            c.done.notify_one();
        }
        Ok(())
    }
}

fn committed_total(group: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).expect("committed");
    got.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// `kafka`: the source against a bare consumer loop.
pub async fn run_source() -> Vec<Report> {
    require_broker();
    let topic = unique("bench-kafka");
    create_topic(&topic).await;
    eprintln!("producing {N} messages of {SIZE} bytes to {topic} ...");
    let t = topic.clone();
    tokio::task::spawn_blocking(move || bare_produce(&t))
        .await
        .expect("produce");

    eprintln!("bare consumer ...");
    let t = topic.clone();
    let (bare_secs, bare_n) = tokio::task::spawn_blocking(move || bare_consume(&t))
        .await
        .expect("bare");
    let baseline = bare_n as f64 / bare_secs;

    eprintln!("pipeline ...");
    let group = unique("bench-pipeline");
    let opts = KafkaSourceOptions::new(Connection::new(BROKER), group.as_str(), [topic.as_str()]);
    let source = KafkaSource::factory(opts).expect("options");
    let count = Arc::new(Count {
        n: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        first: std::sync::Mutex::new(None),
        done: tokio::sync::Notify::new(),
    });
    let f = source.clone();
    let pipeline = Pipeline::builder("bench-kafka", CountHandler(count.clone()))
        .producer(move || f.create())
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .expect("pipeline");
    let _ = tokio::time::timeout(Duration::from_secs(300), count.done.notified()).await;
    let end = Instant::now();
    let first = count.first.lock().expect("lock").unwrap_or(end);
    let secs = (end - first).as_secs_f64();
    let n = count.n.load(Ordering::Relaxed);
    pipeline.stop().await.expect("stop");
    source.closed().await;
    let committed = {
        let (g, t) = (group.clone(), topic.clone());
        tokio::task::spawn_blocking(move || committed_total(&g, &t))
            .await
            .expect("committed")
    };
    delete_topics(&[&topic]).await;

    let mut r = Report::new("kafka", "messages", n, secs);
    r.baseline_per_sec = Some(baseline);
    r.checksum_ok = Some(n == N && bare_n == N && committed == N as i64);
    r.extra.insert("message_bytes".into(), json!(SIZE));
    r.extra.insert("partitions".into(), json!(PARTITIONS));
    r.extra.insert("committed".into(), json!(committed));
    r.extra.insert("baseline_seconds".into(), json!(bare_secs));
    vec![r]
}

/// Emits N messages of 100 bytes (no acknowledger), then is done.
struct Gen {
    next: u64,
}

impl Producer for Gen {
    type Output = Message<Vec<u8>>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Vec<u8>>>, BoxError> {
        let end = (self.next + demand as u64).min(N);
        let out = (self.next..end).map(|i| Message::new(payload(i))).collect();
        self.next = end;
        Ok(if end == N { Emit::Done(out) } else { Emit::Events(out) })
    }
}

struct Send {
    sink: KafkaSink,
    failed: AtomicU64,
}

struct SendHandler(Arc<Send>);

impl Handler for SendHandler {
    type Data = Vec<u8>;

    async fn handle_message(&self, _: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<Vec<u8>>], _: &BatchInfo) -> Result<(), BoxError> {
        let r = self.0.sink.send_batch(batch).await;
        self.0.failed.fetch_add(r.failed as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// `kafka-sink`: the sink in a pipeline against a bare producer loop.
pub async fn run_sink() -> Vec<Report> {
    require_broker();
    let bare_topic = unique("bench-sink-bare");
    let topic = unique("bench-sink");
    create_topic(&bare_topic).await;
    create_topic(&topic).await;

    eprintln!("bare producer ...");
    let t = bare_topic.clone();
    let bare_secs = tokio::task::spawn_blocking(move || bare_produce(&t))
        .await
        .expect("bare");
    let baseline = N as f64 / bare_secs;

    eprintln!("pipeline with KafkaSink ...");
    let opts = KafkaSinkOptions::new(Connection::new(BROKER))
        .topic(topic.as_str())
        .linger(Duration::from_millis(5));
    let send = Arc::new(Send {
        sink: KafkaSink::new(opts).expect("sink"),
        failed: AtomicU64::new(0),
    });
    let started = Instant::now();
    let pipeline = Pipeline::builder("bench-kafka-sink", SendHandler(send.clone()))
        .producer(|| Gen { next: 0 })
        .processors(Processors::new().concurrency(2))
        .batcher(Batcher::new("kafka").batch_size(5000).concurrency(4))
        .start()
        .await
        .expect("pipeline");
    pipeline.join().await.expect("join");
    let secs = started.elapsed().as_secs_f64();
    delete_topics(&[&bare_topic, &topic]).await;

    let failed = send.failed.load(Ordering::Relaxed);
    let mut r = Report::new("kafka-sink", "messages", N, secs);
    r.baseline_per_sec = Some(baseline);
    r.checksum_ok = Some(failed == 0);
    r.extra.insert("message_bytes".into(), json!(SIZE));
    r.extra.insert("failed".into(), json!(failed));
    r.extra.insert("baseline_seconds".into(), json!(bare_secs));
    vec![r]
}
