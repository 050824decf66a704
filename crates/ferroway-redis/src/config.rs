//! The source and the sink as configuration-file components (`type = "redis"`), feature
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

use crate::entry::StreamId;
use crate::options::{ClaimOptions, OnFailed, RedisUrl, SinkOptions, SourceOptions, StartId, Trim};
use crate::sink::RedisSink;
use crate::source::RedisSource;

/// `type = "redis"` as a source: streams read as a member of a consumer group, each entry a
/// record ([`RedisRecords`](crate::RedisRecords): the entry as JSON, or one field's value),
/// `XACK`ed once the pipeline finished with it. See [`SourceOptions`] for what each option
/// does.
///
/// ```
/// use ferroway::config::SourceConfig;
/// use ferroway_redis::RedisSourceConfig;
///
/// let c: RedisSourceConfig = serde_json::from_str(
///     r#"{"url": "redis://:hunter2@127.0.0.1:6379", "stream": "orders", "group": "billing", "block": "500ms"}"#,
/// ).unwrap();
/// assert_eq!(c.block.as_millis(), 500);
/// assert!(!format!("{c:?}").contains("hunter2"));
/// assert_eq!(RedisSourceConfig::TYPE, "redis");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSourceConfig {
    /// `redis://[user[:password]@]host[:port][/db]` (`rediss://` with the `tls` feature).
    pub url: RedisUrl,
    /// The one stream read (or `streams`).
    #[serde(default)]
    pub stream: Option<String>,
    /// The streams read (or `stream`).
    #[serde(default)]
    pub streams: Vec<String>,
    /// The consumer group.
    pub group: String,
    /// This consumer's name (default: the host name); producer `i > 0` is `<consumer>-<i>`.
    #[serde(default)]
    pub consumer: Option<String>,
    /// Create the group if missing, starting at `"beginning"` (the default), `"new"` (entries
    /// added from now on) or after an entry id; `false` requires the group to exist.
    #[serde(default = "default_create_group", deserialize_with = "create_group")]
    pub create_group: Option<StartId>,
    /// How long one `XREADGROUP` waits for new entries (default `"1s"`).
    #[serde(default = "default_block", with = "ferroway::config::duration")]
    pub block: Duration,
    /// The most entries read at once (default 1000).
    #[serde(default = "default_max_count")]
    pub max_count: usize,
    /// Claiming entries other consumers left idle: `{ min_idle = "60s", interval = "5s",
    /// max_deliveries = 5 }` (the defaults), or `false` to never claim.
    #[serde(default = "default_claim", deserialize_with = "claim")]
    pub claim: Option<ClaimOptions>,
    /// A failed entry that was not dead-lettered: `"leave_pending"` (the default) or `"ack"`.
    #[serde(default)]
    pub on_failed: OnFailed,
    /// Fail if Redis never answered within this long of the start (default `"60s"`).
    #[serde(default = "default_connect_timeout", with = "ferroway::config::duration")]
    pub connect_timeout: Duration,
    /// The payload is this field's value, the other fields headers (default: the entry as
    /// JSON).
    #[serde(default)]
    pub payload_field: Option<String>,
    /// The key is this field's value (default: no key).
    #[serde(default)]
    pub key_field: Option<String>,
}

impl RedisSourceConfig {
    /// The [`SourceOptions`] these settings make, validated.
    ///
    /// # Errors
    /// An option that is invalid or in conflict with another, named.
    pub fn options(&self) -> Result<SourceOptions, BoxError> {
        let streams = match (&self.stream, self.streams.is_empty()) {
            (Some(_), false) => return Err("set `stream` or `streams`, not both".into()),
            (Some(one), true) => vec![one.clone()],
            (None, false) => self.streams.clone(),
            (None, true) => return Err("`streams`: name the stream(s) to read (`stream = \"name\"` for one)".into()),
        };
        let mut o = SourceOptions::new(self.url.expose(), &self.group, streams)
            .create_group(self.create_group.clone())
            .block(self.block)
            .max_count(self.max_count)
            .claim(self.claim.clone())
            .on_failed(self.on_failed)
            .connect_timeout(self.connect_timeout);
        if let Some(name) = &self.consumer {
            o = o.consumer(name);
        }
        if let Some(f) = &self.payload_field {
            o = o.payload_field(f);
        }
        if let Some(f) = &self.key_field {
            o = o.key_field(f);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for RedisSourceConfig {
    const TYPE: &'static str = "redis";
    const SUMMARY: &'static str = "Redis Streams read as a consumer group; entries XACKed once processed";
    const EXAMPLE: &'static str = r#"url = "redis://127.0.0.1:6379"     # with a password: "redis://:PASSWORD@host:6379"
streams = ["orders"]               # or stream = "orders"
group = "ferroway"
# consumer = "worker-1"            # default: the host name; producer i > 0 reads as "<consumer>-<i>"
create_group = "beginning"         # if missing: "beginning", "new", after an entry id, or false (must exist)
block = "1s"                       # how long one XREADGROUP waits for new entries
max_count = 1000                   # the most entries per read
claim = { min_idle = "60s", interval = "5s", max_deliveries = 5 }   # or false: never claim
on_failed = "leave_pending"        # or "ack": a failed entry that was not dead-lettered
connect_timeout = "60s"            # fail if Redis never answered within this
# payload_field = "body"           # default: the payload is the whole entry as JSON
# key_field = "id"                 # default: no key"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        let factory = RedisSource::factory(self.options()?)?;
        Ok(BoxSource::new(factory.records()))
    }
}

/// `type = "redis"` as a sink: each record `XADD`ed to a stream (its payload under
/// `payload_field`, its key under `key_field`, headers as further fields; see
/// [`RedisSink`]), confirmed by Redis before the batch is acknowledged.
///
/// ```
/// use ferroway_redis::{RedisSinkConfig, Trim};
/// let c: RedisSinkConfig = serde_json::from_str(
///     r#"{"url": "redis://127.0.0.1:6379", "stream": "events", "trim": {"maxlen": 1000000}}"#,
/// ).unwrap();
/// assert_eq!(c.trim, Some(Trim::MaxLen(1_000_000)));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://[user[:password]@]host[:port][/db]`.
    pub url: RedisUrl,
    /// The stream appended to.
    pub stream: String,
    /// Approximate trimming on every `XADD`: `{ maxlen = N }` or `{ minid = "ID" }`.
    #[serde(default)]
    pub trim: Option<Trim>,
    /// The field of the payload (default `"payload"`).
    #[serde(default = "default_payload_field")]
    pub payload_field: String,
    /// The field of the key, for records that have one (default `"key"`).
    #[serde(default = "default_key_field")]
    pub key_field: String,
}

impl RedisSinkConfig {
    /// The [`SinkOptions`] these settings make, validated.
    ///
    /// # Errors
    /// An invalid option, named.
    pub fn options(&self) -> Result<SinkOptions, BoxError> {
        let mut o = SinkOptions::new(self.url.expose(), &self.stream)
            .payload_field(&self.payload_field)
            .key_field(&self.key_field);
        if let Some(t) = &self.trim {
            o = o.trim(t.clone());
        }
        o.validate()?;
        Ok(o)
    }
}

impl SinkConfig for RedisSinkConfig {
    const TYPE: &'static str = "redis";
    const SUMMARY: &'static str = "records XADDed to a Redis stream, confirmed before acknowledgement";
    const EXAMPLE: &'static str = r#"url = "redis://127.0.0.1:6379"     # with a password: "redis://:PASSWORD@host:6379"
stream = "events"
# trim = { maxlen = 1000000 }      # or { minid = "1700000000000-0" }; approximate (~); default: none
payload_field = "payload"          # the field the payload goes to
key_field = "key"                  # the field the key goes to, when there is one"#;

    fn build(self, _: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        Box::pin(async move {
            let sink: Arc<dyn Sink<Record>> = Arc::new(RedisSink::new(self.options()?)?);
            Ok(sink)
        })
    }
}

fn default_create_group() -> Option<StartId> {
    Some(StartId::Beginning)
}

fn default_block() -> Duration {
    Duration::from_secs(1)
}

fn default_max_count() -> usize {
    1000
}

fn default_claim() -> Option<ClaimOptions> {
    Some(ClaimOptions::default())
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_payload_field() -> String {
    "payload".into()
}

fn default_key_field() -> String {
    "key".into()
}

/// `"beginning"`, `"new"`, an entry id, or `false`.
fn create_group<'de, D: Deserializer<'de>>(d: D) -> Result<Option<StartId>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<StartId>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#""beginning", "new", an entry id such as "1700000000000-0", or false"#)
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.then_some(StartId::Beginning))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "beginning" | "0" => Ok(Some(StartId::Beginning)),
                "new" | "$" => Ok(Some(StartId::NewOnly)),
                id if StreamId::parse(id).is_some() => Ok(Some(StartId::After(id.to_owned()))),
                other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
            }
        }
    }
    d.deserialize_any(V)
}

/// The claim table, or `false`.
fn claim<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ClaimOptions>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Table {
        #[serde(default = "min_idle", with = "ferroway::config::duration")]
        min_idle: Duration,
        #[serde(default = "interval", with = "ferroway::config::duration")]
        interval: Duration,
        #[serde(default = "max_deliveries")]
        max_deliveries: u64,
    }
    fn min_idle() -> Duration {
        ClaimOptions::default().min_idle
    }
    fn interval() -> Duration {
        ClaimOptions::default().interval
    }
    fn max_deliveries() -> u64 {
        ClaimOptions::default().max_deliveries
    }

    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<ClaimOptions>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table { min_idle, interval, max_deliveries }, or false to never claim")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.then(ClaimOptions::default))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok(Some(ClaimOptions {
                min_idle: t.min_idle,
                interval: t.interval,
                max_deliveries: t.max_deliveries,
            }))
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
url = "redis://app:hunter2@127.0.0.1:6379/0"
streams = ["orders", "refunds"]
group = "billing"
consumer = "worker-1"
create_group = "new"
block = "250ms"
max_count = 200
claim = { min_idle = "2m", interval = "10s", max_deliveries = 3 }
on_failed = "ack"
connect_timeout = "5s"
payload_field = "body"
key_field = "id"
"#;

    fn source(text: &str) -> Result<RedisSourceConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_source_config_deserializes() {
        let c = source(FULL).unwrap();
        assert_eq!(c.streams, ["orders", "refunds"]);
        assert_eq!((c.group.as_str(), c.consumer.as_deref()), ("billing", Some("worker-1")));
        assert_eq!(c.create_group, Some(StartId::NewOnly));
        assert_eq!((c.block, c.max_count), (Duration::from_millis(250), 200));
        let claim = ClaimOptions {
            min_idle: Duration::from_secs(120),
            interval: Duration::from_secs(10),
            max_deliveries: 3,
        };
        assert_eq!(c.claim, Some(claim));
        assert_eq!(c.on_failed, OnFailed::Ack);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(
            (c.payload_field.as_deref(), c.key_field.as_deref()),
            (Some("body"), Some("id"))
        );
        let o = c.options().unwrap();
        assert_eq!(o.consumer_name(), "worker-1");
        assert_eq!(o.payload_field.as_deref(), Some("body"));
    }

    #[test]
    fn defaults_are_those_of_the_options() {
        let c =
            source("url = \"redis://127.0.0.1\"\nstream = \"s\"\ngroup = \"g\"\nclaim = false\ncreate_group = false")
                .unwrap();
        let (o, d) = (
            c.options().unwrap(),
            SourceOptions::new("redis://127.0.0.1", "g", ["s"]),
        );
        assert_eq!(
            (o.block, o.max_count, o.connect_timeout),
            (d.block, d.max_count, d.connect_timeout)
        );
        assert_eq!((&o.claim, &o.create_group), (&None, &None));
        assert_eq!(o.consumer_name(), d.consumer_name());
        let c =
            source("url = \"redis://h\"\nstream = \"s\"\ngroup = \"g\"\ncreate_group = \"1700000000000-5\"").unwrap();
        assert_eq!(c.claim, Some(ClaimOptions::default()));
        assert_eq!(c.create_group, Some(StartId::After("1700000000000-5".into())));
    }

    #[test]
    fn the_examples_are_valid_configs() {
        let c = source(RedisSourceConfig::EXAMPLE).unwrap();
        c.options().unwrap();
        let s: RedisSinkConfig = toml::from_str(RedisSinkConfig::EXAMPLE).unwrap();
        s.options().unwrap();
        assert_eq!(s.payload_field, "payload");
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = source(&format!("{FULL}\nblok = \"1s\"")).unwrap_err();
        assert!(e.contains("unknown field `blok`"), "{e}");
        let e = source(&FULL.replace("max_deliveries = 3", "max_delivery = 3")).unwrap_err();
        assert!(e.contains("unknown field `max_delivery`"), "{e}");
        let e = toml::from_str::<RedisSinkConfig>("url = \"redis://h\"\nstream = \"s\"\nmaxlen = 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `maxlen`"), "{e}");
    }

    #[test]
    fn a_bad_value_names_its_option() {
        let e = source(&FULL.replace("\"250ms\"", "\"5 parsecs\"")).unwrap_err();
        assert!(
            e.contains("block") && e.contains("`5 parsecs` is not a duration"),
            "{e}"
        );
        let e = source(&FULL.replace("\"2m\"", "\"soon\"")).unwrap_err();
        assert!(e.contains("min_idle") && e.contains("`soon` is not a duration"), "{e}");
        let e = source(&FULL.replace("\"new\"", "\"latest\"")).unwrap_err();
        assert!(
            e.contains("create_group") && e.contains("\"beginning\", \"new\""),
            "{e}"
        );
        let e = source(&FULL.replace("\"ack\"", "\"drop\"")).unwrap_err();
        assert!(e.contains("on_failed") && e.contains("leave_pending"), "{e}");
        let no_stream = source("url = \"redis://h\"\ngroup = \"g\"")
            .unwrap()
            .options()
            .unwrap_err();
        assert!(no_stream.to_string().starts_with("`streams`"), "{no_stream}");
        let zero = source(&FULL.replace("max_count = 200", "max_count = 0")).unwrap();
        let e = zero.options().unwrap_err().to_string();
        assert_eq!(e, "invalid option `max_count`: must be at least 1");
    }

    #[test]
    fn the_url_password_never_shows() {
        let c = source(FULL).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        let bad = FULL.replace("redis://app:hunter2@", "http://app:hunter2@");
        let e = source(&bad).unwrap().options().unwrap_err().to_string();
        assert!(e.contains("http://app:***@127.0.0.1") && !e.contains("hunter2"), "{e}");
        let sink: RedisSinkConfig = toml::from_str("url = \"redis://:hunter2@h:99999\"\nstream = \"s\"").unwrap();
        assert!(!format!("{sink:?}").contains("hunter2"));
        let e = sink.options().unwrap_err().to_string();
        assert!(e.contains("redis://:***@h:99999") && !e.contains("hunter2"), "{e}");
    }
}
