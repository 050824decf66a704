//! From a checked file to a pipeline: connectors built from their options (`run`) or swapped
//! for in-memory ones (`test`), wired with the steps, batchers and options of the file.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ferroway::BoxError;
use ferroway::config::BuildContext;
use ferroway::connector::{BoxProducer, BoxSource, Record, Sink};
use ferroway::pipeline::{Batcher, BoxFuture, Message, Pipeline, PipelineBuilder, Processors};

use crate::config::PipelineConfig;
use crate::merge::Merged;
use crate::stats::{PipelineStats, SinkCounts};
use crate::steps::Process;

/// The parts of a pipeline that reach the outside world.
pub struct Connectors {
    /// One per `[sources.NAME]`, in file order.
    pub sources: Vec<BoxSource<Record>>,
    /// One per `[sinks.NAME]`, in file order.
    pub sinks: Vec<Arc<dyn Sink<Record>>>,
    /// The `[dead_letter]` sink.
    pub dead_letter: Option<Arc<dyn Sink<Record>>>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors")
            .field("sources", &self.sources.len())
            .field("sinks", &self.sinks.len())
            .field("dead_letter", &self.dead_letter.is_some())
            .finish()
    }
}

/// A connector that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {component} ({type_name}): {source}")]
pub struct BuildError {
    /// The file.
    pub file: String,
    /// `sources.NAME`, `sinks.NAME` or `dead_letter`.
    pub component: String,
    /// Its connector type.
    pub type_name: String,
    /// Why.
    #[source]
    pub source: BoxError,
}

/// Builds every connector of `config` from its options (sinks open files and start clients;
/// sources connect only when the pipeline starts). The options are used up: a file is built
/// once.
///
/// # Errors
/// The first connector that could not be built, named.
pub async fn connect(config: &mut PipelineConfig) -> Result<Connectors, BuildError> {
    let file = config.file.display().to_string();
    let fail = |component: String, type_name: &str, source: BoxError| BuildError {
        file: file.clone(),
        component,
        type_name: type_name.to_owned(),
        source,
    };
    let mut sources = Vec::new();
    for s in &mut config.sources {
        let component = format!("sources.{}", s.name);
        let options = s
            .options
            .take()
            .ok_or_else(|| fail(component.clone(), &s.type_name, "already built".into()))?;
        let ctx = BuildContext::new(&config.name, &s.name);
        sources.push(options.build(&ctx).map_err(|e| fail(component, &s.type_name, e))?);
    }
    let mut sinks = Vec::new();
    for s in &mut config.sinks {
        let component = format!("sinks.{}", s.name);
        let options = s
            .options
            .take()
            .ok_or_else(|| fail(component.clone(), &s.type_name, "already built".into()))?;
        let ctx = BuildContext::new(&config.name, &s.name);
        sinks.push(
            options
                .build(&ctx)
                .await
                .map_err(|e| fail(component, &s.type_name, e))?,
        );
    }
    let dead_letter = match &mut config.dead_letter {
        Some(d) => {
            let options = d
                .options
                .take()
                .ok_or_else(|| fail("dead_letter".into(), &d.type_name, "already built".into()))?;
            let ctx = BuildContext::new(&config.name, "dead_letter");
            Some(
                options
                    .build(&ctx)
                    .await
                    .map_err(|e| fail("dead_letter".into(), &d.type_name, e))?,
            )
        }
        None => None,
    };
    Ok(Connectors {
        sources,
        sinks,
        dead_letter,
    })
}

/// The pipeline of `config` on `connectors`, ready to start: one producer per source, the
/// steps in the processors, one batcher per sink, counted into `stats`; and its sources, to
/// ask whether they are [connected](ferroway::connector::Source::connected).
pub fn pipeline(
    config: &PipelineConfig,
    connectors: Connectors,
    stats: &PipelineStats,
) -> (PipelineBuilder<Process, BoxProducer<Record>>, Arc<Merged<Record>>) {
    let routes = config
        .sinks
        .iter()
        .map(|s| (intern(&s.name), s.route.clone()))
        .collect();
    let process = Process::new(&config.name, config.steps.clone(), routes);
    let merged = Arc::new(Merged::new(connectors.sources));
    let slots = merged.slots();
    let mut b = Pipeline::builder(config.name.clone(), process)
        .source(BoxSource::new(merged.clone()))
        .producer_concurrency(slots)
        .processors(
            Processors::new()
                .concurrency(config.processors.concurrency)
                .max_demand(config.processors.max_demand),
        )
        .shutdown_timeout(config.shutdown_timeout);
    for (spec, sink) in config.sinks.iter().zip(connectors.sinks) {
        let counted = Counted {
            inner: sink,
            counts: stats.sink(&spec.name),
        };
        let batcher = Batcher::new(intern(&spec.name))
            .batch_size(spec.batch_size)
            .batch_timeout(spec.batch_timeout)
            .concurrency(spec.concurrency);
        b = b.sink(counted, batcher);
    }
    if let Some(d) = connectors.dead_letter {
        b = b.dead_letter(d);
    }
    if let Some(by) = config.partition_by.clone() {
        b = b.partition_by(move |m: &Message<Record>| by.hash(m.data()));
    }
    if let Some((n, per)) = config.rate_limit {
        b = b.rate_limit(n, per);
    }
    (b, merged)
}

/// A sink name as the `&'static str` batchers are named by; each distinct name is leaked
/// once per process (a CLI builds a handful).
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// A sink that counts what it wrote and refused.
struct Counted {
    inner: Arc<dyn Sink<Record>>,
    counts: Arc<SinkCounts>,
}

impl Sink<Record> for Counted {
    fn write<'a>(&'a self, batch: &'a mut [Message<Record>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.inner.write(batch).await?;
            let refused = batch.iter().filter(|m| m.is_failed()).count() as u64;
            use std::sync::atomic::Ordering::Relaxed;
            self.counts.written.fetch_add(batch.len() as u64 - refused, Relaxed);
            self.counts.refused.fetch_add(refused, Relaxed);
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        self.inner.close()
    }
}
