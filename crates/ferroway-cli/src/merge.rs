//! Several sources as one: producer slot `i` is source `i`'s producer, so a pipeline with
//! `producer_concurrency = sources.len()` reads all of them; it finishes when all finished.

use ferroway::BoxError;
use ferroway::connector::{BoxProducer, BoxSource, Source};
use ferroway::pipeline::BoxFuture;

/// The sources of a pipeline file, one producer slot each.
pub struct Merged<T> {
    sources: Vec<BoxSource<T>>,
}

impl<T> std::fmt::Debug for Merged<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Merged({} sources)", self.sources.len())
    }
}

impl<T: Send + 'static> Merged<T> {
    /// Merges `sources`: run the pipeline with one producer per source.
    pub fn new(sources: Vec<BoxSource<T>>) -> Self {
        Merged { sources }
    }

    /// How many producer slots (= sources).
    pub fn slots(&self) -> usize {
        self.sources.len()
    }
}

impl<T: Send + 'static> Source for Merged<T> {
    type Data = T;
    type Producer = BoxProducer<T>;

    fn producer(&self, index: usize) -> Result<BoxProducer<T>, BoxError> {
        let source = self
            .sources
            .get(index)
            .ok_or_else(|| format!("no source for producer slot {index} (there are {})", self.sources.len()))?;
        // Each source has one slot: it is its producer 0.
        source.producer(0)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            futures_util::future::join_all(self.sources.iter().map(Source::close)).await;
        })
    }

    /// Whether every source has reached its server.
    fn connected(&self) -> bool {
        self.sources.iter().all(Source::connected)
    }
}
