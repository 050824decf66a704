//! Durations in configuration files: `"500ms"`, `"2s"`, `"1m 30s"` (humantime), or a number of
//! milliseconds.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Opts {
//!     #[serde(with = "ferroway::config::duration")]
//!     timeout: std::time::Duration,
//! }
//! let o: Opts = serde_json::from_str(r#"{"timeout": "1m 30s"}"#).unwrap();
//! assert_eq!(o.timeout.as_secs(), 90);
//! let bad = serde_json::from_str::<Opts>(r#"{"timeout": "5 parsecs"}"#).err().unwrap();
//! assert!(bad.to_string().contains("a duration such as \"500ms\""), "{bad}");
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

/// Reads a duration.
///
/// # Errors
/// Neither a humantime string nor a whole number of milliseconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// Writes a duration as humantime text (`"1m 30s"`).
///
/// # Errors
/// Those of the serializer.
pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*value).to_string())
}

/// An optional duration (`Option<Duration>` fields).
pub mod option {
    use super::*;

    /// Reads an optional duration.
    ///
    /// # Errors
    /// As [`deserialize`](super::deserialize).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(deserialize_with = "super::deserialize")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }

    /// Writes an optional duration.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::serialize(v, s),
            None => s.serialize_none(),
        }
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"500ms\", \"2s\" or \"1m 30s\", or a number of milliseconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        humantime::parse_duration(v.trim()).map_err(|e| {
            E::custom(format!(
                "`{v}` is not a duration such as \"500ms\", \"2s\" or \"1m 30s\" ({e})"
            ))
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_millis(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_millis)
            .map_err(|_| E::custom(format!("a duration cannot be negative ({v} ms)")))
    }
}
