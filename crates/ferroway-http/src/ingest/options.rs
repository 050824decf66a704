//! Where the ingest server listens and what it accepts.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::OptionsError;

/// Options of an [`IngestSource`](super::IngestSource).
///
/// ```
/// use std::time::Duration;
/// use ferroway_http::ingest::IngestOptions;
///
/// let opts = IngestOptions::new("0.0.0.0:8080")
///     .path("/hooks/orders")
///     .bearer("s3cr3t")
///     .max_body_bytes(1 << 20)
///     .retry_after(Duration::from_secs(2));
/// // The token stays out of `Debug`.
/// assert!(!format!("{opts:?}").contains("s3cr3t"));
/// ```
#[derive(Clone)]
pub struct IngestOptions {
    pub(crate) listen: String,
    pub(crate) path: String,
    pub(crate) token: Option<String>,
    /// The largest body accepted; a larger one gets `413` (default 4 MiB). With the number of
    /// requests being read at once, it bounds the memory requests take.
    pub max_body_bytes: usize,
    /// Sent as `Retry-After` with a `503` (default 1 s; whole seconds, at least 1).
    pub retry_after: Duration,
    /// How long a request may wait for the pipeline's demand before it gets the `503`
    /// (default 100 ms): demand comes and goes between batches, and a short wait spares
    /// clients a needless retry.
    pub admission_wait: Duration,
    /// Requests taken at once — being read, or waiting for their records to be finished
    /// (default 64); more get `503` at once. With `max_body_bytes` it bounds the memory
    /// requests hold: 256 MiB with the defaults.
    pub max_requests: usize,
    /// How long a client may take to send its body; then `408` (default 30 s): a slow
    /// client must not hold the pipeline's demand.
    pub read_timeout: Duration,
    /// How long a request waits for the pipeline to finish its records; then it gets `504`
    /// (its records may still be processed: a retry may duplicate them). Default 60 s.
    pub ack_timeout: Duration,
}

impl std::fmt::Debug for IngestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestOptions")
            .field("listen", &self.listen)
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_requests", &self.max_requests)
            .field("read_timeout", &self.read_timeout)
            .field("retry_after", &self.retry_after)
            .field("admission_wait", &self.admission_wait)
            .field("ack_timeout", &self.ack_timeout)
            .finish()
    }
}

impl IngestOptions {
    /// Defaults for a server listening on `listen` (`host:port`; port 0 picks a free one,
    /// see [`IngestSource::local_addr`](super::IngestSource::local_addr)), taking `POST /`.
    pub fn new(listen: impl Into<String>) -> Self {
        IngestOptions {
            listen: listen.into(),
            path: "/".to_owned(),
            token: None,
            max_body_bytes: 4 << 20,
            max_requests: 64,
            read_timeout: Duration::from_secs(30),
            retry_after: Duration::from_secs(1),
            admission_wait: Duration::from_millis(100),
            ack_timeout: Duration::from_secs(60),
        }
    }

    /// The path that takes `POST`s (default `/`); others get `404`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Requires `Authorization: Bearer <token>`; others get `401`. Compared in constant time,
    /// never logged or shown.
    pub fn bearer(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// See [`max_body_bytes`](Self::max_body_bytes).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body_bytes = n;
        self
    }

    /// See [`max_requests`](Self::max_requests).
    pub fn max_requests(mut self, n: usize) -> Self {
        self.max_requests = n;
        self
    }

    /// See [`read_timeout`](Self::read_timeout).
    pub fn read_timeout(mut self, t: Duration) -> Self {
        self.read_timeout = t;
        self
    }

    /// See [`retry_after`](Self::retry_after).
    pub fn retry_after(mut self, t: Duration) -> Self {
        self.retry_after = t;
        self
    }

    /// See [`admission_wait`](Self::admission_wait).
    pub fn admission_wait(mut self, t: Duration) -> Self {
        self.admission_wait = t;
        self
    }

    /// See [`ack_timeout`](Self::ack_timeout).
    pub fn ack_timeout(mut self, t: Duration) -> Self {
        self.ack_timeout = t;
        self
    }

    /// Checks every option; the first invalid one is named. Returns the address to bind.
    pub(crate) fn validate(&self) -> Result<SocketAddr, OptionsError> {
        let addr: SocketAddr = self
            .listen
            .parse()
            .map_err(|_| OptionsError::new("listen", format!("`{}` is not host:port with an IP host", self.listen)))?;
        if !self.path.starts_with('/') {
            return Err(OptionsError::new(
                "path",
                format!("`{}` must start with `/`", self.path),
            ));
        }
        if self.token.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(OptionsError::new("bearer", "an empty token would let anyone in"));
        }
        if self.max_body_bytes == 0 {
            return Err(OptionsError::new("max_body_bytes", "at least 1"));
        }
        if self.retry_after < Duration::from_secs(1) || self.retry_after.subsec_nanos() != 0 {
            return Err(OptionsError::new(
                "retry_after",
                "whole seconds, at least 1 (what `Retry-After` can say)",
            ));
        }
        if self.max_requests == 0 {
            return Err(OptionsError::new("max_requests", "at least 1"));
        }
        if self.read_timeout.is_zero() {
            return Err(OptionsError::new("read_timeout", "more than zero"));
        }
        if self.ack_timeout.is_zero() {
            return Err(OptionsError::new("ack_timeout", "more than zero"));
        }
        Ok(addr)
    }
}
