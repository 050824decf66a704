//! A request body into records: one JSON value, a JSON array of them, NDJSON lines, or the
//! body as it is.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// How a request body is read, from its `Content-Type`.
///
/// ```
/// use ferroway_http::ingest::Format;
///
/// assert_eq!(Format::of(Some("application/json; charset=utf-8")), Format::Json);
/// assert_eq!(Format::of(Some("application/x-ndjson")), Format::Ndjson);
/// assert_eq!(Format::of(Some("text/plain")), Format::Raw);
/// let records = Format::Json.split(bytes::Bytes::from_static(br#"[{"a":1}, 2]"#)).unwrap();
/// assert_eq!(records, vec![bytes::Bytes::from_static(br#"{"a":1}"#), bytes::Bytes::from_static(b"2")]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// `application/json` (or `…+json`): an array is one record per element, any other value
    /// one record.
    Json,
    /// `application/x-ndjson`, `application/jsonl`, `application/x-jsonlines`: one JSON value
    /// per line (blank lines skipped).
    Ndjson,
    /// Anything else: the body is one record, unread.
    Raw,
}

impl Format {
    /// The format a `Content-Type` names.
    pub fn of(content_type: Option<&str>) -> Format {
        let essence = content_type
            .and_then(|c| c.split(';').next())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Format::Json,
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
                Format::Ndjson
            }
            e if e.starts_with("application/") && e.ends_with("+json") => Format::Json,
            _ => Format::Raw,
        }
    }

    /// The records of `body`: slices of it, not copies.
    ///
    /// # Errors
    /// What is not valid JSON, and where (the element or the line).
    pub fn split(self, body: Bytes) -> Result<Vec<Bytes>, String> {
        match self {
            Format::Raw if body.is_empty() => Err("the body is empty".to_owned()),
            Format::Raw => Ok(vec![body]),
            Format::Json => json(body),
            Format::Ndjson => ndjson(body),
        }
    }
}

fn json(body: Bytes) -> Result<Vec<Bytes>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<&RawValue> =
            serde_json::from_slice(&body).map_err(|e| format!("not a JSON array of records: {e}"))?;
        return Ok(items.iter().map(|raw| body.slice_ref(raw.get().as_bytes())).collect());
    }
    serde_json::from_slice::<IgnoredAny>(&body).map_err(|e| format!("not JSON: {e}"))?;
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(0);
    let end = body.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    Ok(vec![body.slice(start..end)])
}

fn ndjson(body: Bytes) -> Result<Vec<Bytes>, String> {
    let mut records = Vec::new();
    let mut start = 0;
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        let end = start + line.len();
        let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        if !trimmed.iter().all(u8::is_ascii_whitespace) {
            serde_json::from_slice::<IgnoredAny>(trimmed).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
            records.push(body.slice(start..start + trimmed.len()));
        }
        start = end + 1;
    }
    Ok(records)
}
