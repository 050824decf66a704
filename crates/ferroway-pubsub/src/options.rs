//! Options, in Pub/Sub's own terms, validated up front.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::OptionsError;

/// How to reach Pub/Sub: the project, an emulator or an endpoint, credentials, timeouts.
/// Shared by the source and the sink.
///
/// - **Emulator:** [`emulator_host`](ClientOptions::emulator_host), else the
///   `PUBSUB_EMULATOR_HOST` environment variable, as Google's clients do. No TLS, no
///   credentials.
/// - **Google Cloud:** the [`endpoint`](ClientOptions::endpoint) (default
///   `pubsub.googleapis.com`; a regional one such as `europe-west1-pubsub.googleapis.com`
///   keeps messages in that region) over TLS, with application default credentials
///   (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, the metadata server) or
///   a [`credentials_file`](ClientOptions::credentials_file). Needs the `auth` feature (on
///   by default).
///
/// ```
/// use ferroway_pubsub::ClientOptions;
/// let local = ClientOptions::new("my-project").emulator_host("127.0.0.1:8085");
/// assert!(local.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The project the subscription or topic belongs to (unless given by its full name).
    pub project: Option<String>,
    /// An emulator's `host:port` (default: `PUBSUB_EMULATOR_HOST`, if set).
    pub emulator_host: Option<String>,
    /// The service's host name (default `pubsub.googleapis.com`).
    pub endpoint: String,
    /// A service account key file (default: application default credentials). The file's
    /// path may appear in errors; its content never does.
    pub credentials_file: Option<PathBuf>,
    /// How long a connection attempt may take (default 10 s).
    pub connect_timeout: Duration,
    /// A source fails if Pub/Sub did not answer within this long of its start (default
    /// 60 s); once it did, an outage only makes it wait.
    pub reach_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            project: None,
            emulator_host: None,
            endpoint: "pubsub.googleapis.com".to_owned(),
            credentials_file: None,
            connect_timeout: Duration::from_secs(10),
            reach_timeout: Duration::from_secs(60),
        }
    }
}

impl ClientOptions {
    /// Defaults in `project`.
    pub fn new(project: impl Into<String>) -> Self {
        ClientOptions {
            project: Some(project.into()),
            ..ClientOptions::default()
        }
    }

    /// An emulator at `host_port`.
    pub fn emulator_host(mut self, host_port: impl Into<String>) -> Self {
        self.emulator_host = Some(host_port.into());
        self
    }

    /// The emulator to use: the option, else `PUBSUB_EMULATOR_HOST`.
    pub fn emulator(&self) -> Option<String> {
        self.emulator_host
            .clone()
            .or_else(|| std::env::var("PUBSUB_EMULATOR_HOST").ok().filter(|h| !h.is_empty()))
    }

    /// What requests go to, for messages.
    pub(crate) fn shown(&self) -> String {
        match self.emulator() {
            Some(h) => format!("the emulator at {h}"),
            None => self.endpoint.clone(),
        }
    }

    /// Checks every option; the first invalid one is named.
    ///
    /// # Errors
    /// [`OptionsError::Invalid`].
    pub fn validate(&self) -> Result<(), OptionsError> {
        if let Some(p) = &self.project
            && !valid_project(p)
        {
            return Err(invalid(
                "project",
                format!("{p:?} is not a project id (6 to 30 of a-z 0-9 -, or a domain-scoped id)"),
            ));
        }
        if let Some(h) = &self.emulator_host
            && (h.is_empty() || h.contains("://") || !h.contains(':'))
        {
            return Err(invalid("emulator_host", format!("{h:?} is not host:port (no scheme)")));
        }
        if self.endpoint.is_empty() || self.endpoint.contains("://") || self.endpoint.contains('/') {
            return Err(invalid(
                "endpoint",
                format!("{:?} is not a host name (such as pubsub.googleapis.com)", self.endpoint),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect_timeout", "must be more than zero"));
        }
        Ok(())
    }

    /// `projects/<project>/<kind>/<id>` for `name`, which may already be one.
    pub(crate) fn full_name(&self, option: &'static str, kind: &str, name: &str) -> Result<String, OptionsError> {
        let full = if name.starts_with("projects/") {
            name.to_owned()
        } else {
            let Some(project) = &self.project else {
                return Err(invalid(
                    option,
                    format!("{name:?} is not a full name (projects/<project>/{kind}/<id>) and no `project` is set"),
                ));
            };
            format!("projects/{project}/{kind}/{name}")
        };
        let parts: Vec<&str> = full.split('/').collect();
        match parts.as_slice() {
            ["projects", project, k, id] if *k == kind && !project.is_empty() && valid_id(id) => Ok(full),
            _ => Err(invalid(
                option,
                format!(
                    "{name:?} is not a valid name: projects/<project>/{kind}/<id>, the id 3 to 255 of \
                     A-Z a-z 0-9 - _ . ~ + %, starting with a letter and not with `goog`"
                ),
            )),
        }
    }
}

/// Pub/Sub's rule for topic and subscription ids.
fn valid_id(id: &str) -> bool {
    (3..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && !id.starts_with("goog")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '%'))
}

fn valid_project(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 100
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':'))
}

/// What happens to a message that failed and was not dead-lettered.
///
/// ```
/// use std::time::Duration;
/// use ferroway_pubsub::OnFailed;
/// assert_eq!(OnFailed::default(), OnFailed::Leave);
/// let nack = OnFailed::Retry { delay: Duration::ZERO };
/// # let _ = nack;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailed {
    /// Left as it is: no more lease extension, Pub/Sub delivers it again once its ack
    /// deadline runs out (broadway_cloud_pub_sub's `:noop`). The default.
    #[default]
    Leave,
    /// Delivered again after `delay`: its ack deadline set to `delay` (`ModifyAckDeadline`;
    /// zero is a nack: delivered again at once).
    Retry {
        /// How long until it is delivered again (at most 600 s).
        delay: Duration,
    },
}

/// Options of a [`PubSubSource`](crate::PubSubSource).
///
/// ```
/// use std::time::Duration;
/// use ferroway_pubsub::{ClientOptions, OnFailed, PubSubOptions};
///
/// let opts = PubSubOptions::new(ClientOptions::new("my-project"), "orders-worker")
///     .max_outstanding_messages(500)
///     .ack_deadline(Duration::from_secs(30))
///     .on_failed(OnFailed::Retry { delay: Duration::from_secs(10) })
///     .max_delivery_attempts(5);
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct PubSubOptions {
    /// The project and how to reach Pub/Sub.
    pub client: ClientOptions,
    /// The subscription: its id in the project, or its full name
    /// (`projects/<project>/subscriptions/<id>`).
    pub subscription: String,
    /// Messages received and not yet acknowledged, at most, per producer (default 1,000):
    /// sent to Pub/Sub as the stream's flow control, and kept by the source itself (it
    /// reads no more from the stream until acknowledgements make room).
    pub max_outstanding_messages: usize,
    /// The same in bytes of message data (default 100 MiB).
    pub max_outstanding_bytes: usize,
    /// The ack deadline of the messages the stream delivers (default 60 s; 10 to 600 s).
    pub ack_deadline: Duration,
    /// A message still in the pipeline this close to its ack deadline gets it extended by
    /// [`ack_deadline`](Self::ack_deadline) (default 5 s; zero: never extended). Less than
    /// the ack deadline.
    pub extend_before: Duration,
    /// Extensions stop once a message has been in the pipeline this long (default 1 h).
    pub max_extension: Duration,
    /// Failed messages ([`OnFailed`]).
    pub on_failed: OnFailed,
    /// A message delivered this many times or more goes to the pipeline's dead-letter route
    /// when it fails (default: never). Pub/Sub counts delivery attempts only on
    /// subscriptions with a dead-letter policy: the source checks it has one.
    pub max_delivery_attempts: Option<u32>,
}

impl PubSubOptions {
    /// Defaults for `subscription` (an id in `client`'s project, or a full name).
    pub fn new(client: ClientOptions, subscription: impl Into<String>) -> Self {
        PubSubOptions {
            client,
            subscription: subscription.into(),
            max_outstanding_messages: 1000,
            max_outstanding_bytes: 100 << 20,
            ack_deadline: Duration::from_secs(60),
            extend_before: Duration::from_secs(5),
            max_extension: Duration::from_secs(3600),
            on_failed: OnFailed::Leave,
            max_delivery_attempts: None,
        }
    }

    /// Messages outstanding at most.
    pub fn max_outstanding_messages(mut self, n: usize) -> Self {
        self.max_outstanding_messages = n;
        self
    }

    /// Bytes outstanding at most.
    pub fn max_outstanding_bytes(mut self, n: usize) -> Self {
        self.max_outstanding_bytes = n;
        self
    }

    /// The stream's ack deadline.
    pub fn ack_deadline(mut self, deadline: Duration) -> Self {
        self.ack_deadline = deadline;
        self
    }

    /// When leases are extended (zero: never).
    pub fn extend_before(mut self, before: Duration) -> Self {
        self.extend_before = before;
        self
    }

    /// How long leases are extended.
    pub fn max_extension(mut self, max: Duration) -> Self {
        self.max_extension = max;
        self
    }

    /// Failed messages.
    pub fn on_failed(mut self, on_failed: OnFailed) -> Self {
        self.on_failed = on_failed;
        self
    }

    /// The delivery attempt from which a failure is dead-lettered.
    pub fn max_delivery_attempts(mut self, n: u32) -> Self {
        self.max_delivery_attempts = Some(n);
        self
    }

    /// Fail the source if Pub/Sub did not answer within this long of its start.
    pub fn reach_timeout(mut self, timeout: Duration) -> Self {
        self.client.reach_timeout = timeout;
        self
    }

    /// The subscription's full name.
    pub(crate) fn subscription_name(&self) -> Result<String, OptionsError> {
        self.client
            .full_name("subscription", "subscriptions", &self.subscription)
    }

    /// Checks every option; the first invalid one is named.
    ///
    /// # Errors
    /// [`OptionsError::Invalid`].
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.client.validate()?;
        self.subscription_name()?;
        if self.max_outstanding_messages == 0 {
            return Err(invalid("max_outstanding_messages", "at least 1"));
        }
        if self.max_outstanding_bytes < 1024 {
            return Err(invalid("max_outstanding_bytes", "at least 1024"));
        }
        let secs = self.ack_deadline.as_secs();
        if !(10..=600).contains(&secs) || self.ack_deadline.subsec_nanos() != 0 {
            return Err(invalid(
                "ack_deadline",
                "whole seconds from 10 to 600 (Pub/Sub's range)",
            ));
        }
        if self.extend_before >= self.ack_deadline {
            return Err(invalid(
                "extend_before",
                format!("less than the ack deadline ({secs} s), or zero for no extension"),
            ));
        }
        if self.max_delivery_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            return Err(invalid(
                "max_delivery_attempts",
                "from 1 to 100 (a dead-letter policy allows 5 to 100; the first delivery counts 1)",
            ));
        }
        if let OnFailed::Retry { delay } = self.on_failed
            && (delay > MAX_DEADLINE || delay.subsec_nanos() != 0)
        {
            return Err(invalid("on_failed", "a retry delay of whole seconds, at most 600"));
        }
        Ok(())
    }
}

/// Pub/Sub's longest ack deadline.
pub(crate) const MAX_DEADLINE: Duration = Duration::from_secs(600);

/// Where a published message's ordering key comes from.
///
/// ```
/// use ferroway_pubsub::OrderingKey;
/// assert_eq!(OrderingKey::default(), OrderingKey::None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OrderingKey {
    /// No ordering key. The default.
    #[default]
    None,
    /// The record's key (none when it has none). Messages of one key are published in
    /// order, one request at a time; subscriptions with message ordering deliver them in
    /// that order.
    FromKey,
}

/// Options of a [`PubSubSink`](crate::PubSubSink).
///
/// ```
/// use ferroway_pubsub::{ClientOptions, OrderingKey, SinkOptions};
/// let opts = SinkOptions::new(ClientOptions::new("my-project"), "archive")
///     .ordering_key(OrderingKey::FromKey)
///     .max_messages(500);
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The project and how to reach Pub/Sub.
    pub client: ClientOptions,
    /// The topic: its id in the project, or its full name (`projects/<project>/topics/<id>`).
    pub topic: String,
    /// Ordering keys ([`OrderingKey`]).
    pub ordering_key: OrderingKey,
    /// Messages per `Publish` request, at most (default 1,000, Pub/Sub's limit).
    pub max_messages: usize,
    /// Bytes per `Publish` request, at most (default 9 MiB; Pub/Sub takes 10 MB).
    pub max_request_bytes: usize,
    /// `Publish` requests in flight per write (default 4). Requests of one ordering key go
    /// one at a time, in order.
    pub max_in_flight: usize,
    /// Attempts for a request that failed on Pub/Sub's side or was throttled (default 5).
    pub max_attempts: u32,
}

impl SinkOptions {
    /// Defaults for `topic` (an id in `client`'s project, or a full name).
    pub fn new(client: ClientOptions, topic: impl Into<String>) -> Self {
        SinkOptions {
            client,
            topic: topic.into(),
            ordering_key: OrderingKey::None,
            max_messages: 1000,
            max_request_bytes: 9 << 20,
            max_in_flight: 4,
            max_attempts: 5,
        }
    }

    /// Ordering keys.
    pub fn ordering_key(mut self, key: OrderingKey) -> Self {
        self.ordering_key = key;
        self
    }

    /// Messages per request.
    pub fn max_messages(mut self, n: usize) -> Self {
        self.max_messages = n;
        self
    }

    /// Bytes per request.
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }

    /// Requests in flight per write.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Attempts for retryable failures.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The topic's full name.
    pub(crate) fn topic_name(&self) -> Result<String, OptionsError> {
        self.client.full_name("topic", "topics", &self.topic)
    }

    /// Checks every option; the first invalid one is named.
    ///
    /// # Errors
    /// [`OptionsError::Invalid`].
    pub fn validate(&self) -> Result<(), OptionsError> {
        self.client.validate()?;
        self.topic_name()?;
        if !(1..=1000).contains(&self.max_messages) {
            return Err(invalid("max_messages", "from 1 to 1000 (Pub/Sub's limit per request)"));
        }
        if !(1024..=MAX_REQUEST_BYTES).contains(&self.max_request_bytes) {
            return Err(invalid(
                "max_request_bytes",
                "from 1024 to 10,000,000 (Pub/Sub's limit per request)",
            ));
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

/// Pub/Sub's largest publish request (and message).
pub(crate) const MAX_REQUEST_BYTES: usize = 10_000_000;

pub(crate) fn invalid(option: &'static str, reason: impl Into<String>) -> OptionsError {
    OptionsError::Invalid {
        option,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientOptions {
        ClientOptions::new("proj-1").emulator_host("127.0.0.1:8085")
    }

    #[test]
    fn names_are_completed_and_checked() {
        let o = PubSubOptions::new(client(), "orders");
        assert_eq!(o.subscription_name().unwrap(), "projects/proj-1/subscriptions/orders");
        let o = PubSubOptions::new(ClientOptions::default(), "projects/other/subscriptions/abc");
        assert_eq!(o.subscription_name().unwrap(), "projects/other/subscriptions/abc");
        for bad in ["ab", "goog-x", "1abc", "projects/p/topics/abc", "a b c"] {
            let e = PubSubOptions::new(client(), bad).validate().unwrap_err();
            assert!(e.to_string().starts_with("invalid option `subscription`"), "{bad}: {e}");
        }
        let e = SinkOptions::new(ClientOptions::default(), "t-1")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("no `project` is set"), "{e}");
    }

    #[test]
    fn bad_options_are_named() {
        let name = |o: PubSubOptions| match o.validate().unwrap_err() {
            OptionsError::Invalid { option, .. } => option,
        };
        let o = || PubSubOptions::new(client(), "orders");
        assert_eq!(name(o().ack_deadline(Duration::from_secs(5))), "ack_deadline");
        assert_eq!(name(o().extend_before(Duration::from_secs(60))), "extend_before");
        assert_eq!(name(o().max_outstanding_messages(0)), "max_outstanding_messages");
        assert_eq!(name(o().max_delivery_attempts(0)), "max_delivery_attempts");
        assert_eq!(
            name(o().on_failed(OnFailed::Retry {
                delay: Duration::from_secs(601)
            })),
            "on_failed"
        );
        let e = ClientOptions::new("p-1")
            .emulator_host("http://x:1")
            .validate()
            .unwrap_err();
        assert!(e.to_string().starts_with("invalid option `emulator_host`"), "{e}");
        let e = SinkOptions::new(client(), "t-1")
            .max_messages(1001)
            .validate()
            .unwrap_err();
        assert!(e.to_string().starts_with("invalid option `max_messages`"), "{e}");
    }
}
