//! The HTTP side: authentication, admission against the pipeline's demand, the body read
//! within its limit, and the answer once the pipeline finished the request's records.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ferroway::connector::Record;
use ferroway::pipeline::{AckToken, Message};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use super::ack::RequestAck;
use super::body::Format;
use super::metadata::IngestMetadata;
use super::options::IngestOptions;
use super::queue::{Admit, Shared};

struct Server {
    opts: IngestOptions,
    /// One permit per request taken (`max_requests`).
    taken: Arc<Semaphore>,
    shared: Arc<Shared>,
    requests: AtomicU64,
    records: metrics::Counter,
}

pub(crate) async fn serve(
    listener: TcpListener,
    opts: IngestOptions,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let path = opts.path.clone();
    let server = Arc::new(Server {
        records: metrics::counter!(crate::metrics::INGESTED, "path" => path.clone()),
        requests: AtomicU64::new(0),
        taken: Arc::new(Semaphore::new(opts.max_requests)),
        opts,
        shared,
    });
    let app = Router::new()
        .route(&path, post(ingest))
        .with_state(server)
        .into_make_service_with_connect_info::<SocketAddr>();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
        warn!(error = %e, "ingest server stopped");
    }
}

/// A plain-text answer (JSON where the client reads what happened).
fn answer(status: StatusCode, body: String) -> Response {
    metrics::counter!(crate::metrics::INGEST_REQUESTS, "status" => status.as_str().to_owned()).increment(1);
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, text: &str) -> Response {
    answer(status, serde_json::json!({ "error": text }).to_string())
}

fn busy(opts: &IngestOptions, why: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut().insert(RETRY_AFTER, opts.retry_after.as_secs().into());
    r
}

/// Equal, in a time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn authorized(opts: &IngestOptions, headers: &HeaderMap) -> bool {
    let Some(token) = &opts.token else { return true };
    let given = headers
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| v.strip_prefix(b"Bearer ").or_else(|| v.strip_prefix(b"bearer ")))
        .unwrap_or(b"");
    same(given, token.as_bytes())
}

async fn ingest(
    State(server): State<Arc<Server>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let opts = &server.opts;
    if !authorized(opts, &headers) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer` token is required",
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("a valid header value"));
        return r;
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {} bytes", opts.max_body_bytes),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > opts.max_body_bytes as u64) {
        return too_large();
    }
    // A request holds its body until its records are finished: the count bounds memory.
    let Ok(_taken) = server.taken.clone().try_acquire_owned() else {
        return busy(opts, "too many requests in progress; retry later");
    };
    // Demand first, the body after: a pipeline without demand costs the server no memory.
    let admission = match server.shared.admit(opts.admission_wait).await {
        Admit::Yes(a) => a,
        Admit::NoDemand => return busy(opts, "the pipeline is busy; retry later"),
        Admit::Closing => return busy(opts, "the server is shutting down; retry later"),
    };
    let body = match tokio::time::timeout(opts.read_timeout, Limited::new(body, opts.max_body_bytes).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(),
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, &format!("reading the body failed: {e}")),
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the body took longer than {:?}", opts.read_timeout),
            );
        }
    };
    let format = Format::of(headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()));
    let payloads = match format.split(body) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let n = payloads.len();
    if n == 0 {
        return answer(StatusCode::OK, r#"{"accepted":0}"#.to_owned());
    }
    let request = server.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let (acker, outcome) = RequestAck::new(n);
    let messages: Vec<Message<Record>> = payloads
        .into_iter()
        .enumerate()
        .map(|(index, payload)| {
            let mut m = Message::with_acker(Record::new(payload), acker.clone(), AckToken(index as u64, 0));
            m.put_origin(IngestMetadata { peer, request, index });
            m
        })
        .collect();
    drop(acker);
    if !admission.queue(messages) {
        return busy(opts, "the server is shutting down; retry later");
    }
    server.records.increment(n as u64);
    debug!(request, records = n, %peer, "request queued");
    match tokio::time::timeout(opts.ack_timeout, outcome).await {
        Ok(Ok(failed)) if failed.is_empty() => answer(StatusCode::OK, format!(r#"{{"accepted":{n}}}"#)),
        Ok(Ok(failed)) => {
            let list: Vec<_> = failed
                .iter()
                .map(|(index, reason)| serde_json::json!({ "index": index, "reason": &**reason }))
                .collect();
            let text = format!("{} of {n} records failed", failed.len());
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": text, "failed": list }).to_string(),
            )
        }
        // The pipeline dropped the records without finishing them (it stopped at once).
        Ok(Err(_)) => busy(opts, "the pipeline stopped before finishing the records; retry"),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "the pipeline did not finish the records within {:?}; they may still be processed",
                opts.ack_timeout
            ),
        ),
    }
}
