//! Acknowledgement: `XACK`, batched, sent by a task of its own so pipeline tasks never wait
//! for Redis.

use std::sync::Arc;

use ferroway::pipeline::{Acknowledger, Acks, BoxFuture, OnFailure};
use ferroway::resilience::{ConnectionError, ConnectionManager};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use crate::connection::{RedisConnector, is_connection_error};
use crate::entry::StreamId;
use crate::options::OnFailed;

pub(crate) enum AckCmd {
    Ack { stream: usize, ids: Vec<StreamId> },
    Flush(oneshot::Sender<()>),
}

/// The acknowledger of one stream: tokens are entry ids `(ms, seq)`.
pub(crate) struct StreamAcker {
    pub(crate) stream: usize,
    pub(crate) tx: mpsc::UnboundedSender<AckCmd>,
    pub(crate) on_failed: OnFailed,
    pub(crate) left_pending: metrics::Counter,
}

impl Acknowledger for StreamAcker {
    fn ack(&self, acks: Acks) {
        let mut ids: Vec<StreamId> = acks.successful.iter().map(|t| StreamId { ms: t.0, seq: t.1 }).collect();
        let mut kept = 0u64;
        for f in &acks.failed {
            if f.on_failure == OnFailure::Ack || self.on_failed == OnFailed::Ack {
                ids.push(StreamId {
                    ms: f.token.0,
                    seq: f.token.1,
                });
            } else {
                kept += 1;
                debug!(id = %StreamId { ms: f.token.0, seq: f.token.1 }, reason = %f.reason, "failed entry left pending");
            }
        }
        if kept > 0 {
            self.left_pending.increment(kept);
        }
        if !ids.is_empty()
            && self
                .tx
                .send(AckCmd::Ack {
                    stream: self.stream,
                    ids,
                })
                .is_err()
        {
            warn!("Redis acknowledger stopped; entries stay pending and will be delivered again");
        }
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(AckCmd::Flush(tx)).is_ok();
        Box::pin(async move {
            if sent {
                let _ = rx.await;
            }
        })
    }
}

/// Sends `XACK`s until every acknowledger is gone. Waiting acknowledgements are merged into
/// one pipelined round trip; after a connection loss they are retried, never dropped.
pub(crate) async fn run(
    streams: Arc<[Arc<str>]>,
    group: String,
    conn: ConnectionManager<RedisConnector>,
    mut rx: mpsc::UnboundedReceiver<AckCmd>,
) {
    let acked: Vec<metrics::Counter> = streams
        .iter()
        .map(|s| metrics::counter!(crate::metrics::ACKED, "stream" => s.to_string()))
        .collect();
    while let Some(first) = rx.recv().await {
        let mut ids: Vec<Vec<StreamId>> = vec![Vec::new(); streams.len()];
        let mut flushes = Vec::new();
        let mut take = |cmd: AckCmd| match cmd {
            AckCmd::Ack { stream, ids: more } => ids[stream].extend(more),
            AckCmd::Flush(done) => flushes.push(done),
        };
        take(first);
        while let Ok(cmd) = rx.try_recv() {
            take(cmd);
        }
        if ids.iter().any(|v| !v.is_empty()) {
            let mut pipe = redis::pipe();
            for (i, v) in ids.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
                let cmd = pipe.cmd("XACK").arg(&*streams[i]).arg(&group);
                for id in v {
                    cmd.arg(id.to_string());
                }
                cmd.ignore();
            }
            loop {
                let c = match conn.get().await {
                    Ok(c) => c,
                    Err(ConnectionError::Closed) => return,
                    Err(_) => continue,
                };
                let mut redis_conn = (*c).clone();
                match pipe.query_async::<()>(&mut redis_conn).await {
                    Ok(()) => {
                        for (i, v) in ids.iter().enumerate() {
                            acked[i].increment(v.len() as u64);
                        }
                        break;
                    }
                    Err(e) if is_connection_error(&e) => {
                        warn!(error = %e, "XACK failed; reconnecting and retrying");
                        conn.report_broken(&c);
                    }
                    Err(e) => {
                        // The group or stream is gone: there is nothing left to acknowledge.
                        error!(error = %e, "XACK refused; entries stay pending");
                        break;
                    }
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
    conn.close();
}
