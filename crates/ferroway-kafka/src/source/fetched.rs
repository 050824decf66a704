//! Messages as librdkafka delivered them, on their way from the poller thread to the
//! pipeline, and their conversion into pipeline messages.
//!
//! The poller thread does little per message beyond taking it: it notes the partition's slot
//! (the assignment the message belongs to) and keeps it. Copying the payload and key and
//! parsing headers happen on the pipeline's task. Both threads are busy at full speed, so
//! splitting the work is what lets the source keep up with a bare consumer loop.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ferroway::pipeline::{AckToken, Acknowledger, Message};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError as RdKafkaError;

use super::context::SourceContext;
use super::native::{Fields, MessageQueue, NativeMessage};
use super::shared::Shared;
use crate::metadata::KafkaMetadata;

pub(super) type Client = BaseConsumer<SourceContext>;

/// Messages taken from one client, in fetch order per partition.
///
/// librdkafka messages reference their client. These move to another thread, so each batch
/// holds a share of the client: it cannot be destroyed while a message of it lives.
pub(super) struct Fetched {
    // Declared before `client`: dropped first.
    msgs: Vec<Polled>,
    client: Arc<Client>,
}

/// A fetched message with the slot of the assignment it was fetched in.
struct Polled {
    msg: NativeMessage,
    slot: u64,
}

impl Fetched {
    pub(super) fn new(client: &Arc<Client>, capacity: usize) -> Self {
        Fetched {
            msgs: Vec::with_capacity(capacity),
            client: client.clone(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.msgs.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Drops the messages of `slots`.
    fn remove_slots(&mut self, slots: &[u64]) {
        self.msgs.retain(|m| !slots.contains(&m.slot));
    }

    /// The messages from `at` on, as a batch of their own.
    fn split_off(&mut self, at: usize) -> Fetched {
        Fetched {
            msgs: self.msgs.split_off(at),
            client: self.client.clone(),
        }
    }
}

/// The poller thread's side of taking messages from librdkafka into [`Fetched`] batches.
#[derive(Default)]
pub(super) struct Intake {
    cache: SlotCache,
    /// Reused by every batch read.
    scratch: Vec<NativeMessage>,
    /// Messages dropped unemitted (never tracked, so read again by whoever reads on): of
    /// partitions no longer owned, or fetched outside the source's queue.
    pub(super) stale: u64,
    /// Client-wide errors served with the events (the context has logged them).
    pub(super) errors: Vec<RdKafkaError>,
    /// Errors librdkafka delivered in place of messages (a partition's fetch failed).
    pub(super) fetch_errors: Vec<RdKafkaError>,
}

impl Intake {
    /// Serves the consumer's queue without waiting: rebalances and other events. Returns
    /// false once the queue is empty.
    pub(super) fn serve_events(&mut self, client: &Client) -> bool {
        match client.poll(std::time::Duration::ZERO) {
            None => false,
            Some(Err(e)) => {
                self.errors.push(e);
                true
            }
            // Only a partition whose first assignment was not captured sends its messages
            // here, and that fails the source: none of them is tracked, so none is committed.
            Some(Ok(_)) => {
                self.stale += 1;
                true
            }
        }
    }

    /// Takes messages from the source's queue until `batch` holds `budget` (or the queue is
    /// empty), waiting at most `wait_ms` for the first one.
    pub(super) fn take(&mut self, batch: &mut Fetched, queue: &MessageQueue, wait_ms: i32, budget: usize, sh: &Shared) {
        let max = budget.saturating_sub(batch.len());
        if max == 0 {
            return;
        }
        // A batch read waits until it is full: wait for one message, then take what is there.
        let mut scratch = std::mem::take(&mut self.scratch);
        if wait_ms > 0 && queue.len() == 0 {
            queue.consume(wait_ms, 1, &mut scratch);
        }
        if scratch.len() < max {
            queue.consume(0, max - scratch.len(), &mut scratch);
        }
        for m in scratch.drain(..) {
            self.keep(batch, m, sh);
        }
        self.scratch = scratch;
    }

    fn keep(&mut self, batch: &mut Fetched, msg: NativeMessage, sh: &Shared) {
        let f = msg.fields();
        if let Some(e) = f.error() {
            self.fetch_errors.push(e);
        } else if let Some(slot) = self.cache.lookup(sh, f) {
            batch.msgs.push(Polled { msg, slot });
        } else {
            self.stale += 1;
        }
    }
}

/// The fetched messages not yet taken by the pipeline, oldest first.
#[derive(Default)]
pub(super) struct FetchQueue {
    batches: VecDeque<Fetched>,
    len: usize,
}

impl FetchQueue {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn push(&mut self, batch: Fetched) {
        if !batch.is_empty() {
            self.len += batch.len();
            self.batches.push_back(batch);
        }
    }

    /// The oldest `n` messages (or all there are).
    pub(super) fn take(&mut self, n: usize) -> Vec<Fetched> {
        let mut out = Vec::new();
        let mut left = n;
        while left > 0 {
            let Some(mut b) = self.batches.pop_front() else { break };
            if b.len() > left {
                let rest = b.split_off(left);
                self.batches.push_front(rest);
            }
            left -= b.len();
            self.len -= b.len();
            out.push(b);
        }
        out
    }

    /// Drops the messages of `slots` (revoked partitions).
    pub(super) fn remove_slots(&mut self, slots: &[u64]) {
        for b in &mut self.batches {
            b.remove_slots(slots);
        }
        self.batches.retain(|b| !b.is_empty());
        self.len = self.batches.iter().map(Fetched::len).sum();
    }

    pub(super) fn clear(&mut self) {
        self.batches.clear();
        self.len = 0;
    }
}

/// The partition -> slot map of the current assignment, as the poller thread sees it.
#[derive(Default)]
struct SlotCache {
    generation: u64,
    /// (topic handle, partition) -> slot, filled as messages come; cleared by a rebalance.
    slots: HashMap<(usize, i32), u64>,
    /// The last hit: consecutive messages mostly come from the same partition, so most
    /// lookups hash nothing.
    last: Option<((usize, i32), u64)>,
}

impl SlotCache {
    fn lookup(&mut self, sh: &Shared, f: Fields<'_>) -> Option<u64> {
        let key = (f.topic_handle(), f.partition());
        let generation = sh.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            self.last = None;
            self.slots.clear();
        } else if let Some((k, slot)) = self.last
            && k == key
        {
            return Some(slot);
        }
        let slot = match self.slots.get(&key) {
            Some(slot) => *slot,
            None => {
                let slot = sh.lock().book.slot_of(f.topic()?, key.1)?;
                self.slots.insert(key, slot);
                slot
            }
        };
        self.last = Some((key, slot));
        Some(slot)
    }
}

/// Slot -> topic name, as the pipeline's task sees it (names are shared by every message of
/// a topic; looking them up here keeps the poller thread's work to a minimum).
#[derive(Default)]
pub(super) struct TopicNames {
    names: HashMap<u64, Arc<str>>,
    last: Option<(u64, Arc<str>)>,
}

impl TopicNames {
    /// The topic of `slot`, if the slot still exists.
    fn get(&mut self, sh: &Shared, slot: u64) -> Option<Arc<str>> {
        if let Some((s, name)) = &self.last
            && *s == slot
        {
            return Some(name.clone());
        }
        let name = match self.names.get(&slot) {
            Some(n) => n.clone(),
            None => {
                let s = sh.lock();
                self.names.retain(|slot, _| s.book.get(*slot).is_some());
                let name = s.book.get(slot)?.topic.clone();
                self.names.insert(slot, name.clone());
                name
            }
        };
        self.last = Some((slot, name.clone()));
        Some(name)
    }
}

/// Turns fetched messages into pipeline messages, appended to `out`. The librdkafka messages
/// stay in `batches`: give them back to the poller thread to destroy.
pub(super) fn convert(
    batches: &[Fetched],
    names: &mut TopicNames,
    sh: &Shared,
    acker: &Arc<dyn Acknowledger>,
    out: &mut Vec<Message<Vec<u8>>>,
) {
    let with_headers = sh.opts.with_headers;
    for p in batches.iter().flat_map(|b| &b.msgs) {
        // A slot gone is a partition revoked: the message would not be emitted anyway.
        let Some(topic) = names.get(sh, p.slot) else { continue };
        let m = p.msg.fields();
        let headers = if with_headers { m.headers() } else { Vec::new() };
        let payload = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
        let mut msg = Message::with_acker(payload, acker.clone(), AckToken(m.offset() as u64, p.slot));
        msg.put_origin(KafkaMetadata {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            headers,
            timestamp: m.timestamp(),
        });
        out.push(msg);
    }
}
