//! Options, in SQS' own terms, validated up front.

use std::fmt;
use std::time::Duration;

use crate::error::OptionsError;

/// AWS credentials given explicitly. Without them the SDK's default chain is used
/// (environment, profile files, web identity, ECS and EC2 instance roles). The secret and the
/// session token never appear in `Debug` output, logs or errors.
///
/// ```
/// use ferroway_sqs::Credentials;
/// let c = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI");
/// assert!(!format!("{c:?}").contains("wJalrXUtnFEMI"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl Credentials {
    /// An access key and its secret.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
        }
    }

    /// With a session token (temporary credentials).
    pub fn session_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How to reach SQS: the queue, the region, an endpoint override, credentials, timeouts.
/// Shared by the source and the sink.
///
/// - The **region** is taken from the option, else from the queue URL
///   (`https://sqs.<region>.amazonaws.com/…`), else from the SDK's default chain
///   (`AWS_REGION`, profile).
/// - The **endpoint** is the region's unless the queue URL is not an AWS one (a local
///   emulator such as moto or ElasticMQ): then the URL's scheme, host and port.
///
/// ```
/// use ferroway_sqs::QueueOptions;
/// let q = QueueOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/orders");
/// assert_eq!(q.region_or_guess().as_deref(), Some("eu-west-1"));
/// assert_eq!(q.endpoint_or_guess(), None);
/// let local = QueueOptions::new("http://127.0.0.1:4566/123456789012/orders.fifo");
/// assert_eq!(local.endpoint_or_guess().as_deref(), Some("http://127.0.0.1:4566"));
/// assert!(local.is_fifo());
/// ```
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// The queue URL, as `GetQueueUrl` returns it.
    pub queue_url: String,
    /// The region (see above for the default).
    pub region: Option<String>,
    /// The endpoint (see above for the default).
    pub endpoint_url: Option<String>,
    /// Explicit credentials (default: the SDK's chain).
    pub credentials: Option<Credentials>,
    /// How long a TCP/TLS connect may take (default 5 s).
    pub connect_timeout: Duration,
    /// A source fails if SQS did not answer within this long of its start (default 60 s);
    /// once it did, an outage only makes it wait.
    pub reach_timeout: Duration,
}

impl QueueOptions {
    /// Options for the queue at `queue_url`.
    pub fn new(queue_url: impl Into<String>) -> Self {
        QueueOptions {
            queue_url: queue_url.into(),
            region: None,
            endpoint_url: None,
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            reach_timeout: Duration::from_secs(60),
        }
    }

    /// Whether the queue is a FIFO queue (its name ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.queue_url.trim_end_matches('/').ends_with(".fifo")
    }

    /// The region to use: the option, else the one in an AWS queue URL.
    pub fn region_or_guess(&self) -> Option<String> {
        self.region.clone().or_else(|| {
            let host = self.host()?;
            let mut parts = host.split('.');
            match (parts.next(), parts.next()) {
                (Some("sqs"), Some(region)) if host.contains(".amazonaws.") => Some(region.to_owned()),
                (Some(region), Some("queue")) if host.contains(".amazonaws.") => Some(region.to_owned()),
                _ => None,
            }
        })
    }

    /// The endpoint to use: the option, else the origin of a queue URL that is not AWS'.
    pub fn endpoint_or_guess(&self) -> Option<String> {
        if self.endpoint_url.is_some() {
            return self.endpoint_url.clone();
        }
        let host = self.host()?;
        if host.contains(".amazonaws.") {
            return None;
        }
        let scheme_end = self.queue_url.find("://")? + 3;
        Some(format!("{}{host}", &self.queue_url[..scheme_end]))
    }

    /// `host[:port]` of the queue URL.
    fn host(&self) -> Option<&str> {
        let rest = &self.queue_url[self.queue_url.find("://")? + 3..];
        Some(&rest[..rest.find('/').unwrap_or(rest.len())])
    }

    /// The queue's name: the URL's last segment.
    pub(crate) fn queue_name(&self) -> &str {
        self.queue_url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
    }

    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        let url = &self.queue_url;
        let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
        if !ok_scheme || self.host().is_none_or(str::is_empty) || !url.trim_end_matches('/').contains('/') {
            return Err(invalid(
                "queue_url",
                format!("{url:?} is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)"),
            ));
        }
        if self.queue_name().is_empty() || self.queue_name().contains(':') {
            return Err(invalid("queue_url", format!("{url:?} names no queue")));
        }
        if let Some(e) = &self.endpoint_url
            && !(e.starts_with("https://") || e.starts_with("http://"))
        {
            return Err(invalid(
                "endpoint_url",
                format!("{e:?} must start with http:// or https://"),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be more than zero"));
        }
        Ok(())
    }
}

/// What happens to a message that failed and was not dead-lettered.
///
/// ```
/// use ferroway_sqs::OnFailed;
/// assert_eq!(OnFailed::default(), OnFailed::Leave);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailed {
    /// Left as it is: it reappears once its visibility timeout runs out (broadway_sqs'
    /// behaviour). The default.
    #[default]
    Leave,
    /// Visible again after `delay` (`ChangeMessageVisibility`; zero: at once).
    Retry {
        /// How long it stays hidden.
        delay: Duration,
    },
}

/// Options of an [`SqsSource`](crate::SqsSource).
///
/// ```
/// use std::time::Duration;
/// use ferroway_sqs::{OnFailed, SqsOptions};
///
/// let opts = SqsOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/orders")
///     .wait_time(Duration::from_secs(10))
///     .on_failed(OnFailed::Retry { delay: Duration::from_secs(30) })
///     .max_receive_count(5);
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct SqsOptions {
    /// The queue and how to reach it.
    pub queue: QueueOptions,
    /// Long-poll wait of each `ReceiveMessage` (default 20 s, at most 20 s).
    pub wait_time: Duration,
    /// Messages per `ReceiveMessage` (1..=10, default 10).
    pub max_messages: usize,
    /// `ReceiveMessage` calls in flight per producer, at most (default 4); fewer when the
    /// pipeline demands less.
    pub max_receives: usize,
    /// The visibility timeout asked for on receive (default: the queue's).
    pub visibility_timeout: Option<Duration>,
    /// A message still in the pipeline this close to the end of its visibility timeout gets
    /// it extended (default 10 s; zero: never extended).
    pub extend_before: Duration,
    /// Extensions stop once a message has been in the pipeline this long (default 1 h; SQS
    /// allows 12 h).
    pub max_extension: Duration,
    /// Failed messages ([`OnFailed`]).
    pub on_failed: OnFailed,
    /// A message received this many times or more goes to the pipeline's dead-letter route
    /// when it fails (default: never).
    pub max_receive_count: Option<u32>,
    /// The system attributes to request (default: `SentTimestamp`, `ApproximateReceiveCount`,
    /// and on FIFO queues `MessageGroupId`, `MessageDeduplicationId`, `SequenceNumber`).
    pub attribute_names: Vec<String>,
    /// The message attributes to request (default `["All"]`; empty: none).
    pub message_attribute_names: Vec<String>,
}

impl SqsOptions {
    /// Defaults for the queue at `queue_url`.
    pub fn new(queue_url: impl Into<String>) -> Self {
        SqsOptions::for_queue(QueueOptions::new(queue_url))
    }

    /// Defaults for `queue`.
    pub fn for_queue(queue: QueueOptions) -> Self {
        let mut attribute_names = vec!["SentTimestamp".to_owned(), "ApproximateReceiveCount".to_owned()];
        if queue.is_fifo() {
            attribute_names.extend(["MessageGroupId", "MessageDeduplicationId", "SequenceNumber"].map(String::from));
        }
        SqsOptions {
            queue,
            wait_time: Duration::from_secs(20),
            max_messages: 10,
            max_receives: 4,
            visibility_timeout: None,
            extend_before: Duration::from_secs(10),
            max_extension: Duration::from_secs(3600),
            on_failed: OnFailed::Leave,
            max_receive_count: None,
            attribute_names,
            message_attribute_names: vec!["All".to_owned()],
        }
    }

    /// The region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.queue.region = Some(region.into());
        self
    }

    /// The endpoint.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.queue.endpoint_url = Some(url.into());
        self
    }

    /// Explicit credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.queue.credentials = Some(credentials);
        self
    }

    /// The long-poll wait.
    pub fn wait_time(mut self, wait: Duration) -> Self {
        self.wait_time = wait;
        self
    }

    /// Messages per receive.
    pub fn max_messages(mut self, n: usize) -> Self {
        self.max_messages = n;
        self
    }

    /// Receives in flight per producer.
    pub fn max_receives(mut self, n: usize) -> Self {
        self.max_receives = n;
        self
    }

    /// The visibility timeout asked for on receive.
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = Some(timeout);
        self
    }

    /// When extensions happen (zero: never).
    pub fn extend_before(mut self, before: Duration) -> Self {
        self.extend_before = before;
        self
    }

    /// How long extensions go on.
    pub fn max_extension(mut self, max: Duration) -> Self {
        self.max_extension = max;
        self
    }

    /// Failed messages.
    pub fn on_failed(mut self, on_failed: OnFailed) -> Self {
        self.on_failed = on_failed;
        self
    }

    /// The receive count from which a failure is dead-lettered.
    pub fn max_receive_count(mut self, n: u32) -> Self {
        self.max_receive_count = Some(n);
        self
    }

    /// The system attributes requested.
    pub fn attribute_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.attribute_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// The message attributes requested.
    pub fn message_attribute_names<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.message_attribute_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Fail the source if SQS did not answer within this long of its start.
    pub fn reach_timeout(mut self, timeout: Duration) -> Self {
        self.queue.reach_timeout = timeout;
        self
    }

    /// Checks every option; the first invalid one is named.
    ///
    /// # Errors
    /// [`OptionsError::Invalid`].
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.queue.validate()?;
        if self.wait_time > Duration::from_secs(20) || self.wait_time.subsec_nanos() != 0 {
            return Err(invalid(
                "wait_time",
                "whole seconds from 0 to 20 (SQS' long-poll limit)",
            ));
        }
        if !(1..=10).contains(&self.max_messages) {
            return Err(invalid("max_messages", "from 1 to 10 (SQS' limit per receive)"));
        }
        if self.max_receives == 0 {
            return Err(invalid("max_receives", "at least 1"));
        }
        if let Some(v) = self.visibility_timeout
            && (v > MAX_VISIBILITY || v.subsec_nanos() != 0)
        {
            return Err(invalid(
                "visibility_timeout",
                "whole seconds from 0 to 43200 (12 hours)",
            ));
        }
        if self.max_extension > MAX_VISIBILITY {
            return Err(invalid("max_extension", "at most 12 hours (SQS' limit)"));
        }
        if self.max_receive_count == Some(0) {
            return Err(invalid("max_receive_count", "at least 1 (the first receive counts 1)"));
        }
        if let OnFailed::Retry { delay } = self.on_failed
            && delay > MAX_VISIBILITY
        {
            return Err(invalid("on_failed", "a retry delay of at most 12 hours"));
        }
        Ok(())
    }
}

/// SQS' longest visibility timeout.
pub(crate) const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// Where a FIFO message's `MessageGroupId` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GroupId {
    /// The record's key (a message without one fails). The default.
    #[default]
    FromKey,
    /// The same group for every message.
    Fixed(String),
}

/// Where a FIFO message's `MessageDeduplicationId` comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Deduplication {
    /// None sent: the queue must have content-based deduplication. The default.
    #[default]
    ContentBased,
    /// The value of this header of the record (a message without it fails).
    FromHeader(String),
}

/// Options of an [`SqsSink`](crate::SqsSink).
///
/// ```
/// use ferroway_sqs::{Deduplication, SinkOptions};
/// let opts = SinkOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo")
///     .deduplication(Deduplication::FromHeader("event-id".into()));
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The queue and how to reach it.
    pub queue: QueueOptions,
    /// FIFO queues: the message group ([`GroupId`]).
    pub group_id: GroupId,
    /// FIFO queues: deduplication ([`Deduplication`]).
    pub deduplication: Deduplication,
    /// Standard queues: every message delayed this long (default none).
    pub delay: Option<Duration>,
    /// The most bytes one `SendMessageBatch` carries (default 262,144; a larger message goes
    /// alone, up to the queue's `MaximumMessageSize`).
    pub max_request_bytes: usize,
    /// Standard queues: `SendMessageBatch` calls in flight per write (default 4). FIFO
    /// queues send one at a time, in order.
    pub max_in_flight: usize,
    /// Attempts for entries SQS failed on its side, and for throttled calls (default 5).
    pub max_attempts: u32,
}

impl SinkOptions {
    /// Defaults for the queue at `queue_url`.
    pub fn new(queue_url: impl Into<String>) -> Self {
        SinkOptions::for_queue(QueueOptions::new(queue_url))
    }

    /// Defaults for `queue`.
    pub fn for_queue(queue: QueueOptions) -> Self {
        SinkOptions {
            queue,
            group_id: GroupId::FromKey,
            deduplication: Deduplication::ContentBased,
            delay: None,
            max_request_bytes: 262_144,
            max_in_flight: 4,
            max_attempts: 5,
        }
    }

    /// The region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.queue.region = Some(region.into());
        self
    }

    /// The endpoint.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.queue.endpoint_url = Some(url.into());
        self
    }

    /// Explicit credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.queue.credentials = Some(credentials);
        self
    }

    /// FIFO group ids.
    pub fn group_id(mut self, group: GroupId) -> Self {
        self.group_id = group;
        self
    }

    /// FIFO deduplication ids.
    pub fn deduplication(mut self, dedup: Deduplication) -> Self {
        self.deduplication = dedup;
        self
    }

    /// A delay for every message (standard queues).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Bytes per request.
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }

    /// Calls in flight per write.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Attempts for retryable failures.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Checks every option; the first invalid one is named.
    ///
    /// # Errors
    /// [`OptionsError::Invalid`].
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.queue.validate()?;
        if let Some(d) = self.delay {
            if self.queue.is_fifo() {
                return Err(invalid(
                    "delay",
                    "FIFO queues take no per-message delay (set the queue's)",
                ));
            }
            if d > Duration::from_secs(900) || d.subsec_nanos() != 0 {
                return Err(invalid("delay", "whole seconds from 0 to 900"));
            }
        }
        if let GroupId::Fixed(g) = &self.group_id
            && (g.is_empty() || g.len() > 128)
        {
            return Err(invalid("group_id", "1 to 128 characters"));
        }
        if self.max_request_bytes < 1024 {
            return Err(invalid("max_request_bytes", "at least 1024"));
        }
        if self.max_in_flight == 0 {
            return Err(invalid("max_in_flight", "at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "at least 1"));
        }
        Ok(())
    }
}

fn invalid(option: &'static str, reason: impl Into<String>) -> OptionsError {
    OptionsError::Invalid {
        option,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_named() {
        let e = SqsOptions::new("sqs://q").validate().unwrap_err();
        assert!(e.to_string().starts_with("invalid option `queue_url`"), "{e}");
        let e = SqsOptions::new("http://h:1/1/q")
            .wait_time(Duration::from_secs(21))
            .validate()
            .unwrap_err();
        assert!(e.to_string().starts_with("invalid option `wait_time`"), "{e}");
        let e = SqsOptions::new("http://h:1/1/q")
            .max_messages(11)
            .validate()
            .unwrap_err();
        assert!(e.to_string().starts_with("invalid option `max_messages`"), "{e}");
        let e = SinkOptions::new("http://h:1/1/q.fifo")
            .delay(Duration::from_secs(1))
            .validate()
            .unwrap_err();
        assert!(e.to_string().starts_with("invalid option `delay`"), "{e}");
    }

    #[test]
    fn region_and_endpoint_come_from_the_url() {
        let q = QueueOptions::new("https://us-east-2.queue.amazonaws.com/1/q");
        assert_eq!(q.region_or_guess().as_deref(), Some("us-east-2"));
        assert_eq!(q.queue_name(), "q");
        let fifo = SqsOptions::new("http://localhost:9324/000000000000/jobs.fifo");
        assert!(fifo.attribute_names.iter().any(|a| a == "MessageGroupId"));
        assert_eq!(fifo.queue.region_or_guess(), None);
    }
}
