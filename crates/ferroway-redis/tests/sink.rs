//! The XADD sink against a real Redis server.

mod support;

use std::time::Duration;

use ferroway::connector::{Record, Sink};
use ferroway::pipeline::testing::{Outcome, TestProducer};
use ferroway::pipeline::{Batcher, Forward, Message, Pipeline};
use ferroway_redis::{RedisSink, SinkOptions, Trim};
use support::{delete, redis, unique, url};

/// An entry's fields as XRANGE returns them.
type Fields = Vec<(String, Vec<u8>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_added_in_order_and_acknowledged_after_redis_confirmed() {
    let mut c = redis().await;
    let stream = unique("sink");
    let sink = RedisSink::new(SinkOptions::new(url(), &stream)).unwrap();
    let p = Pipeline::builder("sink", Forward::new())
        .producer(TestProducer::new)
        .sink(
            sink,
            Batcher::new("out")
                .batch_size(100)
                .batch_timeout(Duration::from_millis(20)),
        )
        .start()
        .await
        .unwrap();
    let outcomes = p.push_messages((0..1_000u64).map(|n| n.to_string())).outcomes().await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Successful));
    p.stop().await.unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(entries.iter().all(|(_, f)| f.len() == 1 && f[0].0 == "payload"));
    let ns: Vec<u64> = entries.iter().map(|(_, f)| f[0].1.parse().unwrap()).collect();
    assert_eq!(ns, (0..1_000).collect::<Vec<_>>());
    delete(&mut c, &[&stream]).await;
}

#[tokio::test]
async fn refused_entries_fail_their_messages_and_trimming_applies() {
    let mut c = redis().await;
    let stream = unique("sink-wrongtype");
    // The key holds a string: every XADD is refused by Redis.
    let _: () = redis::cmd("SET")
        .arg(&stream)
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    let sink = RedisSink::new(SinkOptions::new(url(), &stream)).unwrap();
    let mut batch = vec![Message::new(1u64), Message::new(2u64)];
    sink.send(&mut batch, |m| vec![("n".into(), m.data().to_string().into_bytes())])
        .await
        .unwrap();
    assert!(
        batch
            .iter()
            .all(|m| m.failure().is_some_and(|f| f.contains("WRONGTYPE"))),
        "{:?}",
        batch[0].failure()
    );
    // Through the connector contract: refused entries fail their messages, the call succeeds.
    let mut records = vec![Message::new(Record::new("a")), Message::new(Record::new("b"))];
    Sink::write(&sink, &mut records).await.unwrap();
    assert!(
        records
            .iter()
            .all(|m| m.failure().is_some_and(|f| f.contains("WRONGTYPE"))),
        "{:?}",
        records[0].failure()
    );
    delete(&mut c, &[&stream]).await;

    let trimmed = unique("sink-trim");
    let sink = RedisSink::new(SinkOptions::new(url(), &trimmed).trim(Trim::MaxLen(10))).unwrap();
    let entries: Vec<_> = (0..2_000u64)
        .map(|i| vec![("n".to_owned(), i.to_string().into_bytes())])
        .collect();
    let ids = sink.add(&entries).await.unwrap();
    assert!(ids.iter().all(Result::is_ok));
    assert!(ids.windows(2).all(|w| w[0].as_ref().unwrap() < w[1].as_ref().unwrap()));
    let len: u64 = redis::cmd("XLEN").arg(&trimmed).query_async(&mut c).await.unwrap();
    // Approximate trimming keeps at least 10 and far fewer than 2,000.
    assert!((10..2_000).contains(&len), "{len}");
    delete(&mut c, &[&trimmed]).await;
}

#[tokio::test]
async fn records_become_entries_with_payload_key_and_headers_under_the_configured_fields() {
    let mut c = redis().await;
    let stream = unique("sink-fields");
    let sink = RedisSink::new(SinkOptions::new(url(), &stream).payload_field("body").key_field("id")).unwrap();
    let mut batch = vec![
        Message::new(Record::new("{}").key("k-1").header("trace", "t").header("trace", "u")),
        Message::new(Record::new(vec![0xff, 0x00])),
    ];
    Sink::write(&sink, &mut batch).await.unwrap();
    assert!(batch.iter().all(|m| !m.is_failed()));
    let entries: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    let fields: Vec<Fields> = entries.into_iter().map(|(_, f)| f).collect();
    let f = |k: &str, v: &[u8]| (k.to_owned(), v.to_vec());
    assert_eq!(
        fields,
        [
            vec![f("body", b"{}"), f("id", b"k-1"), f("trace", b"t"), f("trace", b"u")],
            vec![f("body", &[0xff, 0x00])],
        ]
    );
    delete(&mut c, &[&stream]).await;
}
