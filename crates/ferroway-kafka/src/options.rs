//! Options of the source and the sink, in Kafka's own terms, validated up front.
//!
//! Secrets (SASL passwords, TLS key passwords, and any passthrough property whose name looks
//! sensitive) are redacted from `Debug` output, logs and errors.

use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;

use crate::error::ConfigError;

pub(crate) const REDACTED: &str = "<redacted>";

/// `topic.metadata.refresh.interval.ms`, unless a passthrough property sets it.
const METADATA_REFRESH_MS: &str = "5000";

/// Property names whose values are never shown (case-insensitive substring match).
const SENSITIVE: &[&str] = &[
    "password",
    "secret",
    "jaas",
    "oauthbearer.config",
    "ssl.key.pem",
    "keystore",
    "token",
    "credential",
    "connection.string",
    "connectionstring",
];

/// Properties the connector manages itself: a passthrough may not override them.
const MANAGED_SOURCE: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
];
const MANAGED_SINK: &[&str] = &["bootstrap.servers", "enable.idempotence", "acks", "transactional.id"];

/// True if a librdkafka property's value must never be shown.
pub(crate) fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| k.contains(s))
}

/// A secret string: shown as `<redacted>` by `Debug` and `Display`.
///
/// ```
/// use ferroway_kafka::Secret;
/// let s = Secret::new("hunter2");
/// assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself: pass it on, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

/// Extra librdkafka properties passed through as they are; values of sensitive-looking keys
/// are redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(Vec<(String, String)>);

impl Properties {
    /// Sets `key` to `value`, replacing an earlier value.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every property, in the order set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if is_sensitive_key(k) {
                m.entry(k, &REDACTED);
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

/// A SASL mechanism (`sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN`: username and password, sent as they are (use it over TLS).
    Plain,
    /// `SCRAM-SHA-256` (needs the `ssl` or `ssl-vendored` feature: librdkafka's SCRAM uses OpenSSL).
    ScramSha256,
    /// `SCRAM-SHA-512` (same requirement as SCRAM-SHA-256).
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslOptions {
    /// `sasl.mechanism`.
    pub mechanism: SaslMechanism,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password` (redacted everywhere).
    pub password: Secret,
}

impl SaslOptions {
    /// SASL credentials for `mechanism`.
    pub fn new(mechanism: SaslMechanism, username: impl Into<String>, password: impl Into<Secret>) -> Self {
        SaslOptions {
            mechanism,
            username: username.into(),
            password: password.into(),
        }
    }
}

/// TLS settings (`ssl.*`). The defaults use the system's CA certificates and verify the
/// broker's host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// `ssl.ca.location`: a CA bundle file or directory (default: the system's).
    pub ca_location: Option<String>,
    /// `ssl.certificate.location`: a client certificate, for mutual TLS.
    pub certificate_location: Option<String>,
    /// `ssl.key.location`: the client certificate's private key.
    pub key_location: Option<String>,
    /// `ssl.key.password` (redacted everywhere).
    pub key_password: Option<Secret>,
    /// `ssl.endpoint.identification.algorithm`: `https` when true (default), `none` otherwise.
    pub verify_hostname: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca_location: None,
            certificate_location: None,
            key_location: None,
            key_password: None,
            verify_hostname: true,
        }
    }
}

/// How the client connects (`security.protocol` and its settings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Security {
    /// `PLAINTEXT` (default).
    #[default]
    Plaintext,
    /// `SSL`. Needs the `ssl` or `ssl-vendored` cargo feature.
    Ssl(TlsOptions),
    /// `SASL_PLAINTEXT`.
    SaslPlaintext(SaslOptions),
    /// `SASL_SSL`. Needs the `ssl` or `ssl-vendored` cargo feature.
    SaslSsl(SaslOptions, TlsOptions),
}

/// Where and how to connect: shared by [`KafkaSourceOptions`] and [`KafkaSinkOptions`]. The
/// [`profile`](crate::profile) module builds ready-made ones.
///
/// ```
/// use ferroway_kafka::{Connection, SaslMechanism, SaslOptions, Security, TlsOptions};
/// let c = Connection::new("broker-1:9093,broker-2:9093")
///     .client_id("orders-service")
///     .security(Security::SaslSsl(
///         SaslOptions::new(SaslMechanism::ScramSha512, "orders", "s3cr3t"),
///         TlsOptions::default(),
///     ))
///     .property("socket.keepalive.enable", "true");
/// assert!(!format!("{c:?}").contains("s3cr3t"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub(crate) bootstrap_servers: String,
    pub(crate) client_id: Option<String>,
    pub(crate) security: Security,
    pub(crate) properties: Properties,
}

impl Connection {
    /// Connects to `bootstrap_servers` (`host:port[,host:port...]`) in plain text.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Connection {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: None,
            security: Security::Plaintext,
            properties: Properties::default(),
        }
    }

    /// `client.id` (default: `ferroway`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// TLS and SASL settings.
    pub fn security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// An extra librdkafka property, passed through as it is (see librdkafka's
    /// `CONFIGURATION.md`). Properties the connector manages (offset commits, group id,
    /// idempotence, ...) are rejected when the options are validated. Passthrough properties
    /// win over the connector's defaults — among them `topic.metadata.refresh.interval.ms`,
    /// 5 s here (librdkafka's own is 5 minutes), which bounds how long a source takes to see
    /// a topic created after it started, and a producer a new partition or leader.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.set(key, value);
        self
    }

    /// The bootstrap servers.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// How the client authenticates, for logs: the protocol and SASL mechanism and user,
    /// never a secret.
    pub(crate) fn security_summary(&self) -> String {
        let sasl = |s: &SaslOptions| format!("{} as {}", s.mechanism.as_str(), s.username);
        match &self.security {
            Security::Plaintext => "plaintext".into(),
            Security::Ssl(_) => "SSL".into(),
            Security::SaslPlaintext(s) => format!("SASL_PLAINTEXT, {}", sasl(s)),
            Security::SaslSsl(s, _) => format!("SASL_SSL, {}", sasl(s)),
        }
    }

    /// The passthrough properties.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    pub(crate) fn validate(&self, managed: &[&str]) -> Result<(), ConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(ConfigError::new("bootstrap.servers", "must not be empty"));
        }
        for server in self.bootstrap_servers.split(',') {
            let s = server.trim();
            let ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(ConfigError::new("bootstrap.servers", format!("`{s}` is not host:port")));
            }
        }
        if self.client_id.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new("client.id", "must not be empty"));
        }
        let tls = cfg!(any(feature = "ssl", feature = "ssl-vendored"));
        let (sasl, uses_tls) = match &self.security {
            Security::Plaintext => (None, false),
            Security::Ssl(_) => (None, true),
            Security::SaslPlaintext(s) => (Some(s), false),
            Security::SaslSsl(s, _) => (Some(s), true),
        };
        if uses_tls && !tls {
            return Err(ConfigError::new(
                "security.protocol",
                "SSL needs the `ssl` (system OpenSSL) or `ssl-vendored` feature of ferroway-kafka",
            ));
        }
        if let Some(s) = sasl {
            if s.username.is_empty() {
                return Err(ConfigError::new("sasl.username", "must not be empty"));
            }
            if s.password.expose().is_empty() {
                return Err(ConfigError::new("sasl.password", "must not be empty"));
            }
            if s.mechanism != SaslMechanism::Plain && !tls {
                return Err(ConfigError::new(
                    "sasl.mechanism",
                    format!(
                        "{} needs the `ssl` or `ssl-vendored` feature of ferroway-kafka",
                        s.mechanism.as_str()
                    ),
                ));
            }
        }
        for (k, _) in self.properties.iter() {
            if k.trim().is_empty() {
                return Err(ConfigError::new("properties", "a property name is empty"));
            }
            if managed.contains(&k) {
                return Err(ConfigError::new(
                    format!("properties[{k}]"),
                    "is managed by the connector; use the typed option instead",
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn apply(&self, c: &mut ClientConfig) {
        // librdkafka drops log lines below its `log_level`, which `rdkafka` derives from the
        // `log` crate (Error only, without a `log` logger): ask `tracing` instead. Warnings
        // always pass (the connector rate-limits them); debug lines need librdkafka's `debug`.
        let level = if tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG) {
            RDKafkaLogLevel::Debug
        } else if tracing::enabled!(target: "librdkafka", tracing::Level::INFO) {
            RDKafkaLogLevel::Info
        } else {
            RDKafkaLogLevel::Warning
        };
        c.set_log_level(level);
        c.set("bootstrap.servers", &self.bootstrap_servers);
        // librdkafka looks for topics it does not know yet (created after a consumer
        // subscribed, or again after a broker lost them) and for new partitions and leaders
        // only at this interval: 5 minutes by default, which kept a source idle for that long.
        // 5 s costs one small metadata request per client every 5 s (all topics' metadata
        // with a `^pattern` subscription: raise it on clusters with very many topics).
        // `metadata.max.age.ms` follows it (3 x).
        c.set("topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS);
        c.set("client.id", self.client_id.as_deref().unwrap_or("ferroway"));
        let mut tls_opts = None;
        match &self.security {
            Security::Plaintext => {
                c.set("security.protocol", "plaintext");
            }
            Security::Ssl(t) => {
                c.set("security.protocol", "ssl");
                tls_opts = Some(t);
            }
            Security::SaslPlaintext(s) => {
                c.set("security.protocol", "sasl_plaintext");
                apply_sasl(c, s);
            }
            Security::SaslSsl(s, t) => {
                c.set("security.protocol", "sasl_ssl");
                apply_sasl(c, s);
                tls_opts = Some(t);
            }
        }
        if let Some(t) = tls_opts {
            if let Some(v) = &t.ca_location {
                c.set("ssl.ca.location", v);
            }
            if let Some(v) = &t.certificate_location {
                c.set("ssl.certificate.location", v);
            }
            if let Some(v) = &t.key_location {
                c.set("ssl.key.location", v);
            }
            if let Some(v) = &t.key_password {
                c.set("ssl.key.password", v.expose());
            }
            c.set(
                "ssl.endpoint.identification.algorithm",
                if t.verify_hostname { "https" } else { "none" },
            );
        }
        for (k, v) in self.properties.iter() {
            c.set(k, v);
        }
    }
}

fn apply_sasl(c: &mut ClientConfig, s: &SaslOptions) {
    c.set("sasl.mechanism", s.mechanism.as_str());
    c.set("sasl.username", &s.username);
    c.set("sasl.password", s.password.expose());
}

/// Where a consumer group starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The group's committed offset; the earliest offset where the group has none (default:
    /// a new group reads everything, nothing is skipped).
    #[default]
    Earliest,
    /// The group's committed offset; the end of the partition where the group has none (a new
    /// group sees only messages produced after it joined).
    Latest,
    /// The group's committed offset only: a partition without one is an error
    /// (`auto.offset.reset=error`), and the source fails.
    Committed,
}

/// What a message acknowledged as *failed* does to its partition's commit.
///
/// A message the pipeline dead-lettered successfully is acknowledged as successful, so it
/// always counts as done; a failed acknowledgement means the handler failed it and there was
/// no dead-letter sink, or the sink could not take it. A message's own
/// [`configure_ack`](ferroway::pipeline::Message::configure_ack) choice wins over this option:
/// `OnFailure::Ack` and `OnFailure::Reject` commit past it, `OnFailure::Requeue` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailed {
    /// Count it as done so the partition's commit moves past it (default). The skip is logged
    /// at `ERROR` with topic, partition, offset and reason, and counted in
    /// `ferroway_kafka_source_failed_total{action="committed"}`: never silent, and a poison
    /// message never blocks a partition.
    #[default]
    Commit,
    /// Never count it as done: the partition's commit stays below it for as long as this
    /// member owns the partition, so after a restart or rebalance it is delivered again (and
    /// everything after it). Logged at `WARN`, counted with `action="held"`. Use it with a
    /// dead-letter sink when a message must never be skipped, even if the sink is down.
    ///
    /// A held message is not in flight: a graceful stop (or a revoke) does not wait for it.
    /// The final commit stops just below the first held offset, so the next member to read
    /// the partition — this process restarted, or another one — gets it again, with the
    /// messages after it that were already processed (at-least-once).
    Hold,
}

/// What happens, on a rebalance, to messages of revoked partitions that are still in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRevoke {
    /// Wait (at most `revoke_drain_timeout`) for them to be acknowledged, commit, then let the
    /// partitions go (default): the next owner starts exactly after what was processed.
    #[default]
    Drain,
    /// Commit what is complete now and let the partitions go at once: the next owner
    /// processes the in-flight messages again (duplicates, never loss).
    Abandon,
}

/// Options of [`KafkaSource`](crate::KafkaSource): a consumer-group member.
///
/// Offsets are committed by the connector only — `enable.auto.commit` and
/// `enable.auto.offset.store` are always off — and only up to the first message of each
/// partition that is not yet acknowledged.
///
/// ```
/// use std::time::Duration;
/// use ferroway_kafka::{Connection, KafkaSourceOptions, OnFailed, StartFrom};
/// let opts = KafkaSourceOptions::new(Connection::new("127.0.0.1:9092"), "billing", ["orders", "^payments-.*"])
///     .start_from(StartFrom::Earliest)
///     .commit_interval(Duration::from_secs(1))
///     .on_failed(OnFailed::Commit);
/// opts.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct KafkaSourceOptions {
    pub(crate) connection: Connection,
    pub(crate) group_id: String,
    pub(crate) topics: Vec<String>,
    pub(crate) start_from: StartFrom,
    pub(crate) fetch_min_bytes: u32,
    pub(crate) fetch_max_bytes: u32,
    pub(crate) max_partition_fetch_bytes: u32,
    pub(crate) fetch_wait_max: Duration,
    pub(crate) max_prefetch_kbytes: u32,
    pub(crate) prefetch: usize,
    pub(crate) commit_interval: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) revoke_drain_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) on_failed: OnFailed,
    pub(crate) on_revoke: OnRevoke,
    pub(crate) with_headers: bool,
}

impl KafkaSourceOptions {
    /// A member of consumer group `group_id` reading `topics`. A topic starting with `^` is a
    /// regular expression (librdkafka's syntax) matched against every topic of the cluster.
    pub fn new<I, S>(connection: Connection, group_id: impl Into<String>, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        KafkaSourceOptions {
            connection,
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            start_from: StartFrom::Earliest,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_wait_max: Duration::from_millis(100),
            max_prefetch_kbytes: 16 * 1024,
            prefetch: 1000,
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: None,
            rebalance_timeout: Duration::from_secs(300),
            revoke_drain_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(60),
            on_failed: OnFailed::Commit,
            on_revoke: OnRevoke::Drain,
            with_headers: true,
        }
    }

    /// Where a partition without a committed offset starts (default: earliest).
    pub fn start_from(mut self, s: StartFrom) -> Self {
        self.start_from = s;
        self
    }

    /// `fetch.min.bytes` (default 1).
    pub fn fetch_min_bytes(mut self, n: u32) -> Self {
        self.fetch_min_bytes = n;
        self
    }

    /// `fetch.max.bytes` (default 50 MiB).
    pub fn fetch_max_bytes(mut self, n: u32) -> Self {
        self.fetch_max_bytes = n;
        self
    }

    /// `max.partition.fetch.bytes` (default 1 MiB).
    pub fn max_partition_fetch_bytes(mut self, n: u32) -> Self {
        self.max_partition_fetch_bytes = n;
        self
    }

    /// `fetch.wait.max.ms` (default 100 ms).
    pub fn fetch_wait_max(mut self, d: Duration) -> Self {
        self.fetch_wait_max = d;
        self
    }

    /// `queued.max.messages.kbytes`: the most librdkafka prefetches into its own queue
    /// (default 16 MiB). With [`prefetch`](Self::prefetch) and the pipeline's demand, this
    /// bounds the source's memory.
    pub fn max_prefetch_kbytes(mut self, n: u32) -> Self {
        self.max_prefetch_kbytes = n;
        self
    }

    /// How many messages beyond the pipeline's current demand the source may hold ready
    /// (default 1000; 0 fetches strictly what is demanded). When the pipeline has had no demand
    /// for 500 ms and this many are ready, every assigned partition is paused (the source keeps
    /// polling, so it stays in its group); it resumes as soon as demand comes back.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// How often completed offsets are committed (default 1 s). They are also committed on
    /// revoke and on shutdown.
    pub fn commit_interval(mut self, d: Duration) -> Self {
        self.commit_interval = d;
        self
    }

    /// `session.timeout.ms` (default 45 s): how long the group waits for a silent member.
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.session_timeout = d;
        self
    }

    /// `heartbeat.interval.ms` (default: librdkafka's, 3 s).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = Some(d);
        self
    }

    /// `max.poll.interval.ms`, the rebalance timeout (default 300 s). The source polls all
    /// the time, even while paused, so a slow pipeline does not exceed it.
    pub fn rebalance_timeout(mut self, d: Duration) -> Self {
        self.rebalance_timeout = d;
        self
    }

    /// How long a revoke waits for in-flight messages of the revoked partitions
    /// ([`OnRevoke::Drain`]); must be below the rebalance timeout (default 10 s).
    pub fn revoke_drain_timeout(mut self, d: Duration) -> Self {
        self.revoke_drain_timeout = d;
        self
    }

    /// How long, once the pipeline stops, the source waits for the acknowledgements of the
    /// messages it emitted before its final commit (default 30 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// How long the sources of a factory may go without reaching any broker when they start
    /// (default 60 s). Until a broker answers, the source warns (rate-limited) and, after
    /// this, fails with [`KafkaError::Unavailable`](crate::KafkaError::Unavailable) naming
    /// the bootstrap servers; sources started again by the pipeline fail at once, so the
    /// pipeline stops and `join`/`run_until` returns the error instead of a program waiting
    /// silently. Once a broker answered, an outage never fails the source: it waits,
    /// warning once in a while, for librdkafka to reconnect. `Duration::MAX` waits for ever.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// What a failed acknowledgement does to the commit (default [`OnFailed::Commit`]).
    pub fn on_failed(mut self, a: OnFailed) -> Self {
        self.on_failed = a;
        self
    }

    /// What a revoke does with in-flight messages (default [`OnRevoke::Drain`]).
    pub fn on_revoke(mut self, a: OnRevoke) -> Self {
        self.on_revoke = a;
        self
    }

    /// Whether [`KafkaMetadata::headers`](crate::KafkaMetadata::headers) is filled (default
    /// true; turning it off saves an allocation per message with headers).
    pub fn with_headers(mut self, yes: bool) -> Self {
        self.with_headers = yes;
        self
    }

    /// The consumer group.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The topics (or `^patterns`).
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Checks every option; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.connection.validate(MANAGED_SOURCE)?;
        if self.group_id.trim().is_empty() {
            return Err(ConfigError::new("group.id", "must not be empty"));
        }
        if self.topics.is_empty() {
            return Err(ConfigError::new("topics", "name at least one topic or `^pattern`"));
        }
        for t in &self.topics {
            if t.is_empty() || t == "^" {
                return Err(ConfigError::new("topics", "a topic name is empty"));
            }
            if !t.starts_with('^') && !t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return Err(ConfigError::new(
                    "topics",
                    format!("`{t}` is not a valid topic name (a pattern must start with `^`)"),
                ));
            }
        }
        if self.fetch_max_bytes == 0 {
            return Err(ConfigError::new("fetch.max.bytes", "must be at least 1"));
        }
        if self.max_partition_fetch_bytes == 0 {
            return Err(ConfigError::new("max.partition.fetch.bytes", "must be at least 1"));
        }
        if self.fetch_min_bytes == 0 {
            return Err(ConfigError::new("fetch.min.bytes", "must be at least 1"));
        }
        if self.max_prefetch_kbytes == 0 {
            return Err(ConfigError::new("queued.max.messages.kbytes", "must be at least 1"));
        }
        if self.commit_interval.is_zero() {
            return Err(ConfigError::new("commit_interval", "must be longer than zero"));
        }
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new("connect_timeout", "must be longer than zero"));
        }
        if self.session_timeout < Duration::from_millis(1) {
            return Err(ConfigError::new("session.timeout.ms", "must be at least 1 ms"));
        }
        if self.rebalance_timeout < self.session_timeout {
            return Err(ConfigError::new(
                "max.poll.interval.ms",
                format!(
                    "must be at least session.timeout.ms ({:?}), got {:?}",
                    self.session_timeout, self.rebalance_timeout
                ),
            ));
        }
        if let Some(h) = self.heartbeat_interval
            && (h.is_zero() || h >= self.session_timeout)
        {
            return Err(ConfigError::new(
                "heartbeat.interval.ms",
                "must be longer than zero and below session.timeout.ms",
            ));
        }
        if self.revoke_drain_timeout >= self.rebalance_timeout {
            return Err(ConfigError::new(
                "revoke_drain_timeout",
                format!("must be below max.poll.interval.ms ({:?})", self.rebalance_timeout),
            ));
        }
        Ok(())
    }

    /// The librdkafka configuration the source's consumer is created with: these options in
    /// librdkafka's terms, the passthrough properties winning. For a client of your own that
    /// must behave the same (a lag checker, a benchmark baseline).
    ///
    /// ```
    /// use ferroway_kafka::{Connection, KafkaSourceOptions};
    /// let c = KafkaSourceOptions::new(Connection::new("127.0.0.1:9092"), "g", ["t"]).client_config();
    /// assert_eq!(c.get("enable.auto.commit"), Some("false"));
    /// ```
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        self.connection.apply(&mut c);
        c.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "auto.offset.reset",
                match self.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                    StartFrom::Committed => "error",
                },
            );
        let ms = |d: Duration| d.as_millis().max(1).to_string();
        set_default(&mut c, "fetch.min.bytes", self.fetch_min_bytes.to_string());
        set_default(&mut c, "fetch.max.bytes", self.fetch_max_bytes.to_string());
        set_default(
            &mut c,
            "max.partition.fetch.bytes",
            self.max_partition_fetch_bytes.to_string(),
        );
        set_default(&mut c, "fetch.wait.max.ms", ms(self.fetch_wait_max));
        set_default(
            &mut c,
            "queued.max.messages.kbytes",
            self.max_prefetch_kbytes.to_string(),
        );
        // librdkafka waits this long before fetching again once its queue hit a threshold
        // (default 1 s). A demand-driven source drains that queue in bursts, so a long backoff
        // would idle the pipeline for most of every second.
        set_default(&mut c, "fetch.queue.backoff.ms", "10".to_owned());
        set_default(&mut c, "session.timeout.ms", ms(self.session_timeout));
        set_default(&mut c, "max.poll.interval.ms", ms(self.rebalance_timeout));
        if let Some(h) = self.heartbeat_interval {
            set_default(&mut c, "heartbeat.interval.ms", ms(h));
        }
        c
    }
}

/// Sets a typed option unless a passthrough property already set it.
fn set_default(c: &mut ClientConfig, key: &str, value: String) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

/// `acks`: how many replicas must have a record before the broker confirms it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequiredAcks {
    /// `acks=0`: no confirmation (fire and forget; delivery reports always succeed).
    None,
    /// `acks=1`: the partition leader has it.
    Leader,
    /// `acks=all`: every in-sync replica has it (default; required by idempotence).
    #[default]
    All,
}

/// `compression.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression (default).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// zstd (needs the `zstd` cargo feature).
    Zstd,
}

/// `partitioner`: how a record without an explicit partition picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// `murmur2_random`: murmur2 of the key, like the Java client, so records with the same key
    /// land in the same partition whichever client produced them; random without a key
    /// (default).
    #[default]
    Murmur2Random,
    /// `consistent_random`: CRC32 of the key (librdkafka's own default); random without a key.
    ConsistentRandom,
    /// `fnv1a_random`: FNV-1a of the key, like Sarama (Go); random without a key.
    Fnv1aRandom,
    /// `random`: ignore keys.
    Random,
}

/// Options of [`KafkaSink`](crate::KafkaSink).
///
/// ```
/// use std::time::Duration;
/// use ferroway_kafka::{Compression, Connection, KafkaSinkOptions};
/// let opts = KafkaSinkOptions::new(Connection::new("127.0.0.1:9092"))
///     .topic("orders-enriched")
///     .linger(Duration::from_millis(10))
///     .compression(Compression::Lz4);
/// opts.validate().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct KafkaSinkOptions {
    pub(crate) connection: Connection,
    pub(crate) topic: Option<String>,
    pub(crate) acks: RequiredAcks,
    pub(crate) idempotence: bool,
    pub(crate) linger: Duration,
    pub(crate) batch_messages: u32,
    pub(crate) batch_bytes: u32,
    pub(crate) queue_max_messages: u32,
    pub(crate) compression: Compression,
    pub(crate) partitioner: Partitioner,
    pub(crate) delivery_timeout: Duration,
}

impl KafkaSinkOptions {
    /// A producer connected through `connection`. Idempotent, `acks=all`, murmur2
    /// partitioning, no compression, 5 ms linger, 30 s delivery timeout.
    pub fn new(connection: Connection) -> Self {
        KafkaSinkOptions {
            connection,
            topic: None,
            acks: RequiredAcks::All,
            idempotence: true,
            linger: Duration::from_millis(5),
            batch_messages: 10_000,
            batch_bytes: 1_000_000,
            queue_max_messages: 100_000,
            compression: Compression::None,
            partitioner: Partitioner::Murmur2Random,
            delivery_timeout: Duration::from_secs(30),
        }
    }

    /// The topic of messages that name none in their [`KafkaRecord`](crate::KafkaRecord).
    pub fn topic(mut self, t: impl Into<String>) -> Self {
        self.topic = Some(t.into());
        self
    }

    /// `acks` (default all).
    pub fn acks(mut self, a: RequiredAcks) -> Self {
        self.acks = a;
        self
    }

    /// `enable.idempotence` (default true): no duplicates or reordering from the producer's
    /// own retries. Needs `acks=all`.
    pub fn idempotence(mut self, on: bool) -> Self {
        self.idempotence = on;
        self
    }

    /// `linger.ms` (default 5 ms): how long librdkafka waits to fill a batch.
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// `batch.num.messages` (default 10,000).
    pub fn batch_messages(mut self, n: u32) -> Self {
        self.batch_messages = n;
        self
    }

    /// `batch.size` in bytes (default 1,000,000).
    pub fn batch_bytes(mut self, n: u32) -> Self {
        self.batch_bytes = n;
        self
    }

    /// `queue.buffering.max.messages` (default 100,000): records waiting in librdkafka.
    pub fn queue_max_messages(mut self, n: u32) -> Self {
        self.queue_max_messages = n;
        self
    }

    /// `compression.type` (default none).
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// `partitioner` (default murmur2, as the Java client).
    pub fn partitioner(mut self, p: Partitioner) -> Self {
        self.partitioner = p;
        self
    }

    /// `delivery.timeout.ms` (default 30 s): how long librdkafka keeps trying to deliver one
    /// record (it retries by itself meanwhile), and how long a send waits while librdkafka's
    /// queue is full. It is how long an outage takes to be noticed: then
    /// [`send_batch`](crate::KafkaSink::send_batch) returns [`KafkaError::Unavailable`](crate::KafkaError::Unavailable)
    /// and the pipeline waits and tries again, so a short timeout loses nothing — it only sends
    /// again sooner. Kafka's Java client waits 120 s; keep it above the broker's worst
    /// leader election or request latency, or healthy but slow deliveries are sent twice.
    pub fn delivery_timeout(mut self, d: Duration) -> Self {
        self.delivery_timeout = d;
        self
    }

    /// The default topic.
    pub fn default_topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// Checks every option; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.connection.validate(MANAGED_SINK)?;
        if self.topic.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new("topic", "must not be empty"));
        }
        if self.idempotence && self.acks != RequiredAcks::All {
            return Err(ConfigError::new("acks", "idempotence needs acks=all"));
        }
        if self.batch_messages == 0 {
            return Err(ConfigError::new("batch.num.messages", "must be at least 1"));
        }
        if self.batch_bytes == 0 {
            return Err(ConfigError::new("batch.size", "must be at least 1"));
        }
        if self.queue_max_messages == 0 {
            return Err(ConfigError::new("queue.buffering.max.messages", "must be at least 1"));
        }
        if self.delivery_timeout < Duration::from_millis(1) {
            return Err(ConfigError::new("delivery.timeout.ms", "must be at least 1 ms"));
        }
        if self.compression == Compression::Zstd && !cfg!(feature = "zstd") {
            return Err(ConfigError::new(
                "compression.type",
                "zstd needs the `zstd` feature of ferroway-kafka",
            ));
        }
        Ok(())
    }

    /// The librdkafka configuration the sink's producer is created with: these options in
    /// librdkafka's terms, the passthrough properties winning.
    ///
    /// ```
    /// use ferroway_kafka::{Connection, KafkaSinkOptions};
    /// let c = KafkaSinkOptions::new(Connection::new("127.0.0.1:9092")).client_config();
    /// assert_eq!(c.get("enable.idempotence"), Some("true"));
    /// ```
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        self.connection.apply(&mut c);
        c.set("enable.idempotence", if self.idempotence { "true" } else { "false" })
            .set(
                "acks",
                match self.acks {
                    RequiredAcks::None => "0",
                    RequiredAcks::Leader => "1",
                    RequiredAcks::All => "all",
                },
            );
        let ms = |d: Duration| d.as_millis().to_string();
        set_default(&mut c, "linger.ms", ms(self.linger));
        set_default(&mut c, "batch.num.messages", self.batch_messages.to_string());
        set_default(&mut c, "batch.size", self.batch_bytes.to_string());
        set_default(
            &mut c,
            "queue.buffering.max.messages",
            self.queue_max_messages.to_string(),
        );
        set_default(&mut c, "delivery.timeout.ms", ms(self.delivery_timeout));
        set_default(
            &mut c,
            "compression.type",
            match self.compression {
                Compression::None => "none",
                Compression::Gzip => "gzip",
                Compression::Snappy => "snappy",
                Compression::Lz4 => "lz4",
                Compression::Zstd => "zstd",
            }
            .into(),
        );
        set_default(
            &mut c,
            "partitioner",
            match self.partitioner {
                Partitioner::Murmur2Random => "murmur2_random",
                Partitioner::ConsistentRandom => "consistent_random",
                Partitioner::Fnv1aRandom => "fnv1a_random",
                Partitioner::Random => "random",
            }
            .into(),
        );
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        Connection::new("127.0.0.1:9092")
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = conn()
            .security(Security::SaslPlaintext(SaslOptions::new(
                SaslMechanism::Plain,
                "alice",
                "pw-hunter2",
            )))
            .property("sasl.oauthbearer.config", "token-abc123")
            .property("ssl.key.password", "kp-xyz")
            .property("socket.keepalive.enable", "true");
        let src = KafkaSourceOptions::new(c.clone(), "g", ["t"]);
        let sink = KafkaSinkOptions::new(c.clone());
        let tls = TlsOptions {
            key_password: Some(Secret::new("tls-pw-777")),
            ..TlsOptions::default()
        };
        for shown in [
            format!("{c:?}"),
            format!("{src:?}"),
            format!("{sink:?}"),
            format!("{src:#?}"),
            format!("{tls:?}"),
        ] {
            for secret in ["pw-hunter2", "token-abc123", "kp-xyz", "tls-pw-777"] {
                assert!(!shown.contains(secret), "{secret} leaked in {shown}");
            }
            assert!(shown.contains(REDACTED) || shown.contains("TlsOptions"), "{shown}");
        }
        assert!(format!("{c:?}").contains("alice"), "non-secrets stay visible");
        assert!(format!("{c:?}").contains("socket.keepalive.enable"));
    }

    #[test]
    fn validation_names_the_option() {
        let opt = |o: KafkaSourceOptions| o.validate().unwrap_err().option;
        assert_eq!(opt(KafkaSourceOptions::new(conn(), "", ["t"])), "group.id");
        assert_eq!(
            opt(KafkaSourceOptions::new(conn(), "g", Vec::<String>::new())),
            "topics"
        );
        assert_eq!(opt(KafkaSourceOptions::new(conn(), "g", ["bad topic"])), "topics");
        assert_eq!(
            opt(KafkaSourceOptions::new(Connection::new("nohost"), "g", ["t"])),
            "bootstrap.servers"
        );
        assert_eq!(
            opt(KafkaSourceOptions::new(
                conn().property("enable.auto.commit", "true"),
                "g",
                ["t"]
            )),
            "properties[enable.auto.commit]"
        );
        assert_eq!(
            opt(KafkaSourceOptions::new(conn(), "g", ["t"]).commit_interval(Duration::ZERO)),
            "commit_interval"
        );
        assert_eq!(
            opt(KafkaSourceOptions::new(conn(), "g", ["t"]).connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(
            opt(KafkaSourceOptions::new(conn(), "g", ["t"]).revoke_drain_timeout(Duration::from_secs(600))),
            "revoke_drain_timeout"
        );
        let sasl = |pw: &str| conn().security(Security::SaslPlaintext(SaslOptions::new(SaslMechanism::Plain, "u", pw)));
        let e = KafkaSourceOptions::new(sasl(""), "g", ["t"]).validate().unwrap_err();
        assert_eq!(e.option, "sasl.password");
        KafkaSourceOptions::new(sasl("x"), "g", ["t", "^re-.*"])
            .validate()
            .unwrap();

        let sink = |o: KafkaSinkOptions| o.validate().unwrap_err().option;
        assert_eq!(sink(KafkaSinkOptions::new(conn()).acks(RequiredAcks::Leader)), "acks");
        assert_eq!(sink(KafkaSinkOptions::new(conn()).topic("")), "topic");
        assert_eq!(
            sink(KafkaSinkOptions::new(conn().property("enable.idempotence", "false"))),
            "properties[enable.idempotence]"
        );
        KafkaSinkOptions::new(conn())
            .idempotence(false)
            .acks(RequiredAcks::Leader)
            .validate()
            .unwrap();
    }

    #[cfg(not(any(feature = "ssl", feature = "ssl-vendored")))]
    #[test]
    fn tls_without_the_feature_is_a_config_error() {
        let c = conn().security(Security::Ssl(TlsOptions::default()));
        let e = KafkaSinkOptions::new(c).validate().unwrap_err();
        assert_eq!(e.option, "security.protocol");
        assert!(e.reason.contains("`ssl`"));
    }

    #[test]
    fn managed_properties_are_forced() {
        let o = KafkaSourceOptions::new(conn().property("fetch.wait.max.ms", "7"), "g", ["t"]);
        let c = o.client_config();
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(
            c.get("fetch.wait.max.ms"),
            Some("7"),
            "passthrough wins over typed defaults"
        );
        for c in [o.client_config(), KafkaSinkOptions::new(conn()).client_config()] {
            assert_eq!(c.get("topic.metadata.refresh.interval.ms"), Some("5000"));
        }
        let slow = conn().property("topic.metadata.refresh.interval.ms", "60000");
        let c = KafkaSourceOptions::new(slow, "g", ["t"]).client_config();
        assert_eq!(c.get("topic.metadata.refresh.interval.ms"), Some("60000"));
    }
}
