//! The consumer supervisor: one task per event, at most `max_demand` at once.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::warn;

use super::consumer::{ConsumerOptions, ConsumerStage};
use super::handle::StageTask;
use super::inbox::{Inbox, Verdict};
use super::subscription::{ConsumerMsg, SubscriptionId};
use crate::error::{BoxError, StageError, panic_message};

/// Starts a consumer that runs `task(event)` as its own Tokio task for every event (GenStage's
/// ConsumerSupervisor).
///
/// Concurrency is bounded by demand: each subscription has at most `max_demand` events in
/// flight, and the stage asks for more only as tasks finish. Tasks are temporary children: one
/// that fails or panics is logged and counted in `ferroway_stage_task_failures_total`, never
/// restarted, and does not stop the stage. When the stage stops (its subscriptions ended per
/// their cancel modes), it first waits for the running tasks.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use ferroway::stage::{self, ConsumerOptions, Emit, Producer, ProducerOptions, SubscribeOptions};
/// use ferroway::BoxError;
///
/// struct Urls(Vec<String>);
/// impl Producer for Urls {
///     type Output = String;
///     async fn handle_demand(&mut self, demand: usize) -> Result<Emit<String>, BoxError> {
///         let n = demand.min(self.0.len());
///         let batch: Vec<String> = self.0.drain(..n).collect();
///         Ok(if self.0.is_empty() { Emit::Done(batch) } else { Emit::Events(batch) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let fetched = Arc::new(AtomicUsize::new(0));
/// let counter = fetched.clone();
/// let urls = stage::start_producer(Urls((0..20).map(|i| format!("/item/{i}")).collect()), ProducerOptions::new());
/// let workers = stage::start_consumer_supervisor(
///     move |_url: String| {
///         let counter = counter.clone();
///         async move { counter.fetch_add(1, Ordering::SeqCst); Ok(()) }
///     },
///     ConsumerOptions::new().name("fetchers"),
/// );
/// workers.subscribe_to(&urls, SubscribeOptions::new().max_demand(4).min_demand(2)).await?;
/// workers.join().await?;
/// assert_eq!(fetched.load(Ordering::SeqCst), 20);
/// # Ok(()) }
/// ```
///
/// # Panics
/// When called outside a Tokio runtime.
pub fn start_consumer_supervisor<T, F, Fut>(task: F, opts: ConsumerOptions) -> ConsumerStage<T>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let (inbox, cref, rx) = opts.into_inbox("consumer-supervisor");
    let t = StageTask::spawn(cref.name.clone(), run(Arc::new(task), inbox, rx));
    ConsumerStage::new(cref, t)
}

async fn run<T, F, Fut>(
    task: Arc<F>,
    mut inbox: Inbox<T>,
    mut rx: mpsc::UnboundedReceiver<ConsumerMsg<T>>,
) -> Result<(), StageError>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let name = inbox.name.clone();
    let failures = metrics::counter!(crate::telemetry::STAGE_TASK_FAILURES, "stage" => name.to_string());
    let mut running: JoinSet<SubscriptionId> = JoinSet::new();
    let mut stopping: Option<Result<(), StageError>> = None;
    loop {
        if stopping.is_some() && running.is_empty() {
            return stopping.unwrap_or(Ok(()));
        }
        tokio::select! {
            done = running.join_next(), if !running.is_empty() => {
                // Tasks catch their own panics, so an error here is only a runtime shutdown.
                if let Some(Ok(id)) = done {
                    inbox.handled(id, 1);
                }
            }
            msg = rx.recv(), if stopping.is_none() => match msg {
                Some(ConsumerMsg::Events { id, events }) => {
                    for event in events {
                        let task = task.clone();
                        let failures = failures.clone();
                        let name = name.clone();
                        running.spawn(async move {
                            // Catch panics here so the demand slot always comes back.
                            match AssertUnwindSafe(async { task(event).await }).catch_unwind().await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => {
                                    failures.increment(1);
                                    warn!(stage = %name, error = %e, "consumer supervisor task failed");
                                }
                                Err(panic) => {
                                    failures.increment(1);
                                    warn!(stage = %name, reason = %panic_message(&*panic), "consumer supervisor task panicked");
                                }
                            }
                            id
                        });
                    }
                }
                Some(other) => {
                    if let Verdict::Stop(r) = inbox.control(other) {
                        stopping = Some(r);
                    }
                }
                None => stopping = Some(Ok(())),
            },
        }
    }
}
