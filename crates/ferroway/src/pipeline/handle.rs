//! A running pipeline: stop it, await it, inspect it, push test messages into it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::ack::Ackers;
use super::producer::Registry;
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

/// Starts draining a pipeline; see [`Pipeline::drainer`].
#[derive(Debug, Clone)]
pub struct Drainer {
    supervisor: SupervisorHandle,
}

impl Drainer {
    /// Starts draining (does not wait). Calling it again does nothing more.
    pub fn drain(&self) {
        let sup = self.supervisor.clone();
        tokio::spawn(async move {
            let _ = sup.shutdown().await;
        });
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
        Drainer {
            supervisor: self.supervisor.clone(),
        }
    }

    /// Waits until the pipeline stops by itself (its producers finished) or fails.
    pub async fn join(self) -> Result<(), PipelineError> {
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
                for a in aborts {
                    a.abort();
                }
                let _ = (&mut stages).await;
                Err(PipelineError::Producers { pipeline: name.clone(), source })
            }
        };
        let _ = supervisor.shutdown().await;
        // Everything is acknowledged: let acknowledgers finish what they handed off.
        ackers.flush().await;
        result
    }

    /// Graceful shutdown: producers stop asking for more (their drain hook runs), every
    /// in-flight message and batch — partial batches included — is finished and
    /// acknowledged, then this returns. Bounded by the shutdown timeout, after which the
    /// stages are stopped and the error says how many messages were left unacknowledged.
    pub async fn stop(self) -> Result<ShutdownReport, PipelineError> {
        let started = Instant::now();
        let (name, timeout) = (self.name.clone(), self.shutdown_timeout);
        let in_flight = self.in_flight.clone();
        let aborts: Vec<_> = self.tasks.iter().map(StageTask::abort_handle).collect();
        let supervisor = self.supervisor.clone();
        let drained = tokio::time::timeout(timeout, async move {
            let _ = supervisor.shutdown().await;
            self.join().await
        })
        .await;
        match drained {
            Ok(Ok(())) => Ok(ShutdownReport {
                elapsed: started.elapsed(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                for a in aborts {
                    a.abort();
                }
                let unacked = in_flight.load(Ordering::Relaxed).max(0) as u64;
                Err(PipelineError::ShutdownTimeout {
                    pipeline: name,
                    timeout,
                    unacked,
                })
            }
        }
    }
}

/// Joins every stage; the first failure wins, but all are awaited.
async fn join_all(tasks: Vec<StageTask>) -> Result<(), StageError> {
    let mut first = Ok(());
    for t in tasks {
        if let Err(e) = t.join().await
            && first.is_ok()
        {
            first = Err(e);
        }
    }
    first
}
