//! Acknowledgements: every message outstanding has its ack id in the source's [`Leases`];
//! outcomes become `Acknowledge` and `ModifyAckDeadline` calls made by a task of their own,
//! which also extends the lease of messages still in the pipeline near their ack deadline.

use std::sync::Arc;
use std::time::Duration;

use ferroway::connector::leases::Leases;
use ferroway::pipeline::{Acknowledger, Acks, BoxFuture, OnFailure};
use ferroway::resilience::Backoff;
use gcloud_gax::grpc::Code;
use gcloud_googleapis::pubsub::v1::{AcknowledgeRequest, ModifyAckDeadlineRequest};
use gcloud_pubsub::apiv1::subscriber_client::SubscriberClient;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::client::{Fault, describe, fault, no_retry};
use crate::options::OnFailed;

pub(crate) enum Job {
    Ack(Vec<String>),
    /// Ack ids and the ack deadline, in seconds, to give them, counted as `kind`.
    Modify(Vec<String>, i32, &'static str),
    /// Answered once every job before it is done.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct PubSubAcker {
    pub(crate) leases: Arc<Leases>,
    pub(crate) tx: mpsc::UnboundedSender<Job>,
    pub(crate) on_failed: OnFailed,
    /// Failures left for their ack deadline to run out.
    pub(crate) left: metrics::Counter,
}

impl Acknowledger for PubSubAcker {
    fn ack(&self, acks: Acks) {
        let mut ack = Vec::with_capacity(acks.successful.len());
        let mut retry = Vec::new();
        let mut left = 0u64;
        ack.extend(acks.successful.iter().filter_map(|t| self.leases.settle(*t)));
        for f in &acks.failed {
            if f.on_failure == OnFailure::Ack {
                ack.extend(self.leases.settle(f.token));
                continue;
            }
            let Some(ack_id) = self.leases.release(f.token) else {
                continue;
            };
            match (f.on_failure, self.on_failed) {
                // Pub/Sub cannot reject: left, the subscription's dead-letter policy forwards
                // it after `maxDeliveryAttempts`.
                (OnFailure::Reject, _) | (_, OnFailed::Leave) => left += 1,
                (_, OnFailed::Retry { .. }) => retry.push(ack_id),
            }
        }
        if left > 0 {
            self.left.increment(left);
            debug!(count = left, "failed messages left for their ack deadline to run out");
        }
        let send = |job| {
            if self.tx.send(job).is_err() {
                warn!("Pub/Sub acknowledger stopped; the messages are delivered again after their ack deadline");
            }
        };
        if !ack.is_empty() {
            send(Job::Ack(ack));
        }
        if let OnFailed::Retry { delay } = self.on_failed
            && !retry.is_empty()
        {
            send(Job::Modify(retry, delay.as_secs() as i32, "retry"));
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

/// What the acknowledgement task needs to know.
pub(crate) struct Settings {
    pub(crate) subscription: String,
    pub(crate) ack_deadline: Duration,
    pub(crate) extend_before: Duration,
    pub(crate) max_extension: Duration,
}

/// Calls in flight at once for acknowledgements.
const CALLS: usize = 4;
/// Ack ids per request: Pub/Sub takes requests of up to 512 KB.
const MAX_IDS: usize = 2500;
/// Attempts for a call that failed on Pub/Sub's side.
const ATTEMPTS: u32 = 5;
/// How long an acknowledgement waits for others to fill a call.
const LINGER: Duration = Duration::from_millis(10);

/// The acknowledgement task: acks, deadline changes and lease extensions, until the source
/// and its acknowledgers are gone. Started with its source; until the source has a client
/// (`client` arrives) no message exists, so a flush is answered at once.
pub(crate) async fn run(
    client: oneshot::Receiver<SubscriberClient>,
    leases: Arc<Leases>,
    settings: Settings,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    tokio::pin!(client);
    let client = loop {
        tokio::select! {
            // The client first: it is sent before any message exists, so a job after it
            // must wait for it rather than be dropped.
            biased;
            c = &mut client => match c {
                Ok(c) => break c,
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
                Some(_) => {}
                None => return,
            },
        }
    };
    let calls = Calls {
        client,
        settings: Arc::new(settings),
        permits: Arc::new(Semaphore::new(CALLS)),
    };
    let mut running = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut acks: Vec<String> = Vec::new();
    let mut linger: Option<Instant> = None;
    loop {
        tokio::select! {
            job = rx.recv() => match job {
                Some(Job::Ack(ids)) => {
                    acks.extend(ids);
                    if acks.len() >= MAX_IDS {
                        calls.ack(std::mem::take(&mut acks), &mut running);
                    }
                    linger = match (acks.is_empty(), linger) {
                        (true, _) => None,
                        (false, None) => Some(Instant::now() + LINGER),
                        (false, at) => at,
                    };
                }
                Some(Job::Modify(ids, seconds, kind)) => calls.modify(ids, seconds, kind, &mut running),
                Some(Job::Flush(reply)) => {
                    calls.ack(std::mem::take(&mut acks), &mut running);
                    linger = None;
                    while running.join_next().await.is_some() {}
                    let _ = reply.send(());
                }
                None => {
                    calls.ack(std::mem::take(&mut acks), &mut running);
                    while running.join_next().await.is_some() {}
                    return;
                }
            },
            _ = tokio::time::sleep_until(linger.unwrap_or_else(Instant::now)), if linger.is_some() => {
                calls.ack(std::mem::take(&mut acks), &mut running);
                linger = None;
            }
            _ = tick.tick() => calls.extend(&leases, &mut running),
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

#[derive(Clone)]
struct Calls {
    client: SubscriberClient,
    settings: Arc<Settings>,
    permits: Arc<Semaphore>,
}

/// Which call a chunk of ack ids goes in.
#[derive(Clone, Copy)]
enum Call {
    Ack,
    /// The new deadline in seconds, and the metric's kind.
    Modify(i32, &'static str),
}

impl Call {
    fn kind(self) -> &'static str {
        match self {
            Call::Ack => "ack",
            Call::Modify(_, kind) => kind,
        }
    }
}

impl Calls {
    fn count(&self, name: &'static str, kind: &'static str, n: usize) {
        metrics::counter!(name, "subscription" => self.settings.subscription.clone(), "kind" => kind)
            .increment(n as u64);
    }

    fn ack(&self, ids: Vec<String>, running: &mut JoinSet<()>) {
        self.spawn(ids, Call::Ack, running);
    }

    fn modify(&self, ids: Vec<String>, seconds: i32, kind: &'static str, running: &mut JoinSet<()>) {
        self.spawn(ids, Call::Modify(seconds, kind), running);
    }

    fn spawn(&self, ids: Vec<String>, call: Call, running: &mut JoinSet<()>) {
        for chunk in ids.chunks(MAX_IDS) {
            let (this, chunk) = (self.clone(), chunk.to_vec());
            running.spawn(async move {
                let _permit = this.permits.acquire().await;
                this.call(chunk, call).await;
            });
        }
    }

    /// Extends the lease of messages near their ack deadline, unless they have been in the
    /// pipeline for `max_extension` already.
    fn extend(&self, leases: &Leases, running: &mut JoinSet<()>) {
        let s = &self.settings;
        if s.extend_before.is_zero() {
            return;
        }
        let due = leases.due(s.extend_before, s.ack_deadline, s.max_extension);
        if !due.is_empty() {
            debug!(subscription = %s.subscription, count = due.len(), "leases extended for messages still in the pipeline");
            self.modify(due, s.ack_deadline.as_secs() as i32, "extend", running);
        }
    }

    /// One request, tried again on Pub/Sub's side failures. A request refused as invalid
    /// (on exactly-once subscriptions: an expired or superseded ack id among them) is split
    /// into one request per id, so each ack is confirmed or counted failed on its own.
    async fn call(&self, ids: Vec<String>, call: Call) {
        let s = &self.settings;
        let kind = call.kind();
        let mut delays = Backoff::exponential(Duration::from_millis(100))
            .cap(Duration::from_secs(5))
            .delays();
        for attempt in 1..=ATTEMPTS {
            let result = match call {
                Call::Ack => self
                    .client
                    .acknowledge(
                        AcknowledgeRequest {
                            subscription: s.subscription.clone(),
                            ack_ids: ids.clone(),
                        },
                        no_retry(),
                    )
                    .await
                    .map(|_| ()),
                Call::Modify(seconds, _) => self
                    .client
                    .modify_ack_deadline(
                        ModifyAckDeadlineRequest {
                            subscription: s.subscription.clone(),
                            ack_ids: ids.clone(),
                            ack_deadline_seconds: seconds,
                        },
                        no_retry(),
                    )
                    .await
                    .map(|_| ()),
            };
            let status = match result {
                Ok(()) => {
                    self.count(crate::metrics::ACKS, kind, ids.len());
                    return;
                }
                Err(status) => status,
            };
            match fault(&status) {
                Fault::Refused(_) if status.code() == Code::InvalidArgument && ids.len() > 1 => {
                    debug!(subscription = %s.subscription, kind, error = %describe(&status), "a request of {} ack ids was refused; confirming each alone", ids.len());
                    for id in ids {
                        Box::pin(self.call(vec![id], call)).await;
                    }
                    return;
                }
                Fault::Refused(why) => {
                    self.count(crate::metrics::ACK_FAILURES, kind, ids.len());
                    if matches!(call, Call::Ack) {
                        warn!(subscription = %s.subscription, error = %why, count = ids.len(), "Pub/Sub refused acknowledgements: those messages are delivered again");
                    } else {
                        debug!(subscription = %s.subscription, error = %why, kind, "Pub/Sub refused a deadline change");
                    }
                    return;
                }
                Fault::Transient(why) => {
                    debug!(subscription = %s.subscription, error = %why, attempt, kind, "acknowledgement call failed; trying again");
                }
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
        }
        self.count(crate::metrics::ACK_FAILURES, kind, ids.len());
        warn!(subscription = %s.subscription, count = ids.len(), kind, "acknowledgement calls failed {ATTEMPTS} times: those messages are delivered again after their ack deadline");
    }
}

#[cfg(test)]
mod tests {
    use ferroway::connector::leases::Arrival;
    use ferroway::pipeline::{AckToken, FailedAck};

    use super::*;

    fn make(leases: &Arc<Leases>, on_failed: OnFailed) -> (PubSubAcker, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let acker = PubSubAcker {
            leases: leases.clone(),
            tx,
            on_failed,
            left: metrics::Counter::noop(),
        };
        (acker, rx)
    }

    const D: Duration = Duration::from_secs(60);
    const STALE: Duration = Duration::from_secs(3600);

    fn new(leases: &Leases, id: &str, ack: &str) -> AckToken {
        match leases.add(id, ack.into(), 5, D, STALE) {
            Arrival::New(t) => t,
            _ => panic!("{id} is new"),
        }
    }

    fn failed(token: AckToken) -> Acks {
        Acks {
            successful: vec![],
            failed: vec![FailedAck {
                token,
                reason: "boom".into(),
                on_failure: OnFailure::Requeue,
            }],
        }
    }

    #[tokio::test]
    async fn a_copy_in_the_pipeline_gives_its_ack_id_to_the_ack() {
        let leases = Arc::new(Leases::default());
        let (acker, mut rx) = make(&leases, OnFailed::Leave);
        let token = new(&leases, "m1", "a1");
        assert!(matches!(
            leases.add("m1", "a2".into(), 5, D, STALE),
            Arrival::InPipeline
        ));
        acker.ack(Acks {
            successful: vec![token],
            failed: vec![],
        });
        assert!(matches!(rx.try_recv(), Ok(Job::Ack(ids)) if ids == ["a2"]));
        assert_eq!(leases.outstanding(), (0, 0));
    }

    #[tokio::test]
    async fn failures_are_nacked_or_left_as_configured() {
        let leases = Arc::new(Leases::default());
        let (nack, mut rx) = make(&leases, OnFailed::Retry { delay: Duration::ZERO });
        nack.ack(failed(new(&leases, "bad", "a1")));
        assert!(matches!(rx.try_recv(), Ok(Job::Modify(ids, 0, "retry")) if ids == ["a1"]));
        // Not remembered as handled: its next delivery is new.
        new(&leases, "bad", "a2");

        let (leave, mut rx) = make(&leases, OnFailed::Leave);
        leave.ack(failed(new(&leases, "other", "a3")));
        assert!(rx.try_recv().is_err(), "left: no call");
    }
}
