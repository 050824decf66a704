//! Shared helpers: the Pub/Sub emulator, unique names, a test-side client.
#![allow(dead_code)]

use std::collections::HashMap;

use ferroway_pubsub::{ClientOptions, PubSubOptions, SinkOptions};
use gcloud_gax::conn::Environment;
use gcloud_googleapis::pubsub::v1::{DeadLetterPolicy, PubsubMessage};
use gcloud_pubsub::client::{Client, ClientConfig};
use gcloud_pubsub::subscription::SubscriptionConfig;

pub const PROJECT: &str = "ferroway-test";

pub fn emulator() -> String {
    std::env::var("FERROWAY_PUBSUB_EMULATOR").unwrap_or_else(|_| "127.0.0.1:8085".to_owned())
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ferroway-{prefix}-{}-{nanos:08x}", std::process::id())
}

pub fn client_options() -> ClientOptions {
    ClientOptions::new(PROJECT).emulator_host(emulator())
}

/// Source options for `subscription` on the emulator.
pub fn source(subscription: &str) -> PubSubOptions {
    PubSubOptions::new(client_options(), subscription)
}

/// Sink options for `topic` on the emulator.
pub fn sink(topic: &str) -> SinkOptions {
    SinkOptions::new(client_options(), topic)
}

/// A client of the test's own; fails the test loudly when the emulator is not running.
pub async fn client() -> Client {
    let config = ClientConfig {
        project_id: Some(PROJECT.to_owned()),
        environment: Environment::Emulator(emulator()),
        pool_size: 1,
        ..ClientConfig::default()
    };
    let reachable = match Client::new(config).await {
        Ok(c) => c.get_topics(None).await.map(|_| c).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    reachable.unwrap_or_else(|e| {
        panic!(
            "the Pub/Sub emulator is not reachable at {} ({e}). Start it with `bash scripts/services/pubsub.sh` \
             (127.0.0.1:8085), or set FERROWAY_PUBSUB_EMULATOR.",
            emulator()
        )
    })
}

/// A fresh topic and a subscription to it with `config` (its ack deadline 10 s unless set).
pub async fn topic_and_subscription(c: &Client, name: &str, mut config: SubscriptionConfig) -> (String, String) {
    let (topic, subscription) = (format!("{name}-t"), format!("{name}-s"));
    c.create_topic(&topic, None, None).await.unwrap();
    if config.ack_deadline_seconds == 0 {
        config.ack_deadline_seconds = 10;
    }
    c.create_subscription(&subscription, &topic, config, None)
        .await
        .unwrap();
    (topic, subscription)
}

/// A dead-letter policy forwarding to a new topic after `attempts` deliveries.
pub async fn dead_letter_policy(c: &Client, name: &str, attempts: i32) -> DeadLetterPolicy {
    let topic = format!("{name}-dlq");
    c.create_topic(&topic, None, None).await.unwrap();
    DeadLetterPolicy {
        dead_letter_topic: c.fully_qualified_topic_name(&topic),
        max_delivery_attempts: attempts,
    }
}

pub async fn delete(c: &Client, topic: &str, subscription: &str) {
    let _ = c.subscription(subscription).delete(None).await;
    let _ = c.topic(topic).delete(None).await;
}

pub fn message(data: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec().into(),
        ..PubsubMessage::default()
    }
}

pub fn with_attributes(data: &str, attributes: &[(&str, &str)], ordering_key: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec().into(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<HashMap<_, _>>(),
        ordering_key: ordering_key.to_owned(),
        ..PubsubMessage::default()
    }
}

/// Publishes `messages`, in order; their ids.
pub async fn publish(c: &Client, topic: &str, messages: Vec<PubsubMessage>) -> Vec<String> {
    let mut publisher = c.topic(topic).new_publisher(None);
    let mut ids = Vec::new();
    for chunk in messages.chunks(1000) {
        for awaiter in publisher.publish_bulk(chunk.to_vec()).await {
            ids.push(awaiter.get().await.unwrap());
        }
    }
    publisher.shutdown().await;
    ids
}

/// Publishes `from..to` (decimal data).
pub async fn publish_range(c: &Client, topic: &str, from: u64, to: u64) {
    publish(c, topic, (from..to).map(|n| message(&n.to_string())).collect()).await;
}

/// Pulls (and acknowledges) every message waiting; their data. A pull on an empty
/// subscription waits on the emulator: one that brings nothing within 2 s ends the drain.
pub async fn drain(c: &Client, subscription: &str) -> Vec<String> {
    let sub = c.subscription(subscription);
    let mut all = Vec::new();
    loop {
        let Ok(got) = tokio::time::timeout(std::time::Duration::from_secs(2), sub.pull(1000, None)).await else {
            return all;
        };
        let got = got.unwrap();
        if got.is_empty() {
            return all;
        }
        let ids = got.iter().map(|m| m.ack_id().to_owned()).collect();
        sub.ack(ids).await.unwrap();
        all.extend(
            got.into_iter()
                .map(|m| String::from_utf8_lossy(&m.message.data).into_owned()),
        );
    }
}

/// Logs to the test's output (`RUST_LOG` filters).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ferroway=info,ferroway_pubsub=debug".into()),
        )
        .with_test_writer()
        .try_init();
}
