//! SIGINT and SIGTERM, listened for from the start of `ferroway run` (before anything is
//! built, so an early signal is never the default "die at once"): the first drains, the
//! second stops at once.

use tokio::sync::mpsc;

/// The stop signals received, in order.
#[derive(Debug)]
pub struct Signals {
    rx: mpsc::UnboundedReceiver<&'static str>,
}

impl Signals {
    /// Starts listening for SIGINT and SIGTERM (Ctrl-C elsewhere). Must run inside a Tokio
    /// runtime.
    ///
    /// # Errors
    /// The handlers could not be installed.
    pub fn listen() -> std::io::Result<Signals> {
        let (tx, rx) = mpsc::unbounded_channel();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            tokio::spawn(async move {
                loop {
                    let name = tokio::select! {
                        _ = int.recv() => "SIGINT",
                        _ = term.recv() => "SIGTERM",
                    };
                    if tx.send(name).is_err() {
                        return;
                    }
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if tx.send("Ctrl-C").is_err() {
                    return;
                }
            }
        });
        Ok(Signals { rx })
    }

    /// The next signal's name. Pending forever once the listener is gone.
    pub async fn next(&mut self) -> &'static str {
        match self.rx.recv().await {
            Some(name) => name,
            None => std::future::pending().await,
        }
    }
}
