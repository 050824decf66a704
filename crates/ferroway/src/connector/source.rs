//! The source half of the connector contract.

use std::sync::Arc;

use super::map::Map;
use crate::error::BoxError;
use crate::pipeline::{BoxFuture, Message};
use crate::stage::Producer;

/// What a connector's source gives a pipeline: producers on demand, and a close that resolves
/// once its last acknowledgements are committed. Hand it to
/// [`PipelineBuilder::source`](crate::pipeline::PipelineBuilder::source); then
/// [`Pipeline::stop`](crate::pipeline::Pipeline::stop) returning means the source's final
/// commits are done.
///
/// A producer answers demand ([`Producer::handle_demand`]) with messages whose
/// acknowledgement reaches the source's broker only once the pipeline finished with them.
///
/// ```
/// use ferroway::connector::Source;
/// use ferroway::pipeline::Message;
/// use ferroway::stage::{Emit, Producer};
/// use ferroway::BoxError;
///
/// /// Counts up from 0, split over the producers: producer `i` of `n` emits `i, i + n, …`.
/// struct Counting { producers: u64 }
///
/// struct Count { next: u64, step: u64 }
/// impl Producer for Count {
///     type Output = Message<u64>;
///     async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<u64>>, BoxError> {
///         let out = (0..demand).map(|_| { self.next += self.step; Message::new(self.next - self.step) }).collect();
///         Ok(Emit::Events(out))
///     }
/// }
///
/// impl Source for Counting {
///     type Data = u64;
///     type Producer = Count;
///     fn producer(&self, index: usize) -> Result<Count, BoxError> {
///         Ok(Count { next: index as u64, step: self.producers })
///     }
/// }
/// ```
pub trait Source: Send + Sync + 'static {
    /// The data of the messages it emits.
    type Data: Send + 'static;
    /// The pipeline producer it makes.
    type Producer: Producer<Output = Message<Self::Data>>;

    /// A producer for slot `index` (`0..producer_concurrency`); called when the pipeline
    /// starts and again when it restarts a producer that failed. An error fails that start
    /// (the pipeline's restart policy applies).
    fn producer(&self, index: usize) -> Result<Self::Producer, BoxError>;

    /// Resolves once the acknowledgements of every message the pipeline finished are
    /// committed (offsets, `XACK`s, checkpoints). The pipeline awaits it when it stops.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Whether the source has reached what it reads from since it started (a broker
    /// answered) — what a readiness probe asks. Sources that need no server always have.
    ///
    /// ```
    /// use ferroway::connector::Source;
    /// use ferroway::connector::generator::Generator;
    ///
    /// assert!(Generator::new(10).connected());
    /// ```
    fn connected(&self) -> bool {
        true
    }

    /// The same source with its data turned into another type by `f` — acknowledgement,
    /// metadata and origin kept (see [`Message::map`]). How one connector's data reaches
    /// another connector's sink: `.source(redis.map(|entry| entry.to_record()))`.
    ///
    /// ```
    /// use ferroway::connector::{Record, Source};
    /// use ferroway::connector::generator::Generator;
    ///
    /// let records = Generator::new(10).map(Record::from);
    /// # let _ = records;
    /// ```
    fn map<U, F>(self, f: F) -> Map<Self, F>
    where
        Self: Sized,
        F: Fn(Self::Data) -> U + Send + Sync + 'static,
        U: Send + 'static,
    {
        Map::new(self, f)
    }
}

impl<S: Source> Source for Arc<S> {
    type Data = S::Data;
    type Producer = S::Producer;

    fn producer(&self, index: usize) -> Result<S::Producer, BoxError> {
        (**self).producer(index)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        (**self).close()
    }

    fn connected(&self) -> bool {
        (**self).connected()
    }
}
