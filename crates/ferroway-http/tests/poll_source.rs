//! The polling source against an axum server on loopback: pages chained by token with an
//! incremental cursor (new records found by the next poll, none twice), `Link` header
//! pages, the cursor file kept after acknowledgement and used by the next process, a 503
//! waited out and a 404 refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_http::poll::{Pagination, PollOptions, PollSource, SourceError};

/// A status and its `Retry-After`.
type Answer = (u16, Option<u64>);

/// The server's records (`{"id": i}`), the queries it was asked, and answers to give first.
#[derive(Clone, Default)]
struct Api {
    records: Arc<Mutex<u64>>,
    asked: Arc<Mutex<Vec<HashMap<String, String>>>>,
    first: Arc<Mutex<Vec<Answer>>>,
}

const PAGE: u64 = 10;

/// `GET /orders?since=&page=`: records after `since`, ten per page, `next` the token of the
/// following page.
async fn orders(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> Response {
    api.asked.lock().unwrap().push(q.clone());
    if let Some((status, after)) = {
        let mut first = api.first.lock().unwrap();
        (!first.is_empty()).then(|| first.remove(0))
    } {
        let mut r = (StatusCode::from_u16(status).unwrap(), "not now").into_response();
        if let Some(a) = after {
            r.headers_mut().insert("retry-after", a.into());
        }
        return r;
    }
    let total = *api.records.lock().unwrap();
    let from = q.get("since").map_or(0, |s| s.parse::<u64>().unwrap() + 1);
    let from = q.get("page").map_or(from, |p| p.parse().unwrap());
    let to = (from + PAGE).min(total);
    let data: Vec<serde_json::Value> = (from..to).map(|i| serde_json::json!({ "id": i })).collect();
    let next = (to < total).then(|| to.to_string());
    axum::Json(serde_json::json!({ "data": data, "next": next })).into_response()
}

/// `GET /plain?page=`: a plain array per page, the next in a `Link` header.
async fn plain(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> Response {
    api.asked.lock().unwrap().push(q.clone());
    let total = *api.records.lock().unwrap();
    let from: u64 = q.get("page").map_or(0, |p| p.parse().unwrap());
    let to = (from + PAGE).min(total);
    let data: Vec<serde_json::Value> = (from..to).map(|i| serde_json::json!({ "id": i })).collect();
    let mut headers = HeaderMap::new();
    if to < total {
        headers.insert(
            "link",
            format!(r#"</plain?page={to}>; rel="next", </plain?page=0>; rel="first""#)
                .parse()
                .unwrap(),
        );
    }
    (headers, axum::Json(data)).into_response()
}

async fn server(records: u64) -> (String, Api) {
    let api = Api::default();
    *api.records.lock().unwrap() = records;
    let app = Router::new()
        .route("/orders", get(orders))
        .route("/plain", get(plain))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, api)
}

/// The ids it handled; sleeps `.1` per record.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<u64>>>, Duration);

impl Collect {
    fn ids(&self) -> Vec<u64> {
        self.0.lock().unwrap().clone()
    }
}

impl Handler for Collect {
    type Data = Record;
    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        tokio::time::sleep(self.1).await;
        let v: serde_json::Value = serde_json::from_slice(&m.data().payload)?;
        self.0.lock().unwrap().push(v["id"].as_u64().ok_or("no id")?);
        Ok(())
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn orders_opts(base: &str) -> PollOptions {
    PollOptions::new(format!("{base}/orders"))
        .records_field("data")
        .pagination(Pagination::Token {
            field: "next".into(),
            param: "page".into(),
        })
        .cursor("id", "since")
        .interval(Duration::from_millis(100))
}

async fn start(opts: PollOptions, handler: Collect) -> Pipeline<Record> {
    // A small demand: what a stop drains is a few records, not every page fetched.
    Pipeline::builder("poll-test", handler)
        .source(PollSource::factory(opts).unwrap())
        .processors(Processors::new().concurrency(1).max_demand(5))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_then_new_records_on_the_next_poll_each_once() {
    let (base, api) = server(35).await;
    let handler = Collect::default();
    let pipeline = start(orders_opts(&base), handler.clone()).await;
    until("the first 35", || handler.ids().len() >= 35).await;
    *api.records.lock().unwrap() = 42;
    until("the 7 new ones", || handler.ids().len() >= 42).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    pipeline.stop().await.unwrap();
    assert_eq!(handler.ids(), (0..42).collect::<Vec<_>>(), "each once, in order");
    let asked = api.asked.lock().unwrap();
    assert_eq!(asked[0], HashMap::new(), "the first poll has no cursor");
    assert_eq!(asked[1]["page"], "10");
    assert!(
        asked
            .iter()
            .any(|q| q.get("since").map(String::as_str) == Some("34") && !q.contains_key("page")),
        "a later poll starts after the last record read: {asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_headers_chain_the_pages() {
    let (base, api) = server(25).await;
    let handler = Collect::default();
    let pipeline = start(
        PollOptions::new(format!("{base}/plain"))
            .pagination(Pagination::LinkHeader)
            .interval(Duration::from_secs(60)),
        handler.clone(),
    )
    .await;
    until("every record", || handler.ids().len() >= 25).await;
    pipeline.stop().await.unwrap();
    assert_eq!(handler.ids(), (0..25).collect::<Vec<_>>());
    assert_eq!(api.asked.lock().unwrap().len(), 3, "three pages, then the interval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_file_holds_the_last_finished_record_for_the_next_process() {
    let file = std::env::temp_dir().join(format!("ferroway-poll-{}.cursor", std::process::id()));
    let _ = std::fs::remove_file(&file);
    // Slow enough (2 ms a record) that the first process stops mid-way.
    let (base, api) = server(300).await;
    let slow = Duration::from_millis(2);
    let first = Collect(Arc::default(), slow);
    let pipeline = start(orders_opts(&base).cursor_file(&file), first.clone()).await;
    until("a page", || first.ids().len() >= 10).await;
    pipeline.stop().await.unwrap();
    let cursor: u64 = std::fs::read_to_string(&file).unwrap().trim().parse().unwrap();
    assert_eq!(cursor, *first.ids().last().unwrap());
    assert!(cursor < 299, "stopped mid-way");
    let asked_before = api.asked.lock().unwrap().len();
    let second = Collect(Arc::default(), slow);
    let pipeline = start(orders_opts(&base).cursor_file(&file), second.clone()).await;
    until("the rest", || second.ids().last() == Some(&299)).await;
    pipeline.stop().await.unwrap();
    assert_eq!(second.ids(), (cursor + 1..300).collect::<Vec<_>>());
    assert_eq!(api.asked.lock().unwrap()[asked_before]["since"], cursor.to_string());
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "299");
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_waited_out_and_a_404_refused() {
    let (base, api) = server(5).await;
    api.first.lock().unwrap().push((503, Some(1)));
    let handler = Collect::default();
    let started = std::time::Instant::now();
    let pipeline = start(orders_opts(&base), handler.clone()).await;
    until("the records after the 503", || handler.ids().len() >= 5).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 honoured");
    pipeline.stop().await.unwrap();

    api.first.lock().unwrap().push((404, None));
    let source = PollSource::factory(orders_opts(&base)).unwrap();
    let mut producer = source.producer(0).unwrap();
    let e = ferroway::stage::Producer::handle_demand(&mut producer, 10)
        .await
        .unwrap_err();
    let e = e.downcast::<SourceError>().unwrap();
    assert!(matches!(*e, SourceError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("HTTP 404"), "{e}");
}
