//! Options of processors and batchers, validated when the pipeline starts.

use std::sync::Arc;
use std::time::Duration;

use super::batcher::BatchSize;
use super::message::Message;

/// A pipeline option was invalid. Raised by
/// [`PipelineBuilder::start`](crate::pipeline::PipelineBuilder::start) before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pipeline `{pipeline}`: invalid option `{option}`: {reason}")]
pub struct ConfigError {
    /// The pipeline's name.
    pub pipeline: String,
    /// The option, e.g. `processors.max_demand` or `batchers[sql].batch_size`.
    pub option: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Options of the processors (Broadway's `processors: [default: ...]`).
///
/// ```
/// use ferroway::pipeline::Processors;
/// let p = Processors::new().concurrency(4).max_demand(50).min_demand(25);
/// # let _ = p;
/// ```
#[derive(Debug, Clone)]
pub struct Processors {
    pub(crate) concurrency: usize,
    pub(crate) max_demand: usize,
    pub(crate) min_demand: Option<usize>,
}

impl Default for Processors {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Processors {
            concurrency: cores,
            max_demand: 1000,
            min_demand: None,
        }
    }
}

impl Processors {
    /// Defaults: one processor per core, `max_demand` 1000, `min_demand` 750.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many processors run at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// The most messages a processor holds at once (from each producer).
    pub fn max_demand(mut self, n: usize) -> Self {
        self.max_demand = n;
        self
    }

    /// A processor asks for more after handling `max_demand - min_demand` messages.
    pub fn min_demand(mut self, n: usize) -> Self {
        self.min_demand = Some(n);
        self
    }

    pub(crate) fn demand(&self) -> (usize, usize) {
        (
            self.max_demand,
            self.min_demand
                .unwrap_or_else(|| crate::stage::default_min_demand(self.max_demand)),
        )
    }
}

/// Options of one batcher (Broadway's `batchers: [name: ...]`).
///
/// ```
/// use std::time::Duration;
/// use ferroway::pipeline::Batcher;
/// // Batches of at most 1 MiB of payload, or whatever arrived within 2 seconds.
/// let b: Batcher<Vec<u8>> = Batcher::new("s3")
///     .batch_size_by(1 << 20, |m: &ferroway::pipeline::Message<Vec<u8>>| m.data().len())
///     .batch_timeout(Duration::from_secs(2))
///     .concurrency(4);
/// # let _ = b;
/// ```
pub struct Batcher<T> {
    pub(crate) name: &'static str,
    pub(crate) size: BatchSize<T>,
    pub(crate) timeout: Duration,
    pub(crate) concurrency: usize,
    pub(crate) max_demand: Option<usize>,
}

impl<T> Clone for Batcher<T> {
    fn clone(&self) -> Self {
        Batcher {
            name: self.name,
            size: self.size.clone(),
            timeout: self.timeout,
            concurrency: self.concurrency,
            max_demand: self.max_demand,
        }
    }
}

impl<T> std::fmt::Debug for Batcher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = match &self.size {
            BatchSize::Count(n) => format!("{n} messages"),
            BatchSize::Weighted(n, _) => format!("{n} units"),
        };
        f.debug_struct("Batcher")
            .field("name", &self.name)
            .field("batch_size", &size)
            .field("batch_timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl<T> Batcher<T> {
    /// A batcher named `name`; defaults: `batch_size` 100, `batch_timeout` 1 s, concurrency 1.
    /// Messages reach it by [`Message::put_batcher`]; the first batcher is the default.
    pub fn new(name: &'static str) -> Self {
        Batcher {
            name,
            size: BatchSize::Count(100),
            timeout: Duration::from_secs(1),
            concurrency: 1,
            max_demand: None,
        }
    }

    /// A batch is emitted once it holds `n` messages.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.size = BatchSize::Count(n);
        self
    }

    /// A batch is emitted before the next message would take it past `max` units, as measured
    /// by `size` (e.g. payload bytes). A single message larger than `max` is a batch of its own.
    pub fn batch_size_by(mut self, max: usize, size: impl Fn(&Message<T>) -> usize + Send + Sync + 'static) -> Self {
        self.size = BatchSize::Weighted(max, Arc::new(size));
        self
    }

    /// A batch is emitted this long after its first message, full or not.
    pub fn batch_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// How many batch processors handle this batcher's batches at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// The most messages the batcher takes from each processor at once (default 1000).
    pub fn max_demand(mut self, n: usize) -> Self {
        self.max_demand = Some(n);
        self
    }
}
