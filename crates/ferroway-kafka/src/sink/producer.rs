//! The sink's librdkafka producer, and replacing it when it cannot recover by itself.
//!
//! An idempotent producer is known to its brokers by a producer id. When they answer that
//! they no longer know it or that it was fenced — a broker that lost its state, e.g. restarted
//! without its log — librdkafka may fail the producer fatally, or bump its epoch and send
//! again for as long as the broker refuses, every record timing out. Either way the producer
//! delivers nothing any more, however long the pipeline waits: a new one (a new producer id)
//! does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{Producer as _, ThreadedProducer};
use tracing::{error, warn};

use super::delivery::SinkContext;
use crate::error::KafkaError;
use crate::options::KafkaSinkOptions;

pub(super) type Producer = ThreadedProducer<SinkContext>;

/// The current producer, replaced when stuck.
pub(super) struct Producers {
    opts: Arc<KafkaSinkOptions>,
    current: RwLock<Current>,
    /// When a record was last delivered, in ms since `epoch`.
    delivered_ms: AtomicU64,
    epoch: Instant,
}

struct Current {
    producer: Arc<Producer>,
    since: Instant,
}

impl Producers {
    pub(super) fn new(opts: Arc<KafkaSinkOptions>) -> Result<Self, KafkaError> {
        let producer = Arc::new(create(&opts)?);
        Ok(Producers {
            opts,
            current: RwLock::new(Current {
                producer,
                since: Instant::now(),
            }),
            delivered_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// A share of the current producer: give it back with [`release`].
    pub(super) fn get(&self) -> Arc<Producer> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).producer.clone()
    }

    /// Records were delivered just now.
    pub(super) fn delivered(&self) {
        self.delivered_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Records failed on `failed` with `code`: replaces it if it cannot recover by itself —
    /// librdkafka says it failed fatally, the broker refuses its identity, or it has delivered
    /// nothing for two delivery timeouts while records timed out. True when the records
    /// failed for that reason (it is replaced now, or was already).
    pub(super) fn recover(&self, failed: &Arc<Producer>, code: RDKafkaErrorCode) -> bool {
        use RDKafkaErrorCode as C;
        let fatal = failed.client().fatal_error();
        let refused_identity = matches!(
            code,
            C::ProducerFenced
                | C::InvalidProducerEpoch
                | C::InvalidProducerIdMapping
                | C::UnknownProducerId
                | C::OutOfOrderSequenceNumber
        );
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&current.producer, failed) {
            return fatal.is_some() || refused_identity;
        }
        let last = self.epoch + std::time::Duration::from_millis(self.delivered_ms.load(Ordering::Relaxed));
        let idle = last.max(current.since).elapsed();
        let stuck = code == C::MessageTimedOut && idle >= 2 * self.opts.delivery_timeout;
        if fatal.is_none() && !refused_identity && !stuck {
            return false;
        }
        match create(&self.opts) {
            Ok(p) => {
                let old = std::mem::replace(
                    &mut *current,
                    Current {
                        producer: Arc::new(p),
                        since: Instant::now(),
                    },
                );
                drop(current);
                release(old.producer);
                match &fatal {
                    Some((code, reason)) => {
                        error!(error = ?code, reason, "the Kafka producer failed fatally; replaced it with a new one");
                    }
                    None => warn!(error = ?code, idle = ?idle,
                        "the Kafka producer delivers nothing (its broker may have lost its state); replaced it with a new one"),
                }
            }
            Err(e) => error!(error = %e, "the Kafka producer is stuck and could not be replaced"),
        }
        fatal.is_some() || refused_identity
    }
}

pub(super) fn create(opts: &KafkaSinkOptions) -> Result<Producer, KafkaError> {
    opts.client_config()
        .create_with_context(SinkContext::new(opts.topic.as_deref().unwrap_or("-")))
        .map_err(KafkaError::client)
}

/// Lets go of a share of a producer. The last share of a replaced one destroys it, which
/// blocks (librdkafka purges and flushes for up to 500 ms): on a thread of its own.
pub(super) fn release(producer: Arc<Producer>) {
    if let Some(last) = Arc::into_inner(producer) {
        std::thread::spawn(move || drop(last));
    }
}
