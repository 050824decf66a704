//! The source as a pipeline sees it: producers per slot, and a close that waits for the last
//! `XACK`s.

use std::sync::Arc;

use ferroway::BoxError;
use ferroway::connector::{Producers, Source};
use ferroway::pipeline::BoxFuture;

use crate::ack::AckCmd;
use crate::entry::Entry;
use crate::error::OptionsError;
use crate::options::SourceOptions;
use crate::records::RedisRecords;
use crate::source::RedisSource;

/// A [`Source`] of Redis stream entries: what
/// [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source) takes. Made by
/// [`RedisSource::factory`], which validates the options once.
///
/// Each producer is a [`RedisSource`]: one consumer of the group. With
/// [`producer_concurrency(n)`](ferroway::pipeline::PipelineBuilder::producer_concurrency),
/// producer 0 is the consumer named in the options and producer `i > 0` is consumer
/// `<consumer>-<i>` — a distinct Redis consumer with its own pending entries, so an entry is
/// in flight in one producer only, and a producer restarted by the pipeline (same slot, same
/// name) finds the pending entries of the one it replaces and redelivers them only once they
/// are no longer in flight. The names stay the same from run to run as long as the
/// concurrency does; when a process restarts with fewer producers, the pending entries of the
/// consumers gone are claimed by the others once idle for `min_idle`
/// ([`ClaimOptions`](crate::ClaimOptions)).
///
/// When [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop) returns, the pipeline has
/// awaited [`close`](Source::close): every acknowledgement is `XACK`ed, and each consumer with
/// nothing pending and nothing in flight has left the group. While Redis is down the close
/// waits for it, as acknowledgements do.
///
/// [`records`](Self::records) gives the same source with [`Record`](ferroway::connector::Record)s
/// as data, for any sink.
///
/// ```no_run
/// use ferroway::connector::file::{FileSink, FileSinkOptions};
/// use ferroway::pipeline::{Batcher, Forward, Pipeline};
/// use ferroway_redis::{RedisSource, SourceOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = SourceOptions::new("redis://127.0.0.1:6379", "archive", ["orders"]);
/// let pipeline = Pipeline::builder("archive", Forward::new())
///     .source(RedisSource::factory(opts)?.records())
///     .sink(FileSink::open("orders.ndjson", FileSinkOptions::new()).await?, Batcher::new("file"))
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct RedisSourceFactory {
    opts: Arc<SourceOptions>,
    /// The acknowledgement tasks of the sources made, to close at the pipeline's stop, and
    /// whether each consumer reached Redis.
    producers: Producers<AckCmd>,
}

impl std::fmt::Debug for RedisSourceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSourceFactory")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl RedisSource {
    /// Validates `opts` and returns the [`Source`] a pipeline takes. Nothing connects yet.
    ///
    /// ```
    /// use ferroway_redis::{RedisSource, SourceOptions};
    /// let e = RedisSource::factory(SourceOptions::new("redis://127.0.0.1", "g", ["s"]).max_count(0)).unwrap_err();
    /// assert_eq!(e.to_string(), "invalid option `max_count`: must be at least 1");
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn factory(opts: SourceOptions) -> Result<RedisSourceFactory, OptionsError> {
        opts.validate()?;
        Ok(RedisSourceFactory {
            opts: Arc::new(opts),
            producers: Producers::new(AckCmd::Close),
        })
    }
}

impl RedisSourceFactory {
    /// The options.
    pub fn options(&self) -> &SourceOptions {
        &self.opts
    }

    /// The same source with [`Record`](ferroway::connector::Record)s as data: see
    /// [`RedisRecords`].
    pub fn records(self) -> RedisRecords {
        RedisRecords::new(self)
    }
}

impl Source for RedisSourceFactory {
    type Data = Entry;
    type Producer = RedisSource;

    fn producer(&self, index: usize) -> Result<RedisSource, BoxError> {
        let opts = match index {
            0 => self.opts.clone(),
            i => Arc::new(self.opts.for_slot(i)),
        };
        let source = RedisSource::start(opts);
        self.producers.add(source.acknowledgements(), source.reach());
        Ok(source)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        // All at once: each may wait for Redis (to send its last XACKs, to leave the group).
        self.producers.finish()
    }

    /// Whether every consumer it made has reached Redis since it started.
    fn connected(&self) -> bool {
        self.producers.connected()
    }
}
