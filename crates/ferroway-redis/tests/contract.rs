//! The connector contract against a real Redis: `RedisSource::factory(..).records()` as a
//! pipeline's source, `RedisSink` as its sink.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Message, Pipeline, Processors};
use ferroway_redis::{RedisMetadata, RedisSink, RedisSource, SinkOptions, SourceOptions};
use support::{consumers, delete, pending_count, redis, unique, url, xadd_n};
use tokio::sync::mpsc;

type Entries = Vec<(String, Vec<(String, String)>)>;

/// Every entry of `stream`, read in pages (one reply for tens of thousands of entries would
/// outlast the client's reply timeout).
async fn xrange(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> Entries {
    let mut all: Entries = Vec::new();
    let mut from = "-".to_owned();
    loop {
        let page: Entries = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(2_000)
            .query_async(c)
            .await
            .unwrap();
        let Some((last, _)) = page.last() else { return all };
        from = format!("({last}");
        all.extend(page);
    }
}

async fn xlen(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> u64 {
    redis::cmd("XLEN").arg(stream).query_async(c).await.unwrap()
}

/// How many times each `n` was copied to `stream`: its entries' `payload` is the source
/// entry as JSON, `{"n":"…"}`.
async fn copied(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for (id, fields) in xrange(c, stream).await {
        assert_eq!(fields.len(), 1, "entry {id}: {fields:?}");
        assert_eq!(fields[0].0, "payload");
        let v: serde_json::Value = serde_json::from_str(&fields[0].1).unwrap();
        let n: u64 = v["n"].as_str().unwrap().parse().unwrap();
        *counts.entry(n).or_default() += 1;
    }
    counts
}

async fn copy_pipeline(source: SourceOptions, sink: &str, producers: usize) -> ferroway::pipeline::Pipeline<Record> {
    Pipeline::builder("copy", Forward::new())
        .source(RedisSource::factory(source).unwrap().records())
        .sink(
            RedisSink::new(SinkOptions::new(url(), sink)).unwrap(),
            Batcher::new("b")
                .batch_size(100)
                .batch_timeout(Duration::from_millis(20)),
        )
        .producer_concurrency(producers)
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_copied_to_another_every_entry_once_and_stop_leaves_nothing_pending() {
    let mut c = redis().await;
    let (a, b) = (unique("copy-a"), unique("copy-b"));
    let consumer = format!("copier-{:08x}", fastrand::u32(..));
    // Default options (a 1 s BLOCK): stop must not leave the read under way unacknowledged.
    let opts = || SourceOptions::new(url(), "g", [&a]).consumer(&consumer);
    let writing = Arc::new(AtomicBool::new(true));
    let added = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (a, writing, added) = (a.clone(), writing.clone(), added.clone());
        async move {
            let mut c = redis().await;
            let mut n = 0;
            while writing.load(Ordering::Acquire) {
                xadd_n(&mut c, &a, n, n + 20).await;
                n += 20;
                added.store(n, Ordering::Release);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    // Two producers: consumers `<consumer>` and `<consumer>-1`, stopped while entries keep
    // coming, three times.
    for round in 0..3 {
        let p = copy_pipeline(opts(), &b, 2).await;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1_200))).await;
        p.stop().await.unwrap();
        assert_eq!(
            pending_count(&mut c, &a, "g").await,
            0,
            "round {round}: entries left pending after stop() returned"
        );
        assert_eq!(
            consumers(&mut c, &a, "g").await,
            Vec::<String>::new(),
            "round {round}: both consumers left the group"
        );
    }
    writing.store(false, Ordering::Release);
    writer.await.unwrap();
    let total = added.load(Ordering::Acquire);

    // The rest, by one producer.
    let p = copy_pipeline(opts(), &b, 1).await;
    for _ in 0..2_000 {
        if xlen(&mut c, &b).await >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.stop().await.unwrap();
    assert_eq!(pending_count(&mut c, &a, "g").await, 0);
    let counts = copied(&mut c, &b).await;
    let twice: Vec<_> = counts.iter().filter(|(_, k)| **k > 1).collect();
    assert!(
        twice.is_empty(),
        "{} entries copied twice, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    let missing: Vec<u64> = (0..total).filter(|n| !counts.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} not copied, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(counts.len() as u64, total);
    delete(&mut c, &[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_payload_field_key_headers_timestamp_and_origin_and_the_sink_writes_them_back() {
    let mut c = redis().await;
    let (a, b) = (unique("fields-a"), unique("fields-b"));
    let _: String = redis::cmd("XADD")
        .arg(&a)
        .arg("*")
        .arg("h")
        .arg("1")
        .arg("body")
        .arg("{\"x\":1}")
        .arg("id")
        .arg("k-7")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&a)
        .arg("*")
        .arg("no-body")
        .arg("y")
        .query_async(&mut c)
        .await
        .unwrap();
    let entries = xrange(&mut c, &a).await;
    let first_ms: i64 = entries[0].0.split('-').next().unwrap().parse().unwrap();

    let opts = SourceOptions::new(url(), "g", [&a])
        .consumer("fields")
        .block(Duration::from_millis(100))
        .payload_field("body")
        .key_field("id");
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Record>();
    let (dead_tx, mut dead) = mpsc::channel::<Message<Record>>(4);
    let source = RedisSource::factory(opts).unwrap().records().map(move |r: Record| {
        let _ = seen_tx.send(r.clone());
        r
    });
    let p = Pipeline::builder("fields", Inspect)
        .source(source)
        .sink(
            RedisSink::new(SinkOptions::new(url(), &b)).unwrap(),
            Batcher::new("b").batch_timeout(Duration::from_millis(10)),
        )
        .dead_letter(dead_tx)
        .start()
        .await
        .unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(10), dead.recv())
        .await
        .unwrap()
        .unwrap();
    for _ in 0..1_000 {
        if xlen(&mut c, &b).await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.stop().await.unwrap();

    let record = seen.recv().await.unwrap();
    assert_eq!(&record.payload[..], b"{\"x\":1}");
    assert_eq!(record.key.as_deref(), Some(&b"k-7"[..]));
    assert_eq!(record.headers, vec![("h".to_owned(), bytes::Bytes::from_static(b"1"))]);
    assert_eq!(record.timestamp, Some(first_ms));
    // The entry without the payload field: failed, its payload the entry as JSON.
    assert_eq!(&failed.data().payload[..], b"{\"no-body\":\"y\"}");
    assert!(
        failed.failure().is_some_and(|f| f.contains("no field `body`")),
        "{:?}",
        failed.failure()
    );
    // Written back: payload, key, then the headers.
    let out = xrange(&mut c, &b).await;
    assert_eq!(out.len(), 1);
    let fields: Vec<(&str, &str)> = out[0].1.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(fields, [("payload", "{\"x\":1}"), ("key", "k-7"), ("h", "1")]);
    // Dead-lettered: acknowledged like the copied one.
    assert_eq!(pending_count(&mut c, &a, "g").await, 0);
    delete(&mut c, &[&a, &b]).await;
}

/// Checks every record still carries its origin on the way through.
struct Inspect;

impl ferroway::pipeline::Handler for Inspect {
    type Data = Record;
    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), ferroway::BoxError> {
        let md = m.metadata::<RedisMetadata>().ok_or("no RedisMetadata")?;
        if m.origin().is_none() || md.delivery_count != 1 {
            return Err("origin lost".into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_written_to_a_stream_says_why_and_where_from() {
    let mut c = redis().await;
    let (a, dlq) = (unique("dlq-a"), unique("dlq-b"));
    xadd_n(&mut c, &a, 0, 10).await;
    let opts = SourceOptions::new(url(), "g", [&a])
        .consumer("dlq")
        .block(Duration::from_millis(100));
    let p = Pipeline::builder("dlq", Refuse(3))
        .source(RedisSource::factory(opts).unwrap().records())
        .dead_letter(RedisSink::new(SinkOptions::new(url(), &dlq)).unwrap())
        .start()
        .await
        .unwrap();
    for _ in 0..1_000 {
        if xlen(&mut c, &dlq).await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.stop().await.unwrap();
    let out = xrange(&mut c, &dlq).await;
    assert_eq!(out.len(), 1, "{out:?}");
    let f: HashMap<&str, &str> = out[0].1.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let id3 = xrange(&mut c, &a).await[3].0.clone();
    assert_eq!(f["payload"], "{\"n\":\"3\"}");
    assert_eq!(f["dead_letter.reason"], "entry 3 refused");
    assert_eq!(f["dead_letter.pipeline"], "dlq");
    assert_eq!(f["dead_letter.stage"], "processor");
    assert_eq!((f["origin.stream"], f["origin.id"]), (a.as_str(), id3.as_str()));
    assert_eq!(f["origin.delivery_count"], "1");
    assert_eq!(
        pending_count(&mut c, &a, "g").await,
        0,
        "dead-lettered, then acknowledged"
    );
    delete(&mut c, &[&a, &dlq]).await;
}

/// Fails the record whose entry has `n` = the given number.
struct Refuse(u64);

impl ferroway::pipeline::Handler for Refuse {
    type Data = Record;
    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), ferroway::BoxError> {
        let v: serde_json::Value = serde_json::from_slice(&m.data().payload)?;
        if v["n"].as_str() == Some(&self.0.to_string()) {
            return Err(format!("entry {} refused", self.0).into());
        }
        Ok(())
    }
}
