//! `ferroway run`: every file's pipeline, run at once until they finish or a signal drains
//! them.
//!
//! - The first SIGINT/SIGTERM drains: sources stop reading, what is in flight is finished,
//!   written and acknowledged, the sources commit — then the process exits.
//! - A second signal exits at once. Unfinished work is not acknowledged, so the sources
//!   deliver it again on the next run (at-least-once; no loss).
//! - A pipeline that fails drains the others, and the exit code says so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ferroway::connector::Source;
use ferroway::error::Chain;
use ferroway::pipeline::{Drainer, PipelineError};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::assemble::{self, BuildError};
use crate::config::{self, ConfigErrors, PipelineConfig};
use crate::metrics::{Readiness, State};
use crate::progress::{self, Mode, Progress};
use crate::registry::Registry;
use crate::signals::Signals;
use crate::stats::{self, PipelineStats};

/// How `run` shows and serves what happens.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Progress display.
    pub progress: Mode,
    /// Serve `/metrics`, `/health` and `/ready` here.
    pub metrics: Option<SocketAddr>,
}

/// Why a run did not finish cleanly. The process's exit code is [`RunError::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file is not valid (nothing was started).
    #[error("{}", .0.iter().map(ConfigErrors::render).collect::<Vec<_>>().join("\n\n"))]
    Config(Vec<ConfigErrors>),
    /// Two files name the same pipeline.
    #[error("{first} and {second} both name pipeline `{name}`: give one of them another `name`")]
    DuplicateName {
        /// The pipeline's name.
        name: String,
        /// The first file.
        first: String,
        /// The second file.
        second: String,
    },
    /// A connector could not be built (nothing was started).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The metrics address could not be served.
    #[error("--metrics {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    /// A pipeline's options were refused when it started.
    #[error("{file}: pipeline `{name}` did not start: {source}")]
    Start {
        /// The file.
        file: String,
        /// The pipeline.
        name: String,
        /// Why.
        source: ferroway::pipeline::ConfigError,
    },
    /// One or more pipelines failed while running.
    #[error("{}", .0.join("\n"))]
    Failed(Vec<String>),
}

impl RunError {
    /// 2 for a configuration the command refused before starting anything, 1 for a failure
    /// while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) | RunError::DuplicateName { .. } => 2,
            _ => 1,
        }
    }
}

/// Reads every file (all of them, so every error is reported at once).
///
/// # Errors
/// The errors of every invalid file.
pub fn load_all(files: &[PathBuf], registry: &Registry) -> Result<Vec<PipelineConfig>, RunError> {
    let mut configs = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match config::load(f, registry) {
            Ok(c) => configs.push(c),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(RunError::Config(errors));
    }
    for (i, c) in configs.iter().enumerate() {
        if let Some(first) = configs[..i].iter().find(|o| o.name == c.name) {
            return Err(RunError::DuplicateName {
                name: c.name.clone(),
                first: first.file.display().to_string(),
                second: c.file.display().to_string(),
            });
        }
    }
    Ok(configs)
}

/// A started pipeline.
struct Running {
    name: String,
    stats: Arc<PipelineStats>,
    drainer: Drainer,
}

/// Runs the pipelines of `files` until they finish (finite sources) or a signal drains them;
/// prints a summary of each to stderr.
///
/// # Errors
/// A file that is not valid, a connector that cannot be built, a pipeline that failed.
pub async fn run(files: &[PathBuf], registry: &Registry, options: RunOptions) -> Result<(), RunError> {
    // Before anything is built: an early signal must drain, not kill.
    let mut signals = Signals::listen().map_err(RunError::Signals)?;
    let mut configs = load_all(files, registry)?;
    let (all_stats, prometheus) = stats::install(options.metrics.is_some());
    let readiness = Arc::new(Readiness::new(configs.iter().map(|c| c.name.clone())));
    if let (Some(addr), Some(handle)) = (options.metrics, prometheus) {
        crate::metrics::serve(addr, handle, readiness.clone())
            .await
            .map_err(|source| RunError::Metrics { addr, source })?;
    }

    let started = Instant::now();
    let mut running = Vec::new();
    let mut joins = FuturesUnordered::new();
    for (i, config) in configs.iter_mut().enumerate() {
        let connectors = assemble::connect(config).await?;
        let stats = all_stats.start(&config.name);
        let (builder, sources) = assemble::pipeline(config, connectors, &stats);
        let pipeline = builder.start().await.map_err(|source| RunError::Start {
            file: config.file.display().to_string(),
            name: config.name.clone(),
            source,
        })?;
        tracing::info!(pipeline = %config.name, file = %config.file.display(), "pipeline started");
        readiness.running(&config.name, Arc::new(move || sources.connected()));
        running.push(Running {
            name: config.name.clone(),
            stats,
            drainer: pipeline.drainer(),
        });
        joins.push(async move { (i, pipeline.join().await) });
    }
    let shown = running.iter().map(|r| (r.name.clone(), r.stats.clone())).collect();
    let progress = Progress::start(options.progress, shown);

    let mut outcomes: Vec<Option<Result<(), PipelineError>>> = running.iter().map(|_| None).collect();
    let mut draining = false;
    let drain_all = |running: &[Running]| {
        readiness.set_all(State::Stopping);
        for r in running {
            r.drainer.drain();
        }
    };
    while outcomes.iter().any(Option::is_none) {
        tokio::select! {
            Some((i, result)) = joins.next() => {
                readiness.set(&running[i].name, State::Stopping);
                if result.is_err() && !draining {
                    draining = true;
                    drain_all(&running);
                }
                outcomes[i] = Some(result);
            }
            name = signals.next() => {
                if draining {
                    tracing::warn!("{name} again: stopping at once; unfinished messages are not acknowledged and will be delivered again");
                    drop(progress);
                    std::process::exit(130);
                }
                tracing::info!("{name}: draining (in-flight messages finish and are acknowledged; send it again to stop at once)");
                draining = true;
                drain_all(&running);
            }
        }
    }
    drop(progress);

    let elapsed = started.elapsed();
    let mut failures = Vec::new();
    for (r, outcome) in running.iter().zip(outcomes) {
        let outcome = outcome.unwrap_or(Ok(())).map_err(|e| Chain(&e).to_string());
        eprintln!("{}", progress::summary(&r.name, &r.stats.snapshot(), elapsed, &outcome));
        if let Err(e) = outcome {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(RunError::Failed(failures))
    }
}
