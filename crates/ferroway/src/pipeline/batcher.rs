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
    // Most messages carry no batch key: their open batches sit in a vector by partition, so
    // the hot path hashes nothing.
    unkeyed: Vec<Option<Open<T>>>,
    keyed: HashMap<(BatchKey, usize), Open<T>>,
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

    fn slot(&mut self, key: &BatchKey, partition: usize) -> Option<&mut Open<T>> {
        match key {
            BatchKey::Default => self.unkeyed[partition].as_mut(),
            k => self.keyed.get_mut(&(k.clone(), partition)),
        }
    }

    fn take(&mut self, key: &BatchKey, partition: usize) -> Option<Open<T>> {
        match key {
            BatchKey::Default => self.unkeyed[partition].take(),
            k => self.keyed.remove(&(k.clone(), partition)),
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
        let key = m.batch_key();
        // A message that would overflow the open batch closes it first.
        if self
            .slot(key, partition)
            .is_some_and(|o| o.weight + weight > max && !o.messages.is_empty())
        {
            let key = key.clone();
            if let Some(open) = self.take(&key, partition) {
                out.push(self.close((key, partition), open, BatchTrigger::Size));
            }
        }
        let key = m.batch_key();
        if self.slot(key, partition).is_none() {
            let key = key.clone();
            self.generation += 1;
            let started = Instant::now();
            self.deadlines
                .push_back((started + self.cfg.timeout, (key.clone(), partition), self.generation));
            let cap = if let BatchSize::Count(n) = self.cfg.size {
                n.min(4096)
            } else {
                0
            };
            let open = Open {
                messages: Vec::with_capacity(cap),
                weight: 0,
                started,
                generation: self.generation,
            };
            match key {
                BatchKey::Default => self.unkeyed[partition] = Some(open),
                k => {
                    self.keyed.insert((k, partition), open);
                }
            }
        }
        let key = m.batch_key().clone();
        let Some(open) = self.slot(&key, partition) else { return };
        open.messages.push(m);
        open.weight += weight;
        if open.weight >= max
            && let Some(open) = self.take(&key, partition)
        {
            out.push(self.close((key, partition), open, BatchTrigger::Size));
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
        while let Some((deadline, _, _)) = self.deadlines.front() {
            if *deadline > now {
                break;
            }
            let Some((_, key, generation)) = self.deadlines.pop_front() else {
                break;
            };
            if self.slot(&key.0, key.1).is_some_and(|o| o.generation == generation)
                && let Some(open) = self.take(&key.0, key.1)
            {
                out.push(self.close(key, open, BatchTrigger::Timeout));
            }
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        // Skip deadlines of batches already closed by size.
        while let Some((_, (key, partition), generation)) = self.deadlines.front() {
            let (key, partition, generation) = (key.clone(), *partition, *generation);
            if self.slot(&key, partition).is_some_and(|o| o.generation == generation) {
                break;
            }
            self.deadlines.pop_front();
        }
        self.deadlines.front().map(|d| d.0)
    }

    fn flush_all(&mut self, out: &mut Vec<Batch<T>>) {
        self.deadlines.clear();
        for p in 0..self.unkeyed.len() {
            if let Some(o) = self.unkeyed[p].take() {
                out.push(self.close((BatchKey::Default, p), o, BatchTrigger::Flush));
            }
        }
        let keyed: Vec<_> = self.keyed.drain().collect();
        for (key, o) in keyed {
            out.push(self.close(key, o, BatchTrigger::Flush));
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
