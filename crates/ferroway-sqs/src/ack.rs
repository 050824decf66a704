//! Acknowledgements: the calls the source's settling task ([`ferroway::connector::settle`])
//! makes — `DeleteMessageBatch` and `ChangeMessageVisibilityBatch`, entries SQS failed on
//! its side tried again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry};
use ferroway::connector::leases::Leases;
use ferroway::connector::settle;
use ferroway::resilience::Backoff;
use tracing::{debug, warn};

use crate::client::{Fault, fault};

/// Calls in flight at once for acknowledgements.
pub(crate) const CALLS: usize = 16;
/// Attempts per acknowledgement call (throttling, server errors, outages).
const ATTEMPTS: usize = 10;

/// What the calls need to know.
pub(crate) struct Settings {
    pub(crate) queue_url: Arc<str>,
    pub(crate) queue: String,
    /// The visibility timeout messages get when received.
    pub(crate) visibility: Arc<AtomicU64>,
    pub(crate) extend_before: Duration,
    pub(crate) max_extension: Duration,
}

#[derive(Clone)]
pub(crate) struct SqsCalls {
    pub(crate) client: Client,
    pub(crate) settings: Arc<Settings>,
}

impl settle::Calls for SqsCalls {
    /// SQS' limit per batch call.
    const BATCH: usize = 10;

    async fn settle(&self, receipts: Vec<String>) {
        self.delete_chunk(receipts).await;
    }

    async fn change(&self, receipts: Vec<String>, seconds: i32, kind: &'static str) {
        self.hide_chunk(receipts, seconds, kind).await;
    }

    /// The visibility of messages near the end of theirs, unless they have been in the
    /// pipeline for `max_extension` already.
    fn due(&self, leases: &Leases) -> Option<(Vec<String>, i32)> {
        let s = &self.settings;
        if s.extend_before.is_zero() {
            return None;
        }
        let visibility = Duration::from_secs(s.visibility.load(Ordering::Relaxed));
        let due = leases.due(s.extend_before, visibility, s.max_extension);
        if due.is_empty() {
            return None;
        }
        debug!(queue = %s.queue, count = due.len(), "visibility extended for messages still in the pipeline");
        Some((due, visibility.as_secs() as i32))
    }
}

impl SqsCalls {
    fn count(&self, name: &'static str, kind: &'static str, n: usize) {
        metrics::counter!(name, "queue" => self.settings.queue.clone(), "kind" => kind).increment(n as u64);
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
