//! The message: data plus everything the pipeline needs to route and acknowledge it.

use std::any::Any;
use std::sync::Arc;

use super::ack::{AckRef, AckToken, Acknowledger};

/// Where a failed message goes when it is acknowledged, if the connector supports the choice
/// (Broadway's `configure_ack`). Connectors document how they read each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFailure {
    /// The connector's default (e.g. leave it for redelivery).
    #[default]
    Default,
    /// Put it back for redelivery now.
    Requeue,
    /// Reject it for good (the broker may route it to its own dead-letter queue).
    Reject,
    /// Acknowledge it as if it had succeeded.
    Ack,
}

/// The key messages of one batch share, within a batcher. See [`Message::put_batch_key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum BatchKey {
    /// No key set: one batch stream per batcher.
    #[default]
    Default,
    /// An integer key.
    Int(u64),
    /// A string key.
    Str(Arc<str>),
}

impl From<u64> for BatchKey {
    fn from(v: u64) -> Self {
        BatchKey::Int(v)
    }
}
impl From<&str> for BatchKey {
    fn from(v: &str) -> Self {
        BatchKey::Str(v.into())
    }
}
impl From<String> for BatchKey {
    fn from(v: String) -> Self {
        BatchKey::Str(v.into())
    }
}
impl From<Arc<str>> for BatchKey {
    fn from(v: Arc<str>) -> Self {
        BatchKey::Str(v)
    }
}

type AnyBox = Box<dyn Any + Send + Sync>;

/// Where a message came from, in its source's own terms: what a dead-letter record, a log
/// line or an error names so that an operator can find the original — `topic=orders
/// partition=3 offset=42`, `stream=events id=1700000000000-0`, `path=in.ndjson line=7`.
///
/// A source attaches it with [`Message::put_origin`]; the value is also metadata of its own
/// type, so `message.metadata::<KafkaMetadata>()` keeps working.
///
/// ```
/// use ferroway::pipeline::{Message, Origin};
///
/// struct Row { table: &'static str, id: u64 }
/// impl Origin for Row {
///     fn fields(&self) -> Vec<(&'static str, String)> {
///         vec![("table", self.table.into()), ("id", self.id.to_string())]
///     }
/// }
///
/// let mut m = Message::new("payload");
/// m.put_origin(Row { table: "orders", id: 7 });
/// assert_eq!(m.origin().unwrap().fields()[1], ("id", "7".to_string()));
/// assert_eq!(m.metadata::<Row>().unwrap().id, 7);
/// ```
pub trait Origin: Any + Send + Sync {
    /// The fields naming this message's place at its source, in order.
    fn fields(&self) -> Vec<(&'static str, String)>;
}

/// Typed metadata values. Connectors put one (their own type, usually as the origin): it
/// lives in its own slot, so a message with metadata costs no vector allocation.
#[derive(Default)]
struct Metadata {
    first: Option<AnyBox>,
    rest: Vec<AnyBox>,
    origin: Option<Box<dyn Origin>>,
}

impl Metadata {
    fn iter(&self) -> impl Iterator<Item = &(dyn Any + Send + Sync)> {
        let origin = self.origin.as_deref().map(|o| o as &(dyn Any + Send + Sync));
        origin
            .into_iter()
            .chain(self.first.iter().chain(self.rest.iter()).map(|b| &**b))
    }

    fn put<M: Any + Send + Sync>(&mut self, value: M) {
        if self.origin.as_deref().is_some_and(|o| (o as &dyn Any).is::<M>()) {
            // Metadata of the origin's type replaces the origin's value, which is no longer
            // an origin (there is no `Origin` impl to call on a plain `M`).
            self.origin = None;
        }
        if let Some(slot) = self.first.iter_mut().chain(self.rest.iter_mut()).find(|m| m.is::<M>()) {
            *slot = Box::new(value);
        } else if self.first.is_none() {
            self.first = Some(Box::new(value));
        } else {
            self.rest.push(Box::new(value));
        }
    }
}

#[derive(Default)]
struct Extras {
    metadata: Metadata,
    batch_key: BatchKey,
    failure: Option<Arc<str>>,
    on_failure: OnFailure,
}

/// One message flowing through a pipeline (Broadway's `%Message{}`).
///
/// It carries the data, typed metadata set by the connector, how to acknowledge it, its
/// status, and where it is batched. Every message is acknowledged exactly once, after the last
/// stage that handles it.
///
/// ```
/// use ferroway::pipeline::{BatchKey, Message};
/// let mut m = Message::new("42".to_string());
/// m.put_batcher("sql");
/// m.put_batch_key("users");
/// m.update_data(|s| format!("{s}!"));
/// assert_eq!(m.data(), "42!");
/// assert_eq!(m.batcher(), Some("sql"));
/// assert_eq!(m.batch_key(), &BatchKey::from("users"));
/// m.put_metadata(7u32);
/// m.put_metadata("source-a");
/// m.put_metadata(8u32); // replaces the u32
/// assert_eq!((m.metadata::<u32>(), m.metadata::<&str>()), (Some(&8), Some(&"source-a")));
/// m.fail("not a valid user");
/// assert_eq!(m.failure(), Some("not a valid user"));
/// ```
pub struct Message<T> {
    data: T,
    pub(crate) ack: AckRef,
    batcher: Option<&'static str>,
    discarded: bool,
    extras: Option<Box<Extras>>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Message<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("data", &self.data)
            .field("batcher", &self.batcher)
            .field("batch_key", self.batch_key())
            .field("failure", &self.failure())
            .field("discarded", &self.discarded)
            .finish()
    }
}

impl<T> Message<T> {
    /// A message whose acknowledgement goes nowhere (for tests and generated data).
    pub fn new(data: T) -> Self {
        Message {
            data,
            ack: AckRef::noop(),
            batcher: None,
            discarded: false,
            extras: None,
        }
    }

    /// A message acknowledged through `acker` with the connector's `token`.
    pub fn with_acker(data: T, acker: Arc<dyn Acknowledger>, token: AckToken) -> Self {
        Message {
            data,
            ack: AckRef { acker, token },
            batcher: None,
            discarded: false,
            extras: None,
        }
    }

    /// The data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The data, mutably.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.data
    }

    /// Takes the data, dropping the rest.
    pub fn into_data(self) -> T {
        self.data
    }

    /// The data and the acknowledgement, for whoever acknowledges it later (a flow).
    pub(crate) fn into_parts(self) -> (T, AckRef) {
        (self.data, self.ack)
    }

    /// The same message with its data turned into another type: acknowledgement, metadata,
    /// origin, batch key and status are kept. How a pipeline hands one source's data to
    /// another connector's sink (a Redis entry to a Kafka record, say).
    ///
    /// ```
    /// use ferroway::pipeline::Message;
    /// let mut m = Message::new(42u64);
    /// m.put_batch_key("answers");
    /// let m: Message<String> = m.map(|n| n.to_string());
    /// assert_eq!((m.data().as_str(), m.batch_key()), ("42", &"answers".into()));
    /// ```
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Message<U> {
        Message {
            data: f(self.data),
            ack: self.ack,
            batcher: self.batcher,
            discarded: self.discarded,
            extras: self.extras,
        }
    }

    /// Replaces the data with `f(data)`.
    pub fn update_data(&mut self, f: impl FnOnce(&T) -> T) {
        self.data = f(&self.data);
    }

    /// Metadata of type `M`, if a connector (or you) put some there.
    pub fn metadata<M: Any>(&self) -> Option<&M> {
        self.extras
            .as_ref()?
            .metadata
            .iter()
            .find_map(|m| m.downcast_ref::<M>())
    }

    /// Puts metadata of type `M`, replacing any earlier value of the same type.
    pub fn put_metadata<M: Any + Send + Sync>(&mut self, value: M) {
        self.extras().metadata.put(value);
    }

    /// Puts where the message came from (see [`Origin`]), replacing any earlier origin. It is
    /// also readable as metadata of its own type.
    pub fn put_origin<O: Origin>(&mut self, origin: O) {
        self.extras().metadata.origin = Some(Box::new(origin));
    }

    /// Where the message came from, if its source said.
    pub fn origin(&self) -> Option<&dyn Origin> {
        self.extras.as_ref()?.metadata.origin.as_deref()
    }

    /// Sends the message to the batcher named `name` (by default: the first batcher).
    pub fn put_batcher(&mut self, name: &'static str) {
        self.batcher = Some(name);
    }

    /// The batcher chosen with [`put_batcher`](Self::put_batcher).
    pub fn batcher(&self) -> Option<&'static str> {
        self.batcher
    }

    /// Messages are batched together only when they share a batch key (and batcher).
    pub fn put_batch_key(&mut self, key: impl Into<BatchKey>) {
        self.extras().batch_key = key.into();
    }

    /// The batch key.
    pub fn batch_key(&self) -> &BatchKey {
        static DEFAULT: BatchKey = BatchKey::Default;
        self.extras.as_ref().map_or(&DEFAULT, |e| &e.batch_key)
    }

    /// Marks the message failed with `reason`: it skips batching, goes through
    /// [`Handler::handle_failed`](crate::pipeline::Handler::handle_failed), and is acknowledged
    /// as failed.
    pub fn fail(&mut self, reason: impl std::fmt::Display) {
        self.extras().failure = Some(reason.to_string().into());
    }

    /// Why the message failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.extras.as_ref()?.failure.as_deref()
    }

    /// Forgets a failure (the attempt that set it is being made again).
    pub(crate) fn clear_failure(&mut self) {
        if let Some(e) = self.extras.as_mut() {
            e.failure = None;
        }
    }

    /// True if the message is marked failed.
    pub fn is_failed(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| e.failure.is_some())
    }

    /// Acknowledges the message as successful right after the processor, without batching it
    /// (a filter).
    pub fn discard(&mut self) {
        self.discarded = true;
    }

    pub(crate) fn is_discarded(&self) -> bool {
        self.discarded
    }

    /// How the connector should treat this message if it fails.
    pub fn configure_ack(&mut self, on_failure: OnFailure) {
        self.extras().on_failure = on_failure;
    }

    /// The failure action set with [`configure_ack`](Self::configure_ack).
    pub fn on_failure(&self) -> OnFailure {
        self.extras.as_ref().map_or(OnFailure::Default, |e| e.on_failure)
    }

    /// The connector's acknowledgement token.
    pub fn ack_token(&self) -> AckToken {
        self.ack.token
    }

    pub(crate) fn failure_arc(&self) -> Option<Arc<str>> {
        self.extras.as_ref()?.failure.clone()
    }

    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Default::default)
    }
}
