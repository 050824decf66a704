//! Batchers: group messages by batch key into batches, emitted at `batch_size` or at
//! `batch_timeout` after a batch's first message, whichever comes first.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::handler::{BatchInfo, BatchTrigger};
use super::message::{BatchKey, Message};
use crate::error::StageError;
use crate::stage::outbox::Outbox;
use crate::stage::transform::Transform;

/// Measures a message (e.g. in bytes) or picks its partition.
pub(crate) type MessageFn<T, R> = Arc<dyn Fn(&Message<T>) -> R + Send + Sync>;

/// How big a batch may grow.
pub(crate) enum BatchSize<T> {
    Count(usize),
    /// Up to `max` units as measured by the function (e.g. bytes).
    Weighted(usize, MessageFn<T, usize>),
}

impl<T> Clone for BatchSize<T> {
    fn clone(&self) -> Self {
        match self {
            BatchSize::Count(n) => BatchSize::Count(*n),
            BatchSize::Weighted(n, f) => BatchSize::Weighted(*n, f.clone()),
        }
    }
}

/// A batch on its way to a batch processor.
pub(crate) struct Batch<T> {
    pub(crate) messages: Vec<Message<T>>,
    pub(crate) info: BatchInfo,
    pub(crate) partition: usize,
}

pub(crate) struct Config<T> {
    pub(crate) batcher: &'static str,
    pub(crate) size: BatchSize<T>,
    pub(crate) timeout: Duration,
    /// With `partition_by`: the batch processor each message's key belongs to.
    pub(crate) partition: Option<(usize, MessageFn<T, u64>)>,
}

struct Open<T> {
    messages: Vec<Message<T>>,
    weight: usize,
    started: Instant,
    generation: u64,
}

/// Open batches, by (batch key, partition).
pub(crate) struct Batches<T> {
    cfg: Config<T>,
    // Open batches per partition: for messages without a batch key (most) in a vector, so the
    // hot path hashes nothing; for keyed ones by key.
    unkeyed: Vec<Option<Open<T>>>,
    keyed: HashMap<BatchKey, Vec<Option<Open<T>>>>,
    // Every batch has the same timeout, so creation order is deadline order.
    deadlines: VecDeque<(Instant, (BatchKey, usize), u64)>,
    generation: u64,
}

impl<T> Batches<T> {
    pub(crate) fn new(cfg: Config<T>) -> Self {
        let partitions = cfg.partition.as_ref().map_or(1, |p| p.0);
        Batches {
            cfg,
            unkeyed: (0..partitions).map(|_| None).collect(),
            keyed: HashMap::new(),
            deadlines: VecDeque::new(),
            generation: 0,
        }
    }

    /// The open-batch slots (one per partition) of `key`, created on first use.
    fn slots(&mut self, key: &BatchKey) -> &mut Vec<Option<Open<T>>> {
        match key {
            BatchKey::Default => &mut self.unkeyed,
            k => {
                let n = self.unkeyed.len();
                self.keyed
                    .entry(k.clone())
                    .or_insert_with(|| (0..n).map(|_| None).collect())
            }
        }
    }

    fn add(&mut self, m: Message<T>, out: &mut Vec<Batch<T>>) {
        let partition = match &self.cfg.partition {
            Some((n, f)) => (f(&m) % *n as u64) as usize,
            None => 0,
        };
        let (weight, max) = match &self.cfg.size {
            BatchSize::Count(n) => (1, *n),
            BatchSize::Weighted(n, f) => (f(&m), *n),
        };
        let key = m.batch_key().clone();
        let cap = if let BatchSize::Count(n) = self.cfg.size {
            n.min(4096)
        } else {
            0
        };
        let (timeout, generation) = (self.cfg.timeout, self.generation + 1);
        let slot = &mut self.slots(&key)[partition];
        // A message that would overflow the open batch closes it first.
        let overflowed = slot.take_if(|o| o.weight + weight > max && !o.messages.is_empty());
        let mut created = false;
        let open = slot.get_or_insert_with(|| {
            created = true;
            Open {
                messages: Vec::with_capacity(cap),
                weight: 0,
                started: Instant::now(),
                generation,
            }
        });
        open.messages.push(m);
        open.weight += weight;
        let started = open.started;
        let full = if open.weight >= max { slot.take() } else { None };
        if created {
            self.generation = generation;
            self.deadlines
                .push_back((started + timeout, (key.clone(), partition), generation));
        }
        if let Some(o) = overflowed {
            out.push(self.close((key.clone(), partition), o, BatchTrigger::Size));
        }
        if let Some(o) = full {
            self.prune(&key);
            out.push(self.close((key, partition), o, BatchTrigger::Size));
        }
    }

    /// Takes the open batch of `key` in `partition` if it is still the one of `generation`.
    fn take_generation(&mut self, key: &BatchKey, partition: usize, generation: u64) -> Option<Open<T>> {
        match key {
            BatchKey::Default => self.unkeyed[partition].take_if(|o| o.generation == generation),
            k => self.keyed.get_mut(k)?[partition].take_if(|o| o.generation == generation),
        }
    }

    fn close(&self, key: (BatchKey, usize), open: Open<T>, trigger: BatchTrigger) -> Batch<T> {
        let info = BatchInfo {
            batcher: self.cfg.batcher,
            batch_key: key.0,
            size: open.messages.len(),
            trigger,
            age: open.started.elapsed(),
        };
        Batch {
            messages: open.messages,
            info,
            partition: key.1,
        }
    }

    /// Closes every batch whose deadline has passed.
    fn expire(&mut self, now: Instant, out: &mut Vec<Batch<T>>) {
        while self.deadlines.front().is_some_and(|d| d.0 <= now) {
            let Some((_, (key, partition), generation)) = self.deadlines.pop_front() else {
                break;
            };
            if let Some(open) = self.take_generation(&key, partition, generation) {
                self.prune(&key);
                out.push(self.close((key, partition), open, BatchTrigger::Timeout));
            }
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        // Skip deadlines of batches already closed by size.
        while let Some((_, (key, partition), generation)) = self.deadlines.front() {
            if self.is_open(key, *partition, *generation) {
                break;
            }
            self.deadlines.pop_front();
        }
        self.deadlines.front().map(|d| d.0)
    }

    fn is_open(&self, key: &BatchKey, partition: usize, generation: u64) -> bool {
        let slot = match key {
            BatchKey::Default => self.unkeyed.get(partition),
            k => self.keyed.get(k).and_then(|v| v.get(partition)),
        };
        slot.is_some_and(|o| o.as_ref().is_some_and(|o| o.generation == generation))
    }

    /// Forgets a key with no open batch left, so distinct keys do not accumulate.
    fn prune(&mut self, key: &BatchKey) {
        if !matches!(key, BatchKey::Default) && self.keyed.get(key).is_some_and(|v| v.iter().all(Option::is_none)) {
            self.keyed.remove(key);
        }
    }

    fn flush_all(&mut self, out: &mut Vec<Batch<T>>) {
        self.deadlines.clear();
        let mut closed = Vec::new();
        for (p, slot) in self.unkeyed.iter_mut().enumerate() {
            closed.extend(slot.take().map(|o| ((BatchKey::Default, p), o)));
        }
        for (key, slots) in self.keyed.drain() {
            for (p, slot) in slots.into_iter().enumerate() {
                closed.extend(slot.map(|o| ((key.clone(), p), o)));
            }
        }
        for (k, o) in closed {
            out.push(self.close(k, o, BatchTrigger::Flush));
        }
    }
}

impl<T: Send + 'static> Batches<T> {
    fn emit(out: Option<&mut Outbox<Batch<T>>>, closed: &mut Vec<Batch<T>>) -> Result<(), StageError> {
        if let Some(out) = out {
            for b in closed.drain(..) {
                out.emit(vec![b])?;
            }
        }
        Ok(())
    }
}

impl<T: Send + 'static> Transform<Message<T>, Batch<T>> for Batches<T> {
    async fn handle(
        &mut self,
        _from: crate::stage::SubscriptionId,
        messages: Vec<Message<T>>,
        out: Option<&mut Outbox<Batch<T>>>,
    ) -> Result<(), StageError> {
        let mut closed = Vec::new();
        for m in messages {
            self.add(m, &mut closed);
        }
        Self::emit(out, &mut closed)
    }

    /// Take input until a finished batch waits for a batch processor.
    fn ready(&self, out: Option<&Outbox<Batch<T>>>) -> bool {
        out.is_none_or(|o| o.is_empty())
    }

    fn deadline(&mut self) -> Option<Instant> {
        self.next_deadline()
    }

    fn tick(&mut self, out: Option<&mut Outbox<Batch<T>>>) -> Result<(), StageError> {
        let mut closed = Vec::new();
        self.expire(Instant::now(), &mut closed);
        Self::emit(out, &mut closed)
    }

    fn flush(&mut self, out: Option<&mut Outbox<Batch<T>>>) -> Result<(), StageError> {
        let mut closed = Vec::new();
        self.flush_all(&mut closed);
        Self::emit(out, &mut closed)
    }
}
