//! What a broker source's factory keeps of the producers it started, for its
//! [`Source::close`](super::Source::close) and [`Source::connected`](super::Source::connected).

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::pipeline::BoxFuture;
use crate::resilience::Reach;

/// The producers a broker [`Source`](super::Source) started: each one's command channel to
/// the task that settles its acknowledgements, and its [`Reach`].
///
/// A connector's factory hands both to [`add`](Producers::add) as it makes each producer;
/// its `close` is [`finish`](Producers::finish) (every task sends its last acknowledgements,
/// all at once, and the pipeline's stop waits for them) and its `connected` is
/// [`connected`](Producers::connected).
///
/// ```
/// use std::sync::Arc;
/// use ferroway::connector::Producers;
/// use ferroway::resilience::Reach;
/// use tokio::sync::{mpsc, oneshot};
///
/// enum Command {
///     Ack(u64),
///     Finish(oneshot::Sender<()>),
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let producers = Producers::new(Command::Finish);
/// let (tx, mut rx) = mpsc::unbounded_channel();
/// // The producer's acknowledgement task: it answers `Finish` once its acks are sent.
/// tokio::spawn(async move {
///     while let Some(cmd) = rx.recv().await {
///         match cmd {
///             Command::Ack(_offset) => {}
///             Command::Finish(done) => {
///                 let _ = done.send(());
///             }
///         }
///     }
/// });
/// let reach = Reach::of("doc: broker://127.0.0.1 orders");
/// producers.add(tx.clone(), reach.clone());
/// assert!(!producers.connected());
/// reach.mark_reached();
/// assert!(producers.connected());
/// tx.send(Command::Ack(7)).unwrap();
/// producers.finish().await;
/// # }
/// ```
pub struct Producers<C> {
    list: Mutex<Vec<(mpsc::UnboundedSender<C>, Arc<Reach>)>>,
    finish: fn(oneshot::Sender<()>) -> C,
}

impl<C> std::fmt::Debug for Producers<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producers")
            .field("count", &self.list.lock().map_or(0, |l| l.len()))
            .finish_non_exhaustive()
    }
}

impl<C: Send + 'static> Producers<C> {
    /// None yet; `finish` makes the command that asks a task to finish and answer.
    pub fn new(finish: fn(oneshot::Sender<()>) -> C) -> Self {
        Producers {
            list: Mutex::new(Vec::new()),
            finish,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(mpsc::UnboundedSender<C>, Arc<Reach>)>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a new producer's command channel and reach. Producers the pipeline replaced
    /// are forgotten once their task ended (all their messages settled).
    pub fn add(&self, commands: mpsc::UnboundedSender<C>, reach: Arc<Reach>) {
        let mut list = self.lock();
        list.retain(|(tx, _)| !tx.is_closed());
        list.push((commands, reach));
    }

    /// Asks every task to finish (all at once: each may wait for its broker) and resolves
    /// when all answered or ended.
    pub fn finish(&self) -> BoxFuture<'static, ()> {
        let finishing: Vec<_> = std::mem::take(&mut *self.lock())
            .into_iter()
            .filter_map(|(tx, _)| {
                let (reply, done) = oneshot::channel();
                tx.send((self.finish)(reply)).is_ok().then_some(done)
            })
            .collect();
        Box::pin(async move {
            for done in finishing {
                let _ = done.await;
            }
        })
    }

    /// Whether there is a producer and each has reached its broker.
    pub fn connected(&self) -> bool {
        let list = self.lock();
        !list.is_empty() && list.iter().all(|(_, r)| r.reached())
    }
}
