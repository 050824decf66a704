//! Dead-letter records: one JSON object per failed message, written by the file and writer sinks.

use std::sync::Arc;

use super::{AsRecord, Sink};
use crate::error::BoxError;
use crate::pipeline::{BoxFuture, DeadLetterInfo, Message};

/// A sink of newline-terminated lines that can tell when they are durable: what
/// [`DeadLetterWriter`] writes dead letters to. Implemented by
/// [`FileSink`](super::file::FileSink) and [`WriterSink`](super::stdio::WriterSink).
pub trait LineSink: Send + Sync + 'static {
    /// Appends `lines` (each ending in `\n`) and resolves once they are durable.
    fn append_durable(&self, lines: Vec<u8>) -> BoxFuture<'_, Result<(), BoxError>>;
}

/// A dead-letter [`Sink`] for messages of any data type: `encode` turns the data into bytes, and
/// each failed message becomes one JSON line `{"pipeline", "stage", "reason", "origin",
/// "data"}` — `origin` holds the fields of the message's [`Origin`](crate::pipeline::Origin)
/// (`{"path", "line", "offset"}` for file sources, `{"topic", "partition", "offset"}` for Kafka,
/// …), `data` the encoded data as a string. The messages are acknowledged as successful only
/// once these lines are durable.
///
/// Data that is already a record (`String`, `Vec<u8>`, [`Record`](super::Record), anything
/// [`AsRecord`]) needs no wrapper: file and writer sinks write dead letters of it in this
/// same form.
///
/// ```
/// use ferroway::connector::DeadLetterWriter;
/// use ferroway::connector::file::{FileSink, FileSinkOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let path = std::env::temp_dir().join(format!("ferroway-doc-dlq-{}.ndjson", std::process::id()));
/// let sink = FileSink::open(&path, FileSinkOptions::new()).await?;
/// // For a pipeline of `u64`s: `.dead_letter(dead_letters)`.
/// let dead_letters = DeadLetterWriter::new(sink, |n: &u64| n.to_string().into_bytes());
/// # let _ = dead_letters;
/// # std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
pub struct DeadLetterWriter<S, T> {
    sink: S,
    encode: Encode<T>,
}

type Encode<T> = Arc<dyn Fn(&T) -> Vec<u8> + Send + Sync>;

impl<S: LineSink, T> DeadLetterWriter<S, T> {
    /// Dead letters to `sink`, their data encoded by `encode`.
    pub fn new(sink: S, encode: impl Fn(&T) -> Vec<u8> + Send + Sync + 'static) -> Self {
        DeadLetterWriter {
            sink,
            encode: Arc::new(encode),
        }
    }
}

impl<S: LineSink, T: Send + Sync + 'static> Sink<T> for DeadLetterWriter<S, T> {
    fn write<'a>(&'a self, messages: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        let mut buf = Vec::new();
        for m in messages.iter() {
            encode_dead_letter(m, &(self.encode)(m.data()), &mut buf);
        }
        self.sink.append_durable(buf)
    }
}

/// What a line sink (file, writer) writes for a batch: each message's payload as a line, or
/// for a dead letter its JSON record.
pub(crate) fn write_lines<'a, T: AsRecord>(
    sink: &'a impl LineSink,
    messages: &[Message<T>],
) -> BoxFuture<'a, Result<(), BoxError>> {
    let mut buf = Vec::new();
    for m in messages {
        let payload = m.data().payload();
        if m.metadata::<DeadLetterInfo>().is_some() {
            encode_dead_letter(m, payload, &mut buf);
        } else {
            buf.extend_from_slice(payload);
            buf.push(b'\n');
        }
    }
    sink.append_durable(buf)
}

/// One dead-letter line.
pub(crate) fn encode_dead_letter<T>(m: &Message<T>, data: &[u8], out: &mut Vec<u8>) {
    let info = m.metadata::<DeadLetterInfo>();
    out.push(b'{');
    if let Some(info) = info {
        field(out, "pipeline", info.pipeline.as_bytes());
        field(out, "stage", info.stage.as_bytes());
    }
    let reason = info.map(|i| &*i.reason).or(m.failure()).unwrap_or("failed");
    field(out, "reason", reason.as_bytes());
    if let Some(origin) = m.origin() {
        out.extend_from_slice(b"\"origin\":{");
        for (name, value) in origin.fields() {
            field(out, name, value.as_bytes());
        }
        if out.last() == Some(&b',') {
            out.pop();
        }
        out.extend_from_slice(b"},");
    }
    field(out, "data", data);
    out.pop(); // the last comma
    out.extend_from_slice(b"}\n");
}

fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    json_string(out, value);
    out.push(b',');
}

/// Appends `value` as a JSON string; invalid UTF-8 becomes U+FFFD, so the line stays JSON.
pub(crate) fn json_string(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for c in String::from_utf8_lossy(value).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters_quotes_and_invalid_utf8() {
        let mut out = Vec::new();
        json_string(&mut out, b"a\"b\\c\nd\x01\xff");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"b\\\\c\\nd\\u0001\u{fffd}\"");
    }

    #[test]
    fn a_record_names_reason_and_data() {
        let mut m = Message::new("x\ty".to_string());
        m.fail("bad \"thing\"");
        let mut out = Vec::new();
        encode_dead_letter(&m, m.data().as_bytes(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"reason\":\"bad \\\"thing\\\"\",\"data\":\"x\\ty\"}\n"
        );
    }
}
