//! The source and the sink as configuration-file components (`type = "pubsub"`), feature
//! `config`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::config::{BuildContext, SinkConfig, SourceConfig};
use ferroway::connector::{BoxSource, Record, Sink, Source};
use ferroway::pipeline::BoxFuture;
use serde::Deserialize;

use crate::options::{ClientOptions, OnFailed, OrderingKey, PubSubOptions, SinkOptions};
use crate::{PubSubSink, PubSubSource};

/// The options both halves share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The project (unless the subscription or topic is a full name).
    #[serde(default)]
    pub project: Option<String>,
    /// An emulator's `host:port` (default: `PUBSUB_EMULATOR_HOST`).
    #[serde(default)]
    pub emulator_host: Option<String>,
    /// The service's host name (default `pubsub.googleapis.com`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A service account key file (default: application default credentials).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

impl ClientConfig {
    fn options(&self, reach_timeout: Option<Duration>) -> ClientOptions {
        let mut c = ClientOptions {
            project: self.project.clone(),
            emulator_host: self.emulator_host.clone(),
            credentials_file: self.credentials_file.clone(),
            ..ClientOptions::default()
        };
        if let Some(e) = &self.endpoint {
            c.endpoint = e.clone();
        }
        if let Some(t) = reach_timeout {
            c.reach_timeout = t;
        }
        c
    }
}

/// `type = "pubsub"` as a source: a streaming pull read as the pipeline demands, each
/// message acknowledged once processed. Each message a record (data, attributes as headers,
/// ordering key as key). See [`PubSubOptions`].
///
/// ```
/// use ferroway_pubsub::PubSubSourceConfig;
/// let c: PubSubSourceConfig = serde_json::from_str(
///     r#"{"project": "my-project", "subscription": "orders", "ack_deadline": "30s",
///         "on_failed": "retry", "retry_delay": "10s"}"#,
/// ).unwrap();
/// assert_eq!(c.options().unwrap().ack_deadline.as_secs(), 30);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubSourceConfig {
    /// The project and how to reach Pub/Sub.
    #[serde(flatten)]
    pub client: ClientConfig,
    /// The subscription (an id in the project, or a full name).
    pub subscription: String,
    /// Messages outstanding at most, per producer (default 1000).
    #[serde(default = "default_max_outstanding_messages")]
    pub max_outstanding_messages: usize,
    /// Bytes outstanding at most, per producer (default 100 MiB).
    #[serde(default = "default_max_outstanding_bytes")]
    pub max_outstanding_bytes: usize,
    /// The stream's ack deadline (default `"60s"`).
    #[serde(default = "default_ack_deadline", with = "ferroway::config::duration")]
    pub ack_deadline: Duration,
    /// Extend a message's lease this close to its deadline (default `"5s"`; `"0s"`: never).
    #[serde(default = "default_extend_before", with = "ferroway::config::duration")]
    pub extend_before: Duration,
    /// Stop extending after this long in the pipeline (default `"1h"`).
    #[serde(default = "default_max_extension", with = "ferroway::config::duration")]
    pub max_extension: Duration,
    /// A failed message: `"leave"` (delivered again when its deadline runs out; the
    /// default) or `"retry"` (delivered again after `retry_delay`; `"0s"`, the default
    /// delay, is a nack).
    #[serde(default)]
    pub on_failed: Failed,
    /// With `on_failed = "retry"`: how long until a failure is delivered again.
    #[serde(default, with = "ferroway::config::duration::option")]
    pub retry_delay: Option<Duration>,
    /// Dead-letter a failure from this delivery attempt on (default: never; needs a
    /// subscription with a dead-letter policy).
    #[serde(default)]
    pub max_delivery_attempts: Option<u32>,
    /// Fail if Pub/Sub did not answer within this long of the start (default `"60s"`).
    #[serde(default, with = "ferroway::config::duration::option")]
    pub reach_timeout: Option<Duration>,
}

/// `on_failed`'s values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Failed {
    /// [`OnFailed::Leave`].
    #[default]
    Leave,
    /// [`OnFailed::Retry`].
    Retry,
}

impl PubSubSourceConfig {
    /// The options, validated.
    ///
    /// # Errors
    /// The first invalid option.
    pub fn options(&self) -> Result<PubSubOptions, BoxError> {
        let mut o = PubSubOptions::new(self.client.options(self.reach_timeout), &self.subscription)
            .max_outstanding_messages(self.max_outstanding_messages)
            .max_outstanding_bytes(self.max_outstanding_bytes)
            .ack_deadline(self.ack_deadline)
            .extend_before(self.extend_before)
            .max_extension(self.max_extension)
            .on_failed(match self.on_failed {
                Failed::Leave if self.retry_delay.is_some() => {
                    return Err("`retry_delay` needs `on_failed = \"retry\"`".into());
                }
                Failed::Leave => OnFailed::Leave,
                Failed::Retry => OnFailed::Retry {
                    delay: self.retry_delay.unwrap_or_default(),
                },
            });
        if let Some(n) = self.max_delivery_attempts {
            o = o.max_delivery_attempts(n);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for PubSubSourceConfig {
    const TYPE: &'static str = "pubsub";
    const SUMMARY: &'static str =
        "Google Cloud Pub/Sub: a streaming pull read as the pipeline demands, each message acknowledged once processed";
    const EXAMPLE: &'static str = r#"project = "my-project"
subscription = "orders-worker"     # or "projects/<project>/subscriptions/<id>"
# emulator_host = "127.0.0.1:8085" # default: PUBSUB_EMULATOR_HOST, else Google Cloud
# endpoint = "europe-west1-pubsub.googleapis.com"   # default: pubsub.googleapis.com
# credentials_file = "/etc/keys/worker.json"         # default: application default credentials
max_outstanding_messages = 1000    # received and not yet acknowledged, per producer
max_outstanding_bytes = 104857600
ack_deadline = "60s"
extend_before = "5s"               # extend a slow message's lease this close to its deadline
max_extension = "1h"
on_failed = "leave"                # or "retry" (delivered again after retry_delay; 0s: a nack)
# max_delivery_attempts = 5        # from this attempt on, a failure goes to the dead-letter route
# reach_timeout = "60s""#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        Ok(BoxSource::new(
            PubSubSource::factory(self.options()?)?.map(Record::from),
        ))
    }
}

/// `type = "pubsub"` as a sink: records published in requests, acknowledged upstream once
/// Pub/Sub returned their ids. See [`SinkOptions`].
///
/// ```
/// use ferroway_pubsub::PubSubSinkConfig;
/// let c: PubSubSinkConfig = serde_json::from_str(
///     r#"{"project": "my-project", "topic": "events", "ordering_key": "from_key"}"#,
/// ).unwrap();
/// assert_eq!(c.options().unwrap().ordering_key, ferroway_pubsub::OrderingKey::FromKey);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubSinkConfig {
    /// The project and how to reach Pub/Sub.
    #[serde(flatten)]
    pub client: ClientConfig,
    /// The topic (an id in the project, or a full name).
    pub topic: String,
    /// `"none"` (the default) or `"from_key"`: the record's key as the ordering key.
    #[serde(default)]
    pub ordering_key: Ordering,
    /// Messages per request (default 1000).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Bytes per request (default 9 MiB).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Requests in flight per write (default 4).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Attempts for retryable failures (default 5).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

/// `ordering_key`'s values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// [`OrderingKey::None`].
    #[default]
    None,
    /// [`OrderingKey::FromKey`].
    FromKey,
}

impl PubSubSinkConfig {
    /// The options, validated.
    ///
    /// # Errors
    /// The first invalid option.
    pub fn options(&self) -> Result<SinkOptions, BoxError> {
        let o = SinkOptions::new(self.client.options(None), &self.topic)
            .ordering_key(match self.ordering_key {
                Ordering::None => OrderingKey::None,
                Ordering::FromKey => OrderingKey::FromKey,
            })
            .max_messages(self.max_messages)
            .max_request_bytes(self.max_request_bytes)
            .max_in_flight(self.max_in_flight)
            .max_attempts(self.max_attempts);
        o.validate()?;
        Ok(o)
    }
}

impl SinkConfig for PubSubSinkConfig {
    const TYPE: &'static str = "pubsub";
    const SUMMARY: &'static str =
        "records published to a Google Cloud Pub/Sub topic, acked once Pub/Sub returned their ids";
    const EXAMPLE: &'static str = r#"project = "my-project"
topic = "archive"                  # or "projects/<project>/topics/<id>"
# emulator_host = "127.0.0.1:8085" # default: PUBSUB_EMULATOR_HOST, else Google Cloud
# credentials_file = "/etc/keys/publisher.json"      # default: application default credentials
ordering_key = "none"              # or "from_key": keys published in order
max_messages = 1000                # per request
max_request_bytes = 9437184
max_in_flight = 4
max_attempts = 5"#;

    fn build(self, _: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        Box::pin(async move {
            let sink: Arc<dyn Sink<Record>> = Arc::new(PubSubSink::new(self.options()?)?);
            Ok(sink)
        })
    }
}

fn default_max_outstanding_messages() -> usize {
    1000
}

fn default_max_outstanding_bytes() -> usize {
    100 << 20
}

fn default_ack_deadline() -> Duration {
    Duration::from_secs(60)
}

fn default_extend_before() -> Duration {
    Duration::from_secs(5)
}

fn default_max_extension() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_messages() -> usize {
    1000
}

fn default_max_request_bytes() -> usize {
    9 << 20
}

fn default_max_in_flight() -> usize {
    4
}

fn default_max_attempts() -> u32 {
    5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_parse_to_the_defaults() {
        let c: PubSubSourceConfig = toml::from_str(PubSubSourceConfig::EXAMPLE).unwrap();
        let o = c.options().unwrap();
        let d = PubSubOptions::new(ClientOptions::new("my-project"), "orders-worker");
        assert_eq!(
            (o.max_outstanding_messages, o.max_outstanding_bytes, o.ack_deadline),
            (d.max_outstanding_messages, d.max_outstanding_bytes, d.ack_deadline)
        );
        assert_eq!(
            (o.extend_before, o.max_extension, o.on_failed, o.max_delivery_attempts),
            (d.extend_before, d.max_extension, d.on_failed, d.max_delivery_attempts)
        );
        assert_eq!(o.client.reach_timeout, d.client.reach_timeout);
        let s: PubSubSinkConfig = toml::from_str(PubSubSinkConfig::EXAMPLE).unwrap();
        let o = s.options().unwrap();
        let d = SinkOptions::new(ClientOptions::new("my-project"), "archive");
        assert_eq!(
            (
                o.max_messages,
                o.max_request_bytes,
                o.max_in_flight,
                o.max_attempts,
                o.ordering_key
            ),
            (
                d.max_messages,
                d.max_request_bytes,
                d.max_in_flight,
                d.max_attempts,
                d.ordering_key
            )
        );
    }

    #[test]
    fn wrong_values_are_named() {
        let e = toml::from_str::<PubSubSourceConfig>("subscription = \"abc\"\non_failed = \"drop\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown variant `drop`, expected `leave` or `retry`"),
            "{e}"
        );
        let c: PubSubSourceConfig =
            toml::from_str("project = \"p-1\"\nsubscription = \"abc\"\nretry_delay = \"5s\"").unwrap();
        assert!(c.options().unwrap_err().to_string().contains("`retry_delay` needs"));
        let c: PubSubSourceConfig =
            toml::from_str("project = \"p-1\"\nsubscription = \"abc\"\nack_deadline = \"5s\"").unwrap();
        assert!(
            c.options()
                .unwrap_err()
                .to_string()
                .starts_with("invalid option `ack_deadline`")
        );
    }
}
