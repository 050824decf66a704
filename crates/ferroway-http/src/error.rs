//! Errors: options refused before anything connects, and why a source stopped.

use std::time::Duration;

/// An option that cannot work, named.
///
/// ```
/// use ferroway_http::sse::{SseOptions, SseSource};
///
/// let e = SseSource::factory(SseOptions::new("ftp://example.com/events")).unwrap_err();
/// assert_eq!(e.to_string(), "invalid option `url`: the scheme must be http or https, not `ftp`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid option `{option}`: {reason}")]
pub struct OptionsError {
    /// The option, e.g. `url` or `headers[x-api-key]`.
    pub option: String,
    /// What is wrong with it.
    pub reason: String,
}

impl OptionsError {
    pub(crate) fn new(option: impl Into<String>, reason: impl Into<String>) -> Self {
        OptionsError {
            option: option.into(),
            reason: reason.into(),
        }
    }
}

/// Why an SSE, NDJSON or polling source stopped. URLs are shown without user, password or
/// query values.
///
/// ```
/// use std::time::Duration;
/// use ferroway_http::sse::SourceError;
///
/// let e = SourceError::Refused { url: "https://example.com/events".into(), reason: "HTTP 401 Unauthorized".into() };
/// assert_eq!(e.to_string(), "the server at https://example.com/events refused: HTTP 401 Unauthorized");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// No server answered within the reach timeout since the source started.
    #[error("no server answered at {url} within {waited:?}; last error: {last_error}")]
    Unreachable {
        /// The URL.
        url: String,
        /// How long the source tried.
        waited: Duration,
        /// Why the last attempt failed.
        last_error: String,
    },
    /// The server answered, but not with what the source reads: a client error status
    /// (401, 404, …) or another content type. Trying again would get the same answer.
    #[error("the server at {url} refused: {reason}")]
    Refused {
        /// The URL.
        url: String,
        /// The status or the content type.
        reason: String,
    },
}

/// Why an [`IngestSource`](crate::ingest::IngestSource) could not start.
///
/// ```
/// use ferroway_http::ingest::IngestError;
///
/// let e = IngestError::Bind { addr: "0.0.0.0:80".into(), reason: "Permission denied (os error 13)".into() };
/// assert_eq!(e.to_string(), "cannot listen on 0.0.0.0:80: Permission denied (os error 13)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// An option that cannot work.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's answer.
        reason: String,
    },
}
