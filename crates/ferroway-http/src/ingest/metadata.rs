//! Where an ingested record came from.

use std::net::SocketAddr;

use ferroway::pipeline::Origin;

/// Where an ingested record came from: every message of an [`IngestSource`](super::IngestSource) carries
/// it.
///
/// ```
/// use ferroway::connector::Record;
/// use ferroway::pipeline::{Handler, Message};
/// use ferroway_http::ingest::IngestMetadata;
///
/// struct Log;
/// impl Handler for Log {
///     type Data = Record;
///     async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), ferroway::BoxError> {
///         if let Some(at) = m.metadata::<IngestMetadata>() {
///             println!("record {} of request {} from {}", at.index, at.request, at.peer);
///         }
///         Ok(())
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngestMetadata {
    /// The client's address.
    pub peer: SocketAddr,
    /// The request's number, counted from 1 since the server started.
    pub request: u64,
    /// The record's place in its request, from 0 (what a `500` lists).
    pub index: usize,
}

impl Origin for IngestMetadata {
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("peer", self.peer.to_string()),
            ("request", self.request.to_string()),
            ("index", self.index.to_string()),
        ]
    }
}
