//! Dispatchers decide which subscriber gets which events, and how much a producer may emit.
//!
//! - [`Dispatcher::demand`]: each batch goes to the subscriber with the largest pending demand.
//! - [`Dispatcher::broadcast`]: every event to every subscriber, at the pace of the slowest.
//! - [`Dispatcher::partition`]: events split over N partitions by a user function; each partition
//!   has one subscriber.

mod broadcast;
mod demand;
mod partition;

use std::sync::Arc;

use crate::error::{StageError, SubscribeError};
use crate::stage::subscription::{Link, SubscribeOptions, SubscriptionId};

/// How a producer routes events to its subscribers. Chosen in
/// [`ProducerOptions::dispatcher`](crate::stage::ProducerOptions::dispatcher).
///
/// ```
/// use ferroway::stage::Dispatcher;
/// // Route each integer to one of 4 partitions; negative numbers are discarded.
/// let d: Dispatcher<i64> = Dispatcher::partition(4, |n: &i64| (*n >= 0).then(|| (*n % 4) as usize));
/// # let _ = d;
/// ```
pub struct Dispatcher<T> {
    kind: Kind<T>,
}

type PartitionFn<T> = Arc<dyn Fn(&T) -> Option<usize> + Send + Sync>;

enum Kind<T> {
    Demand,
    Broadcast(fn(&T) -> T),
    Partition(usize, PartitionFn<T>),
}

impl<T> Clone for Dispatcher<T> {
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            Kind::Demand => Kind::Demand,
            Kind::Broadcast(c) => Kind::Broadcast(*c),
            Kind::Partition(n, f) => Kind::Partition(*n, f.clone()),
        };
        Dispatcher { kind }
    }
}

impl<T> std::fmt::Debug for Dispatcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Demand => f.write_str("Dispatcher::Demand"),
            Kind::Broadcast(_) => f.write_str("Dispatcher::Broadcast"),
            Kind::Partition(n, _) => write!(f, "Dispatcher::Partition({n})"),
        }
    }
}

impl<T> Default for Dispatcher<T> {
    fn default() -> Self {
        Self::demand()
    }
}

impl<T> Dispatcher<T> {
    /// Each batch of events goes to the subscriber with the largest pending demand; ties go to
    /// the one served least recently. The default.
    pub fn demand() -> Self {
        Dispatcher { kind: Kind::Demand }
    }

    /// Splits events over `partitions` partitions by `f`; a `None` from `f` discards the event.
    /// Each subscriber names its partition with
    /// [`SubscribeOptions::partition`](crate::stage::SubscribeOptions::partition).
    /// Events for a partition without demand wait in that partition's queue. The queues may
    /// hold one `max_demand` per subscriber (so a lane that asks again finds events waiting);
    /// beyond that the producer is asked for more only while the total demand exceeds what
    /// waits. So the queues together never hold more than that slack plus the demand of the
    /// partitions with nothing queued — at most `(2 × partitions − 1) × max_demand` — with
    /// any key distribution.
    ///
    /// `partitions` must be at least 1; an index returned by `f` outside `0..partitions` stops
    /// the stage with [`StageError::PartitionOutOfRange`].
    pub fn partition(partitions: usize, f: impl Fn(&T) -> Option<usize> + Send + Sync + 'static) -> Self {
        Dispatcher {
            kind: Kind::Partition(partitions.max(1), Arc::new(f)),
        }
    }

    /// The number of partitions, for a partition dispatcher.
    pub fn partitions(&self) -> Option<usize> {
        match self.kind {
            Kind::Partition(n, _) => Some(n),
            _ => None,
        }
    }

    pub(crate) fn build(self, stage: Arc<str>) -> Box<dyn Dispatch<T>>
    where
        T: Send + 'static,
    {
        match self.kind {
            Kind::Demand => Box::new(demand::DemandDispatcher::new()),
            Kind::Broadcast(clone) => Box::new(broadcast::BroadcastDispatcher::new(clone)),
            Kind::Partition(n, f) => Box::new(partition::PartitionDispatcher::new(stage, n, f)),
        }
    }
}

impl<T: Clone> Dispatcher<T> {
    /// Every event goes to every subscriber (filtered by its
    /// [selector](crate::stage::SubscribeOptions::selector)), at the pace of the slowest one.
    pub fn broadcast() -> Self {
        Dispatcher {
            kind: Kind::Broadcast(T::clone),
        }
    }
}

/// The runtime side of a dispatcher, owned by the producer's task.
pub(crate) trait Dispatch<T>: Send {
    /// Adds a subscriber (with no demand yet); gives the link back on refusal.
    fn subscribe(&mut self, link: Link<T>, opts: &SubscribeOptions<T>) -> Result<(), (Link<T>, SubscribeError)>;
    /// Removes a subscriber, returning its link.
    fn cancel(&mut self, id: SubscriptionId) -> Option<Link<T>>;
    /// Adds demand from a subscriber; may send it events held back earlier.
    fn ask(&mut self, id: SubscriptionId, n: usize);
    /// How many more events the producer may emit now.
    fn available(&self) -> usize;
    /// Sends what demand allows and gives back, in order, what it could not place.
    fn dispatch(&mut self, events: Vec<T>) -> Result<Vec<T>, StageError>;
    /// Removes every subscriber, returning their links.
    fn take_links(&mut self) -> Vec<Link<T>>;
    /// Events held back inside the dispatcher (partition queues).
    fn queued(&self) -> usize {
        0
    }
}

/// Splits the first `k` events off `events`, moving the whole vector when `k` covers it.
pub(crate) fn take_front<T>(events: &mut Vec<T>, k: usize) -> Vec<T> {
    if k >= events.len() {
        std::mem::take(events)
    } else {
        let rest = events.split_off(k);
        std::mem::replace(events, rest)
    }
}

/// Puts `front` back ahead of `events`.
pub(crate) fn put_front<T>(events: &mut Vec<T>, mut front: Vec<T>) {
    if events.is_empty() {
        *events = front;
    } else {
        front.append(events);
        *events = front;
    }
}
