//! The connector contract against the real test broker (127.0.0.1:9092,
//! `bash scripts/services/kafka.sh`): a Kafka source of records into a Kafka sink through a
//! batcher, no handler of our own, and a stop that returns with the offsets committed.

mod common;

use std::future::Future;
use std::task::{Context, Waker};
use std::time::Duration;

use common::*;
use ferroway::BoxError;
use ferroway::connector::Record;
use ferroway::pipeline::{Batcher, Forward, Handler, Message, Pipeline};
use ferroway_kafka::{KafkaMetadata, KafkaRecord, KafkaSource, dead_letter_headers};

const N: usize = 50;
const T0: i64 = 1_600_000_000_000;

/// Record `i` of the input topic: a key, headers on most, a timestamp of its own.
fn input(i: usize) -> Message<Record> {
    let mut r = Record::new(format!("v{i}"))
        .key(format!("k{}", i % 5))
        .timestamp_ms(T0 + i as i64);
    if !i.is_multiple_of(4) {
        r = r.header("n", i.to_string()).header("kind", "copy");
    }
    let mut m = Message::new(r);
    m.put_metadata(KafkaRecord::new().partition((i % 2) as i32));
    m
}

/// Produces [`input`] `0..N` to `topic` through the sink's `send_batch` of records.
async fn produce_records(topic: &str) {
    let mut batch: Vec<Message<Record>> = (0..N).map(input).collect();
    let report = sink(topic)
        .send_batch(&mut batch)
        .await
        .expect("the test broker takes records");
    assert_eq!((report.sent, report.failed), (N, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_copy_a_topic_with_keys_headers_and_timestamps_and_stop_returns_committed() {
    init_tracing();
    let (from, to, group) = (unique("copy-from"), unique("copy-to"), unique("copy-g"));
    create_topic(&from, 2).await;
    create_topic(&to, 2).await;
    produce_records(&from).await;

    let source = KafkaSource::factory(source_opts(&group, &from)).unwrap();
    // Three members for two partitions: one never gets a message, and the stop must still
    // wait for it to leave the group.
    let pipeline = Pipeline::builder("copy", Forward::new())
        .source(source.records())
        .producer_concurrency(3)
        .sink(
            sink(&to),
            Batcher::new("to")
                .batch_size(20)
                .batch_timeout(Duration::from_millis(20)),
        )
        .start()
        .await
        .unwrap();
    let copied = tokio::task::spawn_blocking({
        let to = to.clone();
        move || read_records(&to, 2, N, 60)
    })
    .await
    .unwrap();
    assert_eq!(copied.len(), N, "every record copied");
    pipeline.stop().await.unwrap();

    assert_eq!(
        committed(&group, &from, 2),
        vec![(N / 2) as i64; 2],
        "stop() returned: every copied record's offset is committed"
    );
    assert!(
        is_ready(source.closed()),
        "stop() returned: every member of the source has closed, also those that read nothing"
    );

    let originals = {
        let mut v: Vec<Record> = (0..N).map(|i| input(i).into_data()).collect();
        v.sort_by(|a, b| a.payload.cmp(&b.payload));
        v
    };
    let mut copied = copied;
    copied.sort_by(|a, b| a.payload.cmp(&b.payload));
    for (got, want) in copied.iter().zip(&originals) {
        assert_eq!(got.payload, &want.payload[..]);
        assert_eq!(got.key.as_deref(), want.key.as_deref(), "key of {:?}", want.payload);
        let want_headers: Vec<(String, Vec<u8>)> = want.headers.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect();
        assert_eq!(got.headers, want_headers, "headers of {:?}", want.payload);
        assert_eq!(got.timestamp, want.timestamp, "timestamp of {:?}", want.payload);
    }
    // Records of one key share a partition, as in the input topic.
    for k in 0..5 {
        let key = format!("k{k}").into_bytes();
        let parts: std::collections::HashSet<i32> = copied
            .iter()
            .filter(|r| r.key.as_deref() == Some(&key[..]))
            .map(|r| r.partition)
            .collect();
        assert_eq!(parts.len(), 1, "key k{k} in partitions {parts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_before_any_message_still_waits_for_every_member_to_leave() {
    init_tracing();
    let (topic, group) = (unique("early-stop"), unique("early-stop-g"));
    create_topic(&topic, 2).await;
    let source = KafkaSource::factory(source_opts(&group, &topic)).unwrap();
    let pipeline = Pipeline::builder("early-stop", Forward::new())
        .source(source.clone())
        .producer_concurrency(2)
        .start()
        .await
        .unwrap();
    // The members are joining their group: nothing was emitted, so no acknowledger was ever
    // flushed; only the source's close waits for them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    pipeline.stop().await.unwrap();
    assert!(
        is_ready(source.closed()),
        "stop() returned while members were still in the group"
    );
}

fn is_ready(f: impl Future<Output = ()>) -> bool {
    std::pin::pin!(f)
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

/// Fails the record whose payload is `v3`.
struct FailV3;

impl Handler for FailV3 {
    type Data = Record;

    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        if m.data().payload == "v3" {
            return Err("v3 is poison".into());
        }
        assert!(
            m.metadata::<KafkaMetadata>().is_some(),
            "the origin stays on the message"
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_record_keeps_its_key_and_headers_and_says_why_and_where_from() {
    init_tracing();
    let (from, to, dlq, group) = (unique("dl-from"), unique("dl-to"), unique("dl-dlq"), unique("dl-g"));
    for t in [&from, &to, &dlq] {
        create_topic(t, 2).await;
    }
    produce_records(&from).await;
    let pipeline = Pipeline::builder("dead-letters", FailV3)
        .source(KafkaSource::factory(source_opts(&group, &from)).unwrap().records())
        .sink(sink(&to), Batcher::new("to"))
        .dead_letter(sink(&dlq))
        .start()
        .await
        .unwrap();
    let dead = tokio::task::spawn_blocking({
        let dlq = dlq.clone();
        move || read_records(&dlq, 2, 1, 60)
    })
    .await
    .unwrap();
    let copied = tokio::task::spawn_blocking(move || read_records(&to, 2, N - 1, 60))
        .await
        .unwrap();
    pipeline.stop().await.unwrap();
    assert_eq!(
        committed(&group, &from, 2),
        vec![(N / 2) as i64; 2],
        "a dead letter counts as done"
    );
    assert_eq!(copied.len(), N - 1);
    assert!(copied.iter().all(|r| r.payload != b"v3"));

    let [d] = dead.as_slice() else {
        panic!("one dead letter, got {dead:?}")
    };
    assert_eq!((&d.payload[..], d.key.as_deref()), (&b"v3"[..], Some(&b"k3"[..])));
    assert_eq!(d.timestamp, Some(T0 + 3));
    let header = |name: &str| {
        d.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("n").as_deref(), Some("3"), "its own headers: {:?}", d.headers);
    assert_eq!(header("kind").as_deref(), Some("copy"));
    assert!(header(dead_letter_headers::REASON).unwrap().contains("v3 is poison"));
    assert_eq!(header(dead_letter_headers::PIPELINE).as_deref(), Some("dead-letters"));
    assert_eq!(header(dead_letter_headers::TOPIC), Some(from.clone()));
    assert_eq!(header(dead_letter_headers::PARTITION).as_deref(), Some("1"));
    assert_eq!(header(dead_letter_headers::OFFSET).as_deref(), Some("1"));
}
