//! A JetStream pipeline end to end: a stream (created if missing, subjects `orders.>`) is
//! consumed by the durable pull consumer `archiver`; each order is checked and appended to an
//! NDJSON file made durable (fsynced) before the messages are acked. An order that fails —
//! one in 250 on purpose when seeding — is nak'ed and tried again up to 3 deliveries, then goes
//! to a dead-letter file with the reason, the stream sequence and the delivery count. Ctrl-C
//! or SIGTERM stops cleanly: the pull under way is finished, processed and acked.
//!
//! ```text
//! bash scripts/services/nats.sh      # nats-server -js on 127.0.0.1:4222, if it is not running
//! cargo run -p ferroway-nats --example stream_to_file -- --seed 10000
//! RUST_LOG=debug cargo run -p ferroway-nats --example stream_to_file -- --url nats://host:4222 --out /tmp/orders
//! ```
//!
//! Options: `--url URL` (default `nats://127.0.0.1:4222`), `--stream NAME` (default
//! `FERROWAY_EXAMPLE_ORDERS`), `--out DIR` (default `ferroway-nats-example`), `--seed N`
//! (publish N sample orders first, through the NATS sink with publish acks).

use std::path::PathBuf;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::connector::{Record, Sink, Source};
use ferroway::pipeline::{Batcher, Handler, Message, Pipeline, Processors};
use ferroway_nats::jetstream::{ConsumerConfig, StreamConfig};
use ferroway_nats::{JetStreamOptions, JetStreamSource, NatsSink, SinkOptions};
use serde_json::Value;

/// Refuses orders without a numeric `amount_cents`; marks large ones `"tier": "large"`.
struct CheckOrder;

impl Handler for CheckOrder {
    type Data = Record;

    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        let mut order: Value = serde_json::from_slice(&m.data().payload)?;
        let cents = order["amount_cents"].as_u64().ok_or("`amount_cents` is not a number")?;
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
    let subject = format!("{}.orders", a.stream.to_lowercase());
    let opts = JetStreamOptions::new(a.url.as_str(), a.stream.as_str(), "archiver")
        .create_stream(StreamConfig {
            subjects: vec![format!("{}.>", a.stream.to_lowercase())],
            ..Default::default()
        })
        .consumer(ConsumerConfig {
            max_deliver: 3,
            ..JetStreamOptions::default_consumer()
        });
    // Validated here: a wrong option is reported now, not as a silent retry.
    let orders = JetStreamSource::factory(opts)?;
    let file = |name: &str| FileSink::open(a.out.join(name), FileSinkOptions::new());
    std::fs::create_dir_all(&a.out)?;
    let pipeline = Pipeline::builder("orders", CheckOrder)
        .source(orders.map(Record::from))
        .processors(Processors::new().concurrency(2))
        .sink(
            file("orders.ndjson").await?,
            Batcher::new("file")
                .batch_size(500)
                .batch_timeout(Duration::from_millis(200)),
        )
        // One JSON line per order that failed its last delivery: reason, stream sequence, order.
        .dead_letter(file("dead-letters.ndjson").await?)
        .start()
        .await?;
    if a.seed > 0 {
        seed(&a.url, &subject, a.seed).await?;
    }
    tracing::info!(out = %a.out.display(), "running; Ctrl-C to stop");
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    tracing::info!("stopped; everything received was processed and acked");
    Ok(())
}

/// Publishes `n` orders, one in 250 without a valid amount; each stored (publish ack) before
/// the next batch. The stream is created by the source: retried until it exists.
async fn seed(url: &str, subject: &str, n: u64) -> Result<(), BoxError> {
    let sink = NatsSink::new(
        SinkOptions::new(url, subject)
            .jetstream(true)
            .ack_timeout(Duration::from_secs(2)),
    )?;
    for start in (0..n).step_by(1_000) {
        let mut batch: Vec<Message<Record>> = (start..n.min(start + 1_000))
            .map(|i| {
                let amount: Value = if i % 250 == 249 {
                    "n/a".into()
                } else {
                    ((i * 7919) % 10_000).into()
                };
                let country = ["de", "fr", "jp", "us"][(i % 4) as usize];
                let order =
                    serde_json::json!({ "order": format!("order-{i}"), "country": country, "amount_cents": amount });
                Message::new(Record::new(order.to_string()))
            })
            .collect();
        while let Err(e) = sink.write(&mut batch).await {
            tracing::info!(error = %e, "waiting for the stream");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tracing::info!(subject, orders = n, "seeded");
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
        url: "nats://127.0.0.1:4222".into(),
        stream: "FERROWAY_EXAMPLE_ORDERS".into(),
        out: "ferroway-nats-example".into(),
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
