//! A running pipeline: stop it, await it, inspect it, push test messages into it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::ack::Ackers;
use super::builder::Close;
use super::producer::Registry;
use crate::connector::Sink;
use crate::error::StageError;
use crate::resilience::{SupervisorError, SupervisorHandle};
use crate::stage::StageTask;

/// Names of a pipeline's stages, as they appear in logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Producer stages.
    pub producers: Vec<String>,
    /// Processor stages.
    pub processors: Vec<String>,
    /// Batchers, each with its batch processors.
    pub batchers: Vec<BatcherTopology>,
}

/// One batcher of a [`Topology`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatcherTopology {
    /// The batcher's configured name.
    pub name: String,
    /// Its stage's name.
    pub batcher: String,
    /// Its batch processor stages.
    pub batch_processors: Vec<String>,
}

/// Why a pipeline stopped abnormally.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PipelineError {
    /// A stage failed (handler errors and panics fail messages, not stages: this is a
    /// failure of the pipeline's own machinery or of a partition function).
    #[error("pipeline `{pipeline}`: {source}")]
    Stage {
        /// The pipeline's name.
        pipeline: Arc<str>,
        /// What failed.
        source: StageError,
    },
    /// Producers kept crashing beyond the restart limit.
    #[error("pipeline `{pipeline}`: producers failed: {source}")]
    Producers {
        /// The pipeline's name.
        pipeline: Arc<str>,
        /// The supervisor's report.
        source: SupervisorError,
    },
    /// Draining took longer than the shutdown timeout; the pipeline was stopped anyway.
    #[error("pipeline `{pipeline}`: shutdown timed out after {timeout:?} with {unacked} messages unacknowledged")]
    ShutdownTimeout {
        /// The pipeline's name.
        pipeline: Arc<str>,
        /// The timeout that passed.
        timeout: Duration,
        /// Messages emitted by producers and never acknowledged; their source will deliver
        /// them again (at-least-once).
        unacked: u64,
    },
}

/// When draining began: from then on, every way of waiting for the pipeline is bounded by
/// the shutdown timeout.
#[derive(Debug, Default)]
pub(crate) struct DrainClock {
    started: OnceLock<Instant>,
    changed: Notify,
}

impl DrainClock {
    /// Records the start; true the first time.
    fn start(&self) -> bool {
        let first = self.started.set(Instant::now()).is_ok();
        self.changed.notify_waiters();
        first
    }

    /// Resolves `timeout` after draining began (never, if it does not).
    async fn expired(&self, timeout: Duration) {
        let started = loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(t) = self.started.get() {
                break *t;
            }
            changed.await;
        };
        match started.checked_add(timeout) {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    }
}

/// Starts draining a pipeline; see [`Pipeline::drainer`].
#[derive(Clone)]
pub struct Drainer {
    pipeline: Arc<str>,
    supervisor: SupervisorHandle,
    clock: Arc<DrainClock>,
    /// Tells every running producer to drain, all at once.
    producers: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Drainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drainer")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

impl Drainer {
    /// Starts draining (does not wait). Calling it again does nothing more. From now on,
    /// [`Pipeline::join`] returns within the shutdown timeout.
    pub fn drain(&self) {
        if self.clock.start() {
            tracing::info!(pipeline = %self.pipeline, "draining: producers stop, in-flight messages finish");
            // Every producer stops asking now; the supervisor then waits for them one by one.
            (self.producers)();
            let sup = self.supervisor.clone();
            tokio::spawn(async move {
                let _ = sup.shutdown().await;
            });
        }
    }
}

/// What a graceful stop achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// How long draining took.
    pub elapsed: Duration,
}

/// A running pipeline. Build one with [`Pipeline::builder`].
///
/// See the [module documentation](crate::pipeline) for a complete example.
pub struct Pipeline<T> {
    pub(crate) name: Arc<str>,
    pub(crate) in_flight: Arc<AtomicI64>,
    pub(crate) ackers: Arc<Ackers>,
    pub(crate) supervisor: SupervisorHandle,
    pub(crate) tasks: Vec<StageTask>,
    pub(crate) registry: Registry<T>,
    pub(crate) topology: Topology,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) clock: Arc<DrainClock>,
    pub(crate) sinks: Vec<Arc<dyn Sink<T>>>,
    pub(crate) close: Option<Close>,
}

impl<T> std::fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stages and their names.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Messages emitted and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed).max(0) as u64
    }

    pub(crate) fn in_flight_counter(&self) -> &AtomicI64 {
        &self.in_flight
    }

    /// Starts draining without waiting: producers stop asking for more, everything in flight
    /// is finished and acknowledged. Await [`join`](Self::join) for the end.
    pub fn drain(&self) {
        self.drainer().drain();
    }

    /// A cloneable handle that starts draining from anywhere — e.g. a signal handler — while
    /// another task awaits [`join`](Self::join).
    ///
    /// ```
    /// # use ferroway::pipeline::{Handler, Message, Pipeline};
    /// # use ferroway::pipeline::testing::TestProducer;
    /// # struct H;
    /// # impl Handler for H {
    /// #     type Data = u32;
    /// #     async fn handle_message(&self, _: &mut Message<u32>) -> Result<(), ferroway::BoxError> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pipeline = Pipeline::builder("p", H).producer(TestProducer::new).start().await?;
    /// let drainer = pipeline.drainer();
    /// tokio::spawn(async move {
    ///     // e.g. tokio::signal::ctrl_c().await
    ///     drainer.drain();
    /// });
    /// pipeline.join().await?;
    /// # Ok(()) }
    /// ```
    pub fn drainer(&self) -> Drainer {
        let registry = self.registry.clone();
        Drainer {
            pipeline: self.name.clone(),
            supervisor: self.supervisor.clone(),
            clock: self.clock.clone(),
            producers: Arc::new(move || {
                for p in registry.lock().unwrap_or_else(|e| e.into_inner()).iter().flatten() {
                    p.drain();
                }
            }),
        }
    }

    /// Waits until the pipeline stops by itself (its producers finished), fails, or — once
    /// [draining](Self::drain) began — has drained. A failing stage or producer returns its
    /// error at once. After draining began this returns within the shutdown timeout, with
    /// [`PipelineError::ShutdownTimeout`] if the drain did not finish in time (what was left
    /// unacknowledged is delivered again by the source).
    pub async fn join(self) -> Result<(), PipelineError> {
        let name = self.name.clone();
        let (timeout, clock) = (self.shutdown_timeout, self.clock.clone());
        let in_flight = self.in_flight.clone();
        let aborts: Vec<_> = self.tasks.iter().map(StageTask::abort_handle).collect();
        let result = tokio::select! {
            r = self.finish() => r,
            // Producers have the same timeout in the supervisor, which aborts them then.
            _ = clock.expired(timeout) => {
                for a in aborts {
                    a.abort();
                }
                Err(PipelineError::ShutdownTimeout {
                    pipeline: name.clone(),
                    timeout,
                    unacked: in_flight.load(Ordering::Relaxed).max(0) as u64,
                })
            }
        };
        match &result {
            Ok(()) => tracing::info!(pipeline = %name, "pipeline stopped"),
            Err(e) => tracing::error!(pipeline = %name, error = %crate::error::Chain(e), "pipeline failed"),
        }
        result
    }

    /// Waits for every stage, then for the producers' supervisor and the acknowledgers.
    async fn finish(self) -> Result<(), PipelineError> {
        let (sinks, close) = (self.sinks.clone(), self.close.clone());
        let ackers = self.ackers.clone();
        let name = self.name.clone();
        let supervisor = self.supervisor.clone();
        let aborts: Vec<_> = self.tasks.iter().map(StageTask::abort_handle).collect();
        let stages = join_all(self.tasks);
        tokio::pin!(stages);
        let result = tokio::select! {
            r = &mut stages => r.map_err(|source| PipelineError::Stage { pipeline: name.clone(), source }),
            Err(source) = supervisor.wait() => {
                // Producers are gone for good. What is in flight is not acknowledged, so the
                // source delivers it again to the next run (at-least-once).
                for a in &aborts {
                    a.abort();
                }
                let _ = (&mut stages).await;
                Err(PipelineError::Producers { pipeline: name.clone(), source })
            }
        };
        if result.is_err() {
            for a in &aborts {
                a.abort();
            }
        }
        let _ = supervisor.shutdown().await;
        // Everything is acknowledged: let acknowledgers finish what they handed off, and the
        // source commit it.
        ackers.flush().await;
        if let Some(close) = close {
            close().await;
        }
        for sink in sinks {
            if let Err(e) = sink.close().await {
                tracing::warn!(pipeline = %name, error = %crate::error::Chain(&*e), "a sink failed to close");
            }
        }
        result
    }

    /// Graceful shutdown: producers stop asking for more (their drain hook runs), every
    /// in-flight message and batch — partial batches included — is finished and
    /// acknowledged, then this returns. Bounded by the shutdown timeout, after which the
    /// stages are stopped and the error says how many messages were left unacknowledged.
    pub async fn stop(self) -> Result<ShutdownReport, PipelineError> {
        let started = Instant::now();
        self.drain();
        self.join().await?;
        Ok(ShutdownReport {
            elapsed: started.elapsed(),
        })
    }

    /// Runs until `signal` resolves, then drains — the shape of a service's `main`. Returns
    /// at once with the error if the pipeline fails first, and `Ok` if it finishes by itself
    /// first (a finite source). The drain is bounded by the shutdown timeout.
    ///
    /// ```
    /// # use ferroway::pipeline::{Handler, Message, Pipeline};
    /// # use ferroway::pipeline::testing::TestProducer;
    /// # struct H;
    /// # impl Handler for H {
    /// #     type Data = u32;
    /// #     async fn handle_message(&self, _: &mut Message<u32>) -> Result<(), ferroway::BoxError> { Ok(()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pipeline = Pipeline::builder("p", H).producer(TestProducer::new).start().await?;
    /// // In a service: pipeline.run_until(ferroway::shutdown_signal()).await?;
    /// pipeline.run_until(tokio::time::sleep(std::time::Duration::from_millis(10))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), PipelineError> {
        let drainer = self.drainer();
        let join = self.join();
        tokio::pin!(join);
        tokio::select! {
            r = &mut join => r,
            () = signal => {
                drainer.drain();
                join.await
            }
        }
    }
}

/// Joins every stage; returns at the first failure, or once all stopped.
async fn join_all(tasks: Vec<StageTask>) -> Result<(), StageError> {
    let mut all: FuturesUnordered<_> = tasks.into_iter().map(StageTask::join).collect();
    while let Some(r) = all.next().await {
        r?;
    }
    Ok(())
}
