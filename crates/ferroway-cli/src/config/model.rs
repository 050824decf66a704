//! The options of a pipeline file that are not a connector's own: serde types, each rejecting
//! unknown keys, with the checks that serde can do where the value is (so errors point at it).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// The top-level options (sections — sources, steps, sinks, dead_letter, tests — are read
/// apart).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Top {
    /// The pipeline's name (default: the file's name without `.toml`).
    pub name: Option<String>,
    /// How long a graceful stop may take before what is left is abandoned (unacknowledged,
    /// delivered again on the next run).
    #[serde(default = "default_shutdown", deserialize_with = "positive_duration")]
    pub shutdown_timeout: Duration,
    /// Per-key order: `"key"` (the record's key) or a JSON field path such as `".user.id"`.
    pub partition_by: Option<String>,
    /// At most `messages` per `per`, over all sources.
    pub rate_limit: Option<RateLimit>,
    /// The processors that run the steps.
    #[serde(default)]
    pub processors: ProcessorOptions,
}

fn default_shutdown() -> Duration {
    Duration::from_secs(30)
}

/// `rate_limit = { messages = 1000, per = "1s" }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Messages allowed per interval.
    #[serde(deserialize_with = "at_least_one")]
    pub messages: usize,
    /// The interval.
    #[serde(deserialize_with = "positive_duration")]
    pub per: Duration,
}

/// `[processors]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorOptions {
    /// How many run at once (default: one per core).
    #[serde(default = "cores", deserialize_with = "at_least_one")]
    pub concurrency: usize,
    /// The most messages a processor holds at once (default 1000).
    #[serde(default = "thousand", deserialize_with = "at_least_one")]
    pub max_demand: usize,
}

impl Default for ProcessorOptions {
    fn default() -> Self {
        ProcessorOptions {
            concurrency: cores(),
            max_demand: thousand(),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn thousand() -> usize {
    1000
}

/// The options of `[sinks.NAME]` that are the batcher's, not the connector's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkOptions {
    /// A batch is written once it holds this many records (default 100).
    #[serde(default = "hundred", deserialize_with = "at_least_one")]
    pub batch_size: usize,
    /// …or this long after its first record (default 1s).
    #[serde(default = "second", deserialize_with = "positive_duration")]
    pub batch_timeout: Duration,
    /// Batches written at once (default 1).
    #[serde(default = "one", deserialize_with = "at_least_one")]
    pub concurrency: usize,
    /// A jq condition: records for which it holds go to this sink (the first sink in file
    /// order whose route holds; a sink without a route takes every record that reaches it).
    pub route: Option<String>,
}

impl SinkOptions {
    /// The keys of a sink table that are these options (the rest are the connector's).
    pub const KEYS: &'static [&'static str] = &["type", "batch_size", "batch_timeout", "concurrency", "route"];
}

fn hundred() -> usize {
    100
}

fn second() -> Duration {
    Duration::from_secs(1)
}

fn one() -> usize {
    1
}

/// One `[[steps]]` entry: exactly one of `filter`, `map`, `dead_letter`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Keep records for which this jq condition holds; the others are dropped (acknowledged).
    pub filter: Option<String>,
    /// Replace the record by this jq filter's output (no output drops it; `error("why")`
    /// dead-letters it).
    pub map: Option<String>,
    /// Dead-letter records for which this jq condition holds.
    pub dead_letter: Option<String>,
    /// The dead letter's reason (with `dead_letter`).
    pub reason: Option<String>,
}

/// One `[[tests]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// Shown in the report.
    pub name: String,
    /// The records the sources emit.
    pub input: Vec<InputRecord>,
    /// Per sink, the payloads it must receive, in order (a sink not listed must receive
    /// nothing). Compared as JSON values when both sides are JSON.
    #[serde(default)]
    pub output: BTreeMap<String, Vec<String>>,
    /// The dead letters expected, in order (none if absent).
    #[serde(default)]
    pub dead_letters: Vec<ExpectedDeadLetter>,
}

/// A test input: a payload, or `{ payload = "...", key = "..." }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// The payload.
    pub payload: String,
    /// The key, if any.
    pub key: Option<String>,
}

impl<'de> Deserialize<'de> for InputRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputRecord;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a payload string or a table { payload = \"…\", key = \"…\" }")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<InputRecord, E> {
                Ok(InputRecord {
                    payload: v.to_owned(),
                    key: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<InputRecord, A::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Table {
                    payload: String,
                    key: Option<String>,
                }
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(InputRecord {
                    payload: t.payload,
                    key: t.key,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// An expected dead letter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedDeadLetter {
    /// The payload it carries (the record as it came in).
    pub payload: String,
    /// Text its reason contains (default: any reason).
    pub reason: Option<String>,
}

/// A count that must be at least 1.
fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = i64::deserialize(d)?;
    if n < 1 {
        return Err(de::Error::custom("must be at least 1"));
    }
    usize::try_from(n).map_err(|_| de::Error::custom(format!("{n} is too large")))
}

/// A duration longer than zero.
fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = ferroway::config::duration::deserialize(d)?;
    if v.is_zero() {
        return Err(de::Error::custom("must be longer than zero"));
    }
    Ok(v)
}
