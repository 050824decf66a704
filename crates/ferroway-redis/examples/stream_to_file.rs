//! A Redis Streams pipeline end to end: order entries of a stream are read by a consumer group,
//! checked and enriched by processors, batched, and appended to an NDJSON file that is durable
//! before the entries are acknowledged (`XACK`). Entries that fail — a few on purpose when
//! seeding — go to a dead-letter file with their stream, id and fields. Stops cleanly on
//! Ctrl-C or SIGTERM: what was read is processed and acknowledged first.
//!
//! ```text
//! bash scripts/services/redis.sh      # a Redis on 127.0.0.1:6379, if you have none
//! cargo run -p ferroway-redis --example stream_to_file -- --seed 10000
//! RUST_LOG=debug cargo run -p ferroway-redis --example stream_to_file -- --url redis://host:6379 --out /tmp/orders
//! ```
//!
//! Options: `--url URL` (default `redis://127.0.0.1:6379`), `--stream NAME` (default
//! `ferroway-example-orders`), `--out DIR` (default `ferroway-redis-example`), `--seed N` (add
//! N sample entries first, through the Redis sink). Run it twice with `--seed`: the second run
//! reads only the new entries, as the group remembers where it is.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::DeadLetterWriter;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway_redis::{Entry, Fields, RedisMetadata, RedisSink, RedisSource, SinkOptions, SourceOptions};
use serde_json::json;
use tracing::info;

struct Args {
    url: String,
    stream: String,
    out: PathBuf,
    seed: u64,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        url: "redis://127.0.0.1:6379".into(),
        stream: "ferroway-example-orders".into(),
        out: "ferroway-redis-example".into(),
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => a.url = value,
            "--stream" => a.stream = value,
            "--out" => a.out = value.into(),
            "--seed" => a.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown option {other} (see the example's header)").into()),
        }
    }
    Ok(a)
}

/// Adds `n` order entries, one in 250 without a valid amount.
async fn seed(url: &str, stream: &str, n: u64) -> Result<(), BoxError> {
    let sink = RedisSink::new(SinkOptions::new(url, stream))?;
    let orders: Vec<Fields> = (0..n)
        .map(|i| {
            let amount = if i % 250 == 249 {
                "n/a".to_owned()
            } else {
                ((i * 7919) % 10_000).to_string()
            };
            let country = ["de", "fr", "jp", "us"][(i % 4) as usize];
            vec![
                ("order".to_owned(), format!("order-{i}").into_bytes()),
                ("country".to_owned(), country.as_bytes().to_vec()),
                ("amount_cents".to_owned(), amount.into_bytes()),
            ]
        })
        .collect();
    for chunk in orders.chunks(1_000) {
        for r in sink.add(chunk).await? {
            r?;
        }
    }
    info!(stream, entries = n, "seeded");
    Ok(())
}

#[derive(Default)]
struct Counts {
    written: AtomicU64,
    failed: AtomicU64,
}

struct Orders {
    out: FileSink,
    counts: Arc<Counts>,
}

impl Handler for Orders {
    type Data = Entry;

    async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), BoxError> {
        // An error fails this entry only: it goes to the dead-letter file.
        let cents: u64 = m
            .data()
            .get_str("amount_cents")
            .ok_or("no `amount_cents` field")?
            .parse()
            .map_err(|e| format!("`amount_cents` is not a number: {e}"))?;
        if cents >= 5_000 {
            m.data_mut().fields.push(("tier".into(), b"large".to_vec()));
        }
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<Entry>], _: &BatchInfo) -> Result<(), BoxError> {
        let mut buf = Vec::new();
        for m in batch.iter() {
            let id = m.metadata::<RedisMetadata>().map(|md| md.id.to_string());
            let fields: serde_json::Value = serde_json::from_str(&m.data().to_json())?;
            serde_json::to_writer(&mut buf, &json!({ "id": id, "fields": fields }))?;
            buf.push(b'\n');
        }
        // Durable before this returns: only then are the entries acknowledged.
        self.out.write_bytes(buf).await?.durable().await?;
        self.counts.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn handle_failed(&self, messages: &mut [Message<Entry>]) {
        self.counts.failed.fetch_add(messages.len() as u64, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let a = args()?;
    // Checked before anything connects: a wrong URL is reported now, not as a silent retry.
    let opts = SourceOptions::new(a.url.as_str(), "example", [a.stream.as_str()]).block(Duration::from_millis(500));
    opts.validate()?;
    if a.seed > 0 {
        seed(&a.url, &a.stream, a.seed).await?;
    }

    std::fs::create_dir_all(&a.out)?;
    let out = FileSink::open(a.out.join("orders.ndjson"), FileSinkOptions::new()).await?;
    let dead = FileSink::open(a.out.join("dead-letters.ndjson"), FileSinkOptions::new()).await?;
    // Each record names the entry (stream, id, delivery count) and carries its fields as JSON.
    let dead = DeadLetterWriter::new(dead, |e: &Entry| e.to_json().into_bytes());
    let counts = Arc::new(Counts::default());
    let pipeline = Pipeline::builder(
        "orders",
        Orders {
            out,
            counts: counts.clone(),
        },
    )
    .producer(move || RedisSource::new(opts.clone()).expect("validated"))
    .processors(Processors::new().concurrency(2))
    .batcher(
        Batcher::new("file")
            .batch_size(500)
            .batch_timeout(Duration::from_millis(200)),
    )
    .dead_letter(dead)
    .start()
    .await?;
    info!(out = %a.out.display(), "running; Ctrl-C to stop");
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    info!(
        written = counts.written.load(Ordering::Relaxed),
        failed = counts.failed.load(Ordering::Relaxed),
        "stopped; everything read was processed and acknowledged"
    );
    Ok(())
}
