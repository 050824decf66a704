//! The task that settles a queue-like broker source's messages (SQS, Pub/Sub): the
//! pipeline's outcomes become batched broker calls, made off the pipeline's path, and the
//! leases of messages still in the pipeline are extended before they run out.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::leases::Leases;
use crate::pipeline::{Acknowledger, Acks, BoxFuture, OnFailure};

/// What the acknowledger asks of the settling task.
#[derive(Debug)]
pub enum Job {
    /// Settle (delete, acknowledge) these handles.
    Settle(Vec<String>),
    /// Set these handles' lease to this many seconds (zero: delivered again at once), counted
    /// as `kind`.
    Change(Vec<String>, i32, &'static str),
    /// Answered once every job sent before it is done.
    Flush(oneshot::Sender<()>),
}

/// A broker's calls, each for at most [`BATCH`](Calls::BATCH) handles, each retrying and
/// reporting its own failures (a handle that could not be settled comes back: at least once).
pub trait Calls: Clone + Send + Sync + 'static {
    /// The most handles one call takes.
    const BATCH: usize;

    /// Settles `handles`.
    fn settle(&self, handles: Vec<String>) -> impl Future<Output = ()> + Send;

    /// Sets the lease of `handles` to `seconds`.
    fn change(&self, handles: Vec<String>, seconds: i32, kind: &'static str) -> impl Future<Output = ()> + Send;

    /// The handles whose lease to extend now and the seconds to give them, marked extended
    /// in `leases` ([`Leases::due`]); `None` when nothing is due.
    fn due(&self, leases: &Leases) -> Option<(Vec<String>, i32)>;
}

/// How long a settle waits for others to fill a call.
const LINGER: Duration = Duration::from_millis(10);

/// Runs until the source and its acknowledgers are gone (`jobs` closed), making at most
/// `concurrency` calls at once and looking for leases to extend every second. Until the
/// source has its client (`calls` arrives) no message exists, so a flush is answered at once.
///
/// ```
/// use std::sync::Arc;
/// use ferroway::connector::leases::Leases;
/// use ferroway::connector::settle::{self, Calls, Job};
/// use tokio::sync::{mpsc, oneshot};
///
/// #[derive(Clone)]
/// struct Print;
/// impl Calls for Print {
///     const BATCH: usize = 10;
///     async fn settle(&self, handles: Vec<String>) {
///         println!("delete {handles:?}");
///     }
///     async fn change(&self, handles: Vec<String>, seconds: i32, _kind: &'static str) {
///         println!("hide {handles:?} for {seconds} s");
///     }
///     fn due(&self, _: &Leases) -> Option<(Vec<String>, i32)> {
///         None
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (calls_tx, calls_rx) = oneshot::channel();
/// let (jobs, rx) = mpsc::unbounded_channel();
/// let task = tokio::spawn(settle::run(calls_rx, Arc::new(Leases::default()), rx, 4));
/// calls_tx.send(Print).ok();
/// jobs.send(Job::Settle(vec!["receipt-1".into()])).unwrap();
/// let (done, flushed) = oneshot::channel();
/// jobs.send(Job::Flush(done)).unwrap();
/// flushed.await.unwrap(); // the delete was made
/// drop(jobs);
/// task.await.unwrap();
/// # }
/// ```
pub async fn run<C: Calls>(
    calls: oneshot::Receiver<C>,
    leases: Arc<Leases>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    concurrency: usize,
) {
    tokio::pin!(calls);
    let calls = loop {
        tokio::select! {
            // The calls first: they are sent before any message exists, so a job after them
            // must wait for them rather than be dropped.
            biased;
            c = &mut calls => match c {
                Ok(c) => break c,
                Err(_) => {
                    while let Some(job) = jobs.recv().await {
                        if let Job::Flush(reply) = job {
                            let _ = reply.send(());
                        }
                    }
                    return;
                }
            },
            job = jobs.recv() => match job {
                Some(Job::Flush(reply)) => {
                    let _ = reply.send(());
                }
                Some(_) => {}
                None => return,
            },
        }
    };
    let spawner = Spawner {
        calls,
        permits: Arc::new(Semaphore::new(concurrency.max(1))),
    };
    let mut running = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Settles wait up to LINGER for others to fill a call: brokers charge, and spend, per call.
    let mut pending: Vec<String> = Vec::new();
    let mut linger: Option<Instant> = None;
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(Job::Settle(handles)) => {
                    pending.extend(handles);
                    let full = pending.len() / C::BATCH * C::BATCH;
                    if full > 0 {
                        spawner.settle(pending.drain(..full).collect(), &mut running);
                    }
                    linger = match (pending.is_empty(), linger) {
                        (true, _) => None,
                        (false, None) => Some(Instant::now() + LINGER),
                        (false, at) => at,
                    };
                }
                Some(Job::Change(handles, seconds, kind)) => spawner.change(handles, seconds, kind, &mut running),
                Some(Job::Flush(reply)) => {
                    spawner.settle(std::mem::take(&mut pending), &mut running);
                    linger = None;
                    while running.join_next().await.is_some() {}
                    let _ = reply.send(());
                }
                None => {
                    spawner.settle(std::mem::take(&mut pending), &mut running);
                    while running.join_next().await.is_some() {}
                    return;
                }
            },
            _ = tokio::time::sleep_until(linger.unwrap_or_else(Instant::now)), if linger.is_some() => {
                spawner.settle(std::mem::take(&mut pending), &mut running);
                linger = None;
            }
            _ = tick.tick() => {
                if let Some((due, seconds)) = spawner.calls.due(&leases) {
                    spawner.change(due, seconds, "extend", &mut running);
                }
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

struct Spawner<C> {
    calls: C,
    permits: Arc<Semaphore>,
}

impl<C: Calls> Spawner<C> {
    fn settle(&self, handles: Vec<String>, running: &mut JoinSet<()>) {
        for chunk in handles.chunks(C::BATCH) {
            let (calls, permits, chunk) = (self.calls.clone(), self.permits.clone(), chunk.to_vec());
            running.spawn(async move {
                let _permit = permits.acquire().await;
                calls.settle(chunk).await;
            });
        }
    }

    fn change(&self, handles: Vec<String>, seconds: i32, kind: &'static str, running: &mut JoinSet<()>) {
        for chunk in handles.chunks(C::BATCH) {
            let (calls, permits, chunk) = (self.calls.clone(), self.permits.clone(), chunk.to_vec());
            running.spawn(async move {
                let _permit = permits.acquire().await;
                calls.change(chunk, seconds, kind).await;
            });
        }
    }
}

/// The [`Acknowledger`] of a source whose messages are in [`Leases`]: what the pipeline
/// finished with is settled; a failure is released and, with `retry`, its lease set to that
/// delay (zero: delivered again at once), else left for its lease to run out. A failure to
/// acknowledge regardless ([`OnFailure::Ack`]) is settled; one the pipeline rejects
/// ([`OnFailure::Reject`]) is left (a broker of this kind cannot reject: its own dead-letter
/// policy takes it after its redeliveries).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use ferroway::connector::leases::{Arrival, Leases};
/// use ferroway::connector::settle::{Acker, Job};
/// use ferroway::pipeline::{Acknowledger, Acks};
///
/// let leases = Arc::new(Leases::default());
/// let (tx, mut jobs) = tokio::sync::mpsc::unbounded_channel();
/// let acker = Acker::new(leases.clone(), tx, None, metrics::Counter::noop());
/// let Arrival::New(token) = leases.add("m-1", "ack-1".into(), 0, Duration::from_secs(10), Duration::from_secs(60)) else { unreachable!() };
/// acker.ack(Acks { successful: vec![token], failed: vec![] });
/// assert!(matches!(jobs.try_recv(), Ok(Job::Settle(h)) if h == ["ack-1"]));
/// ```
pub struct Acker {
    leases: Arc<Leases>,
    jobs: mpsc::UnboundedSender<Job>,
    retry: Option<Duration>,
    left: metrics::Counter,
}

impl Acker {
    /// An acknowledger over `leases`, sending its jobs to the settling task; `left` counts the
    /// failures left for their lease to run out.
    pub fn new(
        leases: Arc<Leases>,
        jobs: mpsc::UnboundedSender<Job>,
        retry: Option<Duration>,
        left: metrics::Counter,
    ) -> Self {
        Acker {
            leases,
            jobs,
            retry,
            left,
        }
    }
}

impl std::fmt::Debug for Acker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acker")
            .field("leases", &self.leases)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Acknowledger for Acker {
    fn ack(&self, acks: Acks) {
        let mut settle: Vec<String> = acks.successful.iter().filter_map(|t| self.leases.settle(*t)).collect();
        let mut retry = Vec::new();
        let mut left = 0u64;
        for f in &acks.failed {
            if f.on_failure == OnFailure::Ack {
                settle.extend(self.leases.settle(f.token));
                continue;
            }
            let Some(handle) = self.leases.release(f.token) else {
                continue;
            };
            match (f.on_failure, self.retry) {
                (OnFailure::Reject, _) | (_, None) => left += 1,
                (_, Some(_)) => retry.push(handle),
            }
        }
        if left > 0 {
            self.left.increment(left);
            debug!(count = left, "failed messages left for their lease to run out");
        }
        let send = |job| {
            if self.jobs.send(job).is_err() {
                warn!("the settling task stopped; the messages are delivered again when their lease runs out");
            }
        };
        if !settle.is_empty() {
            send(Job::Settle(settle));
        }
        if let Some(delay) = self.retry
            && !retry.is_empty()
        {
            send(Job::Change(retry, delay.as_secs() as i32, "retry"));
        }
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.jobs.send(Job::Flush(tx)).is_ok();
        Box::pin(async move {
            if sent {
                let _ = rx.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::leases::Arrival;
    use crate::pipeline::{AckToken, FailedAck};

    const L: Duration = Duration::from_secs(60);

    fn new(leases: &Leases, id: &str, handle: &str) -> AckToken {
        match leases.add(id, handle.into(), 1, L, L) {
            Arrival::New(t) => t,
            other => panic!("{id} is new, not {other:?}"),
        }
    }

    fn failed(token: AckToken, on_failure: OnFailure) -> Acks {
        Acks {
            successful: vec![],
            failed: vec![FailedAck {
                token,
                reason: "boom".into(),
                on_failure,
            }],
        }
    }

    #[test]
    fn failures_are_retried_after_the_delay_or_left() {
        let leases = Arc::new(Leases::default());
        let (tx, mut jobs) = mpsc::unbounded_channel();
        let retry = Acker::new(
            leases.clone(),
            tx.clone(),
            Some(Duration::ZERO),
            metrics::Counter::noop(),
        );
        retry.ack(failed(new(&leases, "bad", "h1"), OnFailure::Requeue));
        assert!(matches!(jobs.try_recv(), Ok(Job::Change(h, 0, "retry")) if h == ["h1"]));
        // Released, not settled: its next delivery is new.
        new(&leases, "bad", "h2");
        retry.ack(failed(new(&leases, "rejected", "h3"), OnFailure::Reject));
        assert!(jobs.try_recv().is_err(), "a rejection is left to the broker's policy");
        let leave = Acker::new(leases.clone(), tx, None, metrics::Counter::noop());
        leave.ack(failed(new(&leases, "other", "h4"), OnFailure::Requeue));
        assert!(jobs.try_recv().is_err(), "left: no call");
        leave.ack(failed(new(&leases, "acked", "h5"), OnFailure::Ack));
        assert!(matches!(jobs.try_recv(), Ok(Job::Settle(h)) if h == ["h5"]));
    }
}
