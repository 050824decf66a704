//! Subscription options and the messages stages exchange.
//!
//! Demand flows upstream as [`ProducerMsg::Ask`]; events flow downstream in batches as
//! [`ConsumerMsg::Events`] — one channel operation per batch, never per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::error::{StageError, SubscribeError};

/// Identifies one subscription of a consumer to a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl SubscriptionId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriptionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What a consumer does when one of its subscriptions ends (GenStage's `:cancel` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CancelMode {
    /// The consumer stops whenever the subscription ends, for any reason. The default.
    #[default]
    Permanent,
    /// The consumer stops only if the subscription ends abnormally (the producer failed).
    Transient,
    /// The consumer never stops because the subscription ended.
    Temporary,
}

/// Options of one subscription: demand window, cancel mode, partition or selector.
///
/// ```
/// use ferroway::stage::{CancelMode, SubscribeOptions};
/// let opts = SubscribeOptions::<u64>::new().max_demand(500).min_demand(250).cancel(CancelMode::Transient);
/// assert_eq!(opts.demand(), (500, 250));
/// ```
pub struct SubscribeOptions<T> {
    pub(crate) max_demand: usize,
    pub(crate) min_demand: Option<usize>,
    pub(crate) cancel: CancelMode,
    pub(crate) partition: Option<usize>,
    pub(crate) selector: Option<Selector<T>>,
}

/// Decides, per event, whether a broadcast subscription receives it.
pub(crate) type Selector<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

impl<T> Default for SubscribeOptions<T> {
    fn default() -> Self {
        SubscribeOptions {
            max_demand: 1000,
            min_demand: None,
            cancel: CancelMode::Permanent,
            partition: None,
            selector: None,
        }
    }
}

impl<T> Clone for SubscribeOptions<T> {
    fn clone(&self) -> Self {
        SubscribeOptions {
            max_demand: self.max_demand,
            min_demand: self.min_demand,
            cancel: self.cancel,
            partition: self.partition,
            selector: self.selector.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SubscribeOptions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscribeOptions")
            .field("max_demand", &self.max_demand)
            .field("min_demand", &self.demand().1)
            .field("cancel", &self.cancel)
            .field("partition", &self.partition)
            .field("selector", &self.selector.is_some())
            .finish()
    }
}

impl<T> SubscribeOptions<T> {
    /// Defaults: `max_demand` 1000, `min_demand` 750 (three quarters of max), cancel permanent.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most events in flight to this consumer at once (asked and not yet handled).
    pub fn max_demand(mut self, n: usize) -> Self {
        self.max_demand = n;
        self
    }

    /// The consumer asks again once it has handled `max_demand - min_demand` events.
    /// Defaults to three quarters of `max_demand`.
    pub fn min_demand(mut self, n: usize) -> Self {
        self.min_demand = Some(n);
        self
    }

    /// What the consumer does when this subscription ends.
    pub fn cancel(mut self, mode: CancelMode) -> Self {
        self.cancel = mode;
        self
    }

    /// The partition to receive from, for producers with a partition dispatcher.
    pub fn partition(mut self, p: usize) -> Self {
        self.partition = Some(p);
        self
    }

    /// Only events for which `f` returns true are sent, for producers with a broadcast
    /// dispatcher. Events filtered out do not use up this subscription's demand.
    pub fn selector(mut self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.selector = Some(Arc::new(f));
        self
    }

    /// `(max_demand, min_demand)` with the default applied.
    pub fn demand(&self) -> (usize, usize) {
        (
            self.max_demand,
            self.min_demand.unwrap_or_else(|| default_min_demand(self.max_demand)),
        )
    }

    pub(crate) fn validate(&self, producer: &Arc<str>) -> Result<(), SubscribeError> {
        let (max, min) = self.demand();
        if max == 0 {
            return Err(SubscribeError::ZeroMaxDemand {
                producer: producer.clone(),
            });
        }
        if min >= max {
            return Err(SubscribeError::MinDemandTooHigh {
                producer: producer.clone(),
                min_demand: min,
                max_demand: max,
            });
        }
        Ok(())
    }
}

/// GenStage's default: ask again once a quarter of the window is handled.
pub(crate) fn default_min_demand(max_demand: usize) -> usize {
    max_demand * 3 / 4
}

/// Why a subscription ended, as told to the consumer.
#[derive(Debug, Clone)]
pub(crate) enum EndReason {
    /// The producer finished normally, or the subscription was cancelled normally.
    Normal,
    /// The producer failed, or the subscription was cancelled with an error.
    Failed(StageError),
    /// The producer refused the subscription (the subscriber was told why).
    Rejected,
}

/// Messages a producer's mailbox receives.
pub(crate) enum ProducerMsg<T> {
    Subscribe {
        link: Link<T>,
        opts: SubscribeOptions<T>,
        ask: usize,
        reply: oneshot::Sender<Result<(), SubscribeError>>,
    },
    Ask {
        id: SubscriptionId,
        n: usize,
    },
    Cancel {
        id: SubscriptionId,
    },
    Emit(Vec<T>),
    Drain,
}

/// Messages a consumer's mailbox receives.
pub(crate) enum ConsumerMsg<T> {
    Events {
        id: SubscriptionId,
        events: Vec<T>,
    },
    Done {
        id: SubscriptionId,
        reason: EndReason,
    },
    Subscribe {
        to: crate::stage::ProducerRef<T>,
        opts: SubscribeOptions<T>,
        reply: oneshot::Sender<Result<SubscriptionId, SubscribeError>>,
    },
    Cancel {
        id: SubscriptionId,
        reply: oneshot::Sender<bool>,
    },
}

pub(crate) type ConsumerTx<T> = mpsc::UnboundedSender<ConsumerMsg<T>>;

/// The producer's end of a subscription: where to send events.
///
/// Dropping a link that was never closed tells the consumer the producer is gone, so a
/// producer that dies in any way (including a panic) never leaves a consumer waiting.
pub(crate) struct Link<T> {
    pub(crate) id: SubscriptionId,
    producer: Arc<str>,
    tx: ConsumerTx<T>,
    closed: bool,
}

impl<T> Link<T> {
    pub(crate) fn new(id: SubscriptionId, producer: Arc<str>, tx: ConsumerTx<T>) -> Self {
        Link {
            id,
            producer,
            tx,
            closed: false,
        }
    }

    /// Sends a batch; gives it back when the consumer is gone.
    pub(crate) fn send(&self, events: Vec<T>) -> Result<(), Vec<T>> {
        debug_assert!(!events.is_empty());
        self.tx
            .send(ConsumerMsg::Events { id: self.id, events })
            .map_err(|e| match e.0 {
                ConsumerMsg::Events { events, .. } => events,
                _ => Vec::new(),
            })
    }

    /// Drops the link without telling the consumer (it knows already, or is gone).
    pub(crate) fn forget(mut self) {
        self.closed = true;
    }

    pub(crate) fn close(mut self, reason: EndReason) {
        self.closed = true;
        let _ = self.tx.send(ConsumerMsg::Done { id: self.id, reason });
    }
}

impl<T> Drop for Link<T> {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.tx.send(ConsumerMsg::Done {
                id: self.id,
                reason: EndReason::Failed(StageError::Aborted {
                    stage: self.producer.clone(),
                    reason: "the producer stopped without closing the subscription".into(),
                }),
            });
        }
    }
}
