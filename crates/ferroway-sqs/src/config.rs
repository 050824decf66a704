//! The source and the sink as configuration-file components (`type = "sqs"`), feature
//! `config`.

use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::config::{BuildContext, SinkConfig, SourceConfig};
use ferroway::connector::{BoxSource, Record, Sink, Source};
use ferroway::pipeline::BoxFuture;
use serde::{Deserialize, Deserializer};

use crate::options::{Credentials, Deduplication, GroupId, OnFailed, QueueOptions, SinkOptions, SqsOptions};
use crate::{SqsSink, SqsSource};

/// The `credentials` table: `{ access_key_id = "…", secret_access_key = "…", session_token = "…" }`.
impl<'de> Deserialize<'de> for Credentials {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            access_key_id: String,
            secret_access_key: String,
            #[serde(default)]
            session_token: Option<String>,
        }
        let t = Table::deserialize(d)?;
        let c = Credentials::new(t.access_key_id, t.secret_access_key);
        Ok(match t.session_token {
            Some(token) => c.session_token(token),
            None => c,
        })
    }
}

/// The options both halves share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue URL.
    pub queue_url: String,
    /// The region (default: from the URL, else `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// The endpoint (default: the region's, or a non-AWS queue URL's origin).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Explicit credentials (default: the SDK's chain: environment, profile, roles).
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

impl QueueConfig {
    fn options(&self) -> QueueOptions {
        let mut q = QueueOptions::new(&self.queue_url);
        q.region = self.region.clone();
        q.endpoint_url = self.endpoint_url.clone();
        q.credentials = self.credentials.clone();
        q
    }
}

/// `type = "sqs"` as a source: messages received by long polls sized by the pipeline's
/// demand, deleted once processed. Each message a record (body, attributes as headers, FIFO
/// group id as key). See [`SqsOptions`].
///
/// ```
/// use ferroway_sqs::SqsSourceConfig;
/// let c: SqsSourceConfig = serde_json::from_str(
///     r#"{"queue_url": "https://sqs.eu-west-1.amazonaws.com/1/orders", "wait_time": "10s",
///         "credentials": {"access_key_id": "AKID", "secret_access_key": "hunter2"}}"#,
/// ).unwrap();
/// assert_eq!(c.options().unwrap().wait_time.as_secs(), 10);
/// assert!(!format!("{c:?}").contains("hunter2"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsSourceConfig {
    /// The queue and how to reach it.
    #[serde(flatten)]
    pub queue: QueueConfig,
    /// Long-poll wait per receive (default `"20s"`).
    #[serde(default = "default_wait", with = "ferroway::config::duration")]
    pub wait_time: Duration,
    /// Messages per receive (default 10).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// Receives in flight per producer (default 4).
    #[serde(default = "default_max_receives")]
    pub max_receives: usize,
    /// The visibility timeout asked for on receive (default: the queue's).
    #[serde(default, with = "ferroway::config::duration::option")]
    pub visibility_timeout: Option<Duration>,
    /// Extend a message's visibility this close to its end (default `"10s"`; `"0s"`: never).
    #[serde(default = "default_extend_before", with = "ferroway::config::duration")]
    pub extend_before: Duration,
    /// Stop extending after this long in the pipeline (default `"1h"`).
    #[serde(default = "default_max_extension", with = "ferroway::config::duration")]
    pub max_extension: Duration,
    /// A failed message: `"leave"` (reappears after the visibility timeout; the default) or
    /// `"retry"` (visible again after `retry_delay`).
    #[serde(default)]
    pub on_failed: Failed,
    /// With `on_failed = "retry"`: how long a failure stays hidden (default `"0s"`).
    #[serde(default, with = "ferroway::config::duration::option")]
    pub retry_delay: Option<Duration>,
    /// Dead-letter a failure from this receive count on (default: never).
    #[serde(default)]
    pub max_receive_count: Option<u32>,
    /// System attributes to request (default: see [`SqsOptions::attribute_names`]).
    #[serde(default)]
    pub attribute_names: Option<Vec<String>>,
    /// Message attributes to request (default `["All"]`).
    #[serde(default)]
    pub message_attribute_names: Option<Vec<String>>,
    /// Fail if SQS did not answer within this long of the start (default `"60s"`).
    #[serde(default = "default_reach_timeout", with = "ferroway::config::duration")]
    pub reach_timeout: Duration,
}

/// `on_failed` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Failed {
    /// Reappears after the visibility timeout.
    #[default]
    Leave,
    /// Visible again after `retry_delay`.
    Retry,
}

impl SqsSourceConfig {
    /// The source's options.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<SqsOptions, BoxError> {
        let mut o = SqsOptions::for_queue(self.queue.options())
            .wait_time(self.wait_time)
            .max_messages(self.max_messages)
            .max_receives(self.max_receives)
            .extend_before(self.extend_before)
            .max_extension(self.max_extension)
            .reach_timeout(self.reach_timeout)
            .on_failed(match self.on_failed {
                Failed::Leave if self.retry_delay.is_some() => {
                    return Err("`retry_delay` needs `on_failed = \"retry\"`".into());
                }
                Failed::Leave => OnFailed::Leave,
                Failed::Retry => OnFailed::Retry {
                    delay: self.retry_delay.unwrap_or_default(),
                },
            });
        if let Some(v) = self.visibility_timeout {
            o = o.visibility_timeout(v);
        }
        if let Some(n) = self.max_receive_count {
            o = o.max_receive_count(n);
        }
        if let Some(a) = &self.attribute_names {
            o = o.attribute_names(a.clone());
        }
        if let Some(a) = &self.message_attribute_names {
            o = o.message_attribute_names(a.clone());
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for SqsSourceConfig {
    const TYPE: &'static str = "sqs";
    const SUMMARY: &'static str = "Amazon SQS: long polls sized by demand, each message deleted once processed";
    const EXAMPLE: &'static str = r#"queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
# region = "eu-west-1"             # default: from the queue URL, else AWS_REGION
# endpoint_url = "http://127.0.0.1:4566"   # default: AWS, or a local queue URL's host
# credentials = { access_key_id = "AKIA...", secret_access_key = "SECRET" }   # default: the AWS chain
wait_time = "20s"                  # long poll
max_messages = 10                  # per receive (1-10)
max_receives = 4                   # receives in flight per producer, never more than the demand
# visibility_timeout = "30s"       # default: the queue's
extend_before = "10s"              # extend a slow message's visibility this close to its end
max_extension = "1h"
on_failed = "leave"                # or "retry" (visible again after retry_delay)
# max_receive_count = 5            # from this receive on, a failure goes to the dead-letter route
reach_timeout = "60s""#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        Ok(BoxSource::new(SqsSource::factory(self.options()?)?.map(Record::from)))
    }
}

/// `type = "sqs"` as a sink: records sent with `SendMessageBatch`; on FIFO queues the key
/// is the group id. See [`SinkOptions`].
///
/// ```
/// use ferroway_sqs::SqsSinkConfig;
/// let c: SqsSinkConfig = serde_json::from_str(
///     r#"{"queue_url": "http://127.0.0.1:4566/000000000000/out.fifo", "deduplication_header": "event-id"}"#,
/// ).unwrap();
/// assert!(c.options().is_ok());
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqsSinkConfig {
    /// The queue and how to reach it.
    #[serde(flatten)]
    pub queue: QueueConfig,
    /// FIFO: one group id for every message (default: the record's key).
    #[serde(default)]
    pub group_id: Option<String>,
    /// FIFO: the header holding the deduplication id (default: content-based).
    #[serde(default)]
    pub deduplication_header: Option<String>,
    /// Standard queues: delay every message (default none).
    #[serde(default, with = "ferroway::config::duration::option")]
    pub delay: Option<Duration>,
    /// Bytes per request (default 262144).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Standard queues: calls in flight per write (default 4).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Attempts for throttled calls and entries SQS failed on its side (default 5).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl SqsSinkConfig {
    /// The sink's options.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<SinkOptions, BoxError> {
        let mut o = SinkOptions::for_queue(self.queue.options())
            .max_request_bytes(self.max_request_bytes)
            .max_in_flight(self.max_in_flight)
            .max_attempts(self.max_attempts);
        if let Some(g) = &self.group_id {
            o = o.group_id(GroupId::Fixed(g.clone()));
        }
        if let Some(h) = &self.deduplication_header {
            o = o.deduplication(Deduplication::FromHeader(h.clone()));
        }
        if let Some(d) = self.delay {
            o = o.delay(d);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SinkConfig for SqsSinkConfig {
    const TYPE: &'static str = "sqs";
    const SUMMARY: &'static str = "records sent to an Amazon SQS queue in batches, acked once SQS returned their ids";
    const EXAMPLE: &'static str = r#"queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/archive"
# credentials = { access_key_id = "AKIA...", secret_access_key = "SECRET" }   # default: the AWS chain
# group_id = "all"                 # FIFO: one group (default: the record's key)
# deduplication_header = "event-id"   # FIFO: default content-based
max_request_bytes = 262144
max_in_flight = 4
max_attempts = 5"#;

    fn build(self, _: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        Box::pin(async move {
            let sink: Arc<dyn Sink<Record>> = Arc::new(SqsSink::new(self.options()?)?);
            Ok(sink)
        })
    }
}

fn default_wait() -> Duration {
    Duration::from_secs(20)
}

fn default_max_messages() -> usize {
    10
}

fn default_max_receives() -> usize {
    4
}

fn default_extend_before() -> Duration {
    Duration::from_secs(10)
}

fn default_max_extension() -> Duration {
    Duration::from_secs(3600)
}

fn default_reach_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_max_request_bytes() -> usize {
    262_144
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
        let c: SqsSourceConfig = toml::from_str(SqsSourceConfig::EXAMPLE).unwrap();
        let o = c.options().unwrap();
        let d = SqsOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/orders");
        assert_eq!(
            (o.wait_time, o.max_messages, o.max_receives, o.visibility_timeout),
            (d.wait_time, d.max_messages, d.max_receives, d.visibility_timeout)
        );
        assert_eq!(
            (o.extend_before, o.max_extension, o.on_failed, o.max_receive_count),
            (d.extend_before, d.max_extension, d.on_failed, d.max_receive_count)
        );
        assert_eq!(
            (o.attribute_names, o.queue.reach_timeout),
            (d.attribute_names, d.queue.reach_timeout)
        );
        let s: SqsSinkConfig = toml::from_str(SqsSinkConfig::EXAMPLE).unwrap();
        let o = s.options().unwrap();
        let d = SinkOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/archive");
        assert_eq!(
            (
                o.max_request_bytes,
                o.max_in_flight,
                o.max_attempts,
                o.group_id,
                o.deduplication
            ),
            (
                d.max_request_bytes,
                d.max_in_flight,
                d.max_attempts,
                d.group_id,
                d.deduplication
            )
        );
    }

    #[test]
    fn wrong_values_are_named() {
        let e = toml::from_str::<SqsSourceConfig>("queue_url = \"http://h/1/q\"\non_failed = \"drop\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown variant `drop`, expected `leave` or `retry`"),
            "{e}"
        );
        let c: SqsSourceConfig = toml::from_str("queue_url = \"http://h/1/q\"\nretry_delay = \"5s\"").unwrap();
        assert!(c.options().unwrap_err().to_string().contains("`retry_delay` needs"));
        let c: SqsSourceConfig = toml::from_str("queue_url = \"http://h/1/q\"\nwait_time = \"30s\"").unwrap();
        assert!(
            c.options()
                .unwrap_err()
                .to_string()
                .starts_with("invalid option `wait_time`")
        );
    }
}
