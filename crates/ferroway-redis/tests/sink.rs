//! The XADD sink against a real Redis server.

mod support;

use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::testing::{Outcome, TestProducer};
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline};
use ferroway_redis::{RedisSink, SinkOptions, Trim};
use support::{delete, redis, unique, url};

struct Forward(RedisSink);

impl Handler for Forward {
    type Data = u64;
    async fn handle_message(&self, _: &mut Message<u64>) -> Result<(), BoxError> {
        Ok(())
    }
    async fn handle_batch(&self, batch: &mut [Message<u64>], _: &BatchInfo) -> Result<(), BoxError> {
        self.0
            .send(batch, |m| vec![("n".to_owned(), m.data().to_string().into_bytes())])
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_added_in_order_and_acknowledged_after_redis_confirmed() {
    let mut c = redis().await;
    let stream = unique("sink");
    let sink = RedisSink::new(SinkOptions::new(url(), &stream)).unwrap();
    let p = Pipeline::builder("sink", Forward(sink))
        .producer(TestProducer::new)
        .batcher(
            Batcher::new("out")
                .batch_size(100)
                .batch_timeout(Duration::from_millis(20)),
        )
        .start()
        .await
        .unwrap();
    let outcomes = p.push_messages(0..1_000).outcomes().await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Successful));
    p.stop().await.unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
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
