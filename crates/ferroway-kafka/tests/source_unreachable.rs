//! A source whose brokers cannot be reached: a few rate-limited warnings saying why (not dozens
//! a second), and, when it never reached a broker, a failure the application sees.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use ferroway::error::Chain;
use ferroway::pipeline::Pipeline;
use ferroway_kafka::{Connection, KafkaSource, KafkaSourceOptions};

/// Every log line of this test process (a global subscriber: the source logs from its own
/// thread).
fn log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || Capture(w.clone()))
            .init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines mentioning `needle`.
fn lines(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&log().lock().unwrap())
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// An address nothing listens on: connections are refused.
fn refused() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_reported_a_few_times_not_dozens_a_second() {
    log();
    let (addr, group) = (refused(), unique("unreachable-g"));
    // Default options.
    let source = KafkaSource::factory(KafkaSourceOptions::new(
        Connection::new(addr.clone()),
        group.clone(),
        ["t"],
    ))
    .unwrap();
    let (handler, _rx) = Collect::new();
    let p = Pipeline::builder("unreachable", handler)
        .source(source)
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let warnings: Vec<String> = lines(&group)
        .into_iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    p.stop().await.unwrap();
    let all = lines(&group);
    assert!(
        all.iter()
            .any(|l| l.contains("Kafka source connecting") && l.contains(&addr)),
        "INFO at start names the servers: {all:#?}"
    );
    assert!(
        warnings.iter().any(|l| l.contains("Connection refused")),
        "the cause is logged: {warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("still waiting for partition assignment after")),
        "what the source waits for is logged: {warnings:#?}"
    );
    // librdkafka retries every broker with backoff from 100 ms and reports each failure
    // (twice, through rdkafka): about 39 warnings a second were logged. One per kind per 10 s.
    assert!(
        warnings.len() <= 12,
        "{} warnings in 12 s: {warnings:#?}",
        warnings.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_never_reaches_a_broker_fails_the_pipeline_naming_the_servers() {
    log();
    let (addr, group) = (refused(), unique("never-g"));
    let opts =
        KafkaSourceOptions::new(Connection::new(addr.clone()), group, ["t"]).connect_timeout(Duration::from_secs(5));
    let source = KafkaSource::factory(opts).unwrap();
    let (handler, _rx) = Collect::new();
    let p = Pipeline::builder("never", handler)
        .source(source)
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(60), p.join())
        .await
        .expect("the pipeline reports the unreachable cluster instead of waiting silently");
    let e = r.expect_err("an unreachable cluster fails the pipeline");
    let shown = Chain(&e).to_string();
    eprintln!("failed after {:?}: {shown}", started.elapsed());
    assert!(shown.contains(&addr), "the error names the servers: {shown}");
    assert!(shown.contains("no broker answered"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_the_source_reads_again() {
    log();
    let mut broker = PrivateBroker::start();
    let (topic, group) = (unique("restart"), unique("restart-g"));
    create_topic_on(&broker.addr(), &topic, 1).await;
    let addr = broker.addr();
    let send = |tag: &'static str| {
        let sink = ferroway_kafka::KafkaSink::new(
            ferroway_kafka::KafkaSinkOptions::new(Connection::new(addr.clone())).topic(&topic),
        )
        .unwrap();
        async move {
            let mut msgs: Vec<_> = (0..10)
                .map(|i| ferroway::pipeline::Message::new(format!("{tag}{i}").into_bytes()))
                .collect();
            sink.send_batch(&mut msgs).await.expect("produce");
        }
    };
    send("a").await;
    // Default options.
    let source = KafkaSource::factory(KafkaSourceOptions::new(
        Connection::new(broker.addr()),
        group,
        [topic.clone()],
    ))
    .unwrap();
    let (handler, mut rx) = Collect::new();
    let p = Pipeline::builder("restart", handler)
        .source(source)
        .start()
        .await
        .unwrap();
    let mut seen = std::collections::HashMap::new();
    eventually(60, "the records before the restart", || {
        drain(&mut rx, &mut seen);
        seen.len() == 10
    })
    .await;

    // Connections refused for 5 s, then the broker is back with its topic.
    broker.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.restart();
    send("b").await;
    let started = Instant::now();
    eventually(60, "the records sent after the restart", || {
        drain(&mut rx, &mut seen);
        (0..10).all(|i| seen.contains_key(&format!("b{i}")))
    })
    .await;
    eprintln!("read again {:?} after the records were sent", started.elapsed());
    p.stop().await.unwrap();
}
