//! A Redis Streams pipeline end to end: order entries of a stream are read by a consumer group
//! as records (each entry as one JSON object), checked and enriched, and appended to an NDJSON
//! file that is durable (fsynced) before the entries are acknowledged (`XACK`). Entries that
//! fail — one in 250 on purpose when seeding — go to a dead-letter file with the reason, the
//! stream and the entry id. Ctrl-C or SIGTERM stops cleanly: what was read is processed and
//! acknowledged first.
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
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::Record;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::pipeline::{Batcher, Handler, Message, Pipeline, Processors};
use ferroway_redis::{RedisSink, RedisSource, SinkOptions, SourceOptions};
use serde_json::Value;

/// Refuses orders without a numeric `amount_cents` (they go to the dead-letter file) and marks
/// large ones with `"tier": "large"`.
struct CheckOrder;

impl Handler for CheckOrder {
    type Data = Record;

    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        let mut order: Value = serde_json::from_slice(&m.data().payload)?;
        let cents: u64 = order["amount_cents"]
            .as_str()
            .ok_or("no `amount_cents` field")?
            .parse()
            .map_err(|e| format!("`amount_cents` is not a number: {e}"))?;
        if cents >= 5_000 {
            order["tier"] = "large".into();
            m.data_mut().payload = serde_json::to_vec(&order)?.into();
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let a = args()?;
    if a.seed > 0 {
        seed(&a.url, &a.stream, a.seed).await?;
    }
    // Validated here: a wrong URL is reported now, not as a silent retry.
    let orders = RedisSource::factory(SourceOptions::new(a.url.as_str(), "example", [a.stream.as_str()]))?;
    let file = |name: &str| FileSink::open(a.out.join(name), FileSinkOptions::new());
    std::fs::create_dir_all(&a.out)?;

    let pipeline = Pipeline::builder("orders", CheckOrder)
        .source(orders.records())
        .processors(Processors::new().concurrency(2))
        .sink(
            file("orders.ndjson").await?,
            Batcher::new("file")
                .batch_size(500)
                .batch_timeout(Duration::from_millis(200)),
        )
        // One JSON line per failed order: reason, stream and entry id, the entry.
        .dead_letter(file("dead-letters.ndjson").await?)
        .start()
        .await?;
    tracing::info!(out = %a.out.display(), "running; Ctrl-C to stop");
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    tracing::info!("stopped; everything read was processed and acknowledged");
    Ok(())
}

/// Adds `n` order entries, one in 250 without a valid amount.
async fn seed(url: &str, stream: &str, n: u64) -> Result<(), BoxError> {
    let sink = RedisSink::new(SinkOptions::new(url, stream))?;
    let order = |i: u64| {
        let amount = if i % 250 == 249 {
            "n/a".to_owned()
        } else {
            ((i * 7919) % 10_000).to_string()
        };
        vec![
            ("order".to_owned(), format!("order-{i}").into_bytes()),
            ("country".to_owned(), ["de", "fr", "jp", "us"][(i % 4) as usize].into()),
            ("amount_cents".to_owned(), amount.into_bytes()),
        ]
    };
    for start in (0..n).step_by(1_000) {
        let chunk: Vec<_> = (start..n.min(start + 1_000)).map(order).collect();
        for added in sink.add(&chunk).await? {
            added?;
        }
    }
    tracing::info!(stream, entries = n, "seeded");
    Ok(())
}

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
