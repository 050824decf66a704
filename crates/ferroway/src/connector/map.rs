//! A source whose data is turned into another type on the way out.

use std::sync::Arc;

use super::Source;
use crate::error::BoxError;
use crate::pipeline::{BoxFuture, Message};
use crate::stage::{Emit, Producer};

/// The source of [`Source::map`].
pub struct Map<S, F> {
    source: S,
    f: Arc<F>,
}

impl<S: Source, U, F> Map<S, F>
where
    F: Fn(S::Data) -> U + Send + Sync + 'static,
    U: Send + 'static,
{
    pub(super) fn new(source: S, f: F) -> Self {
        Map { source, f: Arc::new(f) }
    }
}

impl<S: std::fmt::Debug, F> std::fmt::Debug for Map<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl<S, U, F> Source for Map<S, F>
where
    S: Source,
    F: Fn(S::Data) -> U + Send + Sync + 'static,
    U: Send + 'static,
{
    type Data = U;
    type Producer = MapProducer<S::Producer, F>;

    fn producer(&self, index: usize) -> Result<Self::Producer, BoxError> {
        Ok(MapProducer {
            inner: self.source.producer(index)?,
            f: self.f.clone(),
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.source.close()
    }

    fn connected(&self) -> bool {
        self.source.connected()
    }
}

/// The producer of a [`Map`] source.
pub struct MapProducer<P, F> {
    inner: P,
    f: Arc<F>,
}

impl<P, F> std::fmt::Debug for MapProducer<P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MapProducer")
    }
}

impl<T, U, P, F> Producer for MapProducer<P, F>
where
    P: Producer<Output = Message<T>>,
    F: Fn(T) -> U + Send + Sync + 'static,
    T: Send + 'static,
    U: Send + 'static,
{
    type Output = Message<U>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<U>>, BoxError> {
        let f = &*self.f;
        Ok(match self.inner.handle_demand(demand).await? {
            Emit::Events(v) => Emit::Events(v.into_iter().map(|m| m.map(f)).collect()),
            Emit::Done(v) => Emit::Done(v.into_iter().map(|m| m.map(f)).collect()),
        })
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<U>> {
        let f = &*self.f;
        self.inner
            .prepare_for_draining()
            .await
            .into_iter()
            .map(|m| m.map(f))
            .collect()
    }
}
