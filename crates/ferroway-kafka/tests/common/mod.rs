//! Helpers for tests against the real test broker on 127.0.0.1:9092, and private brokers.
#![allow(dead_code)]

mod broker;

#[allow(unused_imports)]
pub use broker::PrivateBroker;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::pipeline::{Handler, Message};
use ferroway_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use ferroway_kafka::rdkafka::client::DefaultClientContext;
use ferroway_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use ferroway_kafka::rdkafka::error::RDKafkaErrorCode;
use ferroway_kafka::rdkafka::message::Message as _;
use ferroway_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use ferroway_kafka::{Connection, KafkaMetadata, KafkaRecord, KafkaSink, KafkaSinkOptions, KafkaSourceOptions};
use tokio::sync::mpsc;

pub const BROKER: &str = "127.0.0.1:9092";

/// Fails (never skips) when the broker is down, saying how to start it.
pub fn require_broker() {
    let addr: SocketAddr = BROKER.parse().unwrap();
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!(
            "the Kafka test broker is not reachable on {BROKER}: start it with `bash scripts/services/kafka.sh` \
             (from the repository root; `./scripts/test` does this for you)"
        );
    }
}

/// Logs to stderr as `RUST_LOG` says (nothing by default; shown for failing tests).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

pub fn conn() -> Connection {
    Connection::new(BROKER)
}

/// Source options suited to tests: short commit interval and session timeout.
pub fn source_opts(group: &str, topic: &str) -> KafkaSourceOptions {
    KafkaSourceOptions::new(conn(), group, [topic])
        .commit_interval(Duration::from_millis(100))
        .session_timeout(Duration::from_secs(6))
        .heartbeat_interval(Duration::from_millis(500))
        .close_timeout(Duration::from_secs(10))
}

pub async fn create_topic(name: &str, partitions: i32) {
    require_broker();
    create_topic_on(BROKER, name, partitions).await;
}

/// Creates `name` on the broker at `bootstrap` and waits until its metadata shows every
/// partition. A topic that exists already is fine, whatever its partition count (a producer
/// may have had the broker create it first): the count the metadata shows is returned.
pub async fn create_topic_on(bootstrap: &str, name: &str, partitions: i32) -> i32 {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topics");
    let mut existed = false;
    for r in res {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
            Err((t, e)) => panic!("creating topic {t}: {e}"),
        }
    }
    // Wait until the metadata shows every partition.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(md) = c.fetch_metadata(Some(name), Duration::from_secs(2))
            && let Some(t) = md.topics().iter().find(|t| t.name() == name)
        {
            let seen = t.partitions().len() as i32;
            if seen == partitions || (existed && seen > 0) {
                return seen;
            }
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} never showed {partitions} partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn sink(topic: &str) -> KafkaSink {
    KafkaSink::new(KafkaSinkOptions::new(conn()).topic(topic)).expect("sink")
}

/// Produces `payloads` to `topic`, payload i to partition `i % partitions`.
pub async fn produce(topic: &str, partitions: i32, payloads: impl IntoIterator<Item = String>) {
    let sink = sink(topic);
    let mut msgs: Vec<Message<Vec<u8>>> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let mut m = Message::new(p.into_bytes());
            m.put_metadata(KafkaRecord::new().partition(i as i32 % partitions));
            m
        })
        .collect();
    let r = sink.send_batch(&mut msgs).await.expect("the test broker takes records");
    assert_eq!(
        r.failed,
        0,
        "produce failed: {:?}",
        msgs.iter().find_map(|m| m.failure())
    );
}

/// The group's committed offsets of partitions 0..n of `topic` (-1 for none).
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BROKER)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Polls `f` until true, at most `secs`.
pub async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Got {
    pub payload: String,
    pub md: KafkaMetadata,
}

/// Sends every message to a channel; fails those whose payload is in `fail`.
pub struct Collect {
    pub tx: mpsc::UnboundedSender<Got>,
    pub fail: Vec<String>,
    pub delay: Duration,
}

impl Collect {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Got>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Collect {
                tx,
                fail: Vec::new(),
                delay: Duration::ZERO,
            },
            rx,
        )
    }
}

impl Handler for Collect {
    type Data = Vec<u8>;

    async fn handle_message(&self, m: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let payload = String::from_utf8(m.data().clone())?;
        let md = m.metadata::<KafkaMetadata>().expect("metadata").clone();
        let _ = self.tx.send(Got {
            payload: payload.clone(),
            md,
        });
        if self.fail.contains(&payload) {
            return Err(format!("poison {payload}").into());
        }
        Ok(())
    }
}

/// Drains what arrived so far into `into` (payload -> count).
pub fn drain(rx: &mut mpsc::UnboundedReceiver<Got>, into: &mut HashMap<String, usize>) -> Vec<Got> {
    let mut out = Vec::new();
    while let Ok(g) = rx.try_recv() {
        *into.entry(g.payload.clone()).or_default() += 1;
        out.push(g);
    }
    out
}

/// Every payload in partitions 0..`partitions` of `topic` at `bootstrap`, read from the start
/// (no group) until `done` says enough or `secs` pass.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    secs: u64,
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let mut payloads = Vec::new();
    read_until(bootstrap, topic, partitions, secs, |r| {
        payloads.push(r.payload);
        done(&payloads)
    });
    payloads
}

/// A record as read back by a bare consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
    pub payload: Vec<u8>,
}

/// Every record in partitions 0..`partitions` of `topic` on the test broker, read from the
/// start (no group) until `n` arrived or `secs` pass.
pub fn read_records(topic: &str, partitions: i32, n: usize, secs: u64) -> Vec<Read> {
    let mut out = Vec::new();
    read_until(BROKER, topic, partitions, secs, |r| {
        out.push(r);
        out.len() >= n
    });
    out
}

/// Hands each record of partitions 0..`partitions` of `topic` at `bootstrap`, from the start
/// (no group), to `take` until it returns true or `secs` pass.
fn read_until(bootstrap: &str, topic: &str, partitions: i32, secs: u64, mut take: impl FnMut(Read) -> bool) {
    use ferroway_kafka::rdkafka::message::Headers as _;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let read = Read {
            partition: m.partition(),
            key: m.key().map(<[u8]>::to_vec),
            headers,
            timestamp: m.timestamp().to_millis(),
            payload: m.payload().unwrap_or_default().to_vec(),
        };
        if take(read) {
            return;
        }
    }
}
