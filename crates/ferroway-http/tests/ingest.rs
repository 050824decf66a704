//! The ingest server with a real pipeline behind it, driven by a real HTTP client over
//! loopback: answers only after acknowledgement, failures listed, 503 without demand,
//! the body limit, bearer auth, the body formats, and a stop that answers what it took.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::Record;
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_http::ingest::{IngestMetadata, IngestOptions, IngestSource};
use tokio::sync::Semaphore;

/// Records the payloads it handles; fails those containing `bad`; waits for a permit of
/// `gate` per message (tests open it to let the pipeline go on).
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<(String, usize)>>>,
    gate: Arc<Semaphore>,
}

impl Recorder {
    fn open() -> Self {
        Self::gated(Semaphore::MAX_PERMITS)
    }
    fn gated(permits: usize) -> Self {
        Recorder {
            seen: Arc::default(),
            gate: Arc::new(Semaphore::new(permits)),
        }
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
    }
}

impl Handler for Recorder {
    type Data = Record;
    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        self.gate.acquire().await?.forget();
        let payload = String::from_utf8_lossy(&m.data().payload).into_owned();
        let index = m.metadata::<IngestMetadata>().expect("ingest metadata").index;
        self.seen.lock().unwrap().push((payload.clone(), index));
        if payload.contains("bad") {
            m.fail(format!("refused {payload}"));
        }
        Ok(())
    }
}

async fn start(opts: IngestOptions, handler: Recorder, demand: usize) -> (Pipeline<Record>, String) {
    let source = IngestSource::bind(opts).unwrap();
    let url = format!("http://{}/in", source.local_addr());
    let pipeline = Pipeline::builder("ingest-test", handler)
        .source(source)
        .processors(Processors::new().concurrency(1).max_demand(demand))
        .start()
        .await
        .unwrap();
    (pipeline, url)
}

fn opts() -> IngestOptions {
    IngestOptions::new("127.0.0.1:0").path("/in")
}

/// A client (plain HTTP; the crate leaves the TLS provider to the application).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post(url: &str, content_type: &str, body: &str) -> (u16, Option<String>, serde_json::Value) {
    let r = client()
        .post(url)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON answer: {text}"));
    (status, retry_after, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_comes_only_once_the_pipeline_finished_every_record() {
    let handler = Recorder::gated(0);
    let (pipeline, url) = start(opts(), handler.clone(), 10).await;
    let request = tokio::spawn(async move { post(&url, "application/json", r#"[{"n":1},{"n":2},{"n":3}]"#).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !request.is_finished(),
        "answered before the pipeline handled the records"
    );
    handler.gate.add_permits(3);
    let (status, _, body) = request.await.unwrap();
    assert_eq!((status, body), (200, serde_json::json!({ "accepted": 3 })));
    assert_eq!(handler.seen(), [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_records_are_listed_by_index_with_a_500() {
    let (pipeline, url) = start(opts(), Recorder::open(), 10).await;
    let (status, _, body) = post(&url, "application/json", r#"["ok", "bad-1", "ok", "bad-3"]"#).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "2 of 4 records failed");
    assert_eq!(body["failed"][0]["index"], 1);
    assert_eq!(body["failed"][0]["reason"], r#"refused "bad-1""#);
    assert_eq!(body["failed"][1]["index"], 3);
    assert_eq!(body["failed"].as_array().unwrap().len(), 2);
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_demand_requests_get_503_with_retry_after_and_nothing_piles_up() {
    let handler = Recorder::gated(0);
    let (pipeline, url) = start(opts().retry_after(Duration::from_secs(2)), handler.clone(), 2).await;
    let mut admitted = Vec::new();
    let mut refused = None;
    // A stuck pipeline: every request either waits in it or is turned away.
    for i in 0..50 {
        let url = url.clone();
        let r = tokio::spawn(async move { post(&url, "application/json", &format!("[{i}]")).await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        if r.is_finished() {
            refused = Some(r.await.unwrap());
            break;
        }
        admitted.push(r);
    }
    let (status, retry_after, body) = refused.expect("a request was refused");
    assert_eq!(status, 503);
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert_eq!(body["error"], "the pipeline is busy; retry later");
    // The pipeline's demand (a processor asking for 2, the producer's buffer) bounds what
    // the server took in; far fewer than the 50 a buffering server would have.
    assert!(
        (1..=8).contains(&admitted.len()),
        "{} requests taken into a stuck pipeline",
        admitted.len()
    );
    handler.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    for r in admitted {
        assert_eq!(r.await.unwrap().0, 200);
    }
    // Demand is back: the server takes requests again.
    assert_eq!(post(&url, "application/json", "[1]").await.0, 200);
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_413_and_reaches_nothing() {
    let handler = Recorder::open();
    let (pipeline, url) = start(opts().max_body_bytes(100), handler.clone(), 10).await;
    let big = format!("[\"{}\"]", "x".repeat(200));
    let (status, _, body) = post(&url, "application/json", &big).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "the body is larger than 100 bytes");
    assert_eq!(post(&url, "application/json", "[\"small\"]").await.0, 200);
    assert_eq!(handler.seen(), ["\"small\""]);
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_is_required_when_configured() {
    let handler = Recorder::open();
    let (pipeline, url) = start(opts().bearer("t0ken"), handler.clone(), 10).await;
    let client = client();
    let send = |auth: Option<&'static str>| {
        let mut r = client.post(&url).header("content-type", "application/json").body("[1]");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        async move { r.send().await.unwrap() }
    };
    let none = send(None).await;
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(send(Some("Bearer t0ke")).await.status(), 401);
    assert_eq!(send(Some("Bearer t0ken2")).await.status(), 401);
    assert_eq!(send(Some("Basic t0ken")).await.status(), 401);
    assert_eq!(send(Some("Bearer t0ken")).await.status(), 200);
    assert_eq!(
        handler.seen(),
        ["1"],
        "only the authorized request reached the pipeline"
    );
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_ndjson_and_raw_bodies_become_records_and_bad_json_is_named() {
    let handler = Recorder::open();
    let (pipeline, url) = start(opts(), handler.clone(), 10).await;
    let (status, _, body) = post(&url, "application/x-ndjson", "{\"a\":1}\r\n\n  \n[2,3]\n\"four\"").await;
    assert_eq!((status, body), (200, serde_json::json!({ "accepted": 3 })));
    assert_eq!(post(&url, "application/json", " {\"one\": [1, 2]} \n").await.0, 200);
    assert_eq!(post(&url, "text/plain", "just text").await.0, 200);
    assert_eq!(
        handler.seen(),
        ["{\"a\":1}", "[2,3]", "\"four\"", "{\"one\": [1, 2]}", "just text"]
    );

    let (status, _, body) = post(&url, "application/x-ndjson", "{\"a\":1}\n{\"b\":\n").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("line 2: not JSON"),
        "{body}"
    );
    let (status, _, body) = post(&url, "application/json", "[1, 2,]").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("not a JSON array of records"),
        "{body}"
    );
    assert_eq!(
        post(&url, "application/json", "[]").await.2,
        serde_json::json!({ "accepted": 0 })
    );
    assert_eq!(handler.seen().len(), 5, "nothing from the refused requests");
    pipeline.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_answers_the_requests_taken_and_then_closes() {
    let handler = Recorder::gated(0);
    let (pipeline, url) = start(opts(), handler.clone(), 10).await;
    let taken = {
        let url = url.clone();
        tokio::spawn(async move { post(&url, "application/json", "[1, 2]").await })
    };
    // Its records reach the (held) handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(async move { pipeline.stop().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "the stop waits for the records taken");
    handler.gate.add_permits(2);
    assert_eq!(taken.await.unwrap().0, 200, "what was taken is answered");
    stopping.await.unwrap().unwrap();
    assert_eq!(handler.seen(), ["1", "2"]);
    let after = client().post(&url).body("[3]").send().await;
    assert!(after.is_err(), "the server is closed: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_max_requests_get_503_at_once() {
    let handler = Recorder::gated(0);
    let (pipeline, url) = start(opts().max_requests(1), handler.clone(), 10).await;
    let first = {
        let url = url.clone();
        tokio::spawn(async move { post(&url, "application/json", "[1]").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The pipeline has demand left, but one request is all the server takes at once.
    let (status, retry_after, body) = post(&url, "application/json", "[2]").await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert_eq!(body["error"], "too many requests in progress; retry later");
    handler.gate.add_permits(10);
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(post(&url, "application/json", "[3]").await.0, 200);
    assert_eq!(handler.seen(), ["1", "3"]);
    pipeline.stop().await.unwrap();
}
