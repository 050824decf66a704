//! An SQS pipeline end to end: queue `ferroway-example-orders` is consumed by long polls
//! sized by the pipeline's demand; each order is checked and appended to an NDJSON file made
//! durable (fsynced) before its message is deleted. An order that fails — one in 250 on
//! purpose when seeding — is made visible again at once and tried up to 3 receives, then
//! goes to a dead-letter file with the reason and is deleted. Ctrl-C or SIGTERM stops
//! cleanly: what was received is processed and deleted.
//!
//! ```text
//! bash scripts/services/sqs.sh      # moto (an SQS server) on 127.0.0.1:4566, if it is not running
//! cargo run -p ferroway-sqs --example queue_to_file -- --seed 1000
//! RUST_LOG=debug cargo run -p ferroway-sqs --example queue_to_file -- --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/orders
//! ```
//!
//! Options: `--queue-url URL` (default `http://127.0.0.1:4566/000000000000/ferroway-example-orders`;
//! a local URL gets the test credentials `test`/`test` and region `us-east-1`, an AWS one the
//! SDK's chain), `--out DIR` (default `ferroway-sqs-example`), `--seed N` (create the queue
//! and send N sample orders first, through the SQS sink).

use std::path::PathBuf;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::connector::{Record, Sink, Source};
use ferroway::pipeline::{Batcher, Handler, Message, Pipeline, Processors};
use ferroway_sqs::{Credentials, OnFailed, QueueOptions, SinkOptions, SqsOptions, SqsSink, SqsSource};
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
    let mut queue = QueueOptions::new(&a.queue_url);
    if queue.endpoint_or_guess().is_some() {
        // A local server (moto): its credentials and region.
        queue.credentials = Some(Credentials::new("test", "test"));
        queue.region = Some("us-east-1".into());
    }
    if a.seed > 0 {
        seed(&queue, a.seed).await?;
    }
    let opts = SqsOptions::for_queue(queue)
        .on_failed(OnFailed::Retry { delay: Duration::ZERO })
        .max_receive_count(3);
    // Validated here: a wrong option is reported now, not as a silent retry.
    let orders = SqsSource::factory(opts)?;
    let file = |name: &str| FileSink::open(a.out.join(name), FileSinkOptions::new());
    std::fs::create_dir_all(&a.out)?;
    let pipeline = Pipeline::builder("orders", CheckOrder)
        .source(orders.map(Record::from))
        .processors(Processors::new().concurrency(2))
        .sink(
            file("orders.ndjson").await?,
            Batcher::new("file")
                .batch_size(100)
                .batch_timeout(Duration::from_millis(200)),
        )
        // One JSON line per order that failed its third receive: the reason, the order.
        .dead_letter(file("dead-letters.ndjson").await?)
        .start()
        .await?;
    tracing::info!(out = %a.out.display(), "running; Ctrl-C to stop");
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    tracing::info!("stopped; everything received was processed and deleted");
    Ok(())
}

/// Creates the queue if missing (local servers only need its name) and sends `n` orders, one
/// in 250 without a valid amount.
async fn seed(queue: &QueueOptions, n: u64) -> Result<(), BoxError> {
    let name = queue.queue_url.rsplit('/').next().unwrap_or_default();
    if let Some(endpoint) = queue.endpoint_or_guess() {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "example",
            ))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
            .create_queue()
            .queue_name(name)
            .send()
            .await?;
    }
    let sink = SqsSink::new(SinkOptions::for_queue(queue.clone()))?;
    for start in (0..n).step_by(100) {
        let mut batch: Vec<Message<Record>> = (start..n.min(start + 100))
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
        sink.write(&mut batch).await?;
        if let Some(failed) = batch.iter().find_map(|m| m.failure()) {
            return Err(format!("seeding: {failed}").into());
        }
    }
    tracing::info!(queue = name, orders = n, "seeded");
    Ok(())
}

struct Args {
    queue_url: String,
    out: PathBuf,
    seed: u64,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        queue_url: "http://127.0.0.1:4566/000000000000/ferroway-example-orders".into(),
        out: "ferroway-sqs-example".into(),
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--queue-url" => a.queue_url = value,
            "--out" => a.out = value.into(),
            "--seed" => a.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown option {other} (see the example's header)").into()),
        }
    }
    Ok(a)
}
