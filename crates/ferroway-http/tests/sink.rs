//! The HTTP sink against axum servers on loopback: JSON array and NDJSON bodies with the
//! configured headers, gzip, retries honouring `Retry-After`, a refused batch failed as one,
//! bad records failed alone, an outage handed back as unavailable, the breaker opening, and
//! a pipeline whose batches outlive an outage with nothing dead-lettered.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use ferroway::connector::generator::Generator;
use ferroway::connector::{Record, Sink, Source};
use ferroway::error::is_unavailable;
use ferroway::pipeline::{Batcher, Forward, Message, Pipeline};
use ferroway::resilience::{Backoff, CircuitBreaker};
use ferroway_http::sink::{BodyFormat, HttpSink, HttpSinkOptions};

/// A request as the server saw it: headers and the body (gunzipped when it was gzipped).
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: String,
}

/// A server answering request `n` (from 0) with `answers[n]` (status, `Retry-After`), then
/// 200. Returns its URL and what it saw.
async fn server(answers: Vec<(u16, Option<u64>)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/in",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            let answers = answers.clone();
            async move {
                let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                    let mut text = String::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_string(&mut text)
                        .unwrap();
                    text
                } else {
                    String::from_utf8(body.to_vec()).unwrap()
                };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(Seen { headers, body });
                    log.len() - 1
                };
                let (status, after) = answers.get(n).copied().unwrap_or((200, None));
                let mut r = (StatusCode::from_u16(status).unwrap(), format!("answer {n}")).into_response();
                if let Some(a) = after {
                    r.headers_mut().insert("retry-after", a.into());
                }
                r
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn batch(payloads: &[&str]) -> Vec<Message<Record>> {
    payloads
        .iter()
        .map(|p| Message::new(Record::new(p.to_string())))
        .collect()
}

fn failures(batch: &[Message<Record>]) -> Vec<Option<String>> {
    batch.iter().map(|m| m.failure().map(|f| f.to_string())).collect()
}

#[tokio::test]
async fn a_batch_is_one_json_array_with_the_headers() {
    let (url, seen) = server(vec![]).await;
    let sink = HttpSink::new(HttpSinkOptions::new(url).bearer("t0ken").header("x-source", "ferroway")).unwrap();
    let mut b = batch(&[r#"{"a":1}"#, "2", r#""three""#]);
    sink.write(&mut b).await.unwrap();
    assert_eq!(failures(&b), [None, None, None]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].body, r#"[{"a":1},2,"three"]"#);
    assert_eq!(seen[0].headers["content-type"], "application/json");
    assert_eq!(seen[0].headers["authorization"], "Bearer t0ken");
    assert_eq!(seen[0].headers["x-source"], "ferroway");
}

#[tokio::test]
async fn ndjson_with_gzip_keeps_one_record_per_line() {
    let (url, seen) = server(vec![]).await;
    let sink = HttpSink::new(HttpSinkOptions::new(url).format(BodyFormat::Ndjson).gzip(true)).unwrap();
    let mut b = batch(&[r#"{"a":1}"#, "{\n  \"b\": 2\n}"]);
    sink.write(&mut b).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].headers["content-encoding"], "gzip");
    assert_eq!(seen[0].headers["content-type"], "application/x-ndjson");
    // The line breaks of a record spread over lines become spaces: the JSON is unchanged.
    assert_eq!(seen[0].body, "{\"a\":1}\n{   \"b\": 2 }\n");
}

#[tokio::test]
async fn busy_answers_are_retried_after_their_retry_after() {
    let (url, seen) = server(vec![(503, Some(1)), (429, None)]).await;
    let sink = HttpSink::new(HttpSinkOptions::new(url).retry(Duration::from_millis(10))).unwrap();
    let mut b = batch(&["1", "2"]);
    let started = Instant::now();
    sink.write(&mut b).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(failures(&b), [None, None]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "503, 429, then 200");
    assert!(seen.iter().all(|s| s.body == "[1,2]"));
}

#[tokio::test]
async fn a_refused_batch_fails_every_record_and_a_bad_record_fails_alone() {
    let (url, seen) = server(vec![(422, None)]).await;
    let sink = HttpSink::new(HttpSinkOptions::new(url)).unwrap();
    let mut b = batch(&["1", "not json", "3"]);
    sink.write(&mut b).await.unwrap();
    let f = failures(&b);
    assert_eq!(f[0].as_deref(), Some("HTTP 422 Unprocessable Entity: answer 0"));
    assert!(f[1].as_deref().unwrap().starts_with("the payload is not JSON"), "{f:?}");
    assert_eq!(f[2], f[0]);
    assert_eq!(seen.lock().unwrap()[0].body, "[1,3]", "the bad record was not sent");
}

#[tokio::test]
async fn an_outage_goes_back_as_unavailable_with_nothing_failed() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sink = HttpSink::new(
        HttpSinkOptions::new(format!("http://127.0.0.1:{port}/in"))
            .attempts(2)
            .retry(Duration::from_millis(10)),
    )
    .unwrap();
    let mut b = batch(&["1"]);
    let e = sink.write(&mut b).await.unwrap_err();
    assert!(is_unavailable(&*e), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert_eq!(failures(&b), [None], "an outage is not a bad record");
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_failures_and_stops_the_requests() {
    let (url, seen) = server(vec![(500, None); 100]).await;
    let breaker = CircuitBreaker::builder("test")
        .consecutive_failures(3)
        .open_backoff(Backoff::constant(Duration::from_secs(60)))
        .build();
    let sink = HttpSink::new(
        HttpSinkOptions::new(url)
            .attempts(2)
            .retry(Duration::from_millis(1))
            .breaker(breaker),
    )
    .unwrap();
    for _ in 0..2 {
        let e = sink.write(&mut batch(&["1"])).await.unwrap_err();
        assert!(is_unavailable(&*e), "{e}");
    }
    let made = seen.lock().unwrap().len();
    assert_eq!(made, 3, "the third failure opened it: the fourth attempt was not made");
    let e = sink.write(&mut batch(&["1"])).await.unwrap_err();
    assert!(is_unavailable(&*e));
    assert!(e.to_string().contains("circuit breaker is open"), "{e}");
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 3, "no request while open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_delivers_everything_through_an_outage_and_dead_letters_nothing() {
    // Three 503s without Retry-After, one attempt per write: the pipeline's own backoff keeps
    // the batches until the server takes them.
    let (url, seen) = server(vec![(503, None); 3]).await;
    let sink = HttpSink::new(HttpSinkOptions::new(url).attempts(1)).unwrap();
    let (tx, mut dead) = tokio::sync::mpsc::channel(1000);
    Pipeline::builder("http-sink", Forward::new())
        .source(Generator::new(200).map(Record::from))
        .sink(
            sink,
            Batcher::new("http")
                .batch_size(50)
                .batch_timeout(Duration::from_millis(20)),
        )
        .dead_letter(tx)
        .start()
        .await
        .unwrap()
        .join()
        .await
        .unwrap();
    assert!(dead.try_recv().is_err(), "nothing dead-lettered");
    let seen = seen.lock().unwrap();
    let mut delivered: Vec<u64> = seen[3..]
        .iter()
        .flat_map(|s| serde_json::from_str::<Vec<serde_json::Value>>(&s.body).unwrap())
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(delivered, (1..=200).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_wrong_url_or_credentials_or_a_redirect_keep_the_batch_for_later() {
    for status in [404, 401, 302] {
        let (url, seen) = server(vec![(status, None); 10]).await;
        let sink = HttpSink::new(HttpSinkOptions::new(url).attempts(1)).unwrap();
        let mut b = batch(&["1"]);
        let e = sink.write(&mut b).await.unwrap_err();
        assert!(is_unavailable(&*e), "{status}: {e}");
        assert!(e.to_string().contains(&format!("HTTP {status}")), "{e}");
        assert_eq!(failures(&b), [None], "{status} is not the record's fault");
        assert_eq!(seen.lock().unwrap().len(), 1, "a redirect is not followed");
    }
}
