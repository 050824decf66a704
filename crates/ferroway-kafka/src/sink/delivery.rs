//! Delivery reports, matched to the sends that wait for them.
//!
//! A send of many records waits for all their reports at once. Each record carries, as its
//! librdkafka opaque, its round's number and its index in the round: no allocation, no
//! channel and no wake-up per record. The producer's polling thread counts reports down and
//! wakes the round once, when the last one is in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use tokio::sync::Notify;

use super::Delivered;
use crate::client_log::ClientLog;

/// How many records one round may hold: the index takes the opaque's low bits.
pub(super) const MAX_ROUND: usize = 1 << INDEX_BITS;
const INDEX_BITS: u32 = 24;
/// Round numbers take the opaque's other bits.
const ID_MASK: u32 = (usize::MAX >> INDEX_BITS) as u32;

/// The reports of one round of sends.
pub(super) struct Round {
    /// Records sent and not yet reported.
    pending: AtomicUsize,
    failures: Mutex<Vec<(usize, RDKafkaErrorCode)>>,
    /// Where the round's first record landed (what a single send returns).
    first: Mutex<Option<Delivered>>,
    done: Notify,
    /// Its send is gone (cancelled) while reports were still owed: the last one removes it.
    abandoned: AtomicBool,
}

impl Round {
    /// Counts `n` more records sent; call before handing them to librdkafka.
    pub(super) fn sending(&self, n: usize) {
        self.pending.fetch_add(n, Ordering::AcqRel);
    }

    /// A record could not even be queued: it will get no report.
    pub(super) fn not_sent(&self) {
        self.report();
    }

    /// Waits until every record sent has its report; returns the failures by index.
    pub(super) async fn reports(&self) -> Vec<(usize, RDKafkaErrorCode)> {
        while self.pending.load(Ordering::Acquire) > 0 {
            // `notify_one` keeps a permit if it comes first: no report is missed.
            self.done.notified().await;
        }
        std::mem::take(&mut *lock(&self.failures))
    }

    pub(super) fn first(&self) -> Option<Delivered> {
        *lock(&self.first)
    }

    fn report(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

/// The rounds in progress, by number. Reports for a round no longer registered (its send
/// was cancelled) are ignored.
#[derive(Default)]
pub(super) struct Rounds {
    next: AtomicU32,
    live: Mutex<HashMap<u32, Arc<Round>>>,
}

impl Rounds {
    /// Starts a round; it is forgotten when the returned guard drops.
    pub(super) fn start(&self) -> RoundGuard<'_> {
        let round = Arc::new(Round {
            pending: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            first: Mutex::new(None),
            done: Notify::new(),
            abandoned: AtomicBool::new(false),
        });
        let mut live = lock(&self.live);
        let id = loop {
            let id = self.next.fetch_add(1, Ordering::Relaxed) & ID_MASK;
            if !live.contains_key(&id) {
                break id;
            }
        };
        live.insert(id, round.clone());
        RoundGuard {
            rounds: self,
            id,
            round,
        }
    }
}

/// A registered round.
pub(super) struct RoundGuard<'a> {
    rounds: &'a Rounds,
    id: u32,
    pub(super) round: Arc<Round>,
}

impl RoundGuard<'_> {
    /// The opaque of the round's record number `index`.
    pub(super) fn opaque(&self, index: usize) -> usize {
        debug_assert!(index < MAX_ROUND);
        ((self.id as usize) << INDEX_BITS) | index
    }
}

impl Drop for RoundGuard<'_> {
    /// A round still owed reports (its send was cancelled) keeps its number until the last
    /// one arrives, so a new round never receives them.
    fn drop(&mut self) {
        let mut live = lock(&self.rounds.live);
        if self.round.pending.load(Ordering::Acquire) == 0 {
            live.remove(&self.id);
        } else {
            self.round.abandoned.store(true, Ordering::Release);
        }
    }
}

/// The producer's context: delivery reports and librdkafka's logs and errors.
pub(super) struct SinkContext {
    pub(super) rounds: Rounds,
    log: ClientLog,
}

impl SinkContext {
    /// The context of a producer for `topic` (its default topic, or `-`).
    pub(super) fn new(topic: &str) -> Self {
        SinkContext {
            rounds: Rounds::default(),
            log: ClientLog::new("producer", topic),
        }
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        self.log.librdkafka(level, fac, msg);
    }

    fn error(&self, e: RdKafkaError, reason: &str) {
        self.log.error(&e, reason);
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let id = (opaque >> INDEX_BITS) as u32;
        let index = opaque & (MAX_ROUND - 1);
        let mut live = lock(&self.rounds.live);
        let Some(round) = live.get(&id) else {
            return;
        };
        match result {
            Ok(m) => {
                if index == 0 {
                    *lock(&round.first) = Some(Delivered {
                        partition: m.partition(),
                        offset: m.offset(),
                    });
                }
            }
            Err((e, _)) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                lock(&round.failures).push((index, code));
            }
        }
        round.report();
        if round.pending.load(Ordering::Acquire) == 0 && round.abandoned.load(Ordering::Acquire) {
            live.remove(&id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is one step: a panic elsewhere leaves the data usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
