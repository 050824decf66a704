//! OTP-style supervision of Tokio tasks.
//!
//! A [`Supervisor`] starts its children in order, watches them, restarts them according
//! to its [`Strategy`] and each child's [`Restart`] type, and gives up — stopping every
//! child and failing with [`SupervisorError::IntensityExceeded`] — when restarts come
//! faster than its restart intensity allows. Shutdown goes in reverse start order, each
//! child getting a [`ShutdownSignal`] and a grace period before it is aborted.
//!
//! Children are plain futures, so "started" means "spawned": there is no init handshake,
//! and a child that depends on a sibling being ready must wait for it itself. Start order
//! is the order in which factories are called and tasks spawned; a nested supervisor
//! spawns its own children synchronously when it is started, so the order holds across
//! a whole tree.

mod child;
mod runner;
mod signal;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::resilience::Backoff;

pub use child::{ChildContext, ChildInfo, ChildSpec, ChildState, Restart};
pub use signal::ShutdownSignal;

/// Which children are restarted when one of them exits abnormally (or, for permanent
/// children, at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Only the child that exited. Children are independent.
    #[default]
    OneForOne,
    /// Every child: the others are stopped (in reverse order) and all are started again.
    /// For children that cannot work without each other.
    OneForAll,
    /// The child that exited and every child started after it, which depend on it.
    RestForOne,
}

/// Errors reported by a supervisor and its handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// Restarts came faster than allowed; the supervisor stopped all its children.
    #[error(
        "supervisor `{supervisor}` gave up: more than {max_restarts} restarts within {period:?} \
         (last: child `{child}` exited with {reason})"
    )]
    IntensityExceeded {
        /// The supervisor's name.
        supervisor: String,
        /// The child whose exit broke the limit.
        child: String,
        /// Restarts allowed within `period`.
        max_restarts: u32,
        /// The intensity period.
        period: Duration,
        /// How that child exited.
        reason: String,
    },
    /// A child with this id already exists.
    #[error("supervisor `{supervisor}` already has a child `{child}`")]
    DuplicateChild {
        /// The supervisor's name.
        supervisor: String,
        /// The duplicated id.
        child: String,
    },
    /// No child with this id.
    #[error("supervisor `{supervisor}` has no child `{child}`")]
    ChildNotFound {
        /// The supervisor's name.
        supervisor: String,
        /// The id that was looked up.
        child: String,
    },
    /// Children can be added at run time only under [`Strategy::OneForOne`].
    #[error("supervisor `{supervisor}` uses {strategy:?}; dynamic children need OneForOne")]
    DynamicChildrenUnsupported {
        /// The supervisor's name.
        supervisor: String,
        /// Its strategy.
        strategy: Strategy,
    },
    /// The supervisor has already stopped.
    #[error("supervisor `{supervisor}` is not running")]
    NotRunning {
        /// The supervisor's name.
        supervisor: String,
    },
    /// The supervisor's own task ended without reporting (it panicked or its runtime
    /// shut down).
    #[error("supervisor `{supervisor}` task ended unexpectedly")]
    Crashed {
        /// The supervisor's name.
        supervisor: String,
    },
}

/// A supervisor specification: name, strategy, restart intensity and ordered children.
///
/// It is a reusable template (`Clone`); [`start`](Supervisor::start) runs one instance.
/// [`into_child_spec`](Supervisor::into_child_spec) turns it into a child of another
/// supervisor, for supervision trees.
///
/// # Example
///
/// ```rust
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use ferroway::resilience::{ChildSpec, Strategy, Supervisor};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let starts = Arc::new(AtomicU32::new(0));
/// let counter = starts.clone();
/// let flaky = ChildSpec::new("flaky", move |ctx| {
///     counter.fetch_add(1, Ordering::SeqCst);
///     async move {
///         if ctx.restarts() == 0 {
///             return Err("first run fails".into());
///         }
///         ctx.cancelled().await;
///         Ok(())
///     }
/// });
///
/// let handle = Supervisor::new("app")
///     .strategy(Strategy::OneForOne)
///     .intensity(3, Duration::from_secs(5))
///     .child(flaky)
///     .start()
///     .expect("valid spec");
///
/// tokio::time::sleep(Duration::from_millis(150)).await;
/// assert_eq!(starts.load(Ordering::SeqCst), 2); // failed once, restarted 100 ms later
/// handle.shutdown().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Supervisor {
    name: Arc<str>,
    strategy: Strategy,
    max_restarts: u32,
    period: Duration,
    restart_backoff: Backoff,
    children: Vec<ChildSpec>,
}

impl Supervisor {
    /// A one-for-one supervisor allowing 3 restarts within 5 seconds, waiting 100 ms before
    /// a restart (doubling with each restart within the period, up to 5 s), with no children.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self {
            name: Arc::from(name.as_ref()),
            strategy: Strategy::OneForOne,
            max_restarts: 3,
            period: Duration::from_secs(5),
            restart_backoff: Backoff::exponential(Duration::from_millis(100)).cap(Duration::from_secs(5)),
            children: Vec::new(),
        }
    }

    /// How long to wait before restarting a child: the policy's n-th delay for the n-th
    /// restart within the intensity period, so a child that fails at once is not restarted
    /// in a tight loop. A shutdown during the wait cancels the restart.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferroway::resilience::{Backoff, Supervisor};
    /// let sup = Supervisor::new("workers").restart_backoff(Backoff::constant(Duration::from_millis(10)));
    /// # let _ = sup;
    /// ```
    pub fn restart_backoff(mut self, policy: Backoff) -> Self {
        self.restart_backoff = policy;
        self
    }

    /// Sets the restart strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Allows at most `max_restarts` restarts within any `period`; one more makes the
    /// supervisor stop its children and fail. `max_restarts = 0` fails on the first exit
    /// that calls for a restart.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.period = period;
        self
    }

    /// Appends a child; children start in the order they are added.
    pub fn child(mut self, spec: ChildSpec) -> Self {
        self.children.push(spec);
        self
    }

    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Spawns the supervisor on the current Tokio runtime and starts its children.
    ///
    /// Dropping every handle detaches the supervisor (like dropping a `JoinHandle`); it
    /// keeps running until it fails.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::DuplicateChild`] if two children share an id.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(self) -> Result<SupervisorHandle, SupervisorError> {
        for (i, spec) in self.children.iter().enumerate() {
            if self.children[..i].iter().any(|other| other.id == spec.id) {
                return Err(SupervisorError::DuplicateChild {
                    supervisor: self.name.to_string(),
                    child: spec.id.to_string(),
                });
            }
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (outcome_tx, outcome_rx) = watch::channel(None);
        let (children_tx, children_rx) = watch::channel(Vec::new());
        let stop = ShutdownSignal::new();
        let handle = SupervisorHandle {
            name: self.name.clone(),
            commands: cmd_tx,
            outcome: outcome_rx,
            children: children_rx,
            stop: stop.clone(),
        };
        let mut runner = runner::Runner::new(self, children_tx);
        // Starting children here rather than in the spawned task makes start order
        // hold across a tree: a nested supervisor's children are spawned before the
        // parent moves on to the nested supervisor's next sibling.
        runner.start_all();
        tokio::spawn(async move {
            let outcome = runner.run(cmd_rx, stop).await;
            outcome_tx.send_replace(Some(outcome));
        });
        Ok(handle)
    }

    /// Wraps this supervisor as a child of another one.
    ///
    /// Each (re)start of the child starts a fresh instance of this supervisor; the
    /// parent's shutdown signal shuts it down gracefully, and if it gives up (restart
    /// intensity exceeded) the parent sees an abnormal exit. The spec is permanent, with
    /// no shutdown timeout, and its id is the supervisor's name.
    pub fn into_child_spec(self) -> ChildSpec {
        let id = self.name.clone();
        ChildSpec::new(id, move |ctx: ChildContext| {
            let started = self.clone().start();
            // If the parent aborts this child (or drops it before it first runs), stop
            // the nested tree rather than leaving its tasks orphaned.
            let guard = started.as_ref().ok().map(|h| StopOnDrop(h.stop.clone()));
            async move {
                let _guard = guard;
                let handle = started?;
                tokio::select! {
                    outcome = handle.wait() => outcome?,
                    () = ctx.cancelled() => handle.shutdown().await?,
                }
                Ok(())
            }
        })
        .shutdown_timeout(None)
    }
}

struct StopOnDrop(ShutdownSignal);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub(crate) enum Command {
    StartChild(ChildSpec, oneshot::Sender<Result<(), SupervisorError>>),
    TerminateChild(String, oneshot::Sender<Result<(), SupervisorError>>),
}

/// Controls a running supervisor. Cheap to clone.
#[derive(Clone)]
pub struct SupervisorHandle {
    name: Arc<str>,
    commands: mpsc::UnboundedSender<Command>,
    outcome: watch::Receiver<Option<Result<(), SupervisorError>>>,
    children: watch::Receiver<Vec<ChildInfo>>,
    stop: ShutdownSignal,
}

impl fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SupervisorHandle {
    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops every child in reverse start order, then the supervisor; returns its
    /// outcome (an error if it had already failed).
    pub async fn shutdown(&self) -> Result<(), SupervisorError> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until the supervisor stops: `Ok` after [`shutdown`](Self::shutdown), an
    /// error if it gave up.
    pub async fn wait(&self) -> Result<(), SupervisorError> {
        let mut outcome = self.outcome.clone();
        match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or(Ok(())),
            Err(_) => Err(SupervisorError::Crashed {
                supervisor: self.name.to_string(),
            }),
        }
    }

    /// Whether the supervisor has stopped.
    pub fn is_finished(&self) -> bool {
        self.outcome.borrow().is_some() || self.commands.is_closed()
    }

    /// The children in start order, with their state and restart counts.
    pub fn children(&self) -> Vec<ChildInfo> {
        self.children.borrow().clone()
    }

    /// Adds and starts a child at run time (one-for-one supervisors only). The child
    /// joins the end of the start order.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<(), SupervisorError> {
        self.request(|reply| Command::StartChild(spec, reply)).await
    }

    /// Stops a child gracefully (shutdown signal, then abort after its timeout) and
    /// removes it, so it is not restarted.
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id = id.to_owned();
        self.request(|reply| Command::TerminateChild(id, reply)).await
    }

    async fn request(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), SupervisorError>>) -> Command,
    ) -> Result<(), SupervisorError> {
        let not_running = || SupervisorError::NotRunning {
            supervisor: self.name.to_string(),
        };
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).map_err(|_| not_running())?;
        response.await.map_err(|_| not_running())?
    }
}
