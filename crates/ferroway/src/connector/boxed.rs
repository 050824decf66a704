//! Sources and producers behind a box: one type for any connector, chosen at run time (a
//! config file's `type = "kafka"`).

use super::Source;
use crate::error::BoxError;
use crate::pipeline::{BoxFuture, Message};
use crate::stage::{Emit, Producer};

/// Any [`Source`] of `T`, boxed: what a source built from a config file is. Make one with
/// [`BoxSource::new`].
///
/// ```
/// use ferroway::connector::{BoxSource, Record, Source};
/// use ferroway::connector::generator::Generator;
///
/// let sources: Vec<BoxSource<Record>> = vec![
///     BoxSource::new(Generator::new(10).map(Record::from)),
///     BoxSource::new(Generator::new(5).map(Record::from)),
/// ];
/// # let _ = sources;
/// ```
pub struct BoxSource<T>(Box<dyn DynSource<T>>);

impl<T: Send + 'static> BoxSource<T> {
    /// Boxes `source`.
    pub fn new<S: Source<Data = T>>(source: S) -> Self {
        BoxSource(Box::new(source))
    }
}

impl<T> std::fmt::Debug for BoxSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxSource")
    }
}

trait DynSource<T>: Send + Sync + 'static {
    fn producer(&self, index: usize) -> Result<BoxProducer<T>, BoxError>;
    fn close(&self) -> BoxFuture<'_, ()>;
    fn connected(&self) -> bool;
}

impl<S: Source> DynSource<S::Data> for S {
    fn producer(&self, index: usize) -> Result<BoxProducer<S::Data>, BoxError> {
        Ok(BoxProducer(Box::new(Source::producer(self, index)?)))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Source::close(self)
    }

    fn connected(&self) -> bool {
        Source::connected(self)
    }
}

impl<T: Send + 'static> Source for BoxSource<T> {
    type Data = T;
    type Producer = BoxProducer<T>;

    fn producer(&self, index: usize) -> Result<BoxProducer<T>, BoxError> {
        self.0.producer(index)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.0.close()
    }

    fn connected(&self) -> bool {
        self.0.connected()
    }
}

/// The producer of a [`BoxSource`].
pub struct BoxProducer<T>(Box<dyn DynProducer<T>>);

impl<T> std::fmt::Debug for BoxProducer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxProducer")
    }
}

type Demand<'a, T> = BoxFuture<'a, Result<Emit<Message<T>>, BoxError>>;

trait DynProducer<T>: Send {
    fn handle_demand(&mut self, demand: usize) -> Demand<'_, T>;
    fn prepare_for_draining(&mut self) -> BoxFuture<'_, Vec<Message<T>>>;
}

impl<T, P: Producer<Output = Message<T>>> DynProducer<T> for P {
    fn handle_demand(&mut self, demand: usize) -> Demand<'_, T> {
        Box::pin(Producer::handle_demand(self, demand))
    }

    fn prepare_for_draining(&mut self) -> BoxFuture<'_, Vec<Message<T>>> {
        Box::pin(Producer::prepare_for_draining(self))
    }
}

impl<T: Send + 'static> Producer for BoxProducer<T> {
    type Output = Message<T>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<T>>, BoxError> {
        self.0.handle_demand(demand).await
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<T>> {
        self.0.prepare_for_draining().await
    }
}
