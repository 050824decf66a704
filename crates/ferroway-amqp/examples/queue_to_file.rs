//! A RabbitMQ pipeline end to end: a durable queue is declared and consumed with prefetch,
//! each order checked and enriched, and appended to an NDJSON file that is durable (fsynced)
//! before the deliveries are acked. Orders that fail — one in 250 on purpose when seeding — go
//! to a dead-letter file with the reason, the queue and the delivery tag (then they are acked;
//! without a dead-letter route they would be rejected to the queue's dead-letter exchange).
//! Ctrl-C or SIGTERM stops cleanly: the consumer is cancelled, what the broker had sent is
//! processed and acked, then the connection closes.
//!
//! ```text
//! bash scripts/services/rabbitmq.sh   # RabbitMQ on 127.0.0.1:5672, if it is not running
//! cargo run -p ferroway-amqp --example queue_to_file -- --seed 10000
//! RUST_LOG=debug cargo run -p ferroway-amqp --example queue_to_file -- --uri amqp://user:pw@host:5672/%2f --out /tmp/orders
//! ```
//!
//! Options: `--uri URI` (default `amqp://guest:guest@127.0.0.1:5672/%2f`), `--queue NAME`
//! (default `ferroway-example-orders`), `--out DIR` (default `ferroway-amqp-example`), `--seed N`
//! (publish N sample orders once the queue is declared, through the RabbitMQ sink with
//! publisher confirms).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Handler, Message, Pipeline, Processors};
use ferroway_amqp::{AmqpSink, AmqpSource, QueueDeclare, SinkOptions, SourceOptions};
use serde_json::Value;

/// Refuses orders without a numeric `amount_cents` (they go to the dead-letter file) and marks
/// large ones with `"tier": "large"`.
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
    // Validated here: a wrong URI is reported now, not as a silent retry.
    let orders = Arc::new(AmqpSource::factory(
        SourceOptions::new(a.uri.as_str(), a.queue.as_str())
            .declare(QueueDeclare::durable())
            .prefetch_count(500),
    )?);
    let file = |name: &str| FileSink::open(a.out.join(name), FileSinkOptions::new());
    std::fs::create_dir_all(&a.out)?;

    let pipeline = Pipeline::builder("orders", CheckOrder)
        .source(orders.clone().map(Record::from))
        .processors(Processors::new().concurrency(2))
        .sink(
            file("orders.ndjson").await?,
            Batcher::new("file")
                .batch_size(500)
                .batch_timeout(Duration::from_millis(200)),
        )
        // One JSON line per failed order: reason, queue and delivery tag, the order.
        .dead_letter(file("dead-letters.ndjson").await?)
        .start()
        .await?;
    if a.seed > 0 {
        // The source declares the queue when it connects; publish once it has.
        while !orders.connected() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seed(&a.uri, &a.queue, a.seed).await?;
    }
    tracing::info!(out = %a.out.display(), "running; Ctrl-C to stop");
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    tracing::info!("stopped; everything received was processed and acked");
    Ok(())
}

/// Publishes `n` orders to `queue`, one in 250 without a valid amount, confirmed by the broker.
async fn seed(uri: &str, queue: &str, n: u64) -> Result<(), BoxError> {
    let sink = AmqpSink::new(
        SinkOptions::new(uri, "")
            .routing_key(queue)
            .content_type("application/json"),
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
                let order = serde_json::json!({
                    "order": format!("order-{i}"),
                    "country": country,
                    "amount_cents": amount,
                });
                Message::new(Record::new(order.to_string()))
            })
            .collect();
        ferroway::connector::Sink::write(&sink, &mut batch).await?;
    }
    tracing::info!(queue, orders = n, "seeded");
    Ok(())
}

struct Args {
    uri: String,
    queue: String,
    out: PathBuf,
    seed: u64,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        uri: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
        queue: "ferroway-example-orders".into(),
        out: "ferroway-amqp-example".into(),
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--uri" => a.uri = value,
            "--queue" => a.queue = value,
            "--out" => a.out = value.into(),
            "--seed" => a.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown option {other} (see the example's header)").into()),
        }
    }
    Ok(a)
}
