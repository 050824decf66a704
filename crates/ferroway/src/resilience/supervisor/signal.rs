//! A minimal cancellation token, so children can be asked to stop without pulling in
//! `tokio-util`.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

/// A one-way "please stop" flag shared between a supervisor and a child.
///
/// Clones observe the same flag. Once cancelled it stays cancelled.
///
/// ```rust
/// use ferroway::resilience::ShutdownSignal;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let signal = ShutdownSignal::new();
/// let observer = signal.clone();
/// let task = tokio::spawn(async move {
///     observer.cancelled().await;
///     "stopped"
/// });
/// signal.cancel();
/// assert_eq!(task.await.unwrap(), "stopped");
/// assert!(signal.is_cancelled());
/// # }
/// ```
#[derive(Clone)]
pub struct ShutdownSignal {
    // A watch channel rather than `Notify`: late subscribers see the current value, so
    // there is no window where a cancellation can be missed.
    tx: Arc<watch::Sender<bool>>,
}

impl ShutdownSignal {
    /// A fresh, uncancelled signal.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Requests shutdown; wakes every task waiting in [`cancelled`](Self::cancelled).
    pub fn cancel(&self) {
        self.tx
            .send_if_modified(|cancelled| !std::mem::replace(cancelled, true));
    }

    /// Whether shutdown has been requested.
    pub fn is_cancelled(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once shutdown has been requested (immediately if it already was).
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|cancelled| *cancelled).await;
    }
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
