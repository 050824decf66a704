//! The partition dispatcher: a user function picks each event's partition.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Dispatch, PartitionFn, take_front};
use crate::error::{StageError, SubscribeError};
use crate::stage::subscription::{Link, SubscribeOptions, SubscriptionId};

struct Part<T> {
    sub: Option<Link<T>>,
    // Invariant: demand > 0 only while the queue is empty.
    demand: usize,
    /// The subscriber's `max_demand`: what its queue may hold ahead of demand.
    max_demand: usize,
    queue: VecDeque<T>,
}

pub(crate) struct PartitionDispatcher<T> {
    stage: Arc<str>,
    parts: Vec<Part<T>>,
    f: PartitionFn<T>,
    total: usize,
    queued: usize,
    /// Events the queues may hold before they hold back the producer: the subscribers'
    /// `max_demand`s together, so a lane that asks again finds events waiting.
    slack: usize,
    discarded: metrics::Counter,
}

impl<T> PartitionDispatcher<T> {
    pub(crate) fn new(stage: Arc<str>, n: usize, f: PartitionFn<T>) -> Self {
        let parts = (0..n)
            .map(|_| Part {
                sub: None,
                demand: 0,
                max_demand: 0,
                queue: VecDeque::new(),
            })
            .collect();
        let discarded = metrics::counter!(crate::telemetry::STAGE_DISCARDED, "stage" => stage.to_string());
        PartitionDispatcher {
            stage,
            parts,
            f,
            total: 0,
            queued: 0,
            slack: 0,
            discarded,
        }
    }

    /// Sends up to the partition's demand from `events`; queues the rest.
    fn deliver(&mut self, p: usize, mut events: Vec<T>) {
        let part = &mut self.parts[p];
        if part.demand > 0
            && let Some(link) = &part.sub
        {
            let k = part.demand.min(events.len());
            let chunk = take_front(&mut events, k);
            match link.send(chunk) {
                Ok(()) => {
                    part.demand -= k;
                    self.total -= k;
                }
                Err(chunk) => {
                    // Consumer gone: keep its events for the next subscriber of the partition.
                    self.queued += chunk.len();
                    for e in chunk.into_iter().rev() {
                        part.queue.push_front(e);
                    }
                    self.total -= part.demand;
                    part.demand = 0;
                    self.slack -= std::mem::take(&mut part.max_demand);
                    if let Some(l) = part.sub.take() {
                        l.forget()
                    }
                }
            }
        }
        self.queued += events.len();
        part.queue.extend(events);
    }
}

impl<T: Send> Dispatch<T> for PartitionDispatcher<T> {
    fn subscribe(&mut self, link: Link<T>, opts: &SubscribeOptions<T>) -> Result<(), (Link<T>, SubscribeError)> {
        let n = self.parts.len();
        let reason = match opts.partition {
            None => {
                format!("the producer has a partition dispatcher with {n} partitions; set SubscribeOptions::partition")
            }
            Some(p) if p >= n => format!("partition {p} is out of range (0..{n})"),
            Some(p) if self.parts[p].sub.is_some() => format!("partition {p} already has a subscriber"),
            Some(p) => {
                let part = &mut self.parts[p];
                part.sub = Some(link);
                part.max_demand = opts.demand().0;
                self.slack += part.max_demand;
                return Ok(());
            }
        };
        Err((
            link,
            SubscribeError::InvalidPartition {
                producer: self.stage.clone(),
                reason,
            },
        ))
    }

    fn cancel(&mut self, id: SubscriptionId) -> Option<Link<T>> {
        let part = self
            .parts
            .iter_mut()
            .find(|p| p.sub.as_ref().is_some_and(|l| l.id == id))?;
        self.total -= part.demand;
        part.demand = 0;
        self.slack -= std::mem::take(&mut part.max_demand);
        part.sub.take()
    }

    fn ask(&mut self, id: SubscriptionId, n: usize) {
        let Some(p) = self
            .parts
            .iter()
            .position(|p| p.sub.as_ref().is_some_and(|l| l.id == id))
        else {
            return;
        };
        let part = &mut self.parts[p];
        let served = n.min(part.queue.len());
        part.demand += n;
        self.total += n;
        if served > 0 {
            self.queued -= served;
            let queued: Vec<T> = part.queue.drain(..served).collect();
            self.deliver(p, queued);
        }
    }

    /// Demand that events can still meet without piling up: total demand, less what waits in
    /// the queues beyond their slack (the subscribers' `max_demand`s together). A partition
    /// with a queue has no demand, so every queued event was emitted against another
    /// partition's demand; holding back there bounds the queues by the slack plus the demand
    /// of the partitions without one, whatever the key distribution (one hot key, skew, a
    /// single partition). The slack keeps an even flow from waiting on the producer.
    fn available(&self) -> usize {
        self.total.saturating_sub(self.queued.saturating_sub(self.slack))
    }

    fn dispatch(&mut self, events: Vec<T>) -> Result<Vec<T>, StageError> {
        let n = self.parts.len();
        // Room for an even share and a quarter more: no regrowth (and copying) for a
        // uniform key, one or two for a skewed one. Small batches allocate as they go.
        let share = match events.len() {
            len if len >= 4 * n => len / n + len / (4 * n),
            _ => 0,
        };
        let mut per: Vec<Vec<T>> = (0..n).map(|_| Vec::with_capacity(share)).collect();
        let mut dropped = 0u64;
        for e in events {
            match (self.f)(&e) {
                Some(p) if p < n => per[p].push(e),
                Some(p) => {
                    return Err(StageError::PartitionOutOfRange {
                        stage: self.stage.clone(),
                        partition: p,
                        partitions: n,
                    });
                }
                None => dropped += 1,
            }
        }
        if dropped > 0 {
            self.discarded.increment(dropped);
        }
        for (p, evs) in per.into_iter().enumerate() {
            if !evs.is_empty() {
                self.deliver(p, evs);
            }
        }
        Ok(Vec::new())
    }

    fn take_links(&mut self) -> Vec<Link<T>> {
        self.total = 0;
        self.slack = 0;
        self.parts
            .iter_mut()
            .filter_map(|p| {
                p.max_demand = 0;
                p.sub.take()
            })
            .collect()
    }

    fn queued(&self) -> usize {
        self.queued
    }
}
