//! The signal a service stops on.

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (what `kill`, systemd and Kubernetes
/// send) — on other platforms, on Ctrl-C. Hand it to
/// [`Pipeline::run_until`](crate::pipeline::Pipeline::run_until) so a service drains
/// before it exits.
///
/// If the handlers cannot be installed (no signal support in this process), it logs an
/// error and never resolves, so the pipeline runs on rather than stopping at once.
///
/// Only the first signal is seen here; the drain that follows is bounded by the pipeline's
/// [`shutdown_timeout`](crate::pipeline::PipelineBuilder::shutdown_timeout). Once this has
/// resolved, Tokio keeps its handler installed, so a second Ctrl-C no longer kills the
/// process by default; a program that wants "second signal: stop now" listens again.
///
/// ```no_run
/// # use ferroway::pipeline::Pipeline;
/// # async fn serve(pipeline: Pipeline<String>) -> Result<(), ferroway::pipeline::PipelineError> {
/// pipeline.run_until(ferroway::shutdown_signal()).await
/// # }
/// ```
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                tracing::info!(signal = name, "shutdown signal received; draining");
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGINT/SIGTERM; running until stopped otherwise");
                std::future::pending::<()>().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!(signal = "Ctrl-C", "shutdown signal received; draining"),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for Ctrl-C; running until stopped otherwise");
                std::future::pending::<()>().await;
            }
        }
    }
}
