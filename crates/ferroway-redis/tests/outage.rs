//! Redis going away is an outage, not a bad message: against a Redis server of the test's own
//! (append-only file, fsync always), killed and restarted on the same port with its data.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use ferroway::connector::{Record, Sink};
use ferroway::error::is_unavailable;
use ferroway::pipeline::testing::{Outcome, TestProducer};
use ferroway::pipeline::{Batcher, Forward, Message, Pipeline, Processors};
use ferroway_redis::{Entry, RedisSink, RedisSource, SinkOptions, SourceOptions};
use support::{Recorder, RedisServer, pending_count, xadd_n};
use tokio::sync::mpsc;

async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_whose_redis_is_down_for_30_s_loses_nothing_and_dead_letters_nothing() {
    let mut server = RedisServer::start();
    let sink = RedisSink::new(SinkOptions::new(server.url(), "out")).unwrap();
    let (dead_tx, mut dead_rx) = mpsc::channel::<Message<String>>(1_000);
    let p = Pipeline::builder("sink-outage", Forward::new())
        .producer(TestProducer::new)
        .sink(
            sink,
            Batcher::new("out")
                .batch_size(50)
                .batch_timeout(Duration::from_millis(20)),
        )
        .dead_letter(dead_tx)
        .start()
        .await
        .unwrap();
    let numbers = |r: std::ops::Range<u64>| r.map(|n| n.to_string());
    let before = p.push_messages(numbers(0..500)).outcomes().await;
    assert!(before.iter().all(|o| *o == Outcome::Successful));

    server.kill();
    // Panics if a message is acknowledged twice.
    let during = tokio::spawn(p.push_messages(numbers(500..1_000)).outcomes());
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!during.is_finished(), "messages were acknowledged while Redis was down");
    server.restart();
    let outcomes = tokio::time::timeout(Duration::from_secs(60), during)
        .await
        .expect("acknowledged once Redis is back")
        .unwrap();
    let failed: Vec<_> = outcomes.iter().filter(|o| **o != Outcome::Successful).collect();
    assert!(failed.is_empty(), "{} failed, e.g. {:?}", failed.len(), failed[0]);
    p.stop().await.unwrap();
    assert!(
        dead_rx.try_recv().is_err(),
        "a message was dead-lettered because of the outage"
    );

    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("out")
        .arg("-")
        .arg("+")
        .query_async(&mut connect(&server.url()).await)
        .await
        .unwrap();
    let written: HashSet<u64> = entries.iter().map(|(_, f)| f[0].1.parse().unwrap()).collect();
    assert_eq!(written, (0..1_000).collect::<HashSet<_>>(), "nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_reports_an_outage_as_unavailable_and_a_refused_entry_as_its_own_failure() {
    let mut server = RedisServer::start();
    let sink = RedisSink::new(SinkOptions::new(server.url(), "out")).unwrap();
    let one = vec![vec![("n".to_owned(), b"1".to_vec())]];
    assert!(sink.add(&one).await.unwrap()[0].is_ok());
    server.kill();
    let e = sink.add(&one).await.unwrap_err();
    assert!(is_unavailable(&e), "{e}");
    let shown = ferroway::error::Chain(&e).to_string();
    assert!(shown.contains(&server.url()), "{shown}");
    // The same through the connector contract, no message marked.
    let mut records = vec![Message::new(Record::new("1"))];
    let e = Sink::write(&sink, &mut records).await.unwrap_err();
    assert!(is_unavailable(&*e), "{e}");
    assert!(!records[0].is_failed());

    server.restart();
    let mut c = connect(&server.url()).await;
    let _: () = redis::cmd("SET")
        .arg("text")
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    let wrong = RedisSink::new(SinkOptions::new(server.url(), "text")).unwrap();
    let mut batch = vec![Message::new(1u64)];
    wrong
        .send(&mut batch, |m| vec![("n".into(), m.data().to_string().into_bytes())])
        .await
        .unwrap();
    assert!(batch[0].failure().is_some_and(|f| f.contains("WRONGTYPE")));
    let mut records = vec![Message::new(Record::new("1"))];
    Sink::write(&wrong, &mut records).await.unwrap();
    assert!(records[0].failure().is_some_and(|f| f.contains("WRONGTYPE")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_whose_redis_goes_away_pauses_and_fails_nothing() {
    let mut server = RedisServer::start();
    let mut c = connect(&server.url()).await;
    xadd_n(&mut c, "in", 0, 300).await;
    let rec = Recorder::default();
    let (dead_tx, mut dead_rx) = mpsc::channel::<Message<Entry>>(1_000);
    // Default options.
    let o = SourceOptions::new(server.url(), "g", ["in"]).consumer("paused");
    let p = Pipeline::builder("source-outage", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .processors(Processors::new().concurrency(2))
        .dead_letter(dead_tx)
        .start()
        .await
        .unwrap();
    let unique = |rec: &Recorder| rec.numbers().into_iter().collect::<HashSet<_>>().len();
    wait_for("first entries", Duration::from_secs(10), || unique(&rec) >= 300).await;

    server.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    server.restart();
    let mut c = connect(&server.url()).await;
    xadd_n(&mut c, "in", 300, 600).await;
    wait_for("entries after the outage", Duration::from_secs(60), || {
        unique(&rec) >= 600
    })
    .await;
    p.stop().await.unwrap();

    assert!(
        dead_rx.try_recv().is_err(),
        "an entry was dead-lettered because of the outage"
    );
    assert_eq!(pending_count(&mut c, "in", "g").await, 0, "every entry acknowledged");
    let got: HashSet<u64> = rec.numbers().into_iter().collect();
    assert_eq!(got, (0..600).collect::<HashSet<_>>());
    let duplicates = rec.numbers().len() - got.len();
    eprintln!("duplicates after the outage: {duplicates}");
}
