//! `kafka` and `kafka-sink`, against the test broker on 127.0.0.1:9092
//! (`bash scripts/services/kafka.sh`).
//!
//! `kafka`: 1,000,000 messages of 100 bytes are produced to a fresh 4-partition topic first,
//! spread evenly.
//! Then, in the same run, a bare rdkafka `BaseConsumer` loop reads them all (baseline), and a
//! pipeline — `KafkaSource`, 2 processors, every message acknowledged and its offset committed
//! — reads them all in another group. The bare consumer is created from the source's own
//! librdkafka configuration ([`KafkaSourceOptions::client_config`]), so the ratio measures
//! the pipeline, not a difference of settings. Both clocks run from the 100,000th message
//! received to the last (the group join and the first fetches, whose timing varies from run
//! to run, are not counted); `messages` is the 900,000 timed.
//! `checksum_ok`: every message seen once by each, and the pipeline's group committed the end
//! of every partition.
//!
//! `kafka-sink`: 1,000,000 messages of 100 bytes produced to fresh topics by a bare rdkafka
//! `BaseProducer` loop (baseline: send, poll, flush) and by a pipeline — an in-memory producer,
//! 2 processors, a batcher of 5,000 with 4 batch processors calling `KafkaSink::send_batch`.
//! The bare producer is created from the sink's configuration
//! ([`KafkaSinkOptions::client_config`]): idempotent, `acks=all`, `linger.ms=5`. Clocks
//! include waiting for every delivery report. `checksum_ok`: no delivery failed.
//!
//! A single pass lasts well under a second, where a stray scheduling hiccup on 2 cores moves a
//! figure by tens of percent: each workload runs [`ROUNDS`] rounds, baseline then pipeline,
//! and reports the median of each (every round's figures are in the line too).

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
use ferroway_kafka::{Connection, KafkaRecord, KafkaSink, KafkaSinkOptions, KafkaSource, KafkaSourceOptions};
use serde_json::json;

use crate::report::Report;

const BROKER: &str = "127.0.0.1:9092";
const N: u64 = 1_000_000;
const SIZE: usize = 100;
const PARTITIONS: i32 = 4;
/// Rounds per workload (medians reported).
const ROUNDS: usize = 3;
/// Consumer clocks start at this message: the first fetches' timing varies from run to run
/// by more than the steady state differs between baseline and pipeline.
const WARMUP: u64 = 100_000;

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

/// `i` in decimal, zero-padded to SIZE bytes (written by hand: `format!` padding costs more
/// than producing the record, for baseline and pipeline alike).
fn payload(mut i: u64) -> Vec<u8> {
    let mut v = vec![b'0'; SIZE];
    for d in v.iter_mut().rev() {
        if i == 0 {
            break;
        }
        *d = b'0' + (i % 10) as u8;
        i /= 10;
    }
    v
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

fn sink_options() -> KafkaSinkOptions {
    KafkaSinkOptions::new(Connection::new(BROKER)).linger(Duration::from_millis(5))
}

fn source_options(group: &str, topic: &str) -> KafkaSourceOptions {
    KafkaSourceOptions::new(Connection::new(BROKER), group, [topic])
}

fn bare_producer() -> BaseProducer {
    sink_options().client_config().create().expect("producer")
}

/// An idempotent producer sends nothing until it has a producer id, which librdkafka asks for
/// 0.5-1 s after the client starts (a fixed timer, whatever the load). Both sink runs are
/// timed from their first delivered record so that this start-up wait, identical for both and
/// half the length of a run, does not drown the throughput being compared.
fn warm_up_bare(p: &BaseProducer, topic: &str) {
    p.send(BaseRecord::<'_, [u8], [u8]>::to(topic).payload(&b"warm-up"[..]))
        .map_err(|(e, _)| e)
        .expect("warm-up send");
    p.flush(Duration::from_secs(30)).expect("warm-up flush");
}

/// Bare producer loop: send all, polling for delivery reports, then flush. Returns seconds.
/// With `spread`, message i goes to partition i % PARTITIONS (every consumer run then reads
/// the same even layout; keyless records are otherwise batched to random partitions).
fn bare_produce(p: &BaseProducer, topic: &str, spread: bool) -> f64 {
    let started = Instant::now();
    for i in 0..N {
        let data = payload(i);
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(&data);
        if spread {
            rec = rec.partition((i % PARTITIONS as u64) as i32);
        }
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

/// Bare consumer loop over the whole topic. Returns (seconds from message WARMUP to the last,
/// count).
fn bare_consume(topic: &str) -> (f64, u64) {
    let c: BaseConsumer = source_options(&unique("bench-bare"), topic)
        .client_config()
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
                bytes += m.payload().map_or(0, <[u8]>::len);
                n += 1;
                if n == WARMUP {
                    first = Some(Instant::now());
                }
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
    }
    assert!(bytes >= n as usize * SIZE || n < N);
    (first.map_or(0.0, |f| f.elapsed().as_secs_f64()), n)
}

/// Counts what the processors handled without making them share a cache line per message:
/// one counter pair per thread, summed by the waiting task.
struct Count {
    shards: [Shard; SHARDS],
}

const SHARDS: usize = 16;

#[derive(Default)]
#[repr(align(128))]
struct Shard {
    n: AtomicU64,
    bytes: AtomicU64,
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl Count {
    fn new() -> Self {
        Count {
            shards: Default::default(),
        }
    }

    /// (messages, bytes) so far.
    fn total(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(n, b), s| {
            (n + s.n.load(Ordering::Relaxed), b + s.bytes.load(Ordering::Relaxed))
        })
    }

    /// When the count reached `n` (checked every millisecond), or `None` after `timeout`.
    async fn reached(&self, n: u64, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.total().0 >= n {
                return Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }
}

struct CountHandler(Arc<Count>);

impl Handler for CountHandler {
    type Data = Vec<u8>;

    async fn handle_message(&self, m: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
        let c = &self.0;
        let shard = &c.shards[SHARD.with(|s| *s)];
        shard.n.fetch_add(1, Ordering::Relaxed);
        shard.bytes.fetch_add(m.data().len() as u64, Ordering::Relaxed);
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

/// The median of `xs`.
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Puts the rounds' figures and medians on `r`.
fn rounds(r: &mut Report, per_sec: &[f64], baseline: &[f64]) {
    let round = |xs: &[f64]| xs.iter().map(|x| x.round() as u64).collect::<Vec<_>>();
    r.baseline_per_sec = Some(median(baseline));
    r.extra.insert("rounds".into(), json!(per_sec.len()));
    r.extra.insert("per_sec_rounds".into(), json!(round(per_sec)));
    r.extra.insert("baseline_per_sec_rounds".into(), json!(round(baseline)));
}

/// One pipeline pass over the topic in a fresh group: (seconds from message WARMUP to the last, count,
/// offsets committed).
async fn pipeline_consume(topic: &str) -> (f64, u64, i64) {
    let group = unique("bench-pipeline");
    let source = KafkaSource::factory(source_options(&group, topic)).expect("options");
    let count = Arc::new(Count::new());
    let f = source.clone();
    let pipeline = Pipeline::builder("bench-kafka", CountHandler(count.clone()))
        .producer(move || f.create())
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .expect("pipeline");
    let first = count
        .reached(WARMUP, Duration::from_secs(300))
        .await
        .unwrap_or_else(Instant::now);
    let end = count
        .reached(N, Duration::from_secs(300))
        .await
        .unwrap_or_else(Instant::now);
    let (n, bytes) = count.total();
    assert!(bytes >= n * SIZE as u64, "every message has its payload");
    pipeline.stop().await.expect("stop");
    source.closed().await;
    let t = topic.to_owned();
    let committed = tokio::task::spawn_blocking(move || committed_total(&group, &t))
        .await
        .expect("committed");
    ((end - first).as_secs_f64(), n, committed)
}

/// `kafka`: the source against a bare consumer loop.
pub async fn run_source() -> Vec<Report> {
    require_broker();
    let topic = unique("bench-kafka");
    create_topic(&topic).await;
    eprintln!("producing {N} messages of {SIZE} bytes to {topic} ...");
    let t = topic.clone();
    tokio::task::spawn_blocking(move || bare_produce(&bare_producer(), &t, true))
        .await
        .expect("produce");

    let (mut piped, mut bare, mut secs) = (Vec::new(), Vec::new(), Vec::new());
    let mut ok = true;
    let mut committed = 0;
    for round in 1..=ROUNDS {
        eprintln!("round {round}/{ROUNDS}: bare consumer ...");
        let t = topic.clone();
        let (bare_secs, bare_n) = tokio::task::spawn_blocking(move || bare_consume(&t))
            .await
            .expect("bare");
        bare.push((bare_n - WARMUP) as f64 / bare_secs);
        eprintln!("round {round}/{ROUNDS}: pipeline ...");
        let (s, n, c) = pipeline_consume(&topic).await;
        piped.push((n - WARMUP) as f64 / s);
        secs.push(s);
        committed = c;
        ok &= n == N && bare_n == N && c == N as i64;
    }
    delete_topics(&[&topic]).await;

    let mut r = Report::new("kafka", "messages", N - WARMUP, median(&secs));
    r.extra.insert("total_messages".into(), json!(N));
    r.extra.insert("warmup_messages".into(), json!(WARMUP));
    rounds(&mut r, &piped, &bare);
    r.checksum_ok = Some(ok);
    r.extra.insert("message_bytes".into(), json!(SIZE));
    r.extra.insert("partitions".into(), json!(PARTITIONS));
    r.extra.insert("committed".into(), json!(committed));
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
        let r = self.0.sink.send_batch(batch).await?;
        self.0.failed.fetch_add(r.failed as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// One pipeline pass producing N messages to `topic`: (seconds, deliveries failed).
async fn pipeline_produce(topic: &str) -> (f64, u64) {
    let send = Arc::new(Send {
        sink: KafkaSink::new(sink_options().topic(topic)).expect("sink"),
        failed: AtomicU64::new(0),
    });
    // See `warm_up_bare`.
    send.sink
        .send(b"warm-up", &KafkaRecord::new())
        .await
        .expect("warm-up send");
    let started = Instant::now();
    let pipeline = Pipeline::builder("bench-kafka-sink", SendHandler(send.clone()))
        .producer(|| Gen { next: 0 })
        .processors(Processors::new().concurrency(2))
        .batcher(Batcher::new("kafka").batch_size(10000).concurrency(4))
        .start()
        .await
        .expect("pipeline");
    pipeline.join().await.expect("join");
    (started.elapsed().as_secs_f64(), send.failed.load(Ordering::Relaxed))
}

/// `kafka-sink`: the sink in a pipeline against a bare producer loop.
pub async fn run_sink() -> Vec<Report> {
    require_broker();
    let (mut piped, mut bare, mut secs) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    for round in 1..=ROUNDS {
        let bare_topic = unique("bench-sink-bare");
        let topic = unique("bench-sink");
        create_topic(&bare_topic).await;
        create_topic(&topic).await;
        eprintln!("round {round}/{ROUNDS}: bare producer ...");
        let t = bare_topic.clone();
        let bare_secs = tokio::task::spawn_blocking(move || {
            let p = bare_producer();
            warm_up_bare(&p, &t);
            bare_produce(&p, &t, false)
        })
        .await
        .expect("bare");
        bare.push(N as f64 / bare_secs);
        eprintln!("round {round}/{ROUNDS}: pipeline with KafkaSink ...");
        let (s, f) = pipeline_produce(&topic).await;
        piped.push(N as f64 / s);
        secs.push(s);
        failed += f;
        delete_topics(&[&bare_topic, &topic]).await;
    }

    let mut r = Report::new("kafka-sink", "messages", N, median(&secs));
    rounds(&mut r, &piped, &bare);
    r.checksum_ok = Some(failed == 0);
    r.extra.insert("message_bytes".into(), json!(SIZE));
    r.extra.insert("failed".into(), json!(failed));
    vec![r]
}
