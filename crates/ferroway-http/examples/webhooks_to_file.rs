//! Webhooks into a file: an ingest server on `--listen` takes `POST /hooks` (a JSON record,
//! a JSON array of them, or NDJSON); each record is checked and appended to an NDJSON file
//! made durable (fsynced) before the request is answered `200`. A record without a string
//! `event` fails, and its request is answered `500` naming it. While the pipeline is busy,
//! requests get `503` with `Retry-After`. Ctrl-C or SIGTERM stops cleanly: requests taken
//! are finished and answered first.
//!
//! ```text
//! cargo run -p ferroway-http --example webhooks_to_file -- --send 1000
//! cargo run -p ferroway-http --example webhooks_to_file &
//! curl -s -H 'content-type: application/x-ndjson' --data-binary $'{"event":"a"}\n{"event":"b"}\n' localhost:8080/hooks
//! ```
//!
//! Options: `--listen ADDR` (default `127.0.0.1:8080`), `--out FILE` (default
//! `ferroway-http-example/hooks.ndjson`), `--send N` (post N sample records from a client in
//! this process, 50 per request, one in 200 without `event`, then stop).

use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::Record;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::pipeline::{Batcher, Handler, Message, Pipeline, Processors};
use ferroway_http::ingest::{IngestOptions, IngestSource};
use tracing::{info, warn};

/// Refuses records without a string `event`.
struct CheckEvent;

impl Handler for CheckEvent {
    type Data = Record;

    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        let v: serde_json::Value = serde_json::from_slice(&m.data().payload)?;
        if !v["event"].is_string() {
            m.fail("`event` is missing or not a string");
        }
        Ok(())
    }
}

/// Posts `n` records, 50 per request, retrying a `503` after its `Retry-After`; logs what
/// each answer said.
async fn send(url: String, n: u64) -> Result<(), BoxError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    for first in (0..n).step_by(50) {
        let body: String = (first..(first + 50).min(n))
            .map(|i| {
                if i % 200 == 199 {
                    format!("{{\"id\":{i}}}\n")
                } else {
                    format!("{{\"id\":{i},\"event\":\"order.created\"}}\n")
                }
            })
            .collect();
        loop {
            let r = client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await?;
            let status = r.status();
            let after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let text = r.text().await?;
            match (status.as_u16(), after) {
                (200, _) => break,
                (503, Some(secs)) => tokio::time::sleep(Duration::from_secs(secs)).await,
                _ => {
                    warn!(%status, answer = %text, "request refused");
                    break;
                }
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut out = "ferroway-http-example/hooks.ndjson".to_owned();
    let mut send_n = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = value()?,
            "--out" => out = value()?,
            "--send" => send_n = value()?.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let source = IngestSource::bind(IngestOptions::new(&listen).path("/hooks"))?;
    let url = format!("http://{}/hooks", source.local_addr());
    let sink = FileSink::open(&out, FileSinkOptions::new()).await?;
    let pipeline = Pipeline::builder("webhooks", CheckEvent)
        .source(source)
        .processors(Processors::new().concurrency(2))
        .sink(
            sink,
            Batcher::new("file")
                .batch_size(100)
                .batch_timeout(Duration::from_millis(10)),
        )
        .start()
        .await?;
    info!(%url, file = %out, "taking webhooks");
    if send_n > 0 {
        send(url, send_n).await?;
        pipeline.stop().await?;
    } else {
        pipeline.run_until(ferroway::shutdown_signal()).await?;
    }
    info!(records = std::fs::read_to_string(&out)?.lines().count(), file = %out, "stopped");
    Ok(())
}
