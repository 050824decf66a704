//! Acknowledgements: every message in flight has its receipt handle in the source's
//! [`Leases`]; outcomes become `DeleteMessageBatch` and `ChangeMessageVisibilityBatch` calls
//! made by a task of their own, which also extends the visibility of messages still in the
//! pipeline near the end of their visibility timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry};
use ferroway::connector::leases::Leases;
use ferroway::pipeline::{Acknowledger, Acks, BoxFuture, OnFailure};
use ferroway::resilience::Backoff;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::client::{Fault, fault};
use crate::options::OnFailed;

pub(crate) enum Job {
    Delete(Vec<String>),
    /// Receipt handles and the visibility timeout, in seconds, to give them.
    Hide(Vec<String>, i32),
    /// Answered once every job before it is done.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct SqsAcker {
    pub(crate) leases: Arc<Leases>,
    pub(crate) tx: mpsc::UnboundedSender<Job>,
    pub(crate) on_failed: OnFailed,
    /// Failures left to reappear after their visibility timeout.
    pub(crate) left: metrics::Counter,
}

impl Acknowledger for SqsAcker {
    fn ack(&self, acks: Acks) {
        let mut delete = Vec::with_capacity(acks.successful.len());
        let mut retry = Vec::new();
        let mut left = 0u64;
        delete.extend(acks.successful.iter().filter_map(|t| self.leases.settle(*t)));
        for f in &acks.failed {
            if f.on_failure == OnFailure::Ack {
                delete.extend(self.leases.settle(f.token));
                continue;
            }
            let Some(receipt) = self.leases.release(f.token) else {
                continue;
            };
            match (f.on_failure, self.on_failed) {
                // SQS cannot reject: left, the queue's redrive policy moves it to its
                // dead-letter queue after `maxReceiveCount` receives.
                (OnFailure::Reject, _) => left += 1,
                (_, OnFailed::Retry { .. }) => retry.push(receipt),
                (_, OnFailed::Leave) => left += 1,
            }
        }
        if left > 0 {
            self.left.increment(left);
            debug!(
                count = left,
                "failed messages left to reappear after their visibility timeout"
            );
        }
        let send = |job| {
            if self.tx.send(job).is_err() {
                warn!("SQS acknowledger stopped; the messages reappear after their visibility timeout");
            }
        };
        if !delete.is_empty() {
            send(Job::Delete(delete));
        }
        if let OnFailed::Retry { delay } = self.on_failed
            && !retry.is_empty()
        {
            send(Job::Hide(retry, delay.as_secs() as i32));
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

/// Calls in flight at once for acknowledgements.
const CALLS: usize = 16;
/// Attempts per acknowledgement call (throttling, server errors, outages).
const ATTEMPTS: usize = 10;

/// What the acknowledgement task needs to know.
pub(crate) struct Settings {
    pub(crate) queue_url: Arc<str>,
    pub(crate) queue: String,
    /// The visibility timeout messages get when received.
    pub(crate) visibility: Arc<AtomicU64>,
    pub(crate) extend_before: Duration,
    pub(crate) max_extension: Duration,
}

/// Makes the calls until every sender is gone. Started with its source; until the source has
/// a client (`client` arrives) no message exists, so a flush is answered at once.
pub(crate) async fn run(
    client: oneshot::Receiver<Client>,
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
    // Deletes wait up to LINGER for others to fill a call of ten: SQS charges, and a server
    // spends, per call.
    let mut deletes: Vec<String> = Vec::new();
    let mut linger: Option<Instant> = None;
    loop {
        tokio::select! {
            job = rx.recv() => match job {
                Some(Job::Delete(receipts)) => {
                    deletes.extend(receipts);
                    let full = deletes.len() / 10 * 10;
                    if full > 0 {
                        calls.delete(deletes.drain(..full).collect(), &mut running);
                    }
                    linger = match (deletes.is_empty(), linger) {
                        (true, _) => None,
                        (false, None) => Some(Instant::now() + LINGER),
                        (false, at) => at,
                    };
                }
                Some(Job::Hide(receipts, seconds)) => calls.hide(receipts, seconds, "retry", &mut running),
                Some(Job::Flush(reply)) => {
                    calls.delete(std::mem::take(&mut deletes), &mut running);
                    linger = None;
                    while running.join_next().await.is_some() {}
                    let _ = reply.send(());
                }
                None => {
                    calls.delete(std::mem::take(&mut deletes), &mut running);
                    while running.join_next().await.is_some() {}
                    return;
                }
            },
            _ = tokio::time::sleep_until(linger.unwrap_or_else(Instant::now)), if linger.is_some() => {
                calls.delete(std::mem::take(&mut deletes), &mut running);
                linger = None;
            }
            _ = tick.tick() => calls.extend(&leases, &mut running),
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

/// How long a delete waits for others to fill a call.
const LINGER: Duration = Duration::from_millis(10);

#[derive(Clone)]
struct Calls {
    client: Client,
    settings: Arc<Settings>,
    permits: Arc<Semaphore>,
}

impl Calls {
    fn count(&self, name: &'static str, kind: &'static str, n: usize) {
        metrics::counter!(name, "queue" => self.settings.queue.clone(), "kind" => kind).increment(n as u64);
    }

    fn delete(&self, receipts: Vec<String>, running: &mut JoinSet<()>) {
        for chunk in receipts.chunks(10) {
            let (this, chunk) = (self.clone(), chunk.to_vec());
            running.spawn(async move {
                let _permit = this.permits.acquire().await;
                this.delete_chunk(chunk).await;
            });
        }
    }

    fn hide(&self, receipts: Vec<String>, seconds: i32, kind: &'static str, running: &mut JoinSet<()>) {
        for chunk in receipts.chunks(10) {
            let (this, chunk) = (self.clone(), chunk.to_vec());
            running.spawn(async move {
                let _permit = this.permits.acquire().await;
                this.hide_chunk(chunk, seconds, kind).await;
            });
        }
    }

    /// Extends the visibility of messages near the end of theirs, unless they have been in
    /// the pipeline for `max_extension` already.
    fn extend(&self, leases: &Leases, running: &mut JoinSet<()>) {
        let s = &self.settings;
        if s.extend_before.is_zero() {
            return;
        }
        let visibility = Duration::from_secs(s.visibility.load(Ordering::Relaxed));
        let due = leases.due(s.extend_before, visibility, s.max_extension);
        if !due.is_empty() {
            debug!(queue = %s.queue, count = due.len(), "visibility extended for messages still in the pipeline");
            self.hide(due, visibility.as_secs() as i32, "extend", running);
        }
    }

    async fn delete_chunk(&self, mut receipts: Vec<String>) {
        let s = &self.settings;
        let mut delays = pause();
        for attempt in 1..=ATTEMPTS {
            let entries = receipts
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let call = self
                .client
                .delete_message_batch()
                .queue_url(&*s.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match call {
                Ok(out) => {
                    self.count(crate::metrics::ACKS, "delete", out.successful.len());
                    let (again, refused) = split_failures(out.failed, &receipts);
                    if !refused.is_empty() {
                        self.count(crate::metrics::ACK_FAILURES, "delete", refused.len());
                        warn!(queue = %s.queue, failures = ?refused, "SQS refused deletes: those messages come back");
                    }
                    if again.is_empty() {
                        return;
                    }
                    receipts = again;
                }
                Err(e) => match fault(&e) {
                    Fault::Refused(why) => {
                        self.count(crate::metrics::ACK_FAILURES, "delete", receipts.len());
                        warn!(queue = %s.queue, error = %why, count = receipts.len(), "SQS refused a delete: those messages come back");
                        return;
                    }
                    Fault::Transient(why) => {
                        debug!(queue = %s.queue, error = %why, attempt, "delete failed; trying again");
                    }
                },
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
        }
        self.count(crate::metrics::ACK_FAILURES, "delete", receipts.len());
        warn!(queue = %s.queue, count = receipts.len(), "deletes failed {ATTEMPTS} times: those messages come back after their visibility timeout");
    }

    async fn hide_chunk(&self, mut receipts: Vec<String>, seconds: i32, kind: &'static str) {
        let s = &self.settings;
        let mut delays = pause();
        for attempt in 1..=ATTEMPTS {
            let entries = receipts
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(seconds)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let call = self
                .client
                .change_message_visibility_batch()
                .queue_url(&*s.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match call {
                Ok(out) => {
                    self.count(crate::metrics::ACKS, kind, out.successful.len());
                    let (again, refused) = split_failures(out.failed, &receipts);
                    if !refused.is_empty() {
                        // A message deleted meanwhile has no visibility to change.
                        self.count(crate::metrics::ACK_FAILURES, kind, refused.len());
                        debug!(queue = %s.queue, failures = ?refused, kind, "SQS refused visibility changes");
                    }
                    if again.is_empty() {
                        return;
                    }
                    receipts = again;
                }
                Err(e) => match fault(&e) {
                    Fault::Refused(why) => {
                        self.count(crate::metrics::ACK_FAILURES, kind, receipts.len());
                        warn!(queue = %s.queue, error = %why, kind, "SQS refused a visibility change");
                        return;
                    }
                    Fault::Transient(why) => {
                        debug!(queue = %s.queue, error = %why, attempt, kind, "visibility change failed; trying again");
                    }
                },
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
        }
        self.count(crate::metrics::ACK_FAILURES, kind, receipts.len());
        warn!(queue = %s.queue, count = receipts.len(), kind, "visibility changes failed {ATTEMPTS} times");
    }
}

fn pause() -> ferroway::resilience::Delays {
    Backoff::exponential(Duration::from_millis(100))
        .cap(Duration::from_secs(5))
        .delays()
}

/// Of a batch's failed entries (ids are indexes into `receipts`): those SQS says to try
/// again (its own fault), and the refused ones as `code: message`.
fn split_failures(
    failed: Vec<aws_sdk_sqs::types::BatchResultErrorEntry>,
    receipts: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut again = Vec::new();
    let mut refused = Vec::new();
    for f in failed {
        let Some(receipt) = f.id.parse::<usize>().ok().and_then(|i| receipts.get(i)) else {
            continue;
        };
        if !crate::client::entry_retryable(&f.code, f.sender_fault) {
            refused.push(format!("{}: {}", f.code, f.message.unwrap_or_default()));
        } else {
            again.push(receipt.clone());
        }
    }
    (again, refused)
}

#[cfg(test)]
mod tests {
    use ferroway::connector::leases::Arrival;
    use ferroway::pipeline::AckToken;

    use super::*;

    fn acker(leases: &Arc<Leases>) -> (SqsAcker, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let acker = SqsAcker {
            leases: leases.clone(),
            tx,
            on_failed: OnFailed::Leave,
            left: metrics::Counter::noop(),
        };
        (acker, rx)
    }

    fn deleted(rx: &mut mpsc::UnboundedReceiver<Job>) -> Vec<String> {
        match rx.try_recv() {
            Ok(Job::Delete(r)) => r,
            _ => panic!("expected a delete"),
        }
    }

    const V: Duration = Duration::from_secs(30);
    const STALE: Duration = Duration::from_secs(3600);

    fn new(leases: &Leases, id: &str, receipt: &str) -> AckToken {
        match leases.add(id, receipt.into(), 0, V, STALE) {
            Arrival::New(t) => t,
            _ => panic!("{id} is new"),
        }
    }

    #[tokio::test]
    async fn a_copy_in_the_pipeline_gives_its_receipt_to_the_delete() {
        let leases = Arc::new(Leases::default());
        let (acker, mut rx) = acker(&leases);
        let token = new(&leases, "m1", "h1");
        assert!(matches!(
            leases.add("m1", "h2".into(), 0, V, STALE),
            Arrival::InPipeline
        ));
        acker.ack(Acks {
            successful: vec![token],
            failed: vec![],
        });
        assert_eq!(deleted(&mut rx), vec!["h2".to_owned()]);
    }

    #[tokio::test]
    async fn a_copy_of_a_handled_message_is_deleted_but_a_failed_one_comes_back() {
        let leases = Arc::new(Leases::default());
        let (acker, mut rx) = acker(&leases);
        let ok = new(&leases, "ok", "h1");
        let bad = new(&leases, "bad", "h2");
        acker.ack(Acks {
            successful: vec![ok],
            failed: vec![ferroway::pipeline::FailedAck {
                token: bad,
                reason: "boom".into(),
                on_failure: OnFailure::Requeue,
            }],
        });
        assert_eq!(deleted(&mut rx), vec!["h1".to_owned()]);
        assert!(matches!(leases.add("ok", "h3".into(), 0, V, STALE), Arrival::Handled(r) if r == "h3"));
        assert!(matches!(leases.add("bad", "h4".into(), 0, V, STALE), Arrival::New(_)));
    }
}
