//! The consumer side of a stage: its subscriptions upstream and when to ask for more.
//!
//! Shared by consumers, producer-consumers, the consumer supervisor and the pipeline's stages.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::ProducerRef;
use super::subscription::{
    CancelMode, ConsumerMsg, ConsumerTx, EndReason, Link, ProducerMsg, SubscribeOptions, SubscriptionId,
};
use crate::error::{StageError, SubscribeError};

struct Upstream<T> {
    id: SubscriptionId,
    producer: ProducerRef<T>,
    threshold: usize,
    handled: usize,
    cancel: CancelMode,
}

impl<T> Drop for Upstream<T> {
    fn drop(&mut self) {
        let _ = self.producer.tx.send(ProducerMsg::Cancel { id: self.id });
    }
}

pub(crate) struct Inbox<T> {
    pub(crate) name: Arc<str>,
    tx: ConsumerTx<T>,
    subs: Vec<Upstream<T>>,
    /// Stop once the last subscription has ended normally (Broadway's rule for its stages).
    stop_when_unsubscribed: bool,
    ever_subscribed: bool,
}

/// What the stage should do after a subscription ended.
pub(crate) enum Verdict {
    Continue,
    Stop(Result<(), StageError>),
}

impl<T: Send + 'static> Inbox<T> {
    pub(crate) fn new(name: Arc<str>, tx: ConsumerTx<T>, stop_when_unsubscribed: bool) -> Self {
        Inbox {
            name,
            tx,
            subs: Vec::new(),
            stop_when_unsubscribed,
            ever_subscribed: false,
        }
    }

    /// Subscribes to `to`; the producer answers `reply` once it has registered us.
    pub(crate) fn subscribe(
        &mut self,
        to: ProducerRef<T>,
        opts: SubscribeOptions<T>,
        reply: oneshot::Sender<Result<SubscriptionId, SubscribeError>>,
    ) {
        if let Err(e) = opts.validate(&to.name) {
            let _ = reply.send(Err(e));
            return;
        }
        let id = SubscriptionId::next();
        let (max, min) = opts.demand();
        let cancel = opts.cancel;
        let (ptx, prx) = oneshot::channel();
        let msg = ProducerMsg::Subscribe {
            link: Link::new(id, to.name.clone(), self.tx.clone()),
            opts,
            ask: max,
            reply: ptx,
        };
        if let Err(e) = to.tx.send(msg) {
            if let ProducerMsg::Subscribe { link, .. } = e.0 {
                link.forget();
            }
            let _ = reply.send(Err(SubscribeError::ProducerStopped {
                producer: to.name.clone(),
            }));
            return;
        }
        let producer_name = to.name.clone();
        self.subs.push(Upstream {
            id,
            producer: to,
            threshold: max - min,
            handled: 0,
            cancel,
        });
        self.ever_subscribed = true;
        // The answer comes from the producer's task; relay it without blocking this stage.
        tokio::spawn(async move {
            let answer = match prx.await {
                Ok(Ok(())) => Ok(id),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(SubscribeError::ProducerStopped {
                    producer: producer_name,
                }),
            };
            let _ = reply.send(answer);
        });
    }

    /// Records that `n` events of subscription `id` are done with, asking for more when due.
    pub(crate) fn handled(&mut self, id: SubscriptionId, n: usize) {
        if let Some(u) = self.subs.iter_mut().find(|u| u.id == id) {
            u.handled += n;
            if u.handled >= u.threshold {
                let _ = u.producer.tx.send(ProducerMsg::Ask { id, n: u.handled });
                u.handled = 0;
            }
        }
    }

    /// Handles every message but events: subscription ends, subscribe and cancel requests.
    pub(crate) fn control(&mut self, msg: ConsumerMsg<T>) -> Verdict {
        match msg {
            ConsumerMsg::Events { .. } => Verdict::Continue,
            ConsumerMsg::Done { id, reason } => self.ended(id, reason),
            ConsumerMsg::Subscribe { to, opts, reply } => {
                self.subscribe(to, opts, reply);
                Verdict::Continue
            }
            ConsumerMsg::Cancel { id, reply } => {
                let known = self.subs.iter().any(|u| u.id == id);
                let _ = reply.send(known);
                if known {
                    self.ended(id, EndReason::Normal)
                } else {
                    Verdict::Continue
                }
            }
        }
    }

    /// Cancels every subscription (the stage is draining).
    pub(crate) fn cancel_all(&mut self) {
        self.subs.clear();
    }

    /// A subscription ended (from the producer's side, or cancelled by us).
    pub(crate) fn ended(&mut self, id: SubscriptionId, reason: EndReason) -> Verdict {
        let Some(i) = self.subs.iter().position(|u| u.id == id) else {
            return Verdict::Continue;
        };
        // Dropping it sends Cancel: needed when we cancel, a no-op when the producer ended it.
        let up = self.subs.remove(i);
        let verdict = match (&reason, up.cancel) {
            (EndReason::Rejected, _) => Verdict::Continue,
            (_, CancelMode::Temporary) => Verdict::Continue,
            (EndReason::Normal, CancelMode::Transient) => Verdict::Continue,
            (EndReason::Normal, CancelMode::Permanent) => Verdict::Stop(Ok(())),
            (EndReason::Failed(e), _) => Verdict::Stop(Err(StageError::Upstream {
                stage: self.name.clone(),
                source: Box::new(e.clone()),
            })),
        };
        // Only a normal end counts: after a failure, a restarted producer may subscribe again.
        let normal = matches!(reason, EndReason::Normal);
        match verdict {
            Verdict::Continue
                if normal && self.stop_when_unsubscribed && self.ever_subscribed && self.subs.is_empty() =>
            {
                Verdict::Stop(Ok(()))
            }
            v => v,
        }
    }
}
