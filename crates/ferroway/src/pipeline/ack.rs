//! Acknowledgements: how a source learns which of its messages are done.

use std::sync::Arc;

use super::dead_letter::BoxFuture;
use super::message::{Message, OnFailure};

/// Connector-defined data identifying one message to its acknowledger: two words, e.g.
/// `(offset, 0)` for a Kafka partition's acknowledger, or `(ms, seq)` for a Redis stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct AckToken(pub u64, pub u64);

/// A message that failed, as its acknowledger sees it.
#[derive(Debug, Clone)]
pub struct FailedAck {
    /// The message's token.
    pub token: AckToken,
    /// Why it failed.
    pub reason: Arc<str>,
    /// What the message asked for ([`Message::configure_ack`]).
    pub on_failure: OnFailure,
}

/// One acknowledgement call: the messages of one acknowledger that finished together.
#[derive(Debug, Default)]
pub struct Acks {
    /// Messages that succeeded (including discarded and dead-lettered ones).
    pub successful: Vec<AckToken>,
    /// Messages that failed.
    pub failed: Vec<FailedAck>,
}

/// Receives acknowledgements (Broadway's `Acknowledger` behaviour).
///
/// Called once per group of messages that finish together — never once per message — from the
/// pipeline's tasks, so it must not block: hand the work to a task of your own if it is slow.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ferroway::pipeline::{AckToken, Acknowledger, Acks, Message};
///
/// #[derive(Default)]
/// struct Offsets(Mutex<Vec<u64>>);
/// impl Acknowledger for Offsets {
///     fn ack(&self, acks: Acks) {
///         self.0.lock().unwrap().extend(acks.successful.iter().map(|t| t.0));
///     }
/// }
///
/// let offsets = Arc::new(Offsets::default());
/// let m = Message::with_acker("payload", offsets.clone(), AckToken(7, 0));
/// assert_eq!(m.ack_token(), AckToken(7, 0));
/// ```
pub trait Acknowledger: Send + Sync + 'static {
    /// Acknowledges a group of messages.
    fn ack(&self, acks: Acks);

    /// Called once the pipeline has drained (after [`Pipeline::stop`](crate::pipeline::Pipeline::stop)
    /// or when it finished by itself), for every acknowledger that received acknowledgements:
    /// complete the work `ack` handed off (send the last acknowledgements, commit the last
    /// offsets) before the process exits.
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

struct Noop;

impl Acknowledger for Noop {
    fn ack(&self, _: Acks) {}
}

#[derive(Clone)]
pub(crate) struct AckRef {
    pub(crate) acker: Arc<dyn Acknowledger>,
    pub(crate) token: AckToken,
}

impl AckRef {
    pub(crate) fn noop() -> Self {
        static NOOP: std::sync::OnceLock<Arc<dyn Acknowledger>> = std::sync::OnceLock::new();
        AckRef {
            acker: NOOP.get_or_init(|| Arc::new(Noop)).clone(),
            token: AckToken::default(),
        }
    }
}

/// Groups acknowledgements by acknowledger so each gets one call.
#[derive(Default)]
pub(crate) struct AckGroups {
    groups: Vec<(Arc<dyn Acknowledger>, Acks)>,
}

impl AckGroups {
    /// Adds one message's acknowledgement; `failure` is `None` for success.
    pub(crate) fn add(&mut self, ack: AckRef, failure: Option<(Arc<str>, OnFailure)>) {
        let AckRef { acker, token } = ack;
        let i = match self.groups.iter().position(|(a, _)| same(a, &acker)) {
            Some(i) => i,
            None => {
                self.groups.push((acker, Acks::default()));
                self.groups.len() - 1
            }
        };
        let acks = &mut self.groups[i].1;
        match failure {
            None => acks.successful.push(token),
            Some((reason, on_failure)) => acks.failed.push(FailedAck {
                token,
                reason,
                on_failure,
            }),
        }
    }

    /// Makes one `ack` call per acknowledger, remembering each in `seen` (if given) so it can
    /// be flushed when the pipeline stops.
    pub(crate) fn send(self, seen: Option<&Ackers>) {
        for (acker, acks) in self.groups {
            acker.ack(acks);
            if let Some(seen) = seen {
                seen.remember(&acker);
            }
        }
    }
}

/// Every acknowledger a pipeline has acknowledged through, to flush when it stops.
#[derive(Default)]
pub(crate) struct Ackers(std::sync::Mutex<Vec<Arc<dyn Acknowledger>>>);

impl Ackers {
    fn remember(&self, acker: &Arc<dyn Acknowledger>) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !all.iter().any(|a| same(a, acker)) {
            all.push(acker.clone());
        }
    }

    /// Flushes every acknowledger seen so far.
    pub(crate) async fn flush(&self) {
        let all: Vec<_> = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for a in all {
            a.flush().await;
        }
    }
}

/// Acknowledges messages that could not enter the pipeline as failed.
pub(crate) fn ack_failed<T>(messages: impl IntoIterator<Item = Message<T>>, reason: &str) {
    let reason: Arc<str> = reason.into();
    let mut groups = AckGroups::default();
    for m in messages {
        let on_failure = m.on_failure();
        groups.add(m.ack, Some((reason.clone(), on_failure)));
    }
    groups.send(None);
}

/// Same acknowledger object (data pointers only: vtables may be duplicated across crates).
fn same(a: &Arc<dyn Acknowledger>, b: &Arc<dyn Acknowledger>) -> bool {
    std::ptr::eq(Arc::as_ptr(a) as *const (), Arc::as_ptr(b) as *const ())
}
