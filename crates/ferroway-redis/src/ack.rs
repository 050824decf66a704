//! Acknowledgement: `XACK`, batched, sent by a task of its own so pipeline tasks never wait
//! for Redis. Once the source drained and nothing is in flight, the same task leaves the
//! consumer group.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferroway::error::Chain;
use ferroway::pipeline::{Acknowledger, Acks, BoxFuture, OnFailure};
use ferroway::telemetry::LogThrottle;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use crate::connection::{Link, LinkError, is_connection_error, is_unavailable};
use crate::entry::StreamId;
use crate::group;
use crate::in_flight::InFlight;
use crate::options::{OnFailed, SourceOptions};

pub(crate) enum AckCmd {
    /// `XACK` `ids`; `done` messages (those and failed ones left pending) stop being in flight
    /// once that is sent.
    Ack {
        stream: usize,
        ids: Vec<StreamId>,
        done: usize,
    },
    /// Answered once every earlier acknowledgement is sent.
    Flush(oneshot::Sender<()>),
    /// The pipeline has stopped: like `Flush`, then leave the group if nothing is in flight,
    /// and end the task (its connection closes).
    Close(oneshot::Sender<()>),
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
        let done = acks.successful.len() + acks.failed.len();
        let mut ids: Vec<StreamId> = acks.successful.iter().map(|t| StreamId { ms: t.0, seq: t.1 }).collect();
        let mut kept = 0u64;
        for f in &acks.failed {
            let id = StreamId {
                ms: f.token.0,
                seq: f.token.1,
            };
            if f.on_failure == OnFailure::Ack || self.on_failed == OnFailed::Ack {
                ids.push(id);
            } else {
                kept += 1;
                debug!(%id, reason = %f.reason, "failed entry left pending");
            }
        }
        if kept > 0 {
            self.left_pending.increment(kept);
        }
        if self
            .tx
            .send(AckCmd::Ack {
                stream: self.stream,
                ids,
                done,
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

/// What the acknowledgement task shares with its source.
pub(crate) struct AckTask {
    pub(crate) opts: Arc<SourceOptions>,
    pub(crate) link: Link,
    /// Counted down here, once acknowledgements are sent: nothing in flight means nothing
    /// left to `XACK` either, so the pending list is final.
    pub(crate) in_flight: Arc<InFlight>,
    /// Set when the source began draining: it reads no more.
    pub(crate) draining: Arc<AtomicBool>,
}

enum Sent {
    Acked,
    /// Redis refused: the group or stream is gone, nothing left to acknowledge.
    Refused,
    /// The reconnect policy ran out.
    GaveUp,
}

/// How long to wait for a connection before saying so (and waiting on).
const CONNECTION_WAIT: Duration = Duration::from_secs(30);

impl AckTask {
    /// Sends `XACK`s until every acknowledger is gone or the source is closed. Waiting
    /// acknowledgements are merged into one pipelined round trip; after a connection loss
    /// they are retried, never dropped.
    pub(crate) async fn run(self, mut rx: mpsc::UnboundedReceiver<AckCmd>) {
        let streams = &self.opts.streams;
        let acked: Vec<metrics::Counter> = streams
            .iter()
            .map(|s| metrics::counter!(crate::metrics::ACKED, "stream" => s.to_string()))
            .collect();
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let mut left = false;
        let mut gave_up = false;
        let mut closing = false;
        while let Some(first) = rx.recv().await {
            let mut ids: Vec<Vec<StreamId>> = vec![Vec::new(); streams.len()];
            let mut done = 0;
            let mut flushes = Vec::new();
            let mut take = |cmd: AckCmd| match cmd {
                AckCmd::Ack {
                    stream,
                    ids: more,
                    done: n,
                } => {
                    ids[stream].extend(more);
                    done += n;
                }
                AckCmd::Flush(reply) => flushes.push(reply),
                AckCmd::Close(reply) => {
                    closing = true;
                    flushes.push(reply);
                }
            };
            take(first);
            while let Ok(cmd) = rx.try_recv() {
                take(cmd);
            }
            if !gave_up && ids.iter().any(|v| !v.is_empty()) {
                match self.send(&ids, &throttle).await {
                    Sent::Acked => {
                        for (i, v) in ids.iter().enumerate() {
                            acked[i].increment(v.len() as u64);
                        }
                    }
                    Sent::Refused => {}
                    Sent::GaveUp => gave_up = true,
                }
            }
            self.in_flight.done(done);
            if !flushes.is_empty()
                && !gave_up
                && !left
                && (closing || self.draining.load(Ordering::Acquire))
                && self.in_flight.get() == 0
            {
                left = self.leave().await;
            }
            for reply in flushes {
                let _ = reply.send(());
            }
            if closing {
                debug!(consumer = %self.opts.consumer, "Redis acknowledgements sent; acknowledger closed");
                break;
            }
        }
        self.link.close();
    }

    /// One pipelined `XACK` per stream, retried until sent.
    async fn send(&self, ids: &[Vec<StreamId>], throttle: &LogThrottle) -> Sent {
        let mut pipe = redis::pipe();
        for (i, v) in ids.iter().enumerate().filter(|(_, v)| !v.is_empty()) {
            let cmd = pipe.cmd("XACK").arg(&*self.opts.streams[i]).arg(&self.opts.group);
            for id in v {
                cmd.arg(id.to_string());
            }
            cmd.ignore();
        }
        loop {
            let c = match self.link.get(CONNECTION_WAIT).await {
                Ok(c) => c,
                Err(LinkError::GaveUp { last_error }) => {
                    error!(url = %self.link.url(), last_error, "gave up reconnecting; unsent acknowledgements stay pending and will be delivered again");
                    return Sent::GaveUp;
                }
                Err(LinkError::Unavailable(e)) => {
                    if let Some(suppressed) = throttle.allow() {
                        warn!(error = %Chain(&e), suppressed, "XACK waits for Redis");
                    }
                    continue;
                }
            };
            match pipe.query_async::<()>(&mut (*c).clone()).await {
                Ok(()) => return Sent::Acked,
                Err(e) if is_unavailable(&e) => {
                    if let Some(suppressed) = throttle.allow() {
                        warn!(error = %Chain(&e), suppressed, "XACK failed; retrying");
                    }
                    if is_connection_error(&e) {
                        self.link.report_broken(&c);
                    } else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Err(e) => {
                    // The group or stream is gone: there is nothing left to acknowledge.
                    error!(error = %Chain(&e), "XACK refused; entries stay pending");
                    return Sent::Refused;
                }
            }
        }
    }

    /// Leaves the group where nothing is pending for this consumer; true once it is settled
    /// (left, or staying because entries are pending).
    async fn leave(&self) -> bool {
        match self.link.get(Duration::from_secs(1)).await {
            Ok(c) => group::leave(&self.opts, &mut (*c).clone()).await,
            Err(_) => false,
        }
    }
}
