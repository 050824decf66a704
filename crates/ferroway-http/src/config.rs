//! The SSE, NDJSON and polling sources, the ingest server and the HTTP sink as
//! configuration-file components (`type = "sse"`, `type = "ndjson"`, `type = "http-poll"`,
//! `type = "http-ingest"`, sink `type = "http"`), feature `config`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::config::{BuildContext, Secret, SinkConfig, SourceConfig, duration};
use ferroway::connector::{BoxSource, Record, Sink, Source};
use ferroway::pipeline::BoxFuture;
use serde::Deserialize;

use crate::ingest::{IngestOptions, IngestSource};
use crate::ndjson::{NdjsonOptions, NdjsonSource};
use crate::poll::{Pagination, PollOptions, PollSource};
use crate::sink::{BodyFormat, HttpSink, HttpSinkOptions};
use crate::sse::{SseOptions, SseSource};

/// `basic = { user = "…", password = "…" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user.
    pub user: String,
    /// The password (never shown).
    pub password: Secret,
}

/// The file's `headers`, `bearer` and `basic`, as the headers a request carries.
fn auth_headers(
    headers: &BTreeMap<String, Secret>,
    bearer: &Option<Secret>,
    basic: &Option<BasicAuth>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.clone(), value.expose().to_owned()))
        .collect();
    if let Some(t) = bearer {
        out.push(crate::client::bearer(t.expose()));
    }
    if let Some(b) = basic {
        out.push(crate::client::basic(&b.user, b.password.expose()));
    }
    out
}

/// `type = "sse"`: one Server-Sent Events stream, read as fast as the pipeline asks,
/// reconnecting with `Last-Event-ID`. Each event a record: data as payload, id as key, type
/// as header `event`. See [`SseOptions`].
///
/// ```
/// use ferroway_http::config::SseSourceConfig;
/// let c: SseSourceConfig = serde_json::from_str(
///     r#"{"url": "https://stream.example.com/v1/events", "bearer": "t0ken", "retry": "1s",
///         "headers": {"x-client": "billing"}}"#,
/// ).unwrap();
/// assert_eq!(c.options().unwrap().retry.as_secs(), 1);
/// assert!(!format!("{c:?}").contains("t0ken"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseSourceConfig {
    /// The event stream's URL.
    pub url: String,
    /// Headers sent with every request (values never shown).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// `Authorization: Basic …`.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// Connection attempt timeout (default `"10s"`).
    #[serde(default, with = "duration::option")]
    pub connect_timeout: Option<Duration>,
    /// Fail if the server never answered within this long (default `"60s"`).
    #[serde(default, with = "duration::option")]
    pub reach_timeout: Option<Duration>,
    /// Reconnect after this long without a byte (default `"5m"`).
    #[serde(default, with = "duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Reconnection delay until the server sends `retry:` (default `"3s"`).
    #[serde(default, with = "duration::option")]
    pub retry: Option<Duration>,
    /// The most a reconnection waits (default `"30s"`).
    #[serde(default, with = "duration::option")]
    pub max_retry: Option<Duration>,
    /// Largest line or event data, in bytes (default 1 MiB).
    #[serde(default)]
    pub max_event_bytes: Option<usize>,
    /// Resume after this event id.
    #[serde(default)]
    pub last_event_id: Option<String>,
}

impl SseSourceConfig {
    /// The source's options.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<SseOptions, BoxError> {
        let mut o = SseOptions::new(&self.url);
        o.headers = auth_headers(&self.headers, &self.bearer, &self.basic);
        if let Some(t) = self.connect_timeout {
            o = o.connect_timeout(t);
        }
        if let Some(t) = self.reach_timeout {
            o = o.reach_timeout(t);
        }
        if let Some(t) = self.idle_timeout {
            o = o.idle_timeout(t);
        }
        if let Some(t) = self.retry {
            o = o.retry(t);
        }
        if let Some(t) = self.max_retry {
            o = o.max_retry(t);
        }
        if let Some(n) = self.max_event_bytes {
            o = o.max_event_bytes(n);
        }
        if let Some(id) = &self.last_event_id {
            o = o.last_event_id(id);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for SseSourceConfig {
    const TYPE: &'static str = "sse";
    const SUMMARY: &'static str = "Server-Sent Events: one event stream, read on demand, resumed with Last-Event-ID";
    const EXAMPLE: &'static str = r#"url = "https://stream.example.com/v1/events"
# bearer = "TOKEN"                  # or basic = { user = "u", password = "p" }
# headers = { x-api-key = "KEY" }   # values never shown
connect_timeout = "10s"
reach_timeout = "60s"               # fail if the server never answered
idle_timeout = "5m"                 # reconnect after this long without a byte
retry = "3s"                        # until the server sends `retry:`
max_retry = "30s"
max_event_bytes = 1048576
# last_event_id = "1041"            # resume after this event"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        Ok(BoxSource::new(SseSource::factory(self.options()?)?.map(Record::from)))
    }
}

/// `cursor = { field = "offset", param = "after" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorConfig {
    /// The top-level JSON field of each line holding its cursor.
    pub field: String,
    /// The query parameter a new connection sends the cursor in.
    pub param: String,
}

/// `type = "ndjson"`: one record per line of a long-lived response, read on demand,
/// reconnecting after the last line read, the cursor of the last finished record kept in
/// `cursor_file`. See [`NdjsonSource`].
///
/// ```
/// use ferroway_http::config::NdjsonSourceConfig;
/// let c: NdjsonSourceConfig = serde_json::from_str(
///     r#"{"url": "https://api.example.com/v1/changes", "bearer": "t0ken",
///         "cursor": {"field": "offset", "param": "after"}, "cursor_file": "changes.cursor"}"#,
/// ).unwrap();
/// assert!(c.options().is_ok());
/// assert!(!format!("{c:?}").contains("t0ken"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonSourceConfig {
    /// The stream's URL.
    pub url: String,
    /// Headers sent with every request (values never shown).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// `Authorization: Basic …`.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// Connection attempt timeout (default `"10s"`).
    #[serde(default, with = "duration::option")]
    pub connect_timeout: Option<Duration>,
    /// Fail if the server never answered within this long (default `"60s"`).
    #[serde(default, with = "duration::option")]
    pub reach_timeout: Option<Duration>,
    /// Reconnect after this long without a byte (default `"5m"`).
    #[serde(default, with = "duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Reconnection delay (default `"1s"`), doubled per failure.
    #[serde(default, with = "duration::option")]
    pub retry: Option<Duration>,
    /// The most a reconnection waits (default `"30s"`).
    #[serde(default, with = "duration::option")]
    pub max_retry: Option<Duration>,
    /// Longest line, in bytes (default 1 MiB).
    #[serde(default)]
    pub max_line_bytes: Option<usize>,
    /// Resumption by a cursor.
    #[serde(default)]
    pub cursor: Option<CursorConfig>,
    /// Where the cursor of the last finished record is kept.
    #[serde(default)]
    pub cursor_file: Option<std::path::PathBuf>,
    /// Start after this cursor when the file holds none.
    #[serde(default)]
    pub start_after: Option<String>,
}

impl NdjsonSourceConfig {
    /// The source's options.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<NdjsonOptions, BoxError> {
        let mut o = NdjsonOptions::new(&self.url);
        o.headers = auth_headers(&self.headers, &self.bearer, &self.basic);
        if let Some(t) = self.connect_timeout {
            o = o.connect_timeout(t);
        }
        if let Some(t) = self.reach_timeout {
            o = o.reach_timeout(t);
        }
        if let Some(t) = self.idle_timeout {
            o = o.idle_timeout(t);
        }
        if let Some(t) = self.retry {
            o = o.retry(t);
        }
        if let Some(t) = self.max_retry {
            o = o.max_retry(t);
        }
        if let Some(n) = self.max_line_bytes {
            o = o.max_line_bytes(n);
        }
        if let Some(c) = &self.cursor {
            o = o.cursor(&c.field, &c.param);
        }
        if let Some(f) = &self.cursor_file {
            o = o.cursor_file(f);
        }
        if let Some(c) = &self.start_after {
            o = o.start_after(c);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for NdjsonSourceConfig {
    const TYPE: &'static str = "ndjson";
    const SUMMARY: &'static str = "NDJSON over HTTP: one record per line of a long-lived response, resumed by a cursor after the last finished record";
    const EXAMPLE: &'static str = r#"url = "https://api.example.com/v1/changes"
# bearer = "TOKEN"                  # or basic = { user = "u", password = "p" }
# headers = { x-api-key = "KEY" }   # values never shown
# cursor = { field = "offset", param = "after" }   # resume with ?after=<offset of the last line>
# cursor_file = "changes.cursor"    # the last finished record's cursor, kept across restarts
# start_after = "0"                 # when the file holds none
connect_timeout = "10s"
reach_timeout = "60s"
idle_timeout = "5m"
retry = "1s"
max_retry = "30s"
max_line_bytes = 1048576"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        Ok(BoxSource::new(NdjsonSource::factory(self.options()?)?))
    }
}

/// `pagination = { link_header = true }`, `{ next_field = "next" }` or
/// `{ token_field = "next_page_token", token_param = "page_token" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaginationConfig {
    /// Follow `Link: <…>; rel="next"`.
    #[serde(default)]
    pub link_header: bool,
    /// A field holding the next page's URL.
    #[serde(default)]
    pub next_field: Option<String>,
    /// A field holding the next page's token …
    #[serde(default)]
    pub token_field: Option<String>,
    /// … sent back as this query parameter.
    #[serde(default)]
    pub token_param: Option<String>,
}

impl PaginationConfig {
    fn pagination(&self) -> Result<Pagination, BoxError> {
        Ok(
            match (self.link_header, &self.next_field, &self.token_field, &self.token_param) {
                (false, None, None, None) => Pagination::None,
                (true, None, None, None) => Pagination::LinkHeader,
                (false, Some(f), None, None) => Pagination::NextField(f.clone()),
                (false, None, Some(field), Some(param)) => Pagination::Token {
                    field: field.clone(),
                    param: param.clone(),
                },
                _ => {
                    return Err(
                        "`pagination`: one of `link_header = true`, `next_field`, or `token_field` with `token_param`"
                            .into(),
                    );
                }
            },
        )
    }
}

/// `type = "http-poll"`: an endpoint polled on an interval, pages followed, resumed by a
/// cursor kept in `cursor_file` after acknowledgement. See [`PollSource`].
///
/// ```
/// use ferroway_http::config::PollSourceConfig;
/// let c: PollSourceConfig = serde_json::from_str(
///     r#"{"url": "https://api.example.com/v1/orders", "interval": "30s", "records_field": "data",
///         "pagination": {"token_field": "next", "token_param": "page"},
///         "cursor": {"field": "id", "param": "since"}, "bearer": "t0ken"}"#,
/// ).unwrap();
/// assert_eq!(c.options().unwrap().interval.as_secs(), 30);
/// assert!(!format!("{c:?}").contains("t0ken"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSourceConfig {
    /// The endpoint.
    pub url: String,
    /// Headers sent with every request (values never shown).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// `Authorization: Basic …`.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// Between the last page of a poll and the next poll (default `"10s"`).
    #[serde(default, with = "duration::option")]
    pub interval: Option<Duration>,
    /// The field holding a page's records (default: the page is the array, or NDJSON).
    #[serde(default)]
    pub records_field: Option<String>,
    /// How pages follow each other (default: one page per poll).
    #[serde(default)]
    pub pagination: PaginationConfig,
    /// Incremental polls by a cursor.
    #[serde(default)]
    pub cursor: Option<CursorConfig>,
    /// Where the cursor of the last finished record is kept.
    #[serde(default)]
    pub cursor_file: Option<std::path::PathBuf>,
    /// Start after this cursor when the file holds none.
    #[serde(default)]
    pub start_after: Option<String>,
    /// Connection attempt timeout (default `"10s"`).
    #[serde(default, with = "duration::option")]
    pub connect_timeout: Option<Duration>,
    /// Request timeout (default `"30s"`).
    #[serde(default, with = "duration::option")]
    pub request_timeout: Option<Duration>,
    /// Fail if the server never answered within this long (default `"60s"`).
    #[serde(default, with = "duration::option")]
    pub reach_timeout: Option<Duration>,
    /// Largest page, in bytes (default 16 MiB).
    #[serde(default)]
    pub max_page_bytes: Option<usize>,
}

impl PollSourceConfig {
    /// The source's options.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<PollOptions, BoxError> {
        let mut o = PollOptions::new(&self.url).pagination(self.pagination.pagination()?);
        o.headers = auth_headers(&self.headers, &self.bearer, &self.basic);
        if let Some(t) = self.interval {
            o = o.interval(t);
        }
        if let Some(f) = &self.records_field {
            o = o.records_field(f);
        }
        if let Some(c) = &self.cursor {
            o = o.cursor(&c.field, &c.param);
        }
        if let Some(f) = &self.cursor_file {
            o = o.cursor_file(f);
        }
        if let Some(c) = &self.start_after {
            o = o.start_after(c);
        }
        if let Some(t) = self.connect_timeout {
            o = o.connect_timeout(t);
        }
        if let Some(t) = self.request_timeout {
            o = o.request_timeout(t);
        }
        if let Some(t) = self.reach_timeout {
            o = o.reach_timeout(t);
        }
        if let Some(n) = self.max_page_bytes {
            o = o.max_page_bytes(n);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for PollSourceConfig {
    const TYPE: &'static str = "http-poll";
    const SUMMARY: &'static str = "HTTP polling: pages fetched on an interval (Link header, next field or token), resumed by a cursor after the last finished record";
    const EXAMPLE: &'static str = r#"url = "https://api.example.com/v1/orders"
# bearer = "TOKEN"                  # or basic = { user = "u", password = "p" }
interval = "10s"                    # after the last page of a poll
# records_field = "data"            # default: the page is a JSON array (or NDJSON)
# pagination = { link_header = true }   # or { next_field = "next" } or { token_field = "next_page_token", token_param = "page_token" }
# cursor = { field = "updated_at", param = "updated_after" }   # incremental polls
# cursor_file = "orders.cursor"     # the last finished record's cursor, kept across restarts
connect_timeout = "10s"
request_timeout = "30s"
reach_timeout = "60s"
max_page_bytes = 16777216"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        Ok(BoxSource::new(PollSource::factory(self.options()?)?))
    }
}

/// `type = "http-ingest"`: an HTTP server taking `POST`ed records (one, a JSON array, or
/// NDJSON), answering each request once the pipeline finished its records, `503` while the
/// pipeline has no demand. See [`IngestSource`].
///
/// ```
/// use ferroway_http::config::IngestSourceConfig;
/// let c: IngestSourceConfig = serde_json::from_str(
///     r#"{"listen": "0.0.0.0:8080", "path": "/hooks", "bearer": "t0ken", "max_body_bytes": 65536}"#,
/// ).unwrap();
/// assert_eq!(c.options().unwrap().max_body_bytes, 65536);
/// assert!(!format!("{c:?}").contains("t0ken"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSourceConfig {
    /// `host:port` to listen on.
    pub listen: String,
    /// The path taking `POST`s (default `"/"`).
    #[serde(default)]
    pub path: Option<String>,
    /// Require `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// Largest body, in bytes (default 4 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Requests taken at once (default 64).
    #[serde(default)]
    pub max_requests: Option<usize>,
    /// How long a client may take to send its body (default `"30s"`).
    #[serde(default, with = "duration::option")]
    pub read_timeout: Option<Duration>,
    /// `Retry-After` of a `503` (default `"1s"`).
    #[serde(default, with = "duration::option")]
    pub retry_after: Option<Duration>,
    /// How long a request waits for demand before its `503` (default `"100ms"`).
    #[serde(default, with = "duration::option")]
    pub admission_wait: Option<Duration>,
    /// How long a request waits for its records to be finished (default `"60s"`).
    #[serde(default, with = "duration::option")]
    pub ack_timeout: Option<Duration>,
}

impl IngestSourceConfig {
    /// The server's options.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<IngestOptions, BoxError> {
        let mut o = IngestOptions::new(&self.listen);
        if let Some(p) = &self.path {
            o = o.path(p);
        }
        if let Some(t) = &self.bearer {
            o = o.bearer(t.expose());
        }
        if let Some(n) = self.max_body_bytes {
            o = o.max_body_bytes(n);
        }
        if let Some(n) = self.max_requests {
            o = o.max_requests(n);
        }
        if let Some(t) = self.read_timeout {
            o = o.read_timeout(t);
        }
        if let Some(t) = self.retry_after {
            o = o.retry_after(t);
        }
        if let Some(t) = self.admission_wait {
            o = o.admission_wait(t);
        }
        if let Some(t) = self.ack_timeout {
            o = o.ack_timeout(t);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SourceConfig for IngestSourceConfig {
    const TYPE: &'static str = "http-ingest";
    const SUMMARY: &'static str =
        "HTTP ingest server: POSTed records, each request answered once the pipeline finished them";
    const EXAMPLE: &'static str = r#"listen = "0.0.0.0:8080"
path = "/"
# bearer = "TOKEN"                  # require Authorization: Bearer (constant-time compare)
max_body_bytes = 4194304            # larger bodies get 413
max_requests = 64                   # taken at once (memory: max_requests x max_body_bytes); more get 503
read_timeout = "30s"                # a slower body gets 408
retry_after = "1s"                  # sent with a 503 while the pipeline has no demand
admission_wait = "100ms"            # how long a request waits for demand first
ack_timeout = "60s"                 # then 504"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        Ok(BoxSource::new(IngestSource::bind(self.options()?)?))
    }
}

/// `format` values.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A JSON array per request.
    #[default]
    JsonArray,
    /// One record per line.
    Ndjson,
}

/// Sink `type = "http"`: each batch one `POST` (a JSON array or NDJSON of the records, which
/// must be JSON), retried while the server is busy or down, behind a circuit breaker. See
/// [`HttpSink`].
///
/// ```
/// use ferroway_http::config::HttpSinkConfig;
/// let c: HttpSinkConfig = serde_json::from_str(
///     r#"{"url": "https://collector.example.com/v1/events", "format": "ndjson", "gzip": true,
///         "basic": {"user": "u", "password": "hunter2"}}"#,
/// ).unwrap();
/// assert!(c.options().unwrap().gzip);
/// assert!(!format!("{c:?}").contains("hunter2"));
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where to post.
    pub url: String,
    /// Headers sent with every request (values never shown).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// `Authorization: Basic …`.
    #[serde(default)]
    pub basic: Option<BasicAuth>,
    /// `"json_array"` (the default) or `"ndjson"`.
    #[serde(default)]
    pub format: Format,
    /// Compress bodies with gzip (default false).
    #[serde(default)]
    pub gzip: bool,
    /// Connection attempt timeout (default `"10s"`).
    #[serde(default, with = "duration::option")]
    pub connect_timeout: Option<Duration>,
    /// Request timeout (default `"30s"`).
    #[serde(default, with = "duration::option")]
    pub request_timeout: Option<Duration>,
    /// Attempts per batch before it goes back to the pipeline (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// First wait between attempts, doubled after each (default `"200ms"`).
    #[serde(default, with = "duration::option")]
    pub retry: Option<Duration>,
    /// Longest wait, `Retry-After` included (default `"30s"`).
    #[serde(default, with = "duration::option")]
    pub max_retry: Option<Duration>,
}

impl HttpSinkConfig {
    /// The sink's options.
    ///
    /// # Errors
    /// The first invalid option, named.
    pub fn options(&self) -> Result<HttpSinkOptions, BoxError> {
        let mut o = HttpSinkOptions::new(&self.url)
            .format(match self.format {
                Format::JsonArray => BodyFormat::JsonArray,
                Format::Ndjson => BodyFormat::Ndjson,
            })
            .gzip(self.gzip);
        o.headers = auth_headers(&self.headers, &self.bearer, &self.basic);
        if let Some(t) = self.connect_timeout {
            o = o.connect_timeout(t);
        }
        if let Some(t) = self.request_timeout {
            o = o.request_timeout(t);
        }
        if let Some(n) = self.attempts {
            o = o.attempts(n);
        }
        if let Some(t) = self.retry {
            o = o.retry(t);
        }
        if let Some(t) = self.max_retry {
            o = o.max_retry(t);
        }
        o.validate()?;
        Ok(o)
    }
}

impl SinkConfig for HttpSinkConfig {
    const TYPE: &'static str = "http";
    const SUMMARY: &'static str = "HTTP POST per batch (JSON array or NDJSON), retried while the server is busy or down, behind a circuit breaker";
    const EXAMPLE: &'static str = r#"url = "https://collector.example.com/v1/events"
# bearer = "TOKEN"                  # or basic = { user = "u", password = "p" }
# headers = { x-api-key = "KEY" }   # values never shown
format = "json_array"               # or "ndjson"
gzip = false
connect_timeout = "10s"
request_timeout = "30s"
attempts = 3                        # per batch on 5xx / 429 / 408 / no connection; then the pipeline's backoff
retry = "200ms"                     # doubled per attempt; Retry-After wins
max_retry = "30s""#;

    fn build(self, _: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        Box::pin(async move {
            let sink: Arc<dyn Sink<Record>> = Arc::new(HttpSink::new(self.options()?)?);
            Ok(sink)
        })
    }
}
