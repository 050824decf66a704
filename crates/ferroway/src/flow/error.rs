//! What can go wrong running a flow.

use std::path::PathBuf;

use crate::error::{StageError, SubscribeError};

/// Why a flow did not run to the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// An input file could not be opened or read.
    #[error("flow input {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint of a flow over a connector source could not be read or written.
    #[error("flow checkpoint {path}: {source}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What the system said, or what is wrong with the file.
        #[source]
        source: std::io::Error,
    },
    /// A stage of the flow failed (a closure returned an error or panicked, or its input failed).
    #[error(transparent)]
    Stage(#[from] StageError),
    /// Wiring the flow's stages failed.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// The connector source could not make a producer.
    #[error("flow source: {0}")]
    Source(#[source] crate::BoxError),
    /// The sink refused results or failed (not an outage: that is waited out).
    #[error("flow sink: {0}")]
    Sink(#[source] crate::BoxError),
    /// An option is out of range; names the option.
    #[error("flow option `{option}`: {reason}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}
