//! The sink: one `POST` per batch.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::{AsRecord, Sink};
use ferroway::error::Unavailable;
use ferroway::pipeline::{BoxFuture, Message};
use ferroway::resilience::CircuitBreaker;
use ferroway::telemetry::LogThrottle;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, LOCATION};
use serde::de::IgnoredAny;
use tracing::warn;

use super::options::{BodyFormat, HttpSinkOptions};
use crate::client::{self, redact_error, redacted, retry_after};
use crate::error::OptionsError;

/// A [`Sink`] posting each batch as one request: a JSON array (or NDJSON) of the records'
/// payloads, which must be JSON.
///
/// - **Acknowledged after the answer:** a batch succeeds when the server answers 2xx.
/// - **Busy, down or misconfigured is not bad data:** 5xx, 429, 408, 401, 403, 404, a
///   redirect (never followed), a refused connection or a timeout is tried again ([`attempts`](HttpSinkOptions::attempts), waiting `Retry-After` when the
///   server says); then the batch goes back to the pipeline as unavailable — kept and
///   retried after its backoff, never failed or dead-lettered. A [`CircuitBreaker`] stops
///   the requests while the server keeps failing.
/// - **Refused batches:** 400, 409, 413, 415 or 422 marks every record of the batch failed
///   with the status and the start of the server's answer (they go to the dead-letter
///   route, if any).
/// - **Bad records:** a payload that is not JSON fails alone; the rest is sent.
///
/// ```no_run
/// use ferroway::connector::generator::Generator;
/// use ferroway::connector::{Record, Source};
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_http::sink::{HttpSink, HttpSinkOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = HttpSink::new(HttpSinkOptions::new("https://collector.example.com/v1/events").bearer("s3cr3t"))?;
/// let pipeline = Pipeline::builder("export", Forward::<Record>::new())
///     .source(Generator::new(1_000).map(Record::from))
///     .sink(sink, Batcher::new("http").batch_size(500))
///     .start()
///     .await?;
/// pipeline.join().await?;
/// # Ok(()) }
/// ```
pub struct HttpSink {
    opts: Arc<HttpSinkOptions>,
    client: reqwest::Client,
    breaker: CircuitBreaker,
    url: String,
    outage: LogThrottle,
    /// Why the last failed attempt failed: what an open breaker's error shows.
    last_error: std::sync::Mutex<String>,
    sent: metrics::Counter,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
enum Attempt {
    Done,
    /// The server refused the batch: every record fails with this reason.
    Refused(String),
    /// Try again (after `Retry-After`, if the server said).
    Later(String, Option<Duration>),
}

impl HttpSink {
    /// Validates `opts` and makes the client (no request yet).
    ///
    /// ```
    /// use ferroway_http::sink::{HttpSink, HttpSinkOptions};
    /// let e = HttpSink::new(HttpSinkOptions::new("http://h/in").attempts(0)).unwrap_err();
    /// assert_eq!(e.to_string(), "invalid option `attempts`: must be at least 1");
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option (or the TLS setup that failed).
    pub fn new(opts: HttpSinkOptions) -> Result<HttpSink, OptionsError> {
        opts.validate()?;
        let client = client::build(opts.connect_timeout).map_err(|e| OptionsError::new("tls", e.to_string()))?;
        let url = opts.url();
        let breaker = opts
            .breaker
            .clone()
            .unwrap_or_else(|| CircuitBreaker::builder(format!("http-sink {url}")).build());
        Ok(HttpSink {
            sent: metrics::counter!(crate::metrics::SENT, "url" => url.clone()),
            outage: LogThrottle::new(Duration::from_secs(10)),
            last_error: std::sync::Mutex::default(),
            opts: Arc::new(opts),
            client,
            breaker,
            url,
        })
    }

    /// The body of the records that can be sent (their indexes in the batch); the others
    /// are marked failed.
    fn body<T: AsRecord>(&self, batch: &mut [Message<T>]) -> (Vec<u8>, Vec<usize>) {
        let mut body = Vec::new();
        let mut included = Vec::with_capacity(batch.len());
        if self.opts.format == BodyFormat::JsonArray {
            body.push(b'[');
        }
        for (i, m) in batch.iter_mut().enumerate() {
            let payload = m.data().payload();
            if let Err(e) = serde_json::from_slice::<IgnoredAny>(payload) {
                m.fail(format!("the payload is not JSON: {e}"));
                continue;
            }
            match self.opts.format {
                BodyFormat::JsonArray => {
                    if !included.is_empty() {
                        body.push(b',');
                    }
                    body.extend_from_slice(payload);
                }
                BodyFormat::Ndjson if payload.iter().any(|b| matches!(b, b'\n' | b'\r')) => {
                    // Valid JSON spread over lines: raw CR and LF can only be whitespace
                    // between tokens (strings cannot hold them), so spaces keep it exact.
                    body.extend(
                        payload
                            .iter()
                            .map(|b| if matches!(b, b'\n' | b'\r') { b' ' } else { *b }),
                    );
                    body.push(b'\n');
                }
                BodyFormat::Ndjson => {
                    body.extend_from_slice(payload);
                    body.push(b'\n');
                }
            }
            included.push(i);
        }
        if self.opts.format == BodyFormat::JsonArray {
            body.push(b']');
        }
        (body, included)
    }

    async fn attempt(&self, body: &Bytes) -> Attempt {
        let content_type = match self.opts.format {
            BodyFormat::JsonArray => "application/json",
            BodyFormat::Ndjson => "application/x-ndjson",
        };
        let mut request = self
            .client
            .post(&self.opts.url)
            .timeout(self.opts.request_timeout)
            .header(CONTENT_TYPE, content_type)
            .body(body.clone());
        if self.opts.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        for (name, value) in &self.opts.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send().await {
            Err(e) => Attempt::Later(redact_error(&e), None),
            Ok(mut r) if r.status().is_success() => {
                // Read (a little of) the answer so the connection serves the next batch.
                let _ = start_of(&mut r, 64 << 10).await;
                Attempt::Done
            }
            Ok(mut r) => {
                let status = r.status();
                let after = retry_after(&r);
                let location = r.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(redacted);
                let answer = start_of(&mut r, 200).await;
                let text = String::from_utf8_lossy(&answer);
                let reason = match location {
                    Some(l) => format!("HTTP {status} to {l}"),
                    None => format!("HTTP {status}: {}", text.trim()),
                };
                if refuses_records(status) {
                    Attempt::Refused(reason)
                } else {
                    // Busy, down, or not set up right (wrong URL, credentials, a redirect):
                    // none of it is the records' fault.
                    Attempt::Later(reason, after)
                }
            }
        }
    }
}

/// Statuses that say the request's content is wrong: its records fail. Any other answer
/// (5xx, 429, 408, 401, 403, 404, 3xx, …) keeps them for later.
fn refuses_records(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 409 | 413 | 415 | 422)
}

/// Up to `max` bytes of the answer's body.
async fn start_of(r: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < max {
        match r.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c[..c.len().min(max - out.len())]),
            _ => break,
        }
    }
    out
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

impl<T: AsRecord + Send + Sync + 'static> Sink<T> for HttpSink {
    fn write<'a>(&'a self, batch: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let (mut body, included) = self.body(batch);
            if included.is_empty() {
                return Ok(());
            }
            if self.opts.gzip {
                body = gzip(&body)?;
            }
            let body = Bytes::from(body);
            let mut wait = self.opts.retry;
            let mut last = String::new();
            for attempt in 1..=self.opts.attempts {
                let permit = self.breaker.try_acquire().map_err(|open| {
                    let last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
                    Unavailable::new(
                        self.url.clone(),
                        format!(
                            "the circuit breaker is open (retry in {:?}); last error: {last}",
                            open.retry_in
                        ),
                    )
                })?;
                match self.attempt(&body).await {
                    Attempt::Done => {
                        permit.success();
                        self.outage.reset();
                        self.sent.increment(included.len() as u64);
                        return Ok(());
                    }
                    Attempt::Refused(reason) => {
                        // The server is up and said no: not an outage.
                        permit.success();
                        for &i in &included {
                            batch[i].fail(&reason);
                        }
                        return Ok(());
                    }
                    Attempt::Later(reason, after) => {
                        permit.failure();
                        let pause = after.unwrap_or(wait).min(self.opts.max_retry);
                        if let Some(suppressed) = self.outage.allow() {
                            warn!(url = %self.url, error = %reason, attempt, retry_in = ?pause, suppressed, "HTTP sink: request failed");
                        }
                        last.clone_from(&reason);
                        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = reason;
                        if attempt < self.opts.attempts {
                            tokio::time::sleep(pause).await;
                            wait = wait.saturating_mul(2).min(self.opts.max_retry);
                        }
                    }
                }
            }
            Err(Unavailable::new(self.url.clone(), last).into())
        })
    }
}
