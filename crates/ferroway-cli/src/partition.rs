//! `partition_by`: which records keep their relative order — those with the same record key,
//! or the same value of a JSON field.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use ferroway::connector::Record;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What records are partitioned by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionBy {
    /// The record's key (records without one share a partition).
    Key,
    /// A field of the JSON payload: `.user.id` is `["user", "id"]`. Records whose payload is
    /// not JSON or lacks the field share a partition.
    Field(Vec<String>),
}

impl PartitionBy {
    /// Reads `"key"` or a field path such as `".user.id"`.
    ///
    /// ```
    /// use ferroway_cli::partition::PartitionBy;
    /// assert_eq!(PartitionBy::parse(".user.id").unwrap(), PartitionBy::Field(vec!["user".into(), "id".into()]));
    /// assert!(PartitionBy::parse("user").is_err());
    /// ```
    ///
    /// # Errors
    /// Neither, with what would be right.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "key" {
            return Ok(PartitionBy::Key);
        }
        let fields: Vec<String> = s
            .strip_prefix('.')
            .map(|p| p.split('.').map(str::to_owned).collect())
            .unwrap_or_default();
        if fields.is_empty() || fields.iter().any(String::is_empty) {
            return Err(format!(
                "`{s}` is neither \"key\" (the record's key) nor a JSON field path such as \".user.id\""
            ));
        }
        Ok(PartitionBy::Field(fields))
    }

    /// The partition hash of `record` (the same in every run of the same build).
    pub fn hash(&self, record: &Record) -> u64 {
        let mut h = DefaultHasher::new();
        match self {
            PartitionBy::Key => record.key.hash(&mut h),
            PartitionBy::Field(path) => {
                let mut de = serde_json::Deserializer::from_slice(&record.payload);
                let value = Path(path).deserialize(&mut de).ok().flatten();
                value.map(|v| v.to_string()).hash(&mut h);
            }
        }
        h.finish()
    }
}

/// Finds the value at a field path without building the rest of the document.
struct Path<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for Path<'_> {
    type Value = Option<serde_json::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.0.is_empty() {
            return serde::Deserialize::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Path<'_> {
    type Value = Option<serde_json::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (first, rest) = self.0.split_first().expect("a non-empty path");
        let mut found = None;
        while let Some(is_it) = map.next_key_seed(KeyIs(first))? {
            if is_it && found.is_none() {
                found = map.next_value_seed(Path(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Whether a key is the one looked for, without allocating it.
struct KeyIs<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_the_same_field_share_a_hash() {
        let by = PartitionBy::parse(".user.id").unwrap();
        let h = |p: &str| by.hash(&Record::new(p.to_owned()));
        assert_eq!(
            h(r#"{"user":{"id":7},"n":1}"#),
            h(r#"{"n":2,"user":{"name":"x","id":7}}"#)
        );
        assert_ne!(h(r#"{"user":{"id":7}}"#), h(r#"{"user":{"id":8}}"#));
        // Not JSON, or no such field: one shared partition.
        assert_eq!(h("not json"), h(r#"{"user":{}}"#));
    }

    #[test]
    fn by_key() {
        let by = PartitionBy::Key;
        assert_eq!(by.hash(&Record::new("a").key("k")), by.hash(&Record::new("b").key("k")));
    }
}
