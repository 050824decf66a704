//! A Pub/Sub pipeline end to end: subscription `ferroway-example-orders-worker` is consumed
//! by a streaming pull read as the pipeline demands; each order is checked and appended to an
//! NDJSON file made durable (fsynced) before its message is acknowledged. An order that
//! fails — one in 250 on purpose when seeding — is nacked (delivered again at once) and tried
//! up to 3 deliveries, then goes to a dead-letter file with the reason and is acknowledged.
//! Ctrl-C or SIGTERM stops cleanly: what was received is processed and acknowledged.
//!
//! ```text
//! bash scripts/services/pubsub.sh   # the Pub/Sub emulator on 127.0.0.1:8085, if it is not running
//! cargo run -p ferroway-pubsub --example subscription_to_file -- --seed 1000
//! RUST_LOG=debug cargo run -p ferroway-pubsub --example subscription_to_file -- --project my-project --emulator ""
//! ```
//!
//! Options: `--project P` (default `ferroway-example`), `--emulator HOST:PORT` (default
//! `127.0.0.1:8085`; empty: Google Cloud with application default credentials),
//! `--subscription ID` (default `ferroway-example-orders-worker`), `--out DIR` (default
//! `ferroway-pubsub-example`), `--seed N` (create the topic `ferroway-example-orders` and
//! the subscription, with a dead-letter policy, if missing, and publish N sample orders
//! first, through the Pub/Sub sink).

use std::path::PathBuf;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::connector::{Record, Sink, Source};
use ferroway::pipeline::{Batcher, Handler, Message, Pipeline, Processors};
use ferroway_pubsub::{ClientOptions, OnFailed, PubSubOptions, PubSubSink, PubSubSource, SinkOptions};
use serde_json::Value;

const TOPIC: &str = "ferroway-example-orders";

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
    let mut client = ClientOptions::new(&a.project);
    if !a.emulator.is_empty() {
        client = client.emulator_host(&a.emulator);
    }
    if a.seed > 0 {
        seed(&client, &a.subscription, a.seed).await?;
    }
    let opts = PubSubOptions::new(client, &a.subscription)
        .on_failed(OnFailed::Retry { delay: Duration::ZERO })
        .max_delivery_attempts(3);
    // Validated here: a wrong option is reported now, not as a silent retry.
    let orders = PubSubSource::factory(opts)?;
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
        // One JSON line per order that failed its third delivery: the reason, the order.
        .dead_letter(file("dead-letters.ndjson").await?)
        .start()
        .await?;
    tracing::info!(out = %a.out.display(), "running; Ctrl-C to stop");
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    tracing::info!("stopped; everything received was processed and acknowledged");
    Ok(())
}

/// Creates the topic and the subscription if missing (the subscription with a dead-letter
/// policy: Pub/Sub counts delivery attempts only then) and publishes `n` orders, one in 250
/// without a valid amount.
async fn seed(client: &ClientOptions, subscription: &str, n: u64) -> Result<(), BoxError> {
    use gcloud_googleapis::pubsub::v1::DeadLetterPolicy;
    use gcloud_pubsub::client::{Client, ClientConfig};
    use gcloud_pubsub::subscription::SubscriptionConfig;
    let Some(emulator) = client.emulator() else {
        return Err("--seed creates the topic on the emulator only; on Google Cloud create it with gcloud".into());
    };
    let admin = Client::new(ClientConfig {
        project_id: client.project.clone(),
        environment: gcloud_gax::conn::Environment::Emulator(emulator),
        ..ClientConfig::default()
    })
    .await?;
    let dead = format!("{TOPIC}-dead");
    for topic in [TOPIC, dead.as_str()] {
        if !admin.topic(topic).exists(None).await? {
            admin.create_topic(topic, None, None).await?;
        }
    }
    if !admin.subscription(subscription).exists(None).await? {
        let config = SubscriptionConfig {
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: admin.fully_qualified_topic_name(&dead),
                max_delivery_attempts: 5,
            }),
            ..SubscriptionConfig::default()
        };
        admin.create_subscription(subscription, TOPIC, config, None).await?;
    }
    let sink = PubSubSink::new(SinkOptions::new(client.clone(), TOPIC))?;
    for start in (0..n).step_by(500) {
        let mut batch: Vec<Message<Record>> = (start..n.min(start + 500))
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
    tracing::info!(topic = TOPIC, orders = n, "seeded");
    Ok(())
}

struct Args {
    project: String,
    emulator: String,
    subscription: String,
    out: PathBuf,
    seed: u64,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        project: "ferroway-example".into(),
        emulator: "127.0.0.1:8085".into(),
        subscription: "ferroway-example-orders-worker".into(),
        out: "ferroway-pubsub-example".into(),
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--project" => a.project = value,
            "--emulator" => a.emulator = value,
            "--subscription" => a.subscription = value,
            "--out" => a.out = value.into(),
            "--seed" => a.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown option {other} (see the example's header)").into()),
        }
    }
    Ok(a)
}
