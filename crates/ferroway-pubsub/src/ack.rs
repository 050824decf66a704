//! Acknowledgements: the calls the source's settling task ([`ferroway::connector::settle`])
//! makes — `Acknowledge` and `ModifyAckDeadline`, batched, tried again on Pub/Sub's side
//! failures, and each ack confirmed or counted failed on its own.

use std::time::Duration;

use ferroway::connector::leases::Leases;
use ferroway::connector::settle;
use ferroway::resilience::Backoff;
use gcloud_gax::grpc::Code;
use gcloud_googleapis::pubsub::v1::{AcknowledgeRequest, ModifyAckDeadlineRequest};
use tracing::{debug, warn};

use crate::client::{Fault, Subscriber, describe, fault};

/// What the calls need to know.
pub(crate) struct Settings {
    pub(crate) subscription: String,
    pub(crate) ack_deadline: Duration,
    pub(crate) extend_before: Duration,
    pub(crate) max_extension: Duration,
}

/// Calls in flight at once for acknowledgements.
pub(crate) const CALLS: usize = 4;
/// Attempts for a call that failed on Pub/Sub's side.
const ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub(crate) struct PubSubCalls {
    pub(crate) client: Subscriber,
    pub(crate) settings: std::sync::Arc<Settings>,
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

impl settle::Calls for PubSubCalls {
    /// Pub/Sub takes requests of up to 512 KB.
    const BATCH: usize = 2500;

    async fn settle(&self, ack_ids: Vec<String>) {
        self.call(ack_ids, Call::Ack).await;
    }

    async fn change(&self, ack_ids: Vec<String>, seconds: i32, kind: &'static str) {
        self.call(ack_ids, Call::Modify(seconds, kind)).await;
    }

    fn due(&self, leases: &Leases) -> Option<(Vec<String>, i32)> {
        let s = &self.settings;
        if s.extend_before.is_zero() {
            return None;
        }
        let due = leases.due(s.extend_before, s.ack_deadline, s.max_extension);
        if due.is_empty() {
            return None;
        }
        debug!(subscription = %s.subscription, count = due.len(), "leases extended for messages still in the pipeline");
        Some((due, s.ack_deadline.as_secs() as i32))
    }
}

impl PubSubCalls {
    fn count(&self, name: &'static str, kind: &'static str, n: usize) {
        metrics::counter!(name, "subscription" => self.settings.subscription.clone(), "kind" => kind)
            .increment(n as u64);
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
                Call::Ack => {
                    self.client
                        .acknowledge(AcknowledgeRequest {
                            subscription: s.subscription.clone(),
                            ack_ids: ids.clone(),
                        })
                        .await
                }
                Call::Modify(seconds, _) => {
                    self.client
                        .modify_ack_deadline(ModifyAckDeadlineRequest {
                            subscription: s.subscription.clone(),
                            ack_ids: ids.clone(),
                            ack_deadline_seconds: seconds,
                        })
                        .await
                }
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
