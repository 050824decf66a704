//! librdkafka's batch produce (`rd_kafka_produce_batch`), which `rdkafka` does not expose.
//!
//! `rdkafka`'s `send` hands librdkafka one record at a time: a C string of the topic name, a
//! topic lookup, two clock readings and a topic lock per record. A batch pays for those once.
//! It takes no headers and no timestamps, and only records the partitioner places: records
//! with headers, a timestamp or an explicit partition go one at a time. (A batch record whose
//! explicit partition does not exist would be refused without being freed: librdkafka would
//! count it as queued for ever.)

use std::ffi::{CString, c_void};
use std::ptr::{self, NonNull};

use rdkafka::bindings as rd;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{Producer as _, ThreadedProducer};

use super::delivery::SinkContext;

/// librdkafka's "any partition": the partitioner picks one (`RD_KAFKA_PARTITION_UA`).
const PARTITION_UA: i32 = -1;

/// A record for [`produce_batch`].
#[derive(Clone, Copy)]
pub(super) struct BatchRecord<'a> {
    /// The message's index in the send.
    pub(super) index: usize,
    pub(super) payload: &'a [u8],
    pub(super) key: Option<&'a [u8]>,
    /// The delivery report's opaque.
    pub(super) opaque: usize,
}

/// librdkafka's handle of a topic, held while a batch is handed over.
pub(super) struct TopicHandle(NonNull<rd::rd_kafka_topic_t>);

// SAFETY: librdkafka topic handles are reference-counted and locked internally.
unsafe impl Send for TopicHandle {}
unsafe impl Sync for TopicHandle {}

impl TopicHandle {
    /// The handle of `name`; `None` if the name holds a NUL byte or librdkafka refuses it.
    /// It must be dropped before `producer`.
    pub(super) fn new(producer: &ThreadedProducer<SinkContext>, name: &str) -> Option<Self> {
        let name = CString::new(name).ok()?;
        // SAFETY: valid client handle and C string; a null configuration means the defaults.
        let rkt = unsafe { rd::rd_kafka_topic_new(producer.client().native_ptr(), name.as_ptr(), ptr::null_mut()) };
        NonNull::new(rkt).map(TopicHandle)
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: owned reference, released once.
        unsafe { rd::rd_kafka_topic_destroy(self.0.as_ptr()) }
    }
}

/// Hands `records` to librdkafka (payload and key copied). Returns the position in `records`
/// and the error of each record it did not take: those get no delivery report.
pub(super) fn produce_batch(topic: &TopicHandle, records: &[BatchRecord<'_>]) -> Vec<(usize, RDKafkaErrorCode)> {
    let mut msgs: Vec<rd::rd_kafka_message_t> = records
        .iter()
        .map(|r| {
            let (key, key_len) = r.key.map_or((ptr::null_mut(), 0), |k| {
                (k.as_ptr().cast_mut().cast::<c_void>(), k.len())
            });
            rd::rd_kafka_message_t {
                err: rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
                rkt: ptr::null_mut(),
                partition: PARTITION_UA,
                payload: r.payload.as_ptr().cast_mut().cast::<c_void>(),
                len: r.payload.len(),
                key,
                key_len,
                offset: 0,
                // Delivery reports give it back as the opaque.
                _private: r.opaque as *mut c_void,
            }
        })
        .collect();
    let Ok(count) = i32::try_from(msgs.len()) else {
        return (0..records.len())
            .map(|i| (i, RDKafkaErrorCode::InvalidArgument))
            .collect();
    };
    // SAFETY: `msgs` is a valid array of `count` messages whose payload and key point into
    // `records`, alive for the call; with F_COPY librdkafka copies them and writes only the
    // `err` fields.
    let taken = unsafe {
        rd::rd_kafka_produce_batch(
            topic.0.as_ptr(),
            PARTITION_UA,
            rd::RD_KAFKA_MSG_F_COPY,
            msgs.as_mut_ptr(),
            count,
        )
    };
    if taken == count {
        return Vec::new();
    }
    msgs.iter()
        .enumerate()
        .filter(|(_, m)| m.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
        .map(|(i, m)| (i, RDKafkaErrorCode::from(m.err)))
        .collect()
}
