//! One long-lived `GET` read only as fast as the pipeline asks and made again whenever it
//! ends: what the SSE and NDJSON sources share. A [`Framing`] says how the body's bytes
//! become items and how a new connection resumes where the last one stopped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::Message;
use ferroway::resilience::Reach;
use ferroway::telemetry::LogThrottle;
use futures_util::FutureExt;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode};
use tracing::{info, warn};

use crate::client::{self, redact_error, redacted, retry_after};
use crate::error::SourceError;

/// Where a stream is read from and how its connections are made again.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) connect_timeout: Duration,
    pub(crate) reach_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) retry: Duration,
    pub(crate) max_retry: Duration,
}

/// How a body's bytes become items.
pub(crate) trait Framing: Send + 'static {
    type Item: Send + 'static;
    /// What the stream is called in logs ("event stream").
    const WHAT: &'static str;
    /// The `Accept` header sent.
    const ACCEPT: &'static str;

    /// Whether a response of this content type (its essence, lowercase) is such a stream.
    fn accepts(&self, essence: &str) -> bool;
    /// The request of a new connection, resuming after what was read.
    fn resume(&self, request: RequestBuilder) -> RequestBuilder;
    /// Items in `chunk`, appended to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<Self::Item>) -> Result<(), String>;
    /// The connection ended: what was cut is dropped.
    fn end_of_stream(&mut self);
    /// The reconnection delay the server asked for.
    fn server_retry(&self) -> Option<Duration> {
        None
    }
    /// Where the stream resumes, for logs.
    fn position(&self) -> String;
    /// An item as a pipeline message.
    fn message(&mut self, item: Self::Item) -> Message<Self::Item>;
}

pub(crate) struct Reader<F: Framing> {
    pub(crate) conn: Arc<Connection>,
    pub(crate) framing: F,
    client: reqwest::Client,
    response: Option<Response>,
    /// Parsed and not yet emitted: a demand gets no more than it asked for.
    ready: VecDeque<F::Item>,
    /// Connections made in a row without a stream; the next wait doubles with it.
    failures: u32,
    /// How long to wait before the next connection (set when one ended or failed).
    wait_next: Option<Duration>,
    ended: bool,
    reach: Arc<Reach>,
    outage: LogThrottle,
    received: metrics::Counter,
    reconnects: metrics::Counter,
}

enum Answer {
    Stream,
    Stop,
    Refused(String),
    /// Try again (after `Retry-After`, if the server said).
    Later(String, Option<Duration>),
}

impl<F: Framing> Reader<F> {
    pub(crate) fn new(kind: &str, conn: Arc<Connection>, framing: F) -> Result<Self, BoxError> {
        let url = redacted(&conn.url);
        Ok(Reader {
            client: client::build(conn.connect_timeout)?,
            reach: client::reach(kind, &conn.url),
            received: metrics::counter!(crate::metrics::RECEIVED, "url" => url.clone(), "kind" => kind.to_owned()),
            reconnects: metrics::counter!(crate::metrics::RECONNECTS, "url" => url, "kind" => kind.to_owned()),
            outage: LogThrottle::new(Duration::from_secs(10)),
            response: None,
            ready: VecDeque::new(),
            failures: 0,
            wait_next: None,
            ended: false,
            framing,
            conn,
        })
    }

    fn url(&self) -> String {
        redacted(&self.conn.url)
    }

    /// The wait before the next connection: the server's (or ours), doubled per failure in
    /// a row, at most `max_retry`.
    fn delay(&self) -> Duration {
        let base = self.framing.server_retry().unwrap_or(self.conn.retry);
        base.saturating_mul(1 << self.failures.min(16)).min(self.conn.max_retry)
    }

    /// A connection ended (`clean`: the server closed it) or failed (`why`): note it; the
    /// next demand waits, then connects.
    fn lost(&mut self, clean: bool, why: &str) {
        self.response = None;
        self.framing.end_of_stream();
        self.wait_next = Some(self.delay());
        self.reconnects.increment(1);
        if clean {
            // Servers close streams routinely (deploys, load balancers' limits).
            info!(url = %self.url(), retry_in = ?self.delay(), "{} ended; reconnecting", F::WHAT);
        } else if let Some(suppressed) = self.outage.allow() {
            warn!(url = %self.url(), error = why, retry_in = ?self.delay(), suppressed, "{} lost; reconnecting", F::WHAT);
        }
    }

    fn classify(&self, r: &Response) -> Answer {
        let status = r.status();
        if status == StatusCode::NO_CONTENT {
            return Answer::Stop;
        }
        if client::retryable(status) {
            return Answer::Later(format!("HTTP {status}"), retry_after(r));
        }
        if !status.is_success() {
            return Answer::Refused(format!("HTTP {status}"));
        }
        let content_type = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !self.framing.accepts(&essence) {
            return Answer::Refused(format!(
                "HTTP {status} with content type `{content_type}`, not {}",
                F::WHAT
            ));
        }
        Answer::Stream
    }

    /// Connects until a server sends a stream; `None` when it answered 204.
    async fn connect(&mut self) -> Result<Option<Response>, SourceError> {
        loop {
            let Some(wait) = self.reach.wait(self.conn.reach_timeout, Duration::MAX) else {
                return Err(SourceError::Unreachable {
                    url: self.url(),
                    waited: self.reach.waited(),
                    last_error: self.reach.last_error(),
                });
            };
            if let Some(pause) = self.wait_next.take() {
                tokio::time::sleep(pause.min(wait)).await;
            }
            let mut request = self
                .client
                .get(&self.conn.url)
                .header(ACCEPT, F::ACCEPT)
                .header(CACHE_CONTROL, "no-cache");
            for (name, value) in &self.conn.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            request = self.framing.resume(request);
            let (why, retry_after) = match request.send().await {
                Ok(r) => match self.classify(&r) {
                    Answer::Stream => {
                        self.reach.mark_reached();
                        self.failures = 0;
                        self.outage.reset();
                        info!(url = %self.url(), position = %self.framing.position(), "{} connected", F::WHAT);
                        return Ok(Some(r));
                    }
                    Answer::Stop => {
                        self.reach.mark_reached();
                        info!(url = %self.url(), "the server answered 204 No Content: the {} ends", F::WHAT);
                        return Ok(None);
                    }
                    Answer::Refused(reason) => {
                        return Err(SourceError::Refused {
                            url: self.url(),
                            reason,
                        });
                    }
                    Answer::Later(reason, after) => {
                        self.reach.mark_reached();
                        (reason, after)
                    }
                },
                Err(e) => {
                    let why = redact_error(&e);
                    self.reach.failed(Some(why.clone()));
                    (why, None)
                }
            };
            self.failures += 1;
            // The server's `Retry-After` over our own delay: one wait, not both.
            let pause = retry_after.map_or_else(|| self.delay(), |after| after.min(self.conn.max_retry));
            self.wait_next = Some(pause);
            if let Some(suppressed) = self.outage.allow() {
                warn!(url = %self.url(), error = %why, retry_in = ?pause, suppressed, "waiting for the {}", F::WHAT);
            }
        }
    }

    fn emit(&mut self, items: impl Iterator<Item = F::Item>) -> Vec<Message<F::Item>> {
        let out: Vec<_> = items.map(|i| self.framing.message(i)).collect();
        self.received.increment(out.len() as u64);
        out
    }

    /// The producer's `handle_demand`. Cancel-safe: the response and what was parsed stay
    /// in `self`.
    pub(crate) async fn demand(&mut self, demand: usize) -> Result<(Vec<Message<F::Item>>, bool), BoxError> {
        loop {
            if !self.ready.is_empty() {
                let n = demand.min(self.ready.len());
                let items: Vec<F::Item> = self.ready.drain(..n).collect();
                return Ok((self.emit(items.into_iter()), false));
            }
            if self.ended {
                return Ok((Vec::new(), true));
            }
            if self.response.is_none() {
                match self.connect().await? {
                    Some(r) => self.response = Some(r),
                    None => {
                        self.ended = true;
                        continue;
                    }
                }
            }
            let Some(response) = self.response.as_mut() else {
                continue;
            };
            let mut read = match tokio::time::timeout(self.conn.idle_timeout, response.chunk()).await {
                Ok(read) => read,
                Err(_) => {
                    self.lost(false, &format!("no byte for {:?}", self.conn.idle_timeout));
                    continue;
                }
            };
            // Then what else has already arrived, while the demand lasts: larger emits,
            // fewer hand-offs.
            let mut parsed = Vec::new();
            loop {
                match read {
                    Ok(Some(chunk)) => {
                        if let Err(e) = self.framing.feed(&chunk, &mut parsed) {
                            self.lost(false, &e);
                            break;
                        }
                    }
                    Ok(None) => {
                        self.lost(true, "the server ended the response");
                        break;
                    }
                    Err(e) => {
                        self.lost(false, &redact_error(&e));
                        break;
                    }
                }
                let Some(response) = self.response.as_mut().filter(|_| parsed.len() < demand) else {
                    break;
                };
                match response.chunk().now_or_never() {
                    Some(next) => read = next,
                    None => break,
                }
            }
            if self.ready.is_empty() && !parsed.is_empty() && parsed.len() <= demand {
                return Ok((self.emit(parsed.into_iter()), false));
            }
            self.ready.extend(parsed);
        }
    }

    /// The producer's `prepare_for_draining`: the connection closes, what was parsed goes.
    pub(crate) fn drain(&mut self) -> Vec<Message<F::Item>> {
        self.response = None;
        let items: Vec<F::Item> = self.ready.drain(..).collect();
        self.emit(items.into_iter())
    }
}
