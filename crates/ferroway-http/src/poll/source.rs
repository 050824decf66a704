//! The polling source: a poll fetches pages until the last one, then waits the interval;
//! records wait in the source until the pipeline asks for them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{BoxFuture, Message, Origin};
use ferroway::resilience::Reach;
use ferroway::stage::{Emit, Producer};
use ferroway::telemetry::LogThrottle;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LINK};
use reqwest::{Response, StatusCode};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::options::{Pagination, PollOptions};
use super::page;
use crate::client::{self, redact_error, redacted, retry_after};
use crate::cursor::{Cursors, Tracker};
use crate::error::{OptionsError, SourceError};

/// Where a polled record came from.
///
/// ```
/// use ferroway::connector::Record;
/// use ferroway::pipeline::{Handler, Message};
/// use ferroway_http::poll::PollMetadata;
///
/// struct Log;
/// impl Handler for Log {
///     type Data = Record;
///     async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), ferroway::BoxError> {
///         if let Some(at) = m.metadata::<PollMetadata>() {
///             println!("poll {} cursor {:?}", at.poll, at.cursor);
///         }
///         Ok(())
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollMetadata {
    /// The poll that fetched it, counted from 1 since the producer started.
    pub poll: u64,
    /// Its cursor (with [`PollOptions::cursor`]), if it has one.
    pub cursor: Option<String>,
}

impl Origin for PollMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("poll", self.poll.to_string()),
            ("cursor", self.cursor.clone().unwrap_or_default()),
        ]
    }
}

/// A source of [`Record`]s polled from an HTTP endpoint: one pipeline producer.
///
/// - **Polls:** `GET` the URL (with the cursor parameter when there is a cursor), then each
///   next page ([`Pagination`]) while the pipeline has demand, then wait the
///   [`interval`](PollOptions::interval). A page is read whole (at most
///   [`max_page_bytes`](PollOptions::max_page_bytes)): JSON (an array, or the array under
///   [`records_field`](PollOptions::records_field)) or NDJSON. Records are the bytes the
///   server sent, never re-encoded.
/// - **Demand:** no request is made while records of the last page wait for demand.
/// - **Acknowledgement:** with a [`cursor_file`](PollOptions::cursor_file), the cursor of
///   the last record the pipeline finished (every record before it finished too) is kept
///   there; a restarted process polls after it: at-least-once across crashes.
/// - **Errors:** 5xx, 429, 408 or no connection: waited out with backoff (`Retry-After`
///   honoured); a page that cannot be read is logged and polled again later. Another 4xx
///   fails the source with [`SourceError::Refused`]; a server that never answered, after
///   [`reach_timeout`](PollOptions::reach_timeout), with [`SourceError::Unreachable`].
///
/// ```no_run
/// use std::time::Duration;
/// use ferroway::connector::Record;
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_http::poll::{Pagination, PollOptions, PollSource};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = Record;
///     async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), ferroway::BoxError> {
///         println!("{}", String::from_utf8_lossy(&m.data().payload));
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = PollOptions::new("https://api.github.com/repos/tokio-rs/tokio/issues")
///     .pagination(Pagination::LinkHeader)
///     .interval(Duration::from_secs(60));
/// let pipeline = Pipeline::builder("issues", Print)
///     .source(PollSource::factory(opts)?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct PollSource {
    opts: Arc<PollOptions>,
    client: reqwest::Client,
    /// Records read, with their cursors, not yet emitted.
    ready: VecDeque<(Record, Option<String>)>,
    /// The next page of the poll under way (URL or token).
    next: Option<String>,
    /// The cursor the poll under way started from (sent with every page of it).
    poll_cursor: Option<String>,
    /// The cursor of the last record read: where the next poll starts.
    last: Option<String>,
    /// No request before this instant (the interval, a failure's wait).
    not_before: Option<Instant>,
    polls: u64,
    failures: u32,
    tracker: Option<Arc<Tracker>>,
    reach: Arc<Reach>,
    outage: LogThrottle,
    received: metrics::Counter,
}

impl std::fmt::Debug for PollSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollSource")
            .field("url", &redacted(&self.opts.url))
            .field("last_cursor", &self.last)
            .finish_non_exhaustive()
    }
}

/// How a poll's request ended.
enum Fetched {
    Page(Bytes, bool, Option<String>),
    Empty,
    Later(String, Option<Duration>),
}

impl PollSource {
    /// Validates `opts`, reads the cursor file if there is one, and returns the [`Source`] a
    /// pipeline takes.
    ///
    /// ```
    /// use ferroway_http::poll::{Pagination, PollOptions, PollSource};
    /// let opts = PollOptions::new("http://h/x").pagination(Pagination::NextField("next".into()));
    /// let e = PollSource::factory(opts).unwrap_err();
    /// assert_eq!(e.to_string(), "invalid option `pagination`: a next-page field needs `records_field` (the page is an object)");
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option, or a cursor file that cannot be read.
    pub fn factory(opts: PollOptions) -> Result<PollSourceFactory, OptionsError> {
        opts.validate()?;
        let cursors = Cursors::open(
            opts.cursor.is_some(),
            opts.cursor_file.clone(),
            opts.start_after.clone(),
        )?;
        Ok(PollSourceFactory {
            opts: Arc::new(opts),
            cursors,
        })
    }

    fn url(&self) -> String {
        redacted(&self.opts.url)
    }

    fn cursor_of(&self, record: &[u8]) -> Option<String> {
        crate::cursor::of(record, &self.opts.cursor.as_ref()?.0)
    }

    /// The request for the next page of the poll under way, or for a new poll.
    fn request(&self) -> Result<reqwest::RequestBuilder, String> {
        let page_url = match (&self.opts.pagination, &self.next) {
            (Pagination::LinkHeader | Pagination::NextField(_), Some(next)) => reqwest::Url::parse(&self.opts.url)
                .and_then(|base| base.join(next))
                .map_err(|e| format!("the next page's URL `{}`: {e}", redacted(next)))?
                .to_string(),
            _ => self.opts.url.clone(),
        };
        let mut request = self
            .client
            .get(page_url)
            .timeout(self.opts.request_timeout)
            .header(ACCEPT, "application/json, application/x-ndjson");
        for (name, value) in &self.opts.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        // A next-page URL carries its own query; a first page or a token page gets the
        // cursor.
        let follows_link =
            matches!(self.opts.pagination, Pagination::LinkHeader | Pagination::NextField(_)) && self.next.is_some();
        if !follows_link && let (Some((_, param)), Some(c)) = (&self.opts.cursor, &self.poll_cursor) {
            request = request.query(&[(param, c)]);
        }
        if let (Pagination::Token { param, .. }, Some(token)) = (&self.opts.pagination, &self.next) {
            request = request.query(&[(param, token)]);
        }
        Ok(request)
    }

    async fn fetch(&mut self) -> Result<Fetched, SourceError> {
        let request = match self.request() {
            Ok(r) => r,
            Err(why) => {
                return Err(SourceError::Refused {
                    url: self.url(),
                    reason: why,
                });
            }
        };
        let mut r: Response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let why = redact_error(&e);
                self.reach.failed(Some(why.clone()));
                return Ok(Fetched::Later(why, None));
            }
        };
        self.reach.mark_reached();
        let status = r.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(Fetched::Empty);
        }
        if client::retryable(status) {
            return Ok(Fetched::Later(format!("HTTP {status}"), retry_after(&r)));
        }
        if !status.is_success() {
            return Err(SourceError::Refused {
                url: self.url(),
                reason: format!("HTTP {status}"),
            });
        }
        let ndjson = r
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .is_some_and(|c| {
                matches!(
                    c.as_str(),
                    "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines"
                )
            });
        let link = r.headers().get(LINK).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        loop {
            match r.chunk().await {
                Ok(Some(c)) if body.len() + c.len() > self.opts.max_page_bytes => {
                    return Ok(Fetched::Later(
                        format!("a page over max_page_bytes ({})", self.opts.max_page_bytes),
                        None,
                    ));
                }
                Ok(Some(c)) => body.extend_from_slice(&c),
                Ok(None) => break,
                Err(e) => return Ok(Fetched::Later(redact_error(&e), None)),
            }
        }
        Ok(Fetched::Page(body.into(), ndjson, link))
    }

    fn wait_after_failure(&mut self, why: &str, after: Option<Duration>) {
        self.failures += 1;
        let backoff = self
            .opts
            .retry
            .saturating_mul(1 << self.failures.min(16))
            .min(self.opts.max_retry);
        let pause = after.map_or(backoff, |a| a.min(self.opts.max_retry));
        self.not_before = Some(Instant::now() + pause);
        if let Some(suppressed) = self.outage.allow() {
            warn!(url = %self.url(), error = why, retry_in = ?pause, suppressed, "poll failed; trying again");
        }
    }

    fn message(&self, record: Record, cursor: Option<String>) -> Message<Record> {
        let mut m = match &self.tracker {
            Some(t) => Message::with_acker(record, t.clone(), t.track(cursor.clone())),
            None => Message::new(record),
        };
        m.put_origin(PollMetadata {
            poll: self.polls,
            cursor,
        });
        m
    }
}

impl Producer for PollSource {
    type Output = Message<Record>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Record>>, BoxError> {
        // Cancel-safe: what was read waits in `ready`, the next request's time in `not_before`.
        loop {
            if !self.ready.is_empty() {
                let n = demand.min(self.ready.len());
                let taken: Vec<(Record, Option<String>)> = self.ready.drain(..n).collect();
                let out: Vec<Message<Record>> = taken.into_iter().map(|(r, c)| self.message(r, c)).collect();
                self.received.increment(out.len() as u64);
                return Ok(Emit::Events(out));
            }
            if let Some(at) = self.not_before {
                tokio::time::sleep_until(at).await;
                self.not_before = None;
            }
            if self.reach.wait(self.opts.reach_timeout, Duration::MAX).is_none() {
                return Err(SourceError::Unreachable {
                    url: self.url(),
                    waited: self.reach.waited(),
                    last_error: self.reach.last_error(),
                }
                .into());
            }
            if self.next.is_none() {
                self.polls += 1;
                self.poll_cursor.clone_from(&self.last);
            }
            let page = match self.fetch().await? {
                Fetched::Page(body, ndjson, link) => page::parse(
                    body,
                    ndjson,
                    self.opts.records_field.as_deref(),
                    &self.opts.pagination,
                    link.as_deref(),
                ),
                Fetched::Empty => Ok(page::Page::default()),
                Fetched::Later(why, after) => {
                    self.wait_after_failure(&why, after);
                    continue;
                }
            };
            let page = match page {
                Ok(p) => p,
                Err(why) => {
                    // The server's page is wrong, not the pipeline: keep polling, loudly.
                    self.next = None;
                    self.wait_after_failure(&format!("the page cannot be read: {why}"), None);
                    continue;
                }
            };
            self.failures = 0;
            self.outage.reset();
            debug!(url = %self.url(), records = page.records.len(), more = page.next.is_some(), "page read");
            for payload in page.records {
                let cursor = self.cursor_of(&payload);
                if cursor.is_some() {
                    self.last.clone_from(&cursor);
                }
                self.ready.push_back((Record::new(payload), cursor));
            }
            self.next = page.next;
            if self.next.is_none() {
                self.not_before = Some(Instant::now() + self.opts.interval);
            }
        }
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<Record>> {
        let out: Vec<Message<Record>> = std::mem::take(&mut self.ready)
            .into_iter()
            .map(|(r, c)| self.message(r, c))
            .collect();
        self.received.increment(out.len() as u64);
        out
    }
}

/// A [`Source`] of polled [`Record`]s, made by [`PollSource::factory`].
#[derive(Debug)]
pub struct PollSourceFactory {
    opts: Arc<PollOptions>,
    cursors: Cursors,
}

impl PollSourceFactory {
    /// The cursor of the last record the pipeline finished (all before it finished too),
    /// or the one it started from.
    pub fn committed_cursor(&self) -> Option<String> {
        self.cursors.committed()
    }
}

impl Source for PollSourceFactory {
    type Data = Record;
    type Producer = PollSource;

    fn producer(&self, _index: usize) -> Result<PollSource, BoxError> {
        let (start, tracker) = self.cursors.for_producer();
        let url = redacted(&self.opts.url);
        Ok(PollSource {
            client: client::build(self.opts.connect_timeout)?,
            reach: client::reach("poll", &self.opts.url),
            outage: LogThrottle::new(Duration::from_secs(10)),
            received: metrics::counter!(crate::metrics::RECEIVED, "url" => url, "kind" => "poll"),
            ready: VecDeque::new(),
            next: None,
            poll_cursor: None,
            last: start,
            not_before: None,
            polls: 0,
            failures: 0,
            tracker,
            opts: self.opts.clone(),
        })
    }

    /// Every finished record's cursor is in the cursor file.
    fn close(&self) -> BoxFuture<'_, ()> {
        self.cursors.close()
    }

    fn connected(&self) -> bool {
        client::reach("poll", &self.opts.url).reached()
    }
}
