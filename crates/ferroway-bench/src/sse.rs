//! `sse`: events from a local HTTP server (a prepared body written as fast as the socket
//! takes it) through a pipeline with `SseSource`, against a bare reqwest + `SseParser` loop
//! reading the same body from the same server, same run. Events: `FERROWAY_BENCH_SSE_EVENTS`
//! (default 1,000,000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferroway::BoxError;
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_http::sse::{SseEvent, SseOptions, SseParser, SseSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::report::Report;

fn events() -> u64 {
    std::env::var("FERROWAY_BENCH_SSE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// `n` events, about 80 bytes each, data `{"seq":i,...}`.
fn body(n: u64) -> Bytes {
    let mut b = String::with_capacity(n as usize * 90);
    for i in 0..n {
        b.push_str(&format!(
            "id: {i}\nevent: tick\ndata: {{\"seq\":{i},\"price\":{},\"sym\":\"FWAY\"}}\n\n",
            i % 997
        ));
    }
    b.into()
}

/// Serves `body` to a request without `Last-Event-ID`, then closes; answers 204 (end of
/// stream) to one with it.
/// On a thread and runtime of its own, so it does not share the measured runtime's workers.
fn server(body: Bytes) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/events", listener.local_addr().expect("addr"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            while let Ok((mut s, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let resume = String::from_utf8_lossy(&head)
                        .to_ascii_lowercase()
                        .contains("last-event-id:");
                    let status = if resume { "204 No Content" } else { "200 OK" };
                    let _ = s
                        .write_all(
                            format!(
                                "HTTP/1.1 {status}\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
                            )
                            .as_bytes(),
                        )
                        .await;
                    if !resume {
                        let _ = s.write_all(&body).await;
                    }
                    let _ = s.shutdown().await;
                });
            }
        })
    });
    url
}

/// Sums the `seq` of every event (the checksum both sides compute).
fn seq(e: &SseEvent) -> u64 {
    e.data
        .strip_prefix("{\"seq\":")
        .and_then(|r| r.split(',').next())
        .and_then(|v| v.parse().ok())
        .expect("a bench event")
}

async fn bare(url: &str) -> (f64, u64, u64) {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("tls")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    let started = Instant::now();
    let mut response = client
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("get");
    let mut parser = SseParser::new();
    let (mut count, mut sum) = (0u64, 0u64);
    let mut events = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        parser.feed(&chunk, &mut events).expect("parse");
        for e in events.drain(..) {
            count += 1;
            sum += seq(&e);
        }
    }
    (started.elapsed().as_secs_f64(), count, sum)
}

struct Count {
    count: Arc<AtomicU64>,
    sum: Arc<AtomicU64>,
}

impl Handler for Count {
    type Data = SseEvent;
    async fn handle_message(&self, m: &mut Message<SseEvent>) -> Result<(), BoxError> {
        self.sum.fetch_add(seq(m.data()), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn pipeline(url: &str, n: u64) -> (f64, u64, u64) {
    let (count, sum) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let p = Pipeline::builder(
        "sse-bench",
        Count {
            count: count.clone(),
            sum: sum.clone(),
        },
    )
    .source(SseSource::factory(SseOptions::new(url).retry(Duration::from_millis(1))).expect("options"))
    .processors(Processors::new().concurrency(2))
    .start()
    .await
    .expect("pipeline");
    // The clock stops where the bare loop's does: every event handled. The 204 that ends
    // the source comes after.
    while count.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    p.join().await.expect("pipeline");
    (seconds, count.load(Ordering::Relaxed), sum.load(Ordering::Relaxed))
}

pub async fn run() -> Report {
    let n = events();
    let body = body(n);
    let bytes = body.len();
    let url = server(body);
    let expected = n * n.saturating_sub(1) / 2;
    // Bare, pipeline, pipeline, bare: the machine's drift falls on both alike.
    let (mut bare_s, mut pipe_s, mut ok) = (0.0, 0.0, true);
    for turn in 0..4 {
        let (seconds, count, sum) = if turn == 0 || turn == 3 {
            bare(&url).await
        } else {
            pipeline(&url, n).await
        };
        if turn == 0 || turn == 3 {
            bare_s += seconds;
        } else {
            pipe_s += seconds;
        }
        ok &= count == n && sum == expected;
    }
    let mut r = Report::new("sse", "events", 2 * n, pipe_s);
    r.baseline_per_sec = Some(2.0 * n as f64 / bare_s);
    r.checksum_ok = Some(ok);
    r.extra.insert("bytes".into(), (bytes as u64).into());
    r.extra.insert(
        "baseline".into(),
        "bare reqwest GET + SseParser loop over the same body from the same server; runs bare, pipeline, pipeline, bare".into(),
    );
    r
}
