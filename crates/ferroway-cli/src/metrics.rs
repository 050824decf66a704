//! `--metrics ADDR`: a small HTTP/1.1 endpoint on a Tokio listener (no HTTP framework):
//!
//! - `GET /metrics`: every metric in the Prometheus text format;
//! - `GET /health`: 200 while the process runs (liveness);
//! - `GET /ready`: 200 once every pipeline has started, its sources have reached their servers
//!   ([`Source::connected`](ferroway::connector::Source::connected): a broker answered), and
//!   none is draining or stopped; 503 otherwise, naming the pipelines that are not and why.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Whether a pipeline's sources have reached their servers.
pub type Connected = Arc<dyn Fn() -> bool + Send + Sync>;

/// Where each pipeline of the run is.
#[derive(Default)]
pub struct Readiness {
    states: Mutex<Vec<(String, State)>>,
    sources: Mutex<Vec<(String, Connected)>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}

/// A pipeline's state, as `/ready` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Being built and started.
    Starting,
    /// Running.
    Running,
    /// Draining or stopped.
    Stopping,
}

impl Readiness {
    /// Tracks `pipelines`, all starting.
    pub fn new(pipelines: impl IntoIterator<Item = String>) -> Self {
        Readiness {
            states: Mutex::new(pipelines.into_iter().map(|p| (p, State::Starting)).collect()),
            sources: Mutex::default(),
        }
    }

    /// `pipeline` is running; `connected` says whether its sources reached their servers.
    pub fn running(&self, pipeline: &str, connected: Connected) {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pipeline.to_owned(), connected));
        self.set(pipeline, State::Running);
    }

    /// Sets `pipeline`'s state.
    pub fn set(&self, pipeline: &str, state: State) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = states.iter_mut().find(|(p, _)| p == pipeline) {
            *s = state;
        }
    }

    /// Sets every pipeline's state.
    pub fn set_all(&self, state: State) {
        for (_, s) in self.states.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
            *s = state;
        }
    }

    /// `Ok` when every pipeline runs, else which do not.
    fn ready(&self) -> Result<(), String> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let connected = |p: &str| sources.iter().any(|(q, c)| q == p && c());
        let not: Vec<String> = states
            .iter()
            .filter_map(|(p, s)| match s {
                State::Running if connected(p) => None,
                State::Running => Some(format!("{p}: sources not connected yet")),
                _ => Some(format!("{p}: {s:?}")),
            })
            .collect();
        if not.is_empty() { Ok(()) } else { Err(not.join(", ")) }
    }
}

/// Binds `addr` and serves until the process ends.
///
/// # Errors
/// The address could not be bound.
pub async fn serve(
    addr: SocketAddr,
    prometheus: PrometheusHandle,
    readiness: Arc<Readiness>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving /metrics, /health and /ready");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (prometheus, readiness) = (prometheus.clone(), readiness.clone());
            tokio::spawn(async move {
                let _ = respond(stream, &prometheus, &readiness).await;
            });
        }
    });
    Ok(local)
}

async fn respond(mut stream: TcpStream, prometheus: &PrometheusHandle, readiness: &Readiness) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&buf);
    let mut words = request.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            prometheus.run_upkeep();
            ("200 OK", "text/plain; version=0.0.4", prometheus.render())
        }
        ("GET", "/health") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/ready") => match readiness.ready() {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_owned()),
            Err(not) => ("503 Service Unavailable", "text/plain", format!("not ready: {not}\n")),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics, /health or /ready\n".to_owned(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
