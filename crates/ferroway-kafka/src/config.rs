//! The source and the sink as configuration-file components (`type = "kafka"`), feature
//! `config`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::config::{BuildContext, SinkConfig, SourceConfig};
use ferroway::connector::{BoxSource, Record, Sink};
use ferroway::pipeline::BoxFuture;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::error::ConfigError;
use crate::options::{
    Compression, Connection, KafkaSinkOptions, KafkaSourceOptions, OnFailed, OnRevoke, Partitioner, Properties,
    RequiredAcks, SaslMechanism, SaslOptions, Secret, Security, StartFrom, TlsOptions,
};
use crate::sink::KafkaSink;
use crate::source::KafkaSource;

/// `type = "kafka"` as a source: a consumer-group member reading topics, each message a
/// [`Record`] (payload, key, headers and timestamp; see
/// [`KafkaSourceFactory::records`](crate::KafkaSourceFactory::records)), its offset committed
/// once the pipeline finished with it and with every message before it. See
/// [`KafkaSourceOptions`] for what each option does; the defaults are its defaults.
///
/// ```
/// use ferroway::config::SourceConfig;
/// use ferroway_kafka::{KafkaSourceConfig, StartFrom};
///
/// let c: KafkaSourceConfig = serde_json::from_str(
///     r#"{"bootstrap_servers": "127.0.0.1:9092", "group_id": "billing", "topic": "orders",
///         "start_from": "latest", "commit_interval": "500ms",
///         "security": {"protocol": "sasl_plaintext",
///                      "sasl": {"mechanism": "PLAIN", "username": "app", "password": "hunter2"}}}"#,
/// ).unwrap();
/// assert_eq!(c.start_from, StartFrom::Latest);
/// assert_eq!(c.commit_interval.as_millis(), 500);
/// assert!(!format!("{c:?}").contains("hunter2"));
/// assert_eq!(c.options().unwrap().topics(), ["orders"]);
/// assert_eq!(KafkaSourceConfig::TYPE, "kafka");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]` (also accepted as `brokers`).
    #[serde(alias = "brokers")]
    pub bootstrap_servers: String,
    /// `group.id`: the consumer group.
    pub group_id: String,
    /// The one topic read (or `topics`).
    #[serde(default)]
    pub topic: Option<String>,
    /// The topics read (or `topic`); one starting with `^` is a pattern (librdkafka's syntax).
    #[serde(default)]
    pub topics: Vec<String>,
    /// `client.id` (default `"ferroway"`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Where a partition without a committed offset starts: `"earliest"` (the default),
    /// `"latest"`, or `"committed"` (such a partition is an error).
    #[serde(default = "source_default::start_from", with = "StartFromDef")]
    pub start_from: StartFrom,
    /// How often completed offsets are committed (default `"1s"`).
    #[serde(default = "source_default::commit_interval", with = "ferroway::config::duration")]
    pub commit_interval: Duration,
    /// `session.timeout.ms`: how long the group waits for a silent member (default `"45s"`).
    #[serde(default = "source_default::session_timeout", with = "ferroway::config::duration")]
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms` (default: librdkafka's, 3 s).
    #[serde(default, with = "ferroway::config::duration::option")]
    pub heartbeat_interval: Option<Duration>,
    /// `max.poll.interval.ms`, the rebalance timeout (default `"300s"`).
    #[serde(default = "source_default::rebalance_timeout", with = "ferroway::config::duration")]
    pub rebalance_timeout: Duration,
    /// How long a revoke waits for the in-flight messages of its partitions (default `"10s"`).
    #[serde(
        default = "source_default::revoke_drain_timeout",
        with = "ferroway::config::duration"
    )]
    pub revoke_drain_timeout: Duration,
    /// What a revoke does with in-flight messages: `"drain"` (the default) or `"abandon"`.
    #[serde(default = "source_default::on_revoke", with = "OnRevokeDef")]
    pub on_revoke: OnRevoke,
    /// How long a stop waits for acknowledgements before the final commit (default `"30s"`).
    #[serde(default = "source_default::close_timeout", with = "ferroway::config::duration")]
    pub close_timeout: Duration,
    /// Fail if no broker answered within this long of the start (default `"60s"`).
    #[serde(default = "source_default::connect_timeout", with = "ferroway::config::duration")]
    pub connect_timeout: Duration,
    /// A failed message that was not dead-lettered: `"commit"` past it (the default) or
    /// `"hold"` the partition's commit below it.
    #[serde(default = "source_default::on_failed", with = "OnFailedDef")]
    pub on_failed: OnFailed,
    /// How many messages beyond the pipeline's demand are held ready (default 1000).
    #[serde(default = "source_default::prefetch")]
    pub prefetch: usize,
    /// `queued.max.messages.kbytes`: the most librdkafka prefetches (default 16384).
    #[serde(default = "source_default::max_prefetch_kbytes")]
    pub max_prefetch_kbytes: u32,
    /// Whether message headers are read (default true).
    #[serde(default = "source_default::with_headers")]
    pub with_headers: bool,
    /// How the client connects: `"plaintext"` (the default), `"ssl"`, or a table
    /// `{ protocol, sasl = { mechanism, username, password }, tls = { ca_location,
    /// certificate_location, key_location, key_password, verify_hostname } }`.
    #[serde(default, deserialize_with = "security")]
    pub security: Security,
    /// Further librdkafka properties, passed through (`{ "fetch.wait.max.ms" = 50 }`); the
    /// values of sensitive-looking ones never show in `Debug`.
    #[serde(default, deserialize_with = "properties")]
    pub properties: Properties,
}

impl KafkaSourceConfig {
    /// The [`KafkaSourceOptions`] these settings make, validated.
    ///
    /// # Errors
    /// The first invalid option, or two in conflict, named in Kafka's terms.
    pub fn options(&self) -> Result<KafkaSourceOptions, ConfigError> {
        let topics = match (&self.topic, self.topics.is_empty()) {
            (Some(_), false) => return Err(ConfigError::new("topics", "set `topic` or `topics`, not both")),
            (Some(one), true) => vec![one.clone()],
            (None, false) => self.topics.clone(),
            (None, true) => {
                return Err(ConfigError::new(
                    "topics",
                    "name the topic(s) to read (`topic = \"name\"` for one)",
                ));
            }
        };
        let conn = connection(
            &self.bootstrap_servers,
            self.client_id.as_deref(),
            &self.security,
            &self.properties,
        );
        let mut o = KafkaSourceOptions::new(conn, &self.group_id, topics)
            .start_from(self.start_from)
            .commit_interval(self.commit_interval)
            .session_timeout(self.session_timeout)
            .rebalance_timeout(self.rebalance_timeout)
            .revoke_drain_timeout(self.revoke_drain_timeout)
            .on_revoke(self.on_revoke)
            .close_timeout(self.close_timeout)
            .connect_timeout(self.connect_timeout)
            .on_failed(self.on_failed)
            .prefetch(self.prefetch)
            .max_prefetch_kbytes(self.max_prefetch_kbytes)
            .with_headers(self.with_headers);
        if let Some(h) = self.heartbeat_interval {
            o = o.heartbeat_interval(h);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for KafkaSourceConfig {
    const TYPE: &'static str = "kafka";
    const SUMMARY: &'static str = "Kafka topics read as a consumer group; offsets committed once processed";
    const EXAMPLE: &'static str = r#"bootstrap_servers = "127.0.0.1:9092"  # host:port[,host:port...]; or brokers = "..."
group_id = "ferroway"
topics = ["orders"]                   # or topic = "orders"; "^orders-.*" is a pattern
# client_id = "orders-reader"         # default: "ferroway"
start_from = "earliest"               # without a committed offset: "earliest", "latest" or "committed" (fail)
commit_interval = "1s"                # how often completed offsets are committed
session_timeout = "45s"               # session.timeout.ms
# heartbeat_interval = "3s"           # heartbeat.interval.ms; default: librdkafka's
rebalance_timeout = "300s"            # max.poll.interval.ms
revoke_drain_timeout = "10s"          # how long a revoke waits for in-flight messages
on_revoke = "drain"                   # or "abandon": in-flight messages of revoked partitions are read again
close_timeout = "30s"                 # how long a stop waits for acknowledgements before the last commit
connect_timeout = "60s"               # fail if no broker answered within this
on_failed = "commit"                  # or "hold": a failed message that was not dead-lettered
prefetch = 1000                       # messages held ready beyond the pipeline's demand
max_prefetch_kbytes = 16384           # queued.max.messages.kbytes
with_headers = true                   # false: headers are not read
security = "plaintext"                # or "ssl" (system CAs), or a table:
# security = { protocol = "sasl_ssl", sasl = { mechanism = "SCRAM-SHA-256", username = "app", password = "${KAFKA_PASSWORD}" }, tls = { ca_location = "/etc/ssl/kafka-ca.pem", verify_hostname = true } }
# properties = { "fetch.wait.max.ms" = 50 }   # further librdkafka properties"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        let factory = KafkaSource::factory(self.options()?)?;
        Ok(BoxSource::new(factory.records()))
    }
}

/// `type = "kafka"` as a sink: each record produced to `topic` with its key, headers and
/// timestamp, acknowledged once the broker confirmed it (see [`KafkaSink`]). The defaults are
/// those of [`KafkaSinkOptions::new`]: idempotent, `acks = "all"`.
///
/// ```
/// use ferroway_kafka::{Compression, KafkaSinkConfig, RequiredAcks};
///
/// let c: KafkaSinkConfig = serde_json::from_str(
///     r#"{"brokers": "127.0.0.1:9092", "topic": "events", "compression": "lz4", "linger": "20ms"}"#,
/// ).unwrap();
/// assert_eq!((c.compression, c.acks), (Compression::Lz4, RequiredAcks::All));
/// assert_eq!(c.linger.as_millis(), 20);
/// assert_eq!(c.options().unwrap().default_topic(), Some("events"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `bootstrap.servers`: `host:port[,host:port...]` (also accepted as `brokers`).
    #[serde(alias = "brokers")]
    pub bootstrap_servers: String,
    /// The topic produced to.
    pub topic: String,
    /// `client.id` (default `"ferroway"`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// `acks`: `"all"` (the default), `1` (the leader) or `0` (none). Idempotence needs
    /// `"all"`.
    #[serde(default = "sink_default::acks", deserialize_with = "acks")]
    pub acks: RequiredAcks,
    /// `enable.idempotence` (default true).
    #[serde(default = "sink_default::idempotence")]
    pub idempotence: bool,
    /// `linger.ms`: how long librdkafka waits to fill a batch (default `"5ms"`).
    #[serde(default = "sink_default::linger", with = "ferroway::config::duration")]
    pub linger: Duration,
    /// `batch.num.messages` (default 10000).
    #[serde(default = "sink_default::batch_messages")]
    pub batch_messages: u32,
    /// `batch.size` in bytes (default 1000000).
    #[serde(default = "sink_default::batch_bytes")]
    pub batch_bytes: u32,
    /// `queue.buffering.max.messages`: records waiting in librdkafka (default 100000).
    #[serde(default = "sink_default::queue_max_messages")]
    pub queue_max_messages: u32,
    /// `compression.type`: `"none"` (the default), `"gzip"`, `"snappy"`, `"lz4"` or `"zstd"`
    /// (the `zstd` feature).
    #[serde(default = "sink_default::compression", with = "CompressionDef")]
    pub compression: Compression,
    /// `partitioner`: `"murmur2_random"` (the default, as the Java client),
    /// `"consistent_random"`, `"fnv1a_random"` or `"random"`.
    #[serde(default = "sink_default::partitioner", with = "PartitionerDef")]
    pub partitioner: Partitioner,
    /// `delivery.timeout.ms`: how long an outage takes to be noticed (default `"30s"`).
    #[serde(default = "sink_default::delivery_timeout", with = "ferroway::config::duration")]
    pub delivery_timeout: Duration,
    /// How the client connects, as for [`KafkaSourceConfig::security`].
    #[serde(default, deserialize_with = "security")]
    pub security: Security,
    /// Further librdkafka properties, as for [`KafkaSourceConfig::properties`].
    #[serde(default, deserialize_with = "properties")]
    pub properties: Properties,
}

impl KafkaSinkConfig {
    /// The [`KafkaSinkOptions`] these settings make, validated.
    ///
    /// # Errors
    /// The first invalid option, or two in conflict, named in Kafka's terms.
    pub fn options(&self) -> Result<KafkaSinkOptions, ConfigError> {
        let conn = connection(
            &self.bootstrap_servers,
            self.client_id.as_deref(),
            &self.security,
            &self.properties,
        );
        let o = KafkaSinkOptions::new(conn)
            .topic(&self.topic)
            .acks(self.acks)
            .idempotence(self.idempotence)
            .linger(self.linger)
            .batch_messages(self.batch_messages)
            .batch_bytes(self.batch_bytes)
            .queue_max_messages(self.queue_max_messages)
            .compression(self.compression)
            .partitioner(self.partitioner)
            .delivery_timeout(self.delivery_timeout);
        o.validate()?;
        Ok(o)
    }
}

impl SinkConfig for KafkaSinkConfig {
    const TYPE: &'static str = "kafka";
    const SUMMARY: &'static str = "records produced to a Kafka topic, confirmed by the broker before acknowledgement";
    const EXAMPLE: &'static str = r#"bootstrap_servers = "127.0.0.1:9092"  # host:port[,host:port...]; or brokers = "..."
topic = "events"
# client_id = "orders-writer"         # default: "ferroway"
acks = "all"                          # or 1 (the leader) or 0 (none); idempotence needs "all"
idempotence = true                    # enable.idempotence: no duplicates from the producer's own retries
linger = "5ms"                        # linger.ms: how long a batch waits to fill
batch_messages = 10000                # batch.num.messages
batch_bytes = 1000000                 # batch.size
queue_max_messages = 100000           # queue.buffering.max.messages
compression = "none"                  # or "gzip", "snappy", "lz4", "zstd" (zstd feature)
partitioner = "murmur2_random"        # as the Java client; or "consistent_random", "fnv1a_random", "random"
delivery_timeout = "30s"              # delivery.timeout.ms: an outage is noticed after this
security = "plaintext"                # or "ssl" (system CAs), or a table:
# security = { protocol = "sasl_plaintext", sasl = { mechanism = "PLAIN", username = "app", password = "${KAFKA_PASSWORD}" } }
# properties = { "message.max.bytes" = 2000000 }   # further librdkafka properties"#;

    fn build(self, _: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        Box::pin(async move {
            let sink: Arc<dyn Sink<Record>> = Arc::new(KafkaSink::new(self.options()?)?);
            Ok(sink)
        })
    }
}

fn connection(servers: &str, client_id: Option<&str>, security: &Security, properties: &Properties) -> Connection {
    let mut c = Connection::new(servers).security(security.clone());
    if let Some(id) = client_id {
        c = c.client_id(id);
    }
    properties.iter().fold(c, |c, (k, v)| c.property(k, v))
}

/// `#[serde(default = ...)]` functions reading the options' own defaults, so that a file and
/// `KafkaSourceOptions::new` / `KafkaSinkOptions::new` can never disagree.
macro_rules! defaults_of {
    ($options:expr => $($field:ident: $ty:ty),+ $(,)?) => {
        $(pub(super) fn $field() -> $ty {
            $options.$field
        })+
    };
}

mod source_default {
    use super::*;

    defaults_of!(KafkaSourceOptions::new(Connection::new(""), "", [""; 0]) =>
        start_from: StartFrom,
        commit_interval: Duration,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        revoke_drain_timeout: Duration,
        on_revoke: OnRevoke,
        close_timeout: Duration,
        connect_timeout: Duration,
        on_failed: OnFailed,
        prefetch: usize,
        max_prefetch_kbytes: u32,
        with_headers: bool,
    );
}

mod sink_default {
    use super::*;

    defaults_of!(KafkaSinkOptions::new(Connection::new("")) =>
        acks: RequiredAcks,
        idempotence: bool,
        linger: Duration,
        batch_messages: u32,
        batch_bytes: u32,
        queue_max_messages: u32,
        compression: Compression,
        partitioner: Partitioner,
        delivery_timeout: Duration,
    );
}

// The options' enums by the names Kafka gives them, without the options depending on serde.
// serde's remote derive builds the enums themselves; these mirrors are never constructed.

#[derive(Deserialize)]
#[serde(remote = "StartFrom", rename_all = "snake_case")]
enum StartFromDef {
    Earliest,
    Latest,
    Committed,
}

#[derive(Deserialize)]
#[serde(remote = "OnFailed", rename_all = "snake_case")]
enum OnFailedDef {
    Commit,
    Hold,
}

#[derive(Deserialize)]
#[serde(remote = "OnRevoke", rename_all = "snake_case")]
enum OnRevokeDef {
    Drain,
    Abandon,
}

#[derive(Deserialize)]
#[serde(remote = "Compression", rename_all = "snake_case")]
enum CompressionDef {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Deserialize)]
#[serde(remote = "Partitioner")]
enum PartitionerDef {
    #[serde(rename = "murmur2_random")]
    Murmur2Random,
    #[serde(rename = "consistent_random")]
    ConsistentRandom,
    #[serde(rename = "fnv1a_random")]
    Fnv1aRandom,
    #[serde(rename = "random")]
    Random,
}

#[derive(Deserialize)]
#[serde(remote = "SaslMechanism")]
enum SaslMechanismDef {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// `"all"`, `1` or `0`, as Kafka writes `acks` (also `-1` and the numbers as text).
fn acks<'de, D: Deserializer<'de>>(d: D) -> Result<RequiredAcks, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = RequiredAcks;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#""all", 1 (the leader) or 0 (none)"#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "all" | "-1" => Ok(RequiredAcks::All),
                "1" => Ok(RequiredAcks::Leader),
                "0" => Ok(RequiredAcks::None),
                other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
            }
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            match v {
                -1 => Ok(RequiredAcks::All),
                1 => Ok(RequiredAcks::Leader),
                0 => Ok(RequiredAcks::None),
                other => Err(E::invalid_value(de::Unexpected::Signed(other), &self)),
            }
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            match i64::try_from(v) {
                Ok(v) => self.visit_i64(v),
                Err(_) => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }
    }
    d.deserialize_any(V)
}

/// `security.protocol`, in librdkafka's spelling or the Java client's.
#[derive(Debug, Clone, Copy, Deserialize)]
enum Protocol {
    #[serde(rename = "plaintext", alias = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "ssl", alias = "SSL")]
    Ssl,
    #[serde(rename = "sasl_plaintext", alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "sasl_ssl", alias = "SASL_SSL")]
    SaslSsl,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityTable {
    protocol: Protocol,
    sasl: Option<SaslTable>,
    tls: Option<TlsTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaslTable {
    #[serde(with = "SaslMechanismDef")]
    mechanism: SaslMechanism,
    username: String,
    password: ferroway::config::Secret,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsTable {
    ca_location: Option<String>,
    certificate_location: Option<String>,
    key_location: Option<String>,
    key_password: Option<ferroway::config::Secret>,
    #[serde(default = "verify_hostname")]
    verify_hostname: bool,
}

fn verify_hostname() -> bool {
    TlsOptions::default().verify_hostname
}

impl SecurityTable {
    /// The [`Security`] of the table; a `sasl` or `tls` table its protocol would ignore is an
    /// error rather than a setting silently dropped.
    fn into_security(self) -> Result<Security, String> {
        let p = self.protocol.name();
        let tls = |t: Option<TlsTable>| t.map(TlsTable::into_options).unwrap_or_default();
        match (self.protocol, self.sasl, self.tls) {
            (Protocol::Plaintext | Protocol::Ssl, Some(_), _) => Err(format!(
                "`sasl` needs protocol \"sasl_plaintext\" or \"sasl_ssl\", not \"{p}\""
            )),
            (Protocol::SaslPlaintext | Protocol::SaslSsl, None, _) => Err(format!(
                "protocol \"{p}\" needs `sasl = {{ mechanism, username, password }}`"
            )),
            (Protocol::Plaintext | Protocol::SaslPlaintext, _, Some(_)) => {
                Err(format!("`tls` needs protocol \"ssl\" or \"sasl_ssl\", not \"{p}\""))
            }
            (Protocol::Plaintext, None, None) => Ok(Security::Plaintext),
            (Protocol::Ssl, None, t) => Ok(Security::Ssl(tls(t))),
            (Protocol::SaslPlaintext, Some(s), None) => Ok(Security::SaslPlaintext(s.into_options())),
            (Protocol::SaslSsl, Some(s), t) => Ok(Security::SaslSsl(s.into_options(), tls(t))),
        }
    }
}

impl SaslTable {
    fn into_options(self) -> SaslOptions {
        SaslOptions::new(self.mechanism, self.username, Secret::new(self.password.expose()))
    }
}

impl TlsTable {
    fn into_options(self) -> TlsOptions {
        TlsOptions {
            ca_location: self.ca_location,
            certificate_location: self.certificate_location,
            key_location: self.key_location,
            key_password: self.key_password.map(|p| Secret::new(p.expose())),
            verify_hostname: self.verify_hostname,
        }
    }
}

/// A protocol alone (`"ssl"`), or the security table.
fn security<'de, D: Deserializer<'de>>(d: D) -> Result<Security, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Security;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#""plaintext", "ssl", or a table { protocol, sasl, tls }"#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let protocol = Protocol::deserialize(de::value::StrDeserializer::<E>::new(v))?;
            let table = SecurityTable {
                protocol,
                sasl: None,
                tls: None,
            };
            table.into_security().map_err(E::custom)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let table = SecurityTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
            table.into_security().map_err(de::Error::custom)
        }
    }
    d.deserialize_any(V)
}

/// A table of librdkafka properties. librdkafka takes every value as text, but a file may
/// write `50` or `true` as TOML would.
fn properties<'de, D: Deserializer<'de>>(d: D) -> Result<Properties, D::Error> {
    struct Text(String);

    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Text;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a property value: a string, a number or a boolean")
                }

                fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                    Ok(Text(v.to_owned()))
                }

                fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }

                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }

                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }

                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }

    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Properties;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a table of librdkafka properties, such as { "fetch.wait.max.ms" = 50 }"#)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut p = Properties::default();
            while let Some((k, Text(v))) = map.next_entry::<String, Text>()? {
                p.set(k, v);
            }
            Ok(p)
        }
    }
    d.deserialize_map(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KafkaError;

    const FULL: &str = r#"
brokers = "k1:9092,k2:9092"
group_id = "billing"
topics = ["orders", "^refunds-.*"]
client_id = "billing-1"
start_from = "latest"
commit_interval = "250ms"
session_timeout = "20s"
heartbeat_interval = "2s"
rebalance_timeout = "2m"
revoke_drain_timeout = "5s"
on_revoke = "abandon"
close_timeout = "7s"
connect_timeout = "15s"
on_failed = "hold"
prefetch = 0
max_prefetch_kbytes = 2048
with_headers = false
properties = { "fetch.wait.max.ms" = 50, "socket.keepalive.enable" = true, "sasl.oauthbearer.config" = "tok-abc123" }

[security]
protocol = "sasl_plaintext"
sasl = { mechanism = "PLAIN", username = "alice", password = "pw-hunter2" }
"#;

    const MINIMAL: &str = "bootstrap_servers = \"127.0.0.1:9092\"\ngroup_id = \"g\"\ntopic = \"t\"";

    fn source(text: &str) -> Result<KafkaSourceConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn sink(text: &str) -> Result<KafkaSinkConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The example with each commented option line (`# name = value`) in place of the line
    /// setting the same option: the alternatives it documents must be valid too.
    fn uncommented(example: &str) -> String {
        let key = |line: &str| line.split_once(" = ").map(|(k, _)| k.trim().to_owned());
        let lines: Vec<&str> = example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(opt) if key(opt).is_some_and(|k| !k.contains(' ')) => opt,
                _ => l,
            })
            .collect();
        let last_of = |k: &str| lines.iter().rposition(|l| key(l).as_deref() == Some(k));
        lines
            .iter()
            .enumerate()
            .filter(|(i, l)| key(l).is_none_or(|k| last_of(&k) == Some(*i)))
            .map(|(_, l)| *l)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_full_source_config_deserializes() {
        let c = source(FULL).unwrap();
        assert_eq!(c.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!(c.topics, ["orders", "^refunds-.*"]);
        assert_eq!(c.start_from, StartFrom::Latest);
        assert_eq!((c.on_failed, c.on_revoke), (OnFailed::Hold, OnRevoke::Abandon));
        assert_eq!(c.heartbeat_interval, Some(Duration::from_secs(2)));
        assert_eq!(c.rebalance_timeout, Duration::from_secs(120));
        let sasl = SaslOptions::new(SaslMechanism::Plain, "alice", "pw-hunter2");
        assert_eq!(c.security, Security::SaslPlaintext(sasl));
        assert_eq!(c.properties.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(c.properties.get("socket.keepalive.enable"), Some("true"));

        let o = c.options().unwrap();
        assert_eq!((o.group_id(), o.topics()), ("billing", &c.topics[..]));
        assert_eq!(
            (o.commit_interval, o.session_timeout, o.revoke_drain_timeout),
            (
                Duration::from_millis(250),
                Duration::from_secs(20),
                Duration::from_secs(5)
            )
        );
        assert_eq!(
            (o.close_timeout, o.connect_timeout),
            (Duration::from_secs(7), Duration::from_secs(15))
        );
        assert_eq!((o.prefetch, o.max_prefetch_kbytes, o.with_headers), (0, 2048, false));
        let cc = o.client_config();
        for (k, v) in [
            ("client.id", "billing-1"),
            ("auto.offset.reset", "latest"),
            ("heartbeat.interval.ms", "2000"),
            ("max.poll.interval.ms", "120000"),
            ("security.protocol", "sasl_plaintext"),
            ("sasl.username", "alice"),
            ("fetch.wait.max.ms", "50"),
        ] {
            assert_eq!(cc.get(k), Some(v), "{k}");
        }
    }

    #[test]
    fn the_security_table_maps_to_security() {
        let sec = |text: &str| source(&format!("{MINIMAL}\nsecurity = {text}")).map(|c| c.security);
        assert_eq!(sec("\"plaintext\""), Ok(Security::Plaintext));
        assert_eq!(sec("\"SSL\""), Ok(Security::Ssl(TlsOptions::default())));
        let scram = SaslOptions::new(SaslMechanism::ScramSha256, "app", "s3cr3t");
        let tls = TlsOptions {
            ca_location: Some("ca.pem".into()),
            certificate_location: Some("client.pem".into()),
            key_location: Some("client.key".into()),
            key_password: Some(Secret::new("kp")),
            verify_hostname: false,
        };
        assert_eq!(
            sec(
                r#"{ protocol = "sasl_ssl", sasl = { mechanism = "SCRAM-SHA-256", username = "app", password = "s3cr3t" }, tls = { ca_location = "ca.pem", certificate_location = "client.pem", key_location = "client.key", key_password = "kp", verify_hostname = false } }"#
            ),
            Ok(Security::SaslSsl(scram.clone(), tls))
        );
        assert_eq!(
            sec(
                r#"{ protocol = "SASL_SSL", sasl = { mechanism = "SCRAM-SHA-256", username = "app", password = "s3cr3t" } }"#
            ),
            Ok(Security::SaslSsl(scram, TlsOptions::default()))
        );

        let e = sec("\"sasl_ssl\"").unwrap_err();
        assert!(e.contains("protocol \"sasl_ssl\" needs `sasl"), "{e}");
        let e =
            sec(r#"{ protocol = "ssl", sasl = { mechanism = "PLAIN", username = "u", password = "p" } }"#).unwrap_err();
        assert!(e.contains("`sasl` needs protocol"), "{e}");
        let e = sec(r#"{ protocol = "plaintext", tls = {} }"#).unwrap_err();
        assert!(e.contains("`tls` needs protocol"), "{e}");
        let e =
            sec(r#"{ protocol = "sasl_ssl", sasl = { mechanism = "SCRAM-SHA-1", username = "u", password = "p" } }"#)
                .unwrap_err();
        assert!(
            e.contains("unknown variant `SCRAM-SHA-1`") && e.contains("`SCRAM-SHA-256`"),
            "{e}"
        );
        let e = sec("\"tls\"").unwrap_err();
        assert!(e.contains("unknown variant `tls`") && e.contains("`sasl_ssl`"), "{e}");
    }

    #[test]
    fn defaults_are_those_of_the_options() {
        let o = source(MINIMAL).unwrap().options().unwrap();
        let d = KafkaSourceOptions::new(Connection::new("127.0.0.1:9092"), "g", ["t"]);
        assert_eq!(format!("{o:?}"), format!("{d:?}"));

        let s = sink("bootstrap_servers = \"127.0.0.1:9092\"\ntopic = \"t\"").unwrap();
        let d = KafkaSinkOptions::new(Connection::new("127.0.0.1:9092")).topic("t");
        assert_eq!(format!("{:?}", s.options().unwrap()), format!("{d:?}"));
    }

    #[test]
    fn the_examples_are_valid_configs_of_the_defaults() {
        let c = source(KafkaSourceConfig::EXAMPLE).unwrap();
        let d = KafkaSourceOptions::new(Connection::new("127.0.0.1:9092"), "ferroway", ["orders"]);
        assert_eq!(format!("{:?}", c.options().unwrap()), format!("{d:?}"));
        let s = sink(KafkaSinkConfig::EXAMPLE).unwrap();
        let d = KafkaSinkOptions::new(Connection::new("127.0.0.1:9092")).topic("events");
        assert_eq!(format!("{:?}", s.options().unwrap()), format!("{d:?}"));
        assert!(!KafkaSourceConfig::SUMMARY.contains('\n') && !KafkaSinkConfig::SUMMARY.contains('\n'));
    }

    #[test]
    fn the_commented_alternatives_in_the_examples_are_valid() {
        let text = uncommented(KafkaSourceConfig::EXAMPLE);
        let c = source(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            (c.client_id.as_deref(), c.heartbeat_interval),
            (Some("orders-reader"), Some(Duration::from_secs(3)))
        );
        assert!(matches!(&c.security, Security::SaslSsl(s, t)
            if s.mechanism == SaslMechanism::ScramSha256 && t.ca_location.is_some()));
        assert_eq!(c.properties.get("fetch.wait.max.ms"), Some("50"));

        let text = uncommented(KafkaSinkConfig::EXAMPLE);
        let s = sink(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(matches!(&s.security, Security::SaslPlaintext(s) if s.mechanism == SaslMechanism::Plain));
        assert_eq!(s.properties.get("message.max.bytes"), Some("2000000"));
        s.options().unwrap();
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = source(&format!("{MINIMAL}\ngroup = \"g\"")).unwrap_err();
        assert!(e.contains("unknown field `group`"), "{e}");
        let e = source(&FULL.replace("password =", "pasword =")).unwrap_err();
        assert!(e.contains("unknown field `pasword`"), "{e}");
        let e = source(&format!(
            "{MINIMAL}\nsecurity = {{ protocol = \"ssl\", tls = {{ ca = \"x\" }} }}"
        ))
        .unwrap_err();
        assert!(e.contains("unknown field `ca`"), "{e}");
        let e = sink("bootstrap_servers = \"h:1\"\ntopic = \"t\"\nlinger_ms = 5").unwrap_err();
        assert!(e.contains("unknown field `linger_ms`"), "{e}");
    }

    #[test]
    fn a_bad_value_names_its_option() {
        let e = source(&FULL.replace("\"250ms\"", "\"5 parsecs\"")).unwrap_err();
        assert!(
            e.contains("commit_interval") && e.contains("`5 parsecs` is not a duration"),
            "{e}"
        );
        let e = source(&FULL.replace("\"latest\"", "\"beginning\"")).unwrap_err();
        assert!(
            e.contains("start_from") && e.contains("unknown variant `beginning`"),
            "{e}"
        );
        let e = source(&FULL.replace("\"hold\"", "\"skip\"")).unwrap_err();
        assert!(e.contains("on_failed") && e.contains("`commit`"), "{e}");
        let e = sink("bootstrap_servers = \"h:1\"\ntopic = \"t\"\nacks = 2").unwrap_err();
        assert!(e.contains("acks") && e.contains("\"all\", 1 (the leader) or 0"), "{e}");
        let e = sink("bootstrap_servers = \"h:1\"\ntopic = \"t\"\ncompression = \"brotli\"").unwrap_err();
        assert!(e.contains("unknown variant `brotli`"), "{e}");
        let e = sink("bootstrap_servers = \"h:1\"").unwrap_err();
        assert!(e.contains("missing field `topic`"), "{e}");

        let invalid = |text: &str| source(text).unwrap().options().unwrap_err();
        let e = invalid(&format!("{MINIMAL}\ntopics = [\"u\"]"));
        assert_eq!(e.option, "topics");
        assert!(e.reason.contains("not both"), "{e}");
        assert_eq!(
            invalid("bootstrap_servers = \"h:1\"\ngroup_id = \"g\"").option,
            "topics"
        );
        let e = invalid(&MINIMAL.replace("127.0.0.1:9092", "localhost"));
        assert_eq!(
            e.to_string(),
            "invalid Kafka option `bootstrap.servers`: `localhost` is not host:port"
        );
        let e = invalid(&format!("{MINIMAL}\nheartbeat_interval = \"1m\""));
        assert_eq!(e.option, "heartbeat.interval.ms");
        let acks = sink("bootstrap_servers = \"h:1\"\ntopic = \"t\"\nacks = 1").unwrap();
        assert_eq!(acks.acks, RequiredAcks::Leader);
        assert_eq!(acks.options().unwrap_err().option, "acks", "idempotence needs acks=all");
        let ok = sink("bootstrap_servers = \"h:1\"\ntopic = \"t\"\nacks = \"0\"\nidempotence = false").unwrap();
        assert_eq!(ok.options().unwrap().acks, RequiredAcks::None);
    }

    #[test]
    fn secrets_never_show() {
        let c = source(&format!(
            "{MINIMAL}\nproperties = {{ \"ssl.key.password\" = \"kp-777\" }}\n\
             security = {{ protocol = \"sasl_ssl\", sasl = {{ mechanism = \"PLAIN\", username = \"alice\", \
             password = \"pw-hunter2\" }}, tls = {{ key_password = \"tls-pw-555\" }} }}"
        ))
        .unwrap();
        let full = source(FULL).unwrap();
        let s = sink(
            "bootstrap_servers = \"h:1\"\ntopic = \"t\"\n\
             security = { protocol = \"sasl_plaintext\", sasl = { mechanism = \"PLAIN\", username = \"alice\", password = \"pw-hunter2\" } }",
        )
        .unwrap();
        for shown in [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{full:?}"),
            format!("{:?}", full.options().unwrap()),
            format!("{s:?}"),
            format!("{:?}", s.options().unwrap()),
        ] {
            for secret in ["pw-hunter2", "kp-777", "tls-pw-555", "tok-abc123"] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
            assert!(shown.contains("alice"), "{shown}");
        }
    }

    #[test]
    fn build_makes_a_source_without_connecting_and_fails_typed() {
        let ctx = BuildContext::new("p", "in");
        source(MINIMAL).unwrap().build(&ctx).unwrap();
        let bad = source(&format!("{MINIMAL}\nproperties = {{ \"fetch.wait.max.ms\" = -5 }}")).unwrap();
        let e = bad.build(&ctx).expect_err("librdkafka refuses -5");
        match e.downcast_ref::<KafkaError>() {
            Some(KafkaError::Property { property, .. }) => assert_eq!(property, "fetch.wait.max.ms"),
            other => panic!("{other:?}: {e}"),
        }
        let e = source(&format!("{MINIMAL}\ncommit_interval = 0"))
            .unwrap()
            .build(&ctx)
            .expect_err("a zero interval");
        assert_eq!(
            e.downcast_ref::<ConfigError>().map(|e| e.option.as_str()),
            Some("commit_interval")
        );
    }

    #[tokio::test]
    async fn an_invalid_sink_fails_to_build_with_its_option_named() {
        let s = sink("bootstrap_servers = \"h:1\"\ntopic = \"\"").unwrap();
        let Err(e) = s.build(&BuildContext::new("p", "out")).await else {
            panic!("an empty topic must not build");
        };
        assert_eq!(
            e.downcast_ref::<ConfigError>().map(|e| e.option.as_str()),
            Some("topic")
        );
    }
}
