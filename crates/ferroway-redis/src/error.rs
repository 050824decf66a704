//! Errors of the Redis connector.

use ferroway::error::Unavailable;

/// Invalid options, found before anything connects.
///
/// ```
/// use ferroway_redis::{OptionsError, SourceOptions};
/// let e = SourceOptions::new("127.0.0.1:6379", "g", ["s"]).validate().unwrap_err();
/// assert!(matches!(e, OptionsError::UrlScheme { .. }));
/// assert!(e.to_string().contains("must start with redis://"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// The URL has no scheme Redis URLs use.
    #[error(
        "invalid Redis URL {url}: it must start with redis:// (or rediss:// for TLS, unix:// or \
         redis+unix:// for a socket), e.g. redis://127.0.0.1:6379"
    )]
    UrlScheme {
        /// The URL, password redacted.
        url: String,
    },
    /// The URL does not parse. The password is redacted.
    #[error("invalid Redis URL {url}: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// An option has an invalid value.
    #[error("invalid option `{option}`: {reason}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Why a [`RedisSource`](crate::RedisSource) stopped. An outage is not one of them: the source
/// waits for Redis to come back.
///
/// ```
/// use std::time::Duration;
/// use ferroway::resilience::Backoff;
/// use ferroway::stage::Producer;
/// use ferroway_redis::{RedisSource, SourceOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens on port 1, and this policy gives up after two attempts.
/// let opts = SourceOptions::new("redis://127.0.0.1:1", "g", ["s"])
///     .reconnect(Backoff::constant(Duration::from_millis(10)).take(2));
/// let mut source = RedisSource::new(opts).unwrap();
/// let e = source.handle_demand(10).await.unwrap_err();
/// assert!(e.to_string().starts_with("Redis source `g`: gave up reconnecting to redis://127.0.0.1:1"));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The reconnect policy ([`SourceOptions::reconnect`](crate::SourceOptions::reconnect))
    /// ran out of attempts, reconnecting or waiting for Redis to serve again.
    #[error(
        "Redis source `{group}`: gave up reconnecting to {url} (the reconnect backoff ran out); last error: {last_error}"
    )]
    GaveUp {
        /// The consumer group.
        group: String,
        /// The URL, password redacted.
        url: String,
        /// Why the last connection attempt failed.
        last_error: String,
    },
    /// No connection to Redis succeeded within
    /// [`SourceOptions::connect_timeout`](crate::SourceOptions::connect_timeout) of the first
    /// source's start: a wrong host or port, or a server that is not there.
    #[error("Redis source `{group}`: could not reach {url} within {waited:.1?} of starting; last error: {last_error}")]
    Unreachable {
        /// The consumer group.
        group: String,
        /// The URL, password redacted.
        url: String,
        /// How long the sources of this consumer have waited.
        waited: std::time::Duration,
        /// Why the last connection attempt failed.
        last_error: String,
    },
    /// Redis refused a read (e.g. the group is missing and may not be created, or a stream
    /// key holds another type).
    #[error("Redis source `{group}` at {url}: {source}")]
    Redis {
        /// The consumer group.
        group: String,
        /// The URL, password redacted.
        url: String,
        /// Redis' error.
        source: redis::RedisError,
    },
}

/// A write to Redis failed as a whole.
///
/// An outage — connection refused, lost or timed out, a server loading its data or failing
/// over — is [`SinkError::Unavailable`], which carries a
/// [`ferroway::error::Unavailable`] in its source chain: returned from `handle_batch`, it makes
/// the pipeline keep the messages and retry with backoff, never dead-letter them.
///
/// ```
/// use ferroway::error::is_unavailable;
/// use ferroway_redis::{RedisSink, SinkOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nothing listens on port 1.
/// let sink = RedisSink::new(SinkOptions::new("redis://127.0.0.1:1", "out")).unwrap();
/// let e = sink.add(&[vec![("n".into(), b"1".to_vec())]]).await.unwrap_err();
/// assert!(is_unavailable(&e));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Redis cannot be reached or cannot serve now: retry later.
    #[error("Redis sink `{stream}`: {source}")]
    Unavailable {
        /// The stream written to.
        stream: String,
        /// The outage, with its cause.
        source: Unavailable,
    },
    /// Redis refused the whole write (e.g. a command it does not know).
    #[error("Redis sink `{stream}`: {source}")]
    Redis {
        /// The stream written to.
        stream: String,
        /// Redis' error.
        source: redis::RedisError,
    },
}
