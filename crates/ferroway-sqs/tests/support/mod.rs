//! Shared helpers: the moto SQS server, unique queue names, a test-side client.
#![allow(dead_code)]

use std::collections::HashMap;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use ferroway_sqs::{Credentials, SinkOptions, SqsOptions};

pub fn endpoint() -> String {
    std::env::var("FERROWAY_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ferroway-{prefix}-{}-{nanos:08x}", std::process::id())
}

pub fn credentials() -> Credentials {
    Credentials::new("test", "test")
}

/// Source options for `url` on the test server.
pub fn source(url: &str) -> SqsOptions {
    SqsOptions::new(url).region("us-east-1").credentials(credentials())
}

/// Sink options for `url` on the test server.
pub fn sink(url: &str) -> SinkOptions {
    SinkOptions::new(url).region("us-east-1").credentials(credentials())
}

/// A client of the test's own; fails the test loudly when the server is not running.
pub async fn client() -> Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    let c = Client::from_conf(conf);
    if let Err(e) = c.list_queues().send().await {
        panic!(
            "the SQS test server is not reachable at {} ({}). Start it with `bash scripts/services/sqs.sh` \
             (moto on 127.0.0.1:4566), or set FERROWAY_SQS_ENDPOINT.",
            endpoint(),
            aws_sdk_sqs::error::DisplayErrorContext(e)
        );
    }
    c
}

/// A fresh queue (`.fifo` names make FIFO queues) with `attributes`; its URL.
pub async fn queue(c: &Client, name: &str, attributes: &[(&str, &str)]) -> String {
    let mut attrs: HashMap<QueueAttributeName, String> = attributes
        .iter()
        .map(|(k, v)| (QueueAttributeName::from(*k), (*v).to_owned()))
        .collect();
    if name.ends_with(".fifo") {
        attrs.insert(QueueAttributeName::FifoQueue, "true".into());
    }
    c.create_queue()
        .queue_name(name)
        .set_attributes(Some(attrs))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

pub async fn delete_queue(c: &Client, url: &str) {
    let _ = c.delete_queue().queue_url(url).send().await;
}

/// Sends one message.
pub async fn send(c: &Client, url: &str, body: &str) {
    c.send_message().queue_url(url).message_body(body).send().await.unwrap();
}

/// Sends `from..to` (decimal bodies).
pub async fn send_range(c: &Client, url: &str, from: u64, to: u64) {
    let all: Vec<u64> = (from..to).collect();
    for chunk in all.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, n)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(n.to_string())
                    .build()
                    .unwrap()
            })
            .collect();
        let out = c
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(out.failed.is_empty(), "{:?}", out.failed);
    }
}

/// `(visible, in flight)`: `ApproximateNumberOfMessages`, `…NotVisible`.
pub async fn counts(c: &Client, url: &str) -> (u64, u64) {
    let a = c
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let n = |k: QueueAttributeName| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Receives (and deletes) every visible message's body.
pub async fn drain(c: &Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out = c
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let ms = out.messages.unwrap_or_default();
        if ms.is_empty() {
            return bodies;
        }
        for m in ms {
            c.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
            bodies.push(m.body.unwrap_or_default());
        }
    }
}

/// Logs to the test's output (`RUST_LOG` filters).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ferroway=info,ferroway_sqs=debug".into()),
        )
        .with_test_writer()
        .try_init();
}
