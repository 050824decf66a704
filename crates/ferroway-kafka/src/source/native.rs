//! The two pieces of librdkafka's C API the source uses directly, because `rdkafka` has no
//! safe form of them: reading messages in batches, and reading a message's fields.
//!
//! `rdkafka`'s `poll` hands out one message per call, each wrapped in its own event (an
//! allocation, a clock reading and a queue lock per message). The source instead forwards
//! the fetch queue of every partition it is assigned to one queue of its own and takes
//! messages from it in batches (`rd_kafka_consume_batch_queue`). Rebalances and other events
//! stay on the consumer's queue, served by `rdkafka`'s `poll` and the consumer context.

use std::ffi::{CStr, CString, c_char, c_void};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use rdkafka::bindings as rd;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};

use super::fetched::Client;

/// The source's own queue: every assigned partition's fetched messages, in fetch order per
/// partition.
pub(super) struct MessageQueue(NonNull<rd::rd_kafka_queue_t>);

// SAFETY: librdkafka queues are locked internally and may be used from any thread.
unsafe impl Send for MessageQueue {}
unsafe impl Sync for MessageQueue {}

impl MessageQueue {
    pub(super) fn new(client: &Client) -> Option<Self> {
        // SAFETY: the client's handle is valid while `client` lives; the queue must be
        // dropped before the client is destroyed (the poller drops it first).
        NonNull::new(unsafe { rd::rd_kafka_queue_new(client.client().native_ptr()) }).map(MessageQueue)
    }

    /// Makes `topic`/`partition`'s fetched messages come to this queue. Call it before every
    /// assignment of the partition: librdkafka then leaves the forwarding alone when it starts
    /// fetching (an application forward wins), so no message of the partition can reach the
    /// consumer's queue first. Stopping the fetch (a revoke) removes the forward but not the
    /// mark that the application owns it: a partition captured once and not captured again
    /// would have its messages stay in its own queue, read by nobody.
    pub(super) fn capture(&self, client: &Client, topic: &str, partition: i32) -> bool {
        let Ok(topic) = CString::new(topic) else { return false };
        // SAFETY: valid client handle and C string; the partition queue handle returned is
        // released right after the forward (the forward keeps its own reference).
        unsafe {
            let q = rd::rd_kafka_queue_get_partition(client.client().native_ptr(), topic.as_ptr(), partition);
            if q.is_null() {
                return false;
            }
            rd::rd_kafka_queue_forward(q, self.0.as_ptr());
            rd::rd_kafka_queue_destroy(q);
        }
        true
    }

    /// Messages waiting (including events and outdated messages librdkafka will discard).
    pub(super) fn len(&self) -> usize {
        // SAFETY: valid queue.
        unsafe { rd::rd_kafka_queue_length(self.0.as_ptr()) }
    }

    /// Moves up to `max` messages to `out`, waiting at most `timeout_ms` for the batch to
    /// fill (0: take only what is there). Returns how many were moved.
    pub(super) fn consume(&self, timeout_ms: i32, max: usize, out: &mut Vec<NativeMessage>) -> usize {
        out.reserve(max);
        let spare = out.spare_capacity_mut();
        // SAFETY: `spare` has room for `max` pointers; librdkafka writes `n <= max` of them,
        // each an owned message, and the first `n` slots are then initialised.
        unsafe {
            let n = rd::rd_kafka_consume_batch_queue(
                self.0.as_ptr(),
                timeout_ms,
                spare.as_mut_ptr().cast::<*mut rd::rd_kafka_message_t>(),
                max,
            );
            let n = n.max(0) as usize;
            out.set_len(out.len() + n);
            n
        }
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: owned queue; messages still in it are destroyed by librdkafka.
        unsafe { rd::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// The consumer's member id in its group, once it has one.
pub(super) fn member_id<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
) -> Option<String> {
    let rk = consumer.client().native_ptr();
    // SAFETY: valid client handle; the returned string is owned by us and freed with
    // librdkafka's allocator.
    unsafe {
        let p = rd::rd_kafka_memberid(rk);
        if p.is_null() {
            return None;
        }
        let id = CStr::from_ptr(p).to_string_lossy().into_owned();
        rd::rd_kafka_mem_free(rk, p.cast::<c_void>());
        (!id.is_empty()).then_some(id)
    }
}

/// A message taken from a [`MessageQueue`]: owned, destroyed when dropped. It references its
/// client: it must be dropped before the client is destroyed.
#[repr(transparent)]
pub(super) struct NativeMessage(NonNull<rd::rd_kafka_message_t>);

// SAFETY: a librdkafka message may be read and destroyed on any thread. Not `Sync`: reading
// headers parses them into the message the first time.
unsafe impl Send for NativeMessage {}

impl Drop for NativeMessage {
    fn drop(&mut self) {
        // SAFETY: owned message, destroyed once.
        unsafe { rd::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

impl NativeMessage {
    pub(super) fn fields(&self) -> Fields<'_> {
        Fields(self.0.as_ptr(), PhantomData)
    }
}

/// Read access to a librdkafka message, valid while the message lives. A pointer rather than
/// a reference: librdkafka's accessors also read (and, for headers, fill in) the message's
/// private part around the public fields.
#[derive(Clone, Copy)]
pub(super) struct Fields<'a>(*mut rd::rd_kafka_message_t, PhantomData<&'a NativeMessage>);

impl<'a> Fields<'a> {
    fn msg(&self) -> &'a rd::rd_kafka_message_t {
        // SAFETY: the message outlives 'a (see `NativeMessage::fields`).
        unsafe { &*self.0 }
    }

    /// The error librdkafka delivered in place of a message, if it is one.
    pub(super) fn error(self) -> Option<RdKafkaError> {
        let err = self.msg().err;
        (err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR)
            .then(|| RdKafkaError::MessageConsumption(RDKafkaErrorCode::from(err)))
    }

    /// Identifies the topic within the client (the same for every message of a topic).
    pub(super) fn topic_handle(self) -> usize {
        self.msg().rkt as usize
    }

    pub(super) fn topic(self) -> Option<&'a str> {
        if self.msg().rkt.is_null() {
            return None;
        }
        // SAFETY: a message holds a reference to its topic, whose name is a C string.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.msg().rkt)) }
            .to_str()
            .ok()
    }

    pub(super) fn partition(self) -> i32 {
        self.msg().partition
    }

    pub(super) fn offset(self) -> i64 {
        self.msg().offset
    }

    pub(super) fn payload(self) -> Option<&'a [u8]> {
        bytes(self.msg().payload, self.msg().len)
    }

    pub(super) fn key(self) -> Option<&'a [u8]> {
        bytes(self.msg().key, self.msg().key_len)
    }

    /// Milliseconds since the Unix epoch, if the record has a timestamp.
    pub(super) fn timestamp(self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: valid message.
        let ms = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ms >= 0).then_some(ms)
    }

    /// The headers, in order; names that are not UTF-8 are converted lossily.
    pub(super) fn headers(self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut hdrs = ptr::null_mut();
        // SAFETY: valid message; the headers belong to it and live as long.
        let err = unsafe { rd::rd_kafka_message_headers(self.0, &mut hdrs) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for idx in 0.. {
            let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) = (ptr::null(), ptr::null(), 0);
            // SAFETY: valid headers; librdkafka fills the three out-pointers for `idx` in range.
            let err = unsafe { rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            // SAFETY: header names are C strings owned by the headers.
            let name = unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned();
            out.push((name, bytes(value.cast_mut(), size).map(<[u8]>::to_vec)));
        }
        out
    }
}

fn bytes<'a>(p: *mut c_void, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: librdkafka gives `len` readable bytes at `p`, owned by the message.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}
