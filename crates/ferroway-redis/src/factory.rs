//! The source as a pipeline sees it: producers per slot, and a close that waits for the last
//! `XACK`s.

use std::sync::{Arc, Mutex};

use ferroway::BoxError;
use ferroway::connector::Source;
use ferroway::pipeline::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::ack::AckCmd;
use crate::entry::Entry;
use crate::error::OptionsError;
use crate::options::SourceOptions;
use crate::records::RedisRecords;
use crate::source::RedisSource;
use ferroway::resilience::Reach;

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
    /// The acknowledgement tasks of the sources made, to close at the pipeline's stop.
    acks: Mutex<Vec<mpsc::UnboundedSender<AckCmd>>>,
    /// Whether each producer slot's consumer reached Redis (a restarted producer shares its
    /// slot's record).
    reaches: Mutex<Vec<Arc<Reach>>>,
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
            acks: Mutex::default(),
            reaches: Mutex::default(),
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
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        // Those of producers that were replaced and whose messages are all acknowledged.
        acks.retain(|tx| !tx.is_closed());
        acks.push(source.acknowledgements());
        drop(acks);
        let reach = source.reach();
        let mut reaches = self.reaches.lock().unwrap_or_else(|p| p.into_inner());
        if !reaches.iter().any(|r| Arc::ptr_eq(r, &reach)) {
            reaches.push(reach);
        }
        Ok(source)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        let acks = std::mem::take(&mut *self.acks.lock().unwrap_or_else(|p| p.into_inner()));
        // All at once: each may wait for Redis (to send its last XACKs, to leave the group).
        let closing: Vec<_> = acks
            .into_iter()
            .filter_map(|tx| {
                let (reply, closed) = oneshot::channel();
                tx.send(AckCmd::Close(reply)).is_ok().then_some(closed)
            })
            .collect();
        Box::pin(async move {
            for closed in closing {
                let _ = closed.await;
            }
        })
    }

    /// Whether every consumer it made has reached Redis since it started.
    fn connected(&self) -> bool {
        let reaches = self.reaches.lock().unwrap_or_else(|p| p.into_inner());
        !reaches.is_empty() && reaches.iter().all(|r| r.reached())
    }
}
