//! Child specifications: what a supervisor starts, and how it treats each exit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::signal::ShutdownSignal;
use crate::resilience::BoxError;

/// When a child is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Restart {
    /// Always restarted, even after a normal exit: a service that should never stop.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit (an error or a panic); a normal exit means
    /// its job is done.
    Transient,
    /// Never restarted; removed from the supervisor once it exits.
    Temporary,
}

pub(crate) type ChildFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type Factory = Arc<dyn Fn(ChildContext) -> ChildFuture + Send + Sync>;

/// How to start (and restart) one child of a [`Supervisor`](super::Supervisor).
///
/// The factory is called for every (re)start with a fresh [`ChildContext`]; the future
/// it returns is the child's whole life. Returning `Ok(())` is a normal exit, returning
/// an error or panicking is abnormal. Children should watch
/// [`ChildContext::cancelled`] and return promptly when asked to stop; a child still
/// running after its shutdown timeout is aborted.
///
/// ```rust
/// use std::time::Duration;
/// use ferroway::resilience::{ChildSpec, Restart};
///
/// let spec = ChildSpec::new("poller", |ctx| async move {
///     loop {
///         tokio::select! {
///             _ = ctx.cancelled() => return Ok(()),
///             _ = tokio::time::sleep(Duration::from_secs(1)) => { /* poll */ }
///         }
///     }
/// })
/// .restart(Restart::Transient)
/// .shutdown_timeout(Duration::from_secs(10));
/// assert_eq!(spec.id(), "poller");
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) id: Arc<str>,
    pub(crate) restart: Restart,
    pub(crate) shutdown_timeout: Option<Duration>,
    factory: Factory,
}

impl ChildSpec {
    /// A permanent child with a 5 second shutdown timeout.
    pub fn new<F, Fut>(id: impl AsRef<str>, factory: F) -> Self
    where
        F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            id: Arc::from(id.as_ref()),
            restart: Restart::Permanent,
            shutdown_timeout: Some(Duration::from_secs(5)),
            factory: Arc::new(move |ctx| Box::pin(factory(ctx))),
        }
    }

    /// Sets the restart type.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// How long the child may take to stop after its shutdown signal before it is
    /// aborted. `None` waits indefinitely, which is the right choice for a child that is
    /// itself a supervisor and shuts its own children down.
    pub fn shutdown_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.shutdown_timeout = timeout.into();
        self
    }

    /// The child's id, unique within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The restart type.
    pub fn restart_type(&self) -> Restart {
        self.restart
    }

    pub(crate) fn spawn_future(&self, ctx: ChildContext) -> ChildFuture {
        (self.factory)(ctx)
    }
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

/// What a running child knows about itself; passed to its factory on every start.
#[derive(Debug, Clone)]
pub struct ChildContext {
    pub(crate) id: Arc<str>,
    pub(crate) supervisor: Arc<str>,
    pub(crate) restarts: u32,
    pub(crate) shutdown: ShutdownSignal,
}

impl ChildContext {
    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name of the supervisor running this child.
    pub fn supervisor(&self) -> &str {
        &self.supervisor
    }

    /// How many times this child has been restarted before this start.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Completes when the supervisor asks this child to stop.
    pub async fn cancelled(&self) {
        self.shutdown.cancelled().await;
    }

    /// Whether the supervisor has asked this child to stop.
    pub fn is_cancelled(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The shutdown signal itself, to hand to sub-tasks of the child.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }
}

/// A snapshot of one child, as listed by
/// [`SupervisorHandle::children`](super::SupervisorHandle::children).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Whether it is running.
    pub state: ChildState,
    /// Its restart type.
    pub restart: Restart,
    /// How many times it has been restarted.
    pub restarts: u32,
}

/// Whether a supervised child is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildState {
    /// Its task is running.
    Running,
    /// It exited and was not restarted (a transient child that finished normally), or
    /// the supervisor has stopped.
    Stopped,
}
