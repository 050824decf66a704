//! What an operator sees: startup lines, errors with their root cause, rate-limited warnings,
//! no secrets, readable dead letters.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::connector::DeadLetterWriter;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::pipeline::Pipeline;
use ferroway::resilience::Backoff;
use ferroway::stage::Producer;
use ferroway_redis::{Entry, OptionsError, RedisSource, SinkOptions, SourceOptions};
use support::{Recorder, delete, redis, unique, url, xadd_n};

/// Everything logged while the guard lives, on this thread (tests here run on a
/// current-thread runtime, so the source's tasks log here too).
///
/// One global subscriber routes each thread's events to that thread's capture. A subscriber
/// per test (`set_default`) is not enough: tracing caches whether a call site is enabled when
/// it is first hit, and a test without a subscriber that hits a call site while another test
/// installs its own can leave it cached as disabled for every thread. So every test of this
/// file calls [`init`] first: the global subscriber exists before any call site is hit.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

/// Installs the routing subscriber, once, before anything in this test binary logs.
fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("ferroway=info,ferroway_redis=info")
            .with_writer(|| ThisThread)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    });
}

/// Writes to the capture of the thread it runs on, if any.
struct ThisThread;

impl Write for ThisThread {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = &*c.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing on drop.
struct Capturing;

impl Drop for Capturing {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

impl Logs {
    fn capture(&self) -> Capturing {
        init();
        CAPTURE.with(|c| *c.borrow_mut() = Some(self.clone()));
        Capturing
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn lines(&self, level: &str, containing: &str) -> usize {
        self.text()
            .lines()
            .filter(|l| l.contains(level) && l.contains(containing))
            .count()
    }
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached in 10 s");
}

#[test]
fn a_url_without_a_scheme_is_refused_at_validation_saying_so() {
    init();
    for url in ["127.0.0.1:6379", "app:hunter2@cache:6379", "http://cache:6379"] {
        let e = SourceOptions::new(url, "g", ["s"]).validate().unwrap_err();
        assert!(matches!(e, OptionsError::UrlScheme { .. }), "{url}: {e:?}");
        let shown = e.to_string();
        assert!(shown.contains("must start with redis://"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(SinkOptions::new(url, "s").validate().is_err());
    }
    let tls = SourceOptions::new("rediss://cache:6380", "g", ["s"]).validate();
    if cfg!(feature = "tls") {
        tls.unwrap();
    } else {
        assert!(tls.unwrap_err().to_string().contains("the `tls` feature"));
    }
}

#[tokio::test]
async fn a_source_that_gives_up_reconnecting_says_why() {
    init();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = SourceOptions::new(format!("redis://127.0.0.1:{port}"), "g", ["s"])
        .reconnect(Backoff::constant(Duration::from_millis(10)).take(2));
    let mut source = RedisSource::new(o).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), source.handle_demand(10))
        .await
        .expect("gives up quickly")
        .unwrap_err();
    let shown = ferroway::error::Chain(&*e).to_string();
    assert!(
        shown.contains(&format!("gave up reconnecting to redis://127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(shown.to_lowercase().contains("refused"), "the root cause: {shown}");
}

/// Handles nothing: the pipeline below never gets a message.
struct Nothing;

impl ferroway::pipeline::Handler for Nothing {
    type Data = Entry;
    async fn handle_message(&self, _: &mut ferroway::pipeline::Message<Entry>) -> Result<(), ferroway::BoxError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_pipeline_whose_redis_never_answers_with_default_reconnects_returns_the_error() {
    init();
    // A wrong port, the default reconnect policy (never gives up): without a connect
    // timeout this pipeline waits silently for ever.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = SourceOptions::new(format!("redis://127.0.0.1:{port}"), "g", ["s"]).connect_timeout(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let p = Pipeline::builder("wrong-port", Nothing)
        .source(RedisSource::factory(o).unwrap())
        .start()
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), p.run_until(std::future::pending()))
        .await
        .expect("the error reaches the caller")
        .unwrap_err();
    let shown = ferroway::error::Chain(&e).to_string();
    assert!(
        shown.contains(&format!("could not reach redis://127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(shown.to_lowercase().contains("refused"), "the root cause: {shown}");
    // 2 s for the first source; its restarts fail at once (after the supervisor's backoff).
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "current_thread")]
async fn startup_is_logged_and_secrets_are_not() {
    init();
    let logs = Logs::default();
    let _guard = logs.capture();
    let mut c = redis().await;
    let stream = unique("logs");
    xadd_n(&mut c, &stream, 0, 5).await;
    let rec = Recorder::default();
    let o = SourceOptions::new(url(), "g", [&stream]).consumer("logged");
    let p = Pipeline::builder("logs", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .start()
        .await
        .unwrap();
    wait_for(|| rec.numbers().len() >= 5).await;
    p.stop().await.unwrap();
    assert_eq!(logs.lines("INFO", "connecting to Redis"), 2, "{}", logs.text()); // reads and acks
    assert_eq!(logs.lines("INFO", "created consumer group"), 1, "{}", logs.text());
    assert_eq!(logs.lines("INFO", "left the consumer group"), 1, "{}", logs.text());
    delete(&mut c, &[&stream]).await;

    // Redis here has no password: AUTH fails, and is logged without the secret.
    let secret = url().replace("redis://", "redis://:hunter2@");
    let mut source = RedisSource::new(SourceOptions::new(secret, "g", ["s"])).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(1), source.handle_demand(10)).await;
    drop(source);
    let text = logs.text();
    assert!(text.contains("connect failed"), "{text}");
    assert!(text.contains(":***@"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_warning_repeated_by_every_lost_connection_is_logged_once() {
    init();
    let logs = Logs::default();
    let _guard = logs.capture();
    let mut c = redis().await;
    let stream = unique("throttle");
    let consumer = format!("throttled-{:08x}", fastrand::u32(..));
    let rec = Recorder::default();
    let o = SourceOptions::new(url(), "g", [&stream]).consumer(&consumer);
    let p = Pipeline::builder("throttle", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .start()
        .await
        .unwrap();
    let mut killed = 0;
    for _ in 0..500 {
        if killed == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        for id in support::client_ids(&mut c, &consumer).await {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut c)
                .await
                .unwrap();
            killed += 1;
        }
    }
    assert_eq!(killed, 5);
    // Still reading after all that.
    xadd_n(&mut c, &stream, 0, 5).await;
    wait_for(|| rec.numbers().len() >= 5).await;
    p.stop().await.unwrap();
    let warnings = logs.lines("WARN", "ferroway_redis");
    assert_eq!(warnings, 1, "{}", logs.text());
    delete(&mut c, &[&stream]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_name_the_stream_and_entry_and_show_the_fields_as_json() {
    init();
    let mut c = redis().await;
    let stream = unique("dead-letter");
    xadd_n(&mut c, &stream, 0, 5).await;
    let ids: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    let path = std::env::temp_dir().join(format!("{stream}.dead.ndjson"));
    let sink = FileSink::open(&path, FileSinkOptions::new()).await.unwrap();
    let rec = Recorder::failing(|n| n == 3);
    let o = SourceOptions::new(url(), "g", [&stream])
        .consumer("dead")
        .block(Duration::from_millis(100));
    let p = Pipeline::builder("dead-letter", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .dead_letter(DeadLetterWriter::new(sink, |e: &Entry| e.to_json().into_bytes()))
        .start()
        .await
        .unwrap();
    wait_for(|| rec.numbers().len() >= 5).await;
    p.stop().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let record: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(record["origin"]["stream"], stream.as_str(), "{record}");
    assert_eq!(record["origin"]["id"], ids[3].0.as_str(), "{record}");
    assert_eq!(record["origin"]["delivery_count"], "1", "{record}");
    assert_eq!(record["data"], r#"{"n":"3"}"#, "{record}");
    assert_eq!(
        format!(
            "{:?}",
            Entry {
                fields: vec![("n".into(), b"3".to_vec())]
            }
        ),
        r#"Entry {"n": "3"}"#
    );
    std::fs::remove_file(&path).unwrap();
    delete(&mut c, &[&stream]).await;
}
