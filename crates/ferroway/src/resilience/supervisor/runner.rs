//! The supervisor's task: owns the children, reacts to their exits and to commands.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

use super::child::{ChildContext, ChildInfo, ChildSpec, ChildState, Restart};
use super::signal::ShutdownSignal;
use super::{Command, Strategy, Supervisor, SupervisorError};
use crate::resilience::{Backoff, BoxError};

/// How a child's task ended.
enum Exit {
    Normal,
    Error(String),
    Panic(String),
    Aborted,
}

impl Exit {
    fn from_join(result: Result<Result<(), BoxError>, JoinError>) -> Self {
        match result {
            Ok(Ok(())) => Self::Normal,
            Ok(Err(err)) => Self::Error(error_chain(&*err)),
            Err(join) if join.is_panic() => {
                let payload = join.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                Self::Panic(message)
            }
            Err(_) => Self::Aborted,
        }
    }

    fn is_normal(&self) -> bool {
        matches!(self, Self::Normal)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal exit"),
            Self::Error(e) => write!(f, "error: {e}"),
            Self::Panic(msg) => write!(f, "panic: {msg}"),
            Self::Aborted => f.write_str("task aborted"),
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct Running {
    handle: JoinHandle<Result<(), BoxError>>,
    signal: ShutdownSignal,
}

struct Child {
    spec: ChildSpec,
    running: Option<Running>,
    restarts: u32,
    /// Wait this long before the next start (a restart's backoff).
    delay: Option<Duration>,
}

pub(super) struct Runner {
    name: Arc<str>,
    strategy: Strategy,
    max_restarts: u32,
    period: Duration,
    restart_backoff: Backoff,
    children: Vec<Child>,
    restart_times: VecDeque<Instant>,
    snapshot: watch::Sender<Vec<ChildInfo>>,
}

impl Runner {
    pub(super) fn new(spec: Supervisor, snapshot: watch::Sender<Vec<ChildInfo>>) -> Self {
        Self {
            name: spec.name,
            strategy: spec.strategy,
            max_restarts: spec.max_restarts,
            period: spec.period,
            restart_backoff: spec.restart_backoff,
            children: spec
                .children
                .into_iter()
                .map(|spec| Child {
                    spec,
                    running: None,
                    restarts: 0,
                    delay: None,
                })
                .collect(),
            restart_times: VecDeque::new(),
            snapshot,
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        stop: ShutdownSignal,
    ) -> Result<(), SupervisorError> {
        let outcome = loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break Ok(()),
                Some(command) = commands.recv() => self.on_command(command).await,
                (index, result) = next_exit(&mut self.children) => {
                    if let Err(err) = self.on_exit(index, Exit::from_join(result)).await {
                        break Err(err);
                    }
                }
            }
            self.publish();
        };
        self.terminate_range(0..self.children.len()).await;
        self.publish();
        match &outcome {
            Ok(()) => tracing::info!(supervisor = %self.name, "supervisor stopped"),
            Err(err) => tracing::error!(supervisor = %self.name, error = %err, "supervisor failed"),
        }
        outcome
    }

    pub(super) fn start_all(&mut self) {
        tracing::info!(supervisor = %self.name, children = self.children.len(), "supervisor starting");
        self.start_range(0..self.children.len());
        self.publish();
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::StartChild(spec, reply) => {
                let result = self.add_child(spec);
                let _ = reply.send(result);
            }
            Command::TerminateChild(id, reply) => {
                let result = match self.children.iter().position(|c| *c.spec.id == *id) {
                    Some(index) => {
                        self.terminate_range(index..index + 1).await;
                        self.children.remove(index);
                        Ok(())
                    }
                    None => Err(SupervisorError::ChildNotFound {
                        supervisor: self.name.to_string(),
                        child: id,
                    }),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn add_child(&mut self, spec: ChildSpec) -> Result<(), SupervisorError> {
        if self.strategy != Strategy::OneForOne {
            return Err(SupervisorError::DynamicChildrenUnsupported {
                supervisor: self.name.to_string(),
                strategy: self.strategy,
            });
        }
        if self.children.iter().any(|c| c.spec.id == spec.id) {
            return Err(SupervisorError::DuplicateChild {
                supervisor: self.name.to_string(),
                child: spec.id.to_string(),
            });
        }
        self.children.push(Child {
            spec,
            running: None,
            restarts: 0,
            delay: None,
        });
        self.start_range(self.children.len() - 1..self.children.len());
        Ok(())
    }

    async fn on_exit(&mut self, index: usize, exit: Exit) -> Result<(), SupervisorError> {
        let child = &mut self.children[index];
        child.running = None;
        let id = child.spec.id.clone();
        let restart = match child.spec.restart {
            Restart::Permanent => true,
            Restart::Transient => !exit.is_normal(),
            Restart::Temporary => false,
        };
        if !restart {
            tracing::info!(supervisor = %self.name, child = %id, reason = %exit, "child exited");
            if child.spec.restart == Restart::Temporary {
                self.children.remove(index);
            }
            return Ok(());
        }

        let now = Instant::now();
        while self
            .restart_times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.period)
        {
            self.restart_times.pop_front();
        }
        self.restart_times.push_back(now);
        if self.restart_times.len() > self.max_restarts as usize {
            return Err(SupervisorError::IntensityExceeded {
                supervisor: self.name.to_string(),
                child: id.to_string(),
                max_restarts: self.max_restarts,
                period: self.period,
                reason: exit.to_string(),
            });
        }

        let affected = match self.strategy {
            Strategy::OneForOne => index..index + 1,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => index..self.children.len(),
        };
        self.terminate_range(affected.clone()).await;
        // Temporary siblings stopped on the way are gone for good, as in OTP.
        let mut end = affected.end;
        let mut i = affected.start;
        while i < end {
            if i != index && self.children[i].spec.restart == Restart::Temporary {
                self.children.remove(i);
                end -= 1;
            } else {
                i += 1;
            }
        }
        // A policy that runs out keeps its last delay: never back to a tight loop.
        let delay = self.restart_backoff.delays().take(self.restart_times.len()).last();
        for child in &mut self.children[affected.start..end] {
            child.restarts += 1;
            child.delay = delay;
            let cause = if *child.spec.id == *id {
                exit.to_string()
            } else {
                format!("sibling `{id}` exited ({exit})")
            };
            tracing::warn!(
                supervisor = %self.name,
                child = %child.spec.id,
                reason = %cause,
                restarts = child.restarts,
                delay = ?child.delay,
                "restarting child"
            );
            metrics::counter!(
                "ferroway_supervisor_restarts_total",
                "supervisor" => self.name.clone(),
                "child" => child.spec.id.clone()
            )
            .increment(1);
        }
        self.start_range(affected.start..end);
        Ok(())
    }

    /// Spawns every child in `range` that is not running, in order.
    fn start_range(&mut self, range: Range<usize>) {
        for child in &mut self.children[range] {
            if child.running.is_some() {
                continue;
            }
            let signal = ShutdownSignal::new();
            let ctx = ChildContext {
                id: child.spec.id.clone(),
                supervisor: self.name.clone(),
                restarts: child.restarts,
                shutdown: signal.clone(),
            };
            tracing::debug!(supervisor = %self.name, child = %child.spec.id, "starting child");
            let handle = match child.delay.take().filter(|d| !d.is_zero()) {
                None => tokio::spawn(child.spec.spawn_future(ctx)),
                Some(delay) => {
                    // The restart begins after the backoff: the factory runs then, not now.
                    let (spec, stop) = (child.spec.clone(), signal.clone());
                    tokio::spawn(async move {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => spec.spawn_future(ctx).await,
                            () = stop.cancelled() => Ok(()),
                        }
                    })
                }
            };
            child.running = Some(Running { handle, signal });
        }
    }

    /// Stops every running child in `range`, last first.
    async fn terminate_range(&mut self, range: Range<usize>) {
        for child in self.children[range].iter_mut().rev() {
            if let Some(running) = child.running.take() {
                terminate(&self.name, &child.spec, running).await;
            }
        }
    }

    fn publish(&self) {
        let infos = self
            .children
            .iter()
            .map(|c| ChildInfo {
                id: c.spec.id.to_string(),
                state: if c.running.is_some() {
                    ChildState::Running
                } else {
                    ChildState::Stopped
                },
                restart: c.spec.restart,
                restarts: c.restarts,
            })
            .collect();
        self.snapshot.send_replace(infos);
    }
}

async fn terminate(supervisor: &str, spec: &ChildSpec, running: Running) {
    let Running { mut handle, signal } = running;
    signal.cancel();
    let finished = match spec.shutdown_timeout {
        Some(limit) => tokio::time::timeout(limit, &mut handle).await.ok(),
        None => Some((&mut handle).await),
    };
    match finished {
        Some(result) => {
            let exit = Exit::from_join(result);
            tracing::debug!(supervisor, child = %spec.id, reason = %exit, "child stopped");
        }
        None => {
            tracing::warn!(
                supervisor,
                child = %spec.id,
                timeout = ?spec.shutdown_timeout,
                "child ignored shutdown signal; aborting"
            );
            handle.abort();
            let _ = handle.await;
        }
    }
}

/// Resolves when any running child's task ends, with its index.
fn next_exit(children: &mut [Child]) -> impl Future<Output = (usize, Result<Result<(), BoxError>, JoinError>)> + '_ {
    poll_fn(move |cx| {
        for (index, child) in children.iter_mut().enumerate() {
            let Some(running) = &mut child.running else {
                continue;
            };
            if let Poll::Ready(result) = Pin::new(&mut running.handle).poll(cx) {
                return Poll::Ready((index, result));
            }
        }
        Poll::Pending
    })
}
