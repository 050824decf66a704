//! The source side: the server's records wait in the shared queue until the pipeline's
//! producers take them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{BoxFuture, Message};
use ferroway::stage::{Emit, Producer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::options::IngestOptions;
use super::queue::Shared;
use super::server;
use crate::error::IngestError;

/// An HTTP ingest server as a pipeline [`Source`] of [`Record`]s: see the [module
/// documentation](super). It listens from [`bind`](Self::bind) until the pipeline stopped
/// (or it is dropped).
///
/// - **Acknowledged responses:** `200 {"accepted": n}` once the pipeline finished every
///   record of the request (dead-lettered ones count as finished); `500 {"error": …,
///   "failed": [{"index": i, "reason": …}]}` when some failed; `504` when they took longer
///   than [`ack_timeout`](IngestOptions::ack_timeout).
/// - **Back-pressure:** a request is read only while the pipeline's producers wait with
///   demand the records already queued (and the requests being read) do not cover;
///   otherwise, after [`admission_wait`](IngestOptions::admission_wait), `503` with
///   `Retry-After`. At most [`max_requests`](IngestOptions::max_requests) are taken at
///   once (each up to [`max_body_bytes`](IngestOptions::max_body_bytes)): that bounds the
///   memory requests hold, whatever the clients do.
/// - **Refusals:** `401` without the bearer token, `408` for a body slower than
///   [`read_timeout`](IngestOptions::read_timeout), `413` past
///   [`max_body_bytes`](IngestOptions::max_body_bytes), `400` naming what is not JSON and
///   where, `404`/`405` for other paths and methods.
/// - **Stop:** draining answers new requests `503`; records queued are processed and their
///   requests answered before the server closes.
///
/// Records carry [`IngestMetadata`](super::IngestMetadata); a JSON element or NDJSON line is the payload as sent.
#[derive(Debug)]
pub struct IngestSource {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl IngestSource {
    /// Validates `opts`, binds the listening socket and starts serving (answering `503`
    /// until a pipeline's producers ask for records). Call it within a Tokio runtime: the
    /// server is a task of it.
    ///
    /// ```
    /// use ferroway_http::ingest::{IngestOptions, IngestSource};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let e = IngestSource::bind(IngestOptions::new("localhost:80")).unwrap_err();
    /// assert_eq!(e.to_string(), "invalid option `listen`: `localhost:80` is not host:port with an IP host");
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`IngestError::Options`] naming the first invalid option, [`IngestError::Bind`] when
    /// the address cannot be listened on.
    pub fn bind(opts: IngestOptions) -> Result<IngestSource, IngestError> {
        let addr = opts.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(IngestError::Bind {
                addr: opts.listen.clone(),
                reason: "no Tokio runtime: bind from within one (the server is a task of it)".to_owned(),
            });
        }
        let bind_error = |e: std::io::Error| IngestError::Bind {
            addr: opts.listen.clone(),
            reason: e.to_string(),
        };
        // std's bind sets SO_REUSEADDR on Unix: a restarted process listens again at once.
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = watch::channel(false);
        info!(addr = %addr, path = %opts.path, auth = opts.token.is_some(), "ingest server listening");
        let server = tokio::spawn(server::serve(listener, opts, shared.clone(), stopped));
        Ok(IngestSource {
            shared,
            addr,
            stop,
            server: Mutex::new(Some(server)),
        })
    }

    /// The address the server listens on (the port picked when the options said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for IngestSource {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().unwrap_or_else(|p| p.into_inner()).take() {
            server.abort();
        }
    }
}

impl Source for IngestSource {
    type Data = Record;
    type Producer = IngestProducer;

    fn producer(&self, _index: usize) -> Result<IngestProducer, BoxError> {
        Ok(IngestProducer {
            shared: self.shared.clone(),
        })
    }

    /// Every record is finished and its request answered: the server closes.
    fn close(&self) -> BoxFuture<'_, ()> {
        // Records still queued after an abrupt stop are dropped: their requests get a 503.
        drop(self.shared.close());
        let _ = self.stop.send(true);
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        Box::pin(async move {
            let Some(mut server) = server else { return };
            // Idle keep-alive connections are closed at once; a client still sending gets
            // a little while.
            if tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
                warn!("ingest server connections still open after 5 s: closed");
                server.abort();
            }
        })
    }
}

/// A pipeline producer taking the records an [`IngestSource`] received.
#[derive(Debug)]
pub struct IngestProducer {
    shared: Arc<Shared>,
}

impl Producer for IngestProducer {
    type Output = Message<Record>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Record>>, BoxError> {
        Ok(match self.shared.take(demand).await {
            Some(records) => Emit::Events(records),
            None => Emit::Done(Vec::new()),
        })
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<Record>> {
        self.shared.close()
    }
}
