//! What an NDJSON source reads and how it resumes.

use std::path::PathBuf;
use std::time::Duration;

use crate::client::{redacted, validate_endpoint};
use crate::error::OptionsError;
use crate::stream::Connection;

/// Options of an [`NdjsonSource`](super::NdjsonSource).
///
/// ```
/// use ferroway_http::ndjson::NdjsonOptions;
///
/// // Each line carries `"offset"`; the API resumes with `?after=<offset>`; the offset of
/// // the last record the pipeline finished is kept in a file across restarts.
/// let opts = NdjsonOptions::new("https://api.example.com/v1/changes")
///     .bearer("s3cr3t")
///     .cursor("offset", "after")
///     .cursor_file("changes.cursor");
/// assert!(!format!("{opts:?}").contains("s3cr3t"));
/// ```
#[derive(Clone)]
pub struct NdjsonOptions {
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    /// How long a connection attempt may take (default 10 s).
    pub connect_timeout: Duration,
    /// A source whose server never answered fails after this long (default 60 s).
    pub reach_timeout: Duration,
    /// A connection that brings no byte for this long is made again (default 5 min).
    pub idle_timeout: Duration,
    /// How long to wait before reconnecting (default 1 s), doubled per failed attempt up
    /// to `max_retry`.
    pub retry: Duration,
    /// The most a reconnection waits (default 30 s).
    pub max_retry: Duration,
    /// The longest line accepted (default 1 MiB); a longer one breaks the connection.
    pub max_line_bytes: usize,
    pub(crate) cursor: Option<(String, String)>,
    pub(crate) cursor_file: Option<PathBuf>,
    pub(crate) start_after: Option<String>,
}

impl std::fmt::Debug for NdjsonOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("NdjsonOptions")
            .field("url", &redacted(&self.url))
            .field("headers", &headers)
            .field("connect_timeout", &self.connect_timeout)
            .field("reach_timeout", &self.reach_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry", &self.retry)
            .field("max_retry", &self.max_retry)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("cursor", &self.cursor)
            .field("cursor_file", &self.cursor_file)
            .field("start_after", &self.start_after)
            .finish()
    }
}

impl NdjsonOptions {
    /// Defaults for the stream at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        NdjsonOptions {
            url: url.into(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            reach_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(30),
            max_line_bytes: 1 << 20,
            cursor: None,
            cursor_file: None,
            start_after: None,
        }
    }

    crate::client::endpoint_builders!();

    crate::cursor::cursor_builders!();

    /// See [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// See [`reach_timeout`](Self::reach_timeout).
    pub fn reach_timeout(mut self, t: Duration) -> Self {
        self.reach_timeout = t;
        self
    }

    /// See [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }

    /// See [`retry`](Self::retry).
    pub fn retry(mut self, t: Duration) -> Self {
        self.retry = t;
        self
    }

    /// See [`max_retry`](Self::max_retry).
    pub fn max_retry(mut self, t: Duration) -> Self {
        self.max_retry = t;
        self
    }

    /// See [`max_line_bytes`](Self::max_line_bytes).
    pub fn max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }

    pub(crate) fn connection(&self) -> Connection {
        Connection {
            url: self.url.clone(),
            headers: self.headers.clone(),
            connect_timeout: self.connect_timeout,
            reach_timeout: self.reach_timeout,
            idle_timeout: self.idle_timeout,
            retry: self.retry,
            max_retry: self.max_retry,
        }
    }

    /// The first option that cannot work.
    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        validate_endpoint(&self.url, &self.headers)?;
        for (option, value) in [
            ("connect_timeout", self.connect_timeout),
            ("idle_timeout", self.idle_timeout),
            ("max_retry", self.max_retry),
        ] {
            if value.is_zero() {
                return Err(OptionsError::new(option, "must be more than zero"));
            }
        }
        if self.max_line_bytes == 0 {
            return Err(OptionsError::new("max_line_bytes", "must be at least 1"));
        }
        crate::cursor::validate(
            self.cursor.as_ref(),
            self.cursor_file.as_deref(),
            self.start_after.as_deref(),
        )?;
        Ok(())
    }
}
