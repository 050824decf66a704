//! Polling an HTTP endpoint: pages of records fetched on an interval, following `next`
//! links or page tokens, resumed by a cursor kept after acknowledgement.

mod options;
mod page;
mod source;

pub use crate::error::{OptionsError, SourceError};
pub use options::{Pagination, PollOptions};
pub use source::{PollMetadata, PollSource, PollSourceFactory};
