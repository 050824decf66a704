//! How a line of input becomes the data of a message.

/// Decodes one line (without its line ending) into a message's data.
///
/// A line that does not decode still becomes a message — failed, with the reason — so the
/// pipeline's failure handling (dead letters, `handle_failed`) sees it and the source can
/// acknowledge past it. `Err` therefore carries the data to put in that failed message too.
///
/// ```
/// use ferroway::connector::LineFormat;
///
/// /// Comma-separated fields.
/// #[derive(Clone)]
/// struct Csv;
/// impl LineFormat for Csv {
///     type Item = Vec<String>;
///     fn decode(&self, line: Vec<u8>) -> Result<Vec<String>, (Vec<String>, String)> {
///         match String::from_utf8(line) {
///             Ok(s) => Ok(s.split(',').map(str::to_owned).collect()),
///             Err(e) => Err((Vec::new(), format!("invalid UTF-8: {e}"))),
///         }
///     }
/// }
/// assert_eq!(Csv.decode(b"a,b".to_vec()).unwrap(), ["a", "b"]);
/// ```
pub trait LineFormat: Clone + Send + Sync + 'static {
    /// The data of each message.
    type Item: Send + 'static;

    /// Decodes `line`; on failure returns the data for the failed message and why it failed
    /// (the source prefixes the line number).
    fn decode(&self, line: Vec<u8>) -> Result<Self::Item, (Self::Item, String)>;

    /// Lines this format skips without a message (acknowledged at once). Default: none.
    fn skip(&self, line: &[u8]) -> bool {
        let _ = line;
        false
    }
}

/// Each line as raw bytes. Never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl LineFormat for Bytes {
    type Item = Vec<u8>;
    fn decode(&self, line: Vec<u8>) -> Result<Vec<u8>, (Vec<u8>, String)> {
        Ok(line)
    }
}

/// Each line as a `String`. A line that is not valid UTF-8 fails, carrying the lossy text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Text;

impl LineFormat for Text {
    type Item = String;
    fn decode(&self, line: Vec<u8>) -> Result<String, (String, String)> {
        String::from_utf8(line).map_err(|e| {
            let reason = format!("invalid UTF-8: {}", e.utf8_error());
            (String::from_utf8_lossy(e.as_bytes()).into_owned(), reason)
        })
    }
}

/// Newline-delimited JSON: each line one [`serde_json::Value`]. Blank lines are skipped. A
/// malformed line fails (`line 17: invalid JSON: ...`) and carries its raw text as
/// `Value::String`, so a dead-letter sink can still store what was read.
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Ndjson;

#[cfg(feature = "json")]
impl LineFormat for Ndjson {
    type Item = serde_json::Value;
    fn decode(&self, line: Vec<u8>) -> Result<serde_json::Value, (serde_json::Value, String)> {
        serde_json::from_slice(&line).map_err(|e| {
            let raw = String::from_utf8_lossy(&line).into_owned();
            (serde_json::Value::String(raw), format!("invalid JSON: {e}"))
        })
    }

    fn skip(&self, line: &[u8]) -> bool {
        line.iter().all(u8::is_ascii_whitespace)
    }
}

/// Cuts a trailing `\n` or `\r\n`.
pub(crate) fn strip_line_ending(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
}

/// Joins `lines`, each followed by `\n`, into one buffer (one write for a whole batch).
pub(crate) fn join_lines<I>(lines: I) -> Vec<u8>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_ref());
        buf.push(b'\n');
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fails_on_invalid_utf8_with_lossy_data() {
        let (data, reason) = Text.decode(vec![b'a', 0xff]).unwrap_err();
        assert_eq!(data, "a\u{fffd}");
        assert!(reason.starts_with("invalid UTF-8"), "{reason}");
    }

    #[cfg(feature = "json")]
    #[test]
    fn ndjson_keeps_raw_text_of_malformed_lines_and_skips_blank_ones() {
        let (data, reason) = Ndjson.decode(b"{\"a\":".to_vec()).unwrap_err();
        assert_eq!(data, serde_json::Value::String("{\"a\":".into()));
        assert!(reason.starts_with("invalid JSON"), "{reason}");
        assert_eq!(Ndjson.decode(b"{\"a\":1}".to_vec()).unwrap()["a"], 1);
        assert!(Ndjson.skip(b"  \t"));
        assert!(!Ndjson.skip(b"{}"));
    }

    #[test]
    fn strips_lf_and_crlf_only() {
        for (input, want) in [
            (&b"a\n"[..], &b"a"[..]),
            (b"a\r\n", b"a"),
            (b"a", b"a"),
            (b"a\r", b"a\r"),
        ] {
            let mut v = input.to_vec();
            strip_line_ending(&mut v);
            assert_eq!(v, want);
        }
    }
}
