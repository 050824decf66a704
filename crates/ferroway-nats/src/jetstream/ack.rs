//! JetStream acknowledgements: every message in flight has its reply subject in a table;
//! outcomes become `+ACK` / `-NAK` / `+TERM` published there by a task of their own, which
//! also sends `+WPI` (work in progress) for messages in the pipeline longer than a third of
//! the ack wait, so slow work is not redelivered to another consumer meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::AckKind;
use bytes::Bytes;
use ferroway::pipeline::{AckToken, Acknowledger, Acks, BoxFuture, OnFailure};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::options::OnFailed;

struct Pending {
    reply: async_nats::Subject,
    delivered: i64,
    /// When it arrived or last got a `+WPI`.
    touched: Instant,
}

/// Tokens are sequential numbers: they need no hashing.
#[derive(Default)]
struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table = HashMap<u64, Pending, std::hash::BuildHasherDefault<Identity>>;

/// The messages in flight, by token.
#[derive(Default)]
pub(crate) struct InFlight {
    map: Mutex<Table>,
    next: AtomicU64,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a message; its token.
    pub(crate) fn add(&self, reply: async_nats::Subject, delivered: i64) -> AckToken {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            Pending {
                reply,
                delivered,
                touched: Instant::now(),
            },
        );
        AckToken(id, 0)
    }
}

pub(crate) enum Job {
    Send(Vec<(async_nats::Subject, AckKind)>),
    /// Answered once everything before is flushed to the server.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct JsAcker {
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) tx: mpsc::UnboundedSender<Job>,
    pub(crate) on_failed: OnFailed,
    /// The consumer's `max_deliver` (≤ 0: unlimited).
    pub(crate) max_deliver: i64,
}

impl JsAcker {
    fn kind(&self, on_failure: OnFailure, delivered: i64) -> AckKind {
        let nak = match self.on_failed {
            OnFailed::Nak { delay } => AckKind::Nak(delay),
            OnFailed::Term => AckKind::Nak(None),
        };
        match on_failure {
            OnFailure::Ack => AckKind::Ack,
            OnFailure::Requeue => nak,
            OnFailure::Reject => AckKind::Term,
            _ if self.max_deliver > 0 && delivered >= self.max_deliver => AckKind::Term,
            _ => match self.on_failed {
                OnFailed::Nak { delay } => AckKind::Nak(delay),
                OnFailed::Term => AckKind::Term,
            },
        }
    }
}

impl Acknowledger for JsAcker {
    fn ack(&self, acks: Acks) {
        let mut out = Vec::with_capacity(acks.successful.len() + acks.failed.len());
        {
            let mut map = self.in_flight.lock();
            for t in &acks.successful {
                if let Some(p) = map.remove(&t.0) {
                    out.push((p.reply, AckKind::Ack));
                }
            }
            for f in &acks.failed {
                if let Some(p) = map.remove(&f.token.0) {
                    let kind = self.kind(f.on_failure, p.delivered);
                    if matches!(kind, AckKind::Term) {
                        debug!(reason = %f.reason, delivered = p.delivered, "message terminated");
                    }
                    out.push((p.reply, kind));
                }
            }
        }
        if self.tx.send(Job::Send(out)).is_err() {
            warn!("NATS acknowledger stopped; the messages are redelivered after their ack wait");
        }
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.send(Job::Flush(tx)).is_ok();
        Box::pin(async move {
            if sent {
                let _ = rx.await;
            }
        })
    }
}

fn name(kind: &AckKind) -> &'static str {
    match kind {
        AckKind::Ack => "ack",
        AckKind::Nak(_) => "nak",
        AckKind::Term => "term",
        AckKind::Progress => "progress",
        AckKind::Next => "next",
    }
}

/// Sends acknowledgements until every sender is gone, and `+WPI` for slow messages. Started
/// with its source; until the source has connected (and `client` arrives) no message exists,
/// so a flush is answered at once.
pub(crate) async fn run(
    client: oneshot::Receiver<Client>,
    in_flight: Arc<InFlight>,
    ack_wait: Duration,
    source: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    tokio::pin!(client);
    let client = loop {
        tokio::select! {
            c = &mut client => match c {
                Ok(c) => break c,
                // The source is gone without ever connecting.
                Err(_) => {
                    while let Some(job) = rx.recv().await {
                        if let Job::Flush(reply) = job {
                            let _ = reply.send(());
                        }
                    }
                    return;
                }
            },
            job = rx.recv() => match job {
                Some(Job::Flush(reply)) => {
                    let _ = reply.send(());
                }
                Some(Job::Send(_)) => {}
                None => return,
            },
        }
    };
    let every = (ack_wait / 3).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let counter =
        |kind: &'static str| metrics::counter!(crate::metrics::ACKS, "source" => source.clone(), "kind" => kind);
    loop {
        tokio::select! {
            job = rx.recv() => match job {
                Some(Job::Send(acks)) => {
                    for (reply, kind) in acks {
                        counter(name(&kind)).increment(1);
                        // A publish only fails once the client is closed: the message is
                        // then redelivered after its ack wait.
                        if let Err(e) = client.publish(reply, Bytes::from(kind)).await {
                            warn!(error = %e, "NATS acknowledgement not sent; redelivered after the ack wait");
                        }
                    }
                }
                Some(Job::Flush(reply)) => {
                    let _ = client.flush().await;
                    let _ = reply.send(());
                }
                None => {
                    let _ = client.flush().await;
                    return;
                }
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let slow: Vec<async_nats::Subject> = in_flight
                    .lock()
                    .values_mut()
                    .filter(|p| now.duration_since(p.touched) >= every)
                    .map(|p| {
                        p.touched = now;
                        p.reply.clone()
                    })
                    .collect();
                if !slow.is_empty() {
                    counter("progress").increment(slow.len() as u64);
                    debug!(count = slow.len(), "work in progress: ack wait extended");
                }
                for reply in slow {
                    let _ = client.publish(reply, Bytes::from(AckKind::Progress)).await;
                }
            }
        }
    }
}
