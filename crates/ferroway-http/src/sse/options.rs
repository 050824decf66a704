//! What an SSE source connects to and how it reconnects.

use std::time::Duration;

use crate::client::{redacted, validate_endpoint};
use crate::error::OptionsError;

/// Options of an [`SseSource`](super::SseSource).
///
/// ```
/// use std::time::Duration;
/// use ferroway_http::sse::SseOptions;
///
/// let opts = SseOptions::new("https://stream.example.com/v1/events")
///     .bearer("s3cr3t")
///     .header("x-client", "billing")
///     .retry(Duration::from_secs(1))
///     .last_event_id("1041");
/// // Secrets stay out of `Debug`.
/// assert!(!format!("{opts:?}").contains("s3cr3t"));
/// ```
#[derive(Clone)]
pub struct SseOptions {
    pub(crate) url: String,
    /// Header name and value; values may be secrets (never shown).
    pub(crate) headers: Vec<(String, String)>,
    /// How long a connection attempt may take (default 10 s).
    pub connect_timeout: Duration,
    /// A source whose server never answered fails after this long (default 60 s). Once it
    /// answered, outages are waited out for good.
    pub reach_timeout: Duration,
    /// A connection that brings no byte for this long is dropped and made again (default
    /// 5 min; servers send comments as keep-alives well within it).
    pub idle_timeout: Duration,
    /// How long to wait before reconnecting, until the server says otherwise with `retry:`
    /// (default 3 s). Failed attempts double it, up to `max_retry`.
    pub retry: Duration,
    /// The most a reconnection waits (default 30 s).
    pub max_retry: Duration,
    /// The most bytes a line, or one event's data, may take (default 1 MiB).
    pub max_event_bytes: usize,
    /// The id to resume after, sent as `Last-Event-ID` on the first connection.
    pub last_event_id: Option<String>,
}

impl std::fmt::Debug for SseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("SseOptions")
            .field("url", &redacted(&self.url))
            .field("headers", &headers)
            .field("connect_timeout", &self.connect_timeout)
            .field("reach_timeout", &self.reach_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry", &self.retry)
            .field("max_retry", &self.max_retry)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("last_event_id", &self.last_event_id)
            .finish()
    }
}

impl SseOptions {
    /// Defaults for the event stream at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        SseOptions {
            url: url.into(),
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            reach_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            retry: Duration::from_secs(3),
            max_retry: Duration::from_secs(30),
            max_event_bytes: 1 << 20,
            last_event_id: None,
        }
    }

    crate::client::endpoint_builders!();

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

    /// See [`max_event_bytes`](Self::max_event_bytes).
    pub fn max_event_bytes(mut self, n: usize) -> Self {
        self.max_event_bytes = n;
        self
    }

    /// See [`last_event_id`](Self::last_event_id).
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    pub(crate) fn connection(&self) -> crate::stream::Connection {
        crate::stream::Connection {
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
        if self.max_event_bytes == 0 {
            return Err(OptionsError::new("max_event_bytes", "must be at least 1"));
        }
        if self
            .last_event_id
            .as_deref()
            .is_some_and(|id| id.contains(['\0', '\r', '\n']))
        {
            return Err(OptionsError::new("last_event_id", "must not hold NUL, CR or LF"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redacted("https://u:pw@h.example/x"), "https://***:***@h.example/x");
        assert!(!format!("{:?}", SseOptions::new("https://u:pw@h/x").basic("u", "pw")).contains("pw"));
        let e = SseOptions::new("u:pw@nothing").validate().unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}
