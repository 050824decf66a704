//! `http-ingest`: clients posting NDJSON requests to the ingest server with a pipeline
//! behind it (each answered once the pipeline finished its records), against a bare axum
//! handler that reads and splits the same bodies and answers at once, same run, same
//! clients. Records: `FERROWAY_BENCH_INGEST_RECORDS` (default 1,000,000), 100 per request,
//! 16 clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use ferroway::BoxError;
use ferroway::connector::Record;
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_http::ingest::{Format, IngestOptions, IngestSource};

use crate::report::Report;

const PER_REQUEST: u64 = 100;
const CLIENTS: u64 = 16;

fn records() -> u64 {
    std::env::var("FERROWAY_BENCH_INGEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The `seq` of a record `{"seq":i,...}`: the checksum both sides sum.
fn seq(payload: &[u8]) -> u64 {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.strip_prefix("{\"seq\":"))
        .and_then(|r| r.split(',').next())
        .and_then(|v| v.parse().ok())
        .expect("a bench record")
}

/// Request `r`'s body: records `r*100 .. r*100+100`, about 60 bytes each.
fn body(r: u64) -> String {
    (r * PER_REQUEST..(r + 1) * PER_REQUEST)
        .map(|i| format!("{{\"seq\":{i},\"sym\":\"FWAY\",\"qty\":{}}}\n", i % 97))
        .collect()
}

/// Posts every request from `CLIENTS` clients on a thread and runtime of their own; retries
/// a `503` at once (the server asks for a wait only when the pipeline is stuck). The time
/// until every request was answered `200`, and how many `503`s came.
fn load(url: String, requests: u64) -> (f64, u64) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        rt.block_on(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(CLIENTS as usize)
                .build()
                .expect("client");
            let next = Arc::new(AtomicU64::new(0));
            let busy = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let mut clients = Vec::new();
            for _ in 0..CLIENTS {
                let (client, url, next, busy) = (client.clone(), url.clone(), next.clone(), busy.clone());
                clients.push(tokio::spawn(async move {
                    loop {
                        let r = next.fetch_add(1, Ordering::Relaxed);
                        if r >= requests {
                            return;
                        }
                        let body = body(r);
                        loop {
                            let answer = client
                                .post(&url)
                                .header("content-type", "application/x-ndjson")
                                .body(body.clone())
                                .send()
                                .await
                                .expect("post");
                            if answer.status() == 200 {
                                break;
                            }
                            assert_eq!(answer.status(), 503, "only 200 or 503");
                            busy.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }));
            }
            for c in clients {
                c.await.expect("client");
            }
            (started.elapsed().as_secs_f64(), busy.load(Ordering::Relaxed))
        })
    })
    .join()
    .expect("load thread")
}

struct Count {
    count: Arc<AtomicU64>,
    sum: Arc<AtomicU64>,
}

impl Handler for Count {
    type Data = Record;
    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        self.sum.fetch_add(seq(&m.data().payload), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn pipeline(requests: u64) -> (f64, u64, u64, u64) {
    let (count, sum) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let source = IngestSource::bind(IngestOptions::new("127.0.0.1:0")).expect("bind");
    let url = format!("http://{}/", source.local_addr());
    let p = Pipeline::builder(
        "ingest-bench",
        Count {
            count: count.clone(),
            sum: sum.clone(),
        },
    )
    .source(source)
    .processors(Processors::new().concurrency(2))
    .start()
    .await
    .expect("pipeline");
    let (seconds, busy) = tokio::task::spawn_blocking(move || load(url, requests))
        .await
        .expect("load");
    p.stop().await.expect("stop");
    (
        seconds,
        count.load(Ordering::Relaxed),
        sum.load(Ordering::Relaxed),
        busy,
    )
}

async fn bare(requests: u64) -> (f64, u64, u64, u64) {
    let (count, sum) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (c, s) = (count.clone(), sum.clone());
    let app = Router::new().route(
        "/",
        post(move |body: Bytes| {
            let (c, s) = (c.clone(), s.clone());
            async move {
                let records = Format::Ndjson.split(body).expect("ndjson");
                s.fetch_add(records.iter().map(|r| seq(r)).sum(), Ordering::Relaxed);
                c.fetch_add(records.len() as u64, Ordering::Relaxed);
                "{\"accepted\":100}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (seconds, busy) = tokio::task::spawn_blocking(move || load(url, requests))
        .await
        .expect("load");
    server.abort();
    (
        seconds,
        count.load(Ordering::Relaxed),
        sum.load(Ordering::Relaxed),
        busy,
    )
}

pub async fn run() -> Report {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n = records() / PER_REQUEST * PER_REQUEST;
    let requests = n / PER_REQUEST;
    let expected = n * n.saturating_sub(1) / 2;
    // Bare, pipeline, pipeline, bare: the machine's drift falls on both alike.
    let (mut bare_s, mut pipe_s, mut ok, mut busy_total) = (0.0, 0.0, true, 0);
    for turn in 0..4 {
        let (seconds, count, sum, busy) = if turn == 0 || turn == 3 {
            bare(requests).await
        } else {
            pipeline(requests).await
        };
        if turn == 0 || turn == 3 {
            bare_s += seconds;
        } else {
            pipe_s += seconds;
        }
        ok &= count == n && sum == expected;
        busy_total += busy;
    }
    let mut r = Report::new("http-ingest", "records", 2 * n, pipe_s);
    r.baseline_per_sec = Some(2.0 * n as f64 / bare_s);
    r.checksum_ok = Some(ok);
    r.extra.insert(
        "requests_per_sec".into(),
        ((2 * requests) as f64 / pipe_s).round().into(),
    );
    r.extra.insert(
        "baseline_requests_per_sec".into(),
        ((2 * requests) as f64 / bare_s).round().into(),
    );
    r.extra.insert("records_per_request".into(), PER_REQUEST.into());
    r.extra.insert("clients".into(), CLIENTS.into());
    r.extra.insert("answered_503".into(), busy_total.into());
    r.extra.insert(
        "baseline".into(),
        "bare axum handler reading and splitting the same NDJSON bodies, answering at once (no pipeline, no acknowledgement); same clients; runs bare, pipeline, pipeline, bare".into(),
    );
    r
}
