//! Messages as librdkafka delivered them, on their way from the poller thread to the
//! pipeline, and their conversion into pipeline messages.
//!
//! The poller thread does little per message beyond polling it: it notes the partition's slot
//! (the assignment the message belongs to) and keeps it. Copying the payload and key and
//! parsing headers happen on the pipeline's task. Both threads are busy at full speed, so
//! splitting the work is what lets the source keep up with a bare consumer loop.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferroway::pipeline::{AckToken, Acknowledger, Message};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};

use super::context::SourceContext;
use super::shared::Shared;
use crate::metadata::KafkaMetadata;

pub(super) type Client = BaseConsumer<SourceContext>;

/// Messages polled from one client, in poll order.
///
/// librdkafka messages borrow their client. These move to another thread, so the borrow is
/// replaced by a share of the client: it cannot be destroyed while a message of it lives.
pub(super) struct Fetched {
    // Declared before `client`: dropped first.
    msgs: Vec<Polled>,
    client: Arc<Client>,
}

/// A polled message with the slot of the assignment it was fetched in.
struct Polled {
    msg: BorrowedMessage<'static>,
    slot: u64,
}

/// What one [`Fetched::poll`] got.
pub(super) enum Poll {
    /// A message of an owned partition, kept.
    Kept,
    /// A message of a partition no longer owned, dropped.
    Stale,
    Nothing,
    Error(RdKafkaError),
}

impl Fetched {
    pub(super) fn new(client: &Arc<Client>, capacity: usize) -> Self {
        Fetched {
            msgs: Vec::with_capacity(capacity),
            client: client.clone(),
        }
    }

    /// Polls the client once (serving rebalances and other events) and keeps the message if
    /// its partition is owned.
    pub(super) fn poll(&mut self, timeout: Duration, cache: &mut SlotCache, sh: &Shared) -> Poll {
        match self.client.poll(timeout) {
            None => Poll::Nothing,
            Some(Err(e)) => Poll::Error(e),
            Some(Ok(m)) => {
                let Some(slot) = cache.lookup(sh, m.topic(), m.partition()) else {
                    return Poll::Stale;
                };
                // SAFETY: `m` borrows `*self.client`. `self` holds a share of that client and
                // drops its messages before it (field order), and no message leaves `self`
                // except into another `Fetched` holding the same client (`split_off`), so no
                // message outlives its client. Only the lifetime changes: same layout.
                let msg = unsafe { std::mem::transmute::<BorrowedMessage<'_>, BorrowedMessage<'static>>(m) };
                self.msgs.push(Polled { msg, slot });
                Poll::Kept
            }
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
pub(super) struct SlotCache {
    generation: u64,
    /// Topic name -> partition -> slot.
    topics: HashMap<Box<str>, HashMap<i32, u64>>,
    /// The last hit: consecutive messages mostly come from the same partition, so most
    /// lookups hash nothing.
    last: Option<(i32, Box<str>, u64)>,
}

impl SlotCache {
    pub(super) fn lookup(&mut self, sh: &Shared, topic: &str, partition: i32) -> Option<u64> {
        let generation = sh.generation.load(Ordering::Acquire);
        if generation == self.generation
            && let Some((p, name, slot)) = &self.last
            && *p == partition
            && **name == *topic
        {
            return Some(*slot);
        }
        if generation != self.generation || self.topics.is_empty() {
            self.generation = generation;
            self.last = None;
            self.topics.clear();
            let s = sh.lock();
            for slot in s.book.slots() {
                if let Some(p) = s.book.get(slot) {
                    self.topics
                        .entry(Box::from(&*p.topic))
                        .or_default()
                        .insert(p.partition, slot);
                }
            }
        }
        let slot = *self.topics.get(topic)?.get(&partition)?;
        self.last = Some((partition, topic.into(), slot));
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
        let m = &p.msg;
        let headers = match with_headers.then(|| m.headers()).flatten() {
            Some(h) => h
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            None => Vec::new(),
        };
        let payload = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
        let mut msg = Message::with_acker(payload, acker.clone(), AckToken(m.offset() as u64, p.slot));
        msg.put_metadata(KafkaMetadata {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            headers,
            timestamp: m.timestamp().to_millis(),
        });
        out.push(msg);
    }
}
