//! Errors of the Redis connector.

/// Invalid options, found before anything connects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
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

/// A write to Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// No connection could be had.
    #[error("Redis sink `{stream}`: not connected: {reason}")]
    Connection {
        /// The stream written to.
        stream: String,
        /// Why.
        reason: String,
    },
    /// Redis refused the write (e.g. the key holds another type).
    #[error("Redis sink `{stream}`: {source}")]
    Redis {
        /// The stream written to.
        stream: String,
        /// Redis' error.
        source: redis::RedisError,
    },
}
