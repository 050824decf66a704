//! Where the sink posts and how it retries.

use std::time::Duration;

use ferroway::resilience::CircuitBreaker;

use crate::client::{redacted, validate_endpoint};
use crate::error::OptionsError;

/// How a batch's records are laid out in the request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFormat {
    /// `[record, record, …]`, `Content-Type: application/json` (the default).
    #[default]
    JsonArray,
    /// One record per line, `Content-Type: application/x-ndjson`.
    Ndjson,
}

/// Options of an [`HttpSink`](super::HttpSink).
///
/// ```
/// use std::time::Duration;
/// use ferroway_http::sink::{BodyFormat, HttpSinkOptions};
///
/// let opts = HttpSinkOptions::new("https://collector.example.com/v1/events")
///     .bearer("s3cr3t")
///     .format(BodyFormat::Ndjson)
///     .gzip(true)
///     .attempts(5);
/// assert!(!format!("{opts:?}").contains("s3cr3t"));
/// ```
#[derive(Clone)]
pub struct HttpSinkOptions {
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    /// The body's layout (default [`BodyFormat::JsonArray`]).
    pub format: BodyFormat,
    /// Compress bodies with gzip (`Content-Encoding: gzip`; default off).
    pub gzip: bool,
    /// How long a connection attempt may take (default 10 s).
    pub connect_timeout: Duration,
    /// How long a request may take, answer included (default 30 s).
    pub request_timeout: Duration,
    /// Attempts per batch while the server answers 5xx, 429, 408, 401, 403, 404 or a
    /// redirect, or cannot be reached (default 3); then the batch goes back to the pipeline as unavailable — kept, retried
    /// after the pipeline's backoff, never failed.
    pub attempts: u32,
    /// The wait after the first failed attempt, doubled after each (default 200 ms); a
    /// `Retry-After` replaces it.
    pub retry: Duration,
    /// The most one wait lasts, `Retry-After` included (default 30 s).
    pub max_retry: Duration,
    pub(crate) breaker: Option<CircuitBreaker>,
}

impl std::fmt::Debug for HttpSinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpSinkOptions")
            .field("url", &redacted(&self.url))
            .field("headers", &headers)
            .field("format", &self.format)
            .field("gzip", &self.gzip)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("attempts", &self.attempts)
            .field("retry", &self.retry)
            .field("max_retry", &self.max_retry)
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl HttpSinkOptions {
    /// Defaults for posting to `url`.
    pub fn new(url: impl Into<String>) -> Self {
        HttpSinkOptions {
            url: url.into(),
            headers: Vec::new(),
            format: BodyFormat::JsonArray,
            gzip: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            attempts: 3,
            retry: Duration::from_millis(200),
            max_retry: Duration::from_secs(30),
            breaker: None,
        }
    }

    crate::client::endpoint_builders!();

    /// See [`format`](Self::format).
    pub fn format(mut self, format: BodyFormat) -> Self {
        self.format = format;
        self
    }

    /// See [`gzip`](Self::gzip).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// See [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// See [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// See [`attempts`](Self::attempts).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n;
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

    /// The circuit breaker every attempt goes through (default: opens after 5 failed
    /// attempts in a row, for 1 s doubling to 60 s while probes fail). While it is open,
    /// batches go back to the pipeline as unavailable without a request.
    pub fn breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// The first option that cannot work.
    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        validate_endpoint(&self.url, &self.headers)?;
        if self.attempts == 0 {
            return Err(OptionsError::new("attempts", "must be at least 1"));
        }
        for (option, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(OptionsError::new(option, "must be more than zero"));
            }
        }
        Ok(())
    }
}
