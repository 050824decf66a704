//! Options of the source and the sink, in Redis Streams' own terms, validated up front.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ferroway::resilience::{Backoff, Jitter};

use crate::error::OptionsError;

/// A Redis URL (`redis://[user[:password]@]host[:port][/db]`, or `rediss://` with the `tls`
/// feature). Its password never appears in `Debug`, `Display`, logs or errors.
///
/// ```
/// use ferroway_redis::RedisUrl;
/// let url = RedisUrl::new("redis://app:hunter2@cache:6379/0");
/// assert_eq!(url.redacted(), "redis://app:***@cache:6379/0");
/// assert_eq!(format!("{url}"), url.redacted());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(Arc<str>);

impl RedisUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedisUrl(url.into().into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with this URL, wherever it appears, replaced by its redacted form.
    pub(crate) fn redact_in(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_owned();
        }
        text.replace(self.expose(), &self.redacted())
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        ferroway::telemetry::redact_url(&self.0)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({:?})", self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A URL from a configuration file. Its text is never part of an error: a wrong URL is
/// reported, redacted, when the options are validated.
#[cfg(feature = "config")]
impl<'de> serde::Deserialize<'de> for RedisUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(RedisUrl::new)
    }
}

/// Where a newly created consumer group starts reading.
///
/// ```
/// use ferroway_redis::{SourceOptions, StartId};
/// // Only entries added from now on; `None` requires the group to exist.
/// let opts = SourceOptions::new("redis://127.0.0.1", "g", ["s"]).create_group(StartId::NewOnly);
/// # opts.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartId {
    /// From the first entry of the stream (`0`).
    Beginning,
    /// Only entries added after the group is created (`$`).
    NewOnly,
    /// After this entry id.
    After(String),
}

impl StartId {
    pub(crate) fn as_arg(&self) -> &str {
        match self {
            StartId::Beginning => "0",
            StartId::NewOnly => "$",
            StartId::After(id) => id,
        }
    }
}

/// What happens to an entry whose message failed (and was not dead-lettered).
///
/// ```
/// use ferroway_redis::{OnFailed, SourceOptions};
/// // Failed entries are done: acknowledged (keep them with a dead-letter sink).
/// let opts = SourceOptions::new("redis://127.0.0.1", "g", ["s"]).on_failed(OnFailed::Ack);
/// # opts.validate().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "config", derive(serde::Deserialize), serde(rename_all = "snake_case"))]
pub enum OnFailed {
    /// Leave it in the group's pending entries list: another consumer claims it once it has
    /// been idle for the claim's `min_idle`, and this consumer sees it again after a restart.
    /// The default: nothing is lost.
    #[default]
    LeavePending,
    /// `XACK` it: it is done, failed. Use with a dead-letter sink, or when losing it is fine.
    Ack,
}

/// Claiming entries that other consumers of the group took and never acknowledged
/// (`XPENDING` + `XCLAIM`). Claimed entries are redelivered entries: they come in isolated
/// groups (see [`RedisSource`](crate::RedisSource)).
///
/// ```
/// use std::time::Duration;
/// use ferroway_redis::{ClaimOptions, SourceOptions};
/// let claim = ClaimOptions { min_idle: Duration::from_secs(120), max_deliveries: 3, ..Default::default() };
/// let opts = SourceOptions::new("redis://127.0.0.1", "g", ["s"]).claim(claim);
/// # opts.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimOptions {
    /// Claim entries idle at least this long (longer than your slowest processing).
    pub min_idle: Duration,
    /// How often to look for such entries.
    pub interval: Duration,
    /// An entry delivered more than this many times is not processed again: its message
    /// arrives failed, goes to the pipeline's dead-letter sink (if any), and is `XACK`ed.
    pub max_deliveries: u64,
}

impl Default for ClaimOptions {
    fn default() -> Self {
        ClaimOptions {
            min_idle: Duration::from_secs(60),
            interval: Duration::from_secs(5),
            max_deliveries: 5,
        }
    }
}

/// Options of a [`RedisSource`](crate::RedisSource).
///
/// The consumer name defaults to the host name — in Kubernetes the pod name, which survives a
/// container restart — so that a restarted process finds its own pending entries at once
/// instead of leaving them to be claimed after `min_idle`. Two processes on one host reading
/// with one group must set distinct names with [`consumer`](Self::consumer): one name is one
/// consumer to Redis, and two processes sharing it would take each other's pending entries.
///
/// ```
/// use std::time::Duration;
/// use ferroway_redis::{ClaimOptions, SourceOptions, StartId};
/// let opts = SourceOptions::new("redis://:secret@127.0.0.1:6379", "billing", ["orders"])
///     .consumer("billing-1")
///     .create_group(StartId::Beginning)
///     .block(Duration::from_millis(500))
///     .claim(ClaimOptions { min_idle: Duration::from_secs(30), ..Default::default() });
/// assert!(!format!("{opts:?}").contains("secret"));
/// opts.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub(crate) url: RedisUrl,
    pub(crate) streams: Vec<Arc<str>>,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) create_group: Option<StartId>,
    pub(crate) block: Duration,
    pub(crate) max_count: usize,
    pub(crate) claim: Option<ClaimOptions>,
    pub(crate) on_failed: OnFailed,
    pub(crate) reconnect: Backoff,
    pub(crate) connect_timeout: Duration,
    pub(crate) payload_field: Option<String>,
    pub(crate) key_field: Option<String>,
}

impl SourceOptions {
    /// Reads `streams` as consumer group `group`. Defaults: the host name as consumer name
    /// (see above), group created if missing (from the beginning, with `MKSTREAM`), `BLOCK`
    /// 1 s, at most 1000 entries per read, claiming after 60 s idle, failed entries left
    /// pending, reconnection with exponential backoff from 100 ms to 5 s — never giving up once
    /// Redis answered, but failing if it never did within 60 s ([`connect_timeout`](Self::connect_timeout)).
    pub fn new(
        url: impl Into<String>,
        group: impl Into<String>,
        streams: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Self {
        SourceOptions {
            url: RedisUrl::new(url),
            streams: streams.into_iter().map(|s| Arc::from(s.as_ref())).collect(),
            group: group.into(),
            consumer: default_consumer_name(),
            create_group: Some(StartId::Beginning),
            block: Duration::from_secs(1),
            max_count: 1000,
            claim: Some(ClaimOptions::default()),
            on_failed: OnFailed::LeavePending,
            reconnect: default_reconnect(),
            connect_timeout: Duration::from_secs(60),
            payload_field: None,
            key_field: None,
        }
    }

    /// This consumer's name in the group. Keep it stable across restarts so the consumer
    /// finds its own pending entries again, and distinct from every other process reading
    /// with the same group. A pipeline with several producers reads as `<name>` (producer 0)
    /// and `<name>-<i>` (producer `i`): see [`RedisSourceFactory`](crate::RedisSourceFactory).
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// This consumer's name in the group (by default the host name).
    ///
    /// ```
    /// let opts = ferroway_redis::SourceOptions::new("redis://127.0.0.1", "g", ["s"]);
    /// assert_eq!(opts.consumer_name(), opts.clone().consumer_name());
    /// assert_eq!(opts.consumer("worker-2").consumer_name(), "worker-2");
    /// ```
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// Create the group (and the stream) if missing, starting at `start`; `None` requires both
    /// to exist.
    pub fn create_group(mut self, start: impl Into<Option<StartId>>) -> Self {
        self.create_group = start.into();
        self
    }

    /// How long one `XREADGROUP` waits for new entries. A graceful stop waits for the read
    /// under way (at most this long) and processes what it returns, so nothing is left
    /// pending. The connection's reply timeout is set above it.
    pub fn block(mut self, d: Duration) -> Self {
        self.block = d;
        self
    }

    /// The most entries read at once (the read asks for the pipeline's demand, capped here).
    pub fn max_count(mut self, n: usize) -> Self {
        self.max_count = n;
        self
    }

    /// Claim settings; `None` never claims.
    pub fn claim(mut self, claim: impl Into<Option<ClaimOptions>>) -> Self {
        self.claim = claim.into();
        self
    }

    /// What happens to entries whose message failed.
    pub fn on_failed(mut self, f: OnFailed) -> Self {
        self.on_failed = f;
        self
    }

    /// Backoff between reconnection attempts, and between retries while Redis cannot serve
    /// (e.g. while it loads its data after a restart). A policy that runs out stops the source
    /// with [`SourceError::GaveUp`](crate::SourceError::GaveUp); the default never does.
    pub fn reconnect(mut self, policy: Backoff) -> Self {
        self.reconnect = policy;
        self
    }

    /// How long the sources of this consumer may go without ever connecting to Redis when they
    /// start (default 60 s). Until then the source warns (rate-limited); after, it fails with
    /// [`SourceError::Unreachable`](crate::SourceError::Unreachable) naming the URL and the last
    /// error, and sources started again by the pipeline fail at once — so `join`/`run_until`
    /// returns the error instead of a program retrying a wrong host unseen. Once Redis
    /// answered, an outage never fails the source. `Duration::MAX` waits for ever.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferroway_redis::SourceOptions;
    /// let opts = SourceOptions::new("redis://127.0.0.1:6379", "g", ["s"]).connect_timeout(Duration::from_secs(10));
    /// # let _ = opts;
    /// ```
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// In the [`Record`](ferroway::connector::Record) form of the source
    /// ([`RedisSourceFactory::records`](crate::RedisSourceFactory::records)): the payload is
    /// this field's value, and the entry's other fields become headers. By default the payload
    /// is the whole entry as JSON ([`Entry::to_json`](crate::Entry::to_json)). An entry without
    /// the field arrives failed, its payload the entry as JSON.
    ///
    /// ```
    /// let opts = ferroway_redis::SourceOptions::new("redis://127.0.0.1", "g", ["s"]).payload_field("body");
    /// # opts.validate().unwrap();
    /// ```
    pub fn payload_field(mut self, name: impl Into<String>) -> Self {
        self.payload_field = Some(name.into());
        self
    }

    /// In the [`Record`](ferroway::connector::Record) form of the source: the key is this
    /// field's value (no key if the entry lacks it). By default records have no key.
    pub fn key_field(mut self, name: impl Into<String>) -> Self {
        self.key_field = Some(name.into());
        self
    }

    /// The options of producer `index` of a pipeline: index 0 is this consumer, index `i > 0`
    /// consumer `<consumer>-<i>`.
    pub(crate) fn for_slot(&self, index: usize) -> SourceOptions {
        let mut slot = self.clone();
        if index > 0 {
            slot.consumer = format!("{}-{index}", self.consumer);
        }
        slot
    }

    /// Checks the options; [`RedisSource::factory`](crate::RedisSource::factory) calls this too.
    pub fn validate(&self) -> Result<(), OptionsError> {
        validate_url(&self.url)?;
        let bad = |option: &'static str, reason: String| Err(OptionsError::Invalid { option, reason });
        if self.streams.is_empty() {
            return bad("streams", "name at least one stream".into());
        }
        if let Some(s) = self.streams.iter().find(|s| s.is_empty()) {
            return bad(
                "streams",
                format!("empty stream name in {:?}", self.streams.iter().position(|x| x == s)),
            );
        }
        if self.group.is_empty() {
            return bad("group", "must not be empty".into());
        }
        if self.consumer.is_empty() {
            return bad("consumer", "must not be empty".into());
        }
        if self.max_count == 0 {
            return bad("max_count", "must be at least 1".into());
        }
        if self.block.is_zero() {
            return bad("block", "must be longer than zero (0 would block forever)".into());
        }
        for (option, field) in [("payload_field", &self.payload_field), ("key_field", &self.key_field)] {
            if field.as_deref() == Some("") {
                return bad(option, "must not be empty (leave it out instead)".into());
            }
        }
        if let Some(c) = &self.claim {
            if c.interval.is_zero() {
                return bad("claim.interval", "must be longer than zero".into());
            }
            if c.max_deliveries == 0 {
                return bad("claim.max_deliveries", "must be at least 1".into());
            }
        }
        Ok(())
    }
}

/// Trimming applied by every `XADD` of a sink (approximate, `~`, so Redis trims whole nodes).
///
/// ```
/// use ferroway_redis::{SinkOptions, Trim};
/// let opts = SinkOptions::new("redis://127.0.0.1", "events").trim(Trim::MinId("1700000000000-0".into()));
/// # opts.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "config", derive(serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum Trim {
    /// Keep about this many entries (`MAXLEN ~`; `{ maxlen = N }` in a configuration file).
    MaxLen(u64),
    /// Drop entries with ids below this one (`MINID ~`; `{ minid = "ID" }` in a configuration
    /// file).
    MinId(String),
}

/// Options of a [`RedisSink`](crate::RedisSink).
///
/// ```
/// use ferroway_redis::{SinkOptions, Trim};
/// let opts = SinkOptions::new("redis://127.0.0.1:6379", "events").trim(Trim::MaxLen(1_000_000));
/// opts.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub(crate) url: RedisUrl,
    pub(crate) stream: String,
    pub(crate) trim: Option<Trim>,
    pub(crate) reconnect: Backoff,
    pub(crate) payload_field: String,
    pub(crate) key_field: String,
}

impl SinkOptions {
    /// `XADD`s to `stream`.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        SinkOptions {
            url: RedisUrl::new(url),
            stream: stream.into(),
            trim: None,
            reconnect: default_reconnect(),
            payload_field: "payload".into(),
            key_field: "key".into(),
        }
    }

    /// The field a record's payload goes to, when the sink writes records (default `payload`).
    ///
    /// ```
    /// use ferroway_redis::SinkOptions;
    /// let opts = SinkOptions::new("redis://127.0.0.1", "events").payload_field("body").key_field("id");
    /// # opts.validate().unwrap();
    /// ```
    pub fn payload_field(mut self, name: impl Into<String>) -> Self {
        self.payload_field = name.into();
        self
    }

    /// The field a record's key goes to, if it has one (default `key`).
    pub fn key_field(mut self, name: impl Into<String>) -> Self {
        self.key_field = name.into();
        self
    }

    /// Trims the stream on every write.
    pub fn trim(mut self, t: Trim) -> Self {
        self.trim = Some(t);
        self
    }

    /// Backoff between reconnection attempts. A policy that runs out leaves the sink
    /// unavailable for good (every write then fails with
    /// [`SinkError::Unavailable`](crate::SinkError::Unavailable)); the default never does.
    pub fn reconnect(mut self, policy: Backoff) -> Self {
        self.reconnect = policy;
        self
    }

    /// Checks the options.
    pub fn validate(&self) -> Result<(), OptionsError> {
        validate_url(&self.url)?;
        for (option, value) in [
            ("stream", &self.stream),
            ("payload_field", &self.payload_field),
            ("key_field", &self.key_field),
        ] {
            if value.is_empty() {
                return Err(OptionsError::Invalid {
                    option,
                    reason: "must not be empty".into(),
                });
            }
        }
        Ok(())
    }
}

fn validate_url(url: &RedisUrl) -> Result<(), OptionsError> {
    let scheme = url.expose().split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(
        scheme.as_deref(),
        Some("redis" | "rediss" | "unix" | "redis+unix" | "valkey" | "valkeys" | "valkey+unix")
    ) {
        return Err(OptionsError::UrlScheme { url: url.redacted() });
    }
    if cfg!(not(feature = "tls")) && matches!(scheme.as_deref(), Some("rediss" | "valkeys")) {
        return Err(OptionsError::Url {
            url: url.redacted(),
            reason: "TLS needs the `tls` feature of ferroway-redis".into(),
        });
    }
    redis::Client::open(url.expose())
        .map(|_| ())
        .map_err(|e| OptionsError::Url {
            url: url.redacted(),
            reason: url.redact_in(&e.to_string()),
        })
}

fn default_reconnect() -> Backoff {
    Backoff::exponential(Duration::from_millis(100))
        .cap(Duration::from_secs(5))
        .jitter(Jitter::Equal)
}

/// The host name: the same for every run on this host (or in this pod), so a restarted
/// process is the same consumer.
fn default_consumer_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "ferroway".to_owned())
}
