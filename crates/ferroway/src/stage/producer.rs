//! Producers: emit events only in answer to demand.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::buffer::BufferKeep;
use super::dispatcher::Dispatcher;
use super::handle::{AsProducer, Emitter, ProducerRef, StageTask, default_name};
use super::outbox::{After, Outbox};
use super::subscription::{EndReason, ProducerMsg};
use super::transform::sleep_until;
use crate::error::{BoxError, StageError};

/// What [`Producer::handle_demand`] hands back.
#[derive(Debug)]
pub enum Emit<T> {
    /// Events now, at most the demand asked for. None is a fine answer — "nothing yet" from a
    /// producer that polls an external system, or one that emits through an [`Emitter`]: the
    /// stage calls again when demand changes, or after a pause that grows from 10 ms to 1 s
    /// while answers stay empty. So a poll-on-a-timer producer works, and the stage never spins.
    Events(Vec<T>),
    /// The last events: the producer is done. Its subscriptions end normally once these are
    /// delivered.
    Done(Vec<T>),
}

/// A stage that emits events only in answer to demand (GenStage's producer).
///
/// [`handle_demand`](Producer::handle_demand) receives how many more events consumers asked
/// for. It may return fewer, and may wait for data (a long poll) — while it waits, the stage
/// keeps serving subscriptions and asks. Events beyond demand wait in the producer's buffer.
///
/// ```
/// use ferroway::stage::{self, Consumer, Emit, Producer, ProducerOptions, ConsumerOptions, SubscribeOptions};
/// use ferroway::BoxError;
///
/// struct Counter { next: u64, last: u64 }
/// impl Producer for Counter {
///     type Output = u64;
///     async fn handle_demand(&mut self, demand: usize) -> Result<Emit<u64>, BoxError> {
///         let end = (self.next + demand as u64).min(self.last + 1);
///         let events: Vec<u64> = (self.next..end).collect();
///         self.next = end;
///         Ok(if end > self.last { Emit::Done(events) } else { Emit::Events(events) })
///     }
/// }
///
/// struct Sum(std::sync::Arc<std::sync::atomic::AtomicU64>);
/// impl Consumer for Sum {
///     type Input = u64;
///     async fn handle_events(&mut self, events: Vec<u64>) -> Result<(), BoxError> {
///         self.0.fetch_add(events.iter().sum(), std::sync::atomic::Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
/// let producer = stage::start_producer(Counter { next: 1, last: 100 }, ProducerOptions::new());
/// let consumer = stage::start_consumer(Sum(total.clone()), ConsumerOptions::new());
/// consumer.subscribe_to(&producer, SubscribeOptions::new().max_demand(10)).await?;
/// consumer.join().await?;
/// assert_eq!(total.load(std::sync::atomic::Ordering::Relaxed), 5050);
/// # Ok(()) }
/// ```
pub trait Producer: Send + 'static {
    /// The events this producer emits.
    type Output: Send + 'static;

    /// Consumers asked for `demand` more events.
    fn handle_demand(&mut self, demand: usize) -> impl Future<Output = Result<Emit<Self::Output>, BoxError>> + Send;

    /// Called once when the stage is asked to drain, before it stops asking for events
    /// (e.g. to stop a long poll or close a socket). A `handle_demand` in progress at that
    /// moment is dropped, so it must be cancel-safe: a read the broker already answered must
    /// not be lost with it. Return such events here — they are the stage's last, and are
    /// delivered and drained like any other (Broadway's `prepare_for_draining` does the same).
    fn prepare_for_draining(&mut self) -> impl Future<Output = Vec<Self::Output>> + Send {
        async { Vec::new() }
    }
}

/// Options of a producer or producer-consumer: name, dispatcher, buffer.
///
/// ```
/// use ferroway::stage::{BufferKeep, Dispatcher, ProducerOptions};
/// let opts: ProducerOptions<u32> = ProducerOptions::new()
///     .name("numbers")
///     .dispatcher(Dispatcher::broadcast())
///     .buffer_size(100)
///     .buffer_keep(BufferKeep::Last);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
pub struct ProducerOptions<T> {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) dispatcher: Dispatcher<T>,
    pub(crate) buffer_size: Option<usize>,
    pub(crate) buffer_keep: BufferKeep,
}

impl<T> Default for ProducerOptions<T> {
    fn default() -> Self {
        ProducerOptions {
            name: None,
            dispatcher: Dispatcher::demand(),
            buffer_size: None,
            buffer_keep: BufferKeep::First,
        }
    }
}

impl<T> ProducerOptions<T> {
    /// Defaults: demand dispatcher; buffer of 10,000 events keeping the first (producers) or
    /// unbounded (producer-consumers, which only take new input once their buffer is empty).
    pub fn new() -> Self {
        Self::default()
    }

    /// The stage's name, used in logs, metrics and errors.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How events are routed to subscribers.
    pub fn dispatcher(mut self, d: Dispatcher<T>) -> Self {
        self.dispatcher = d;
        self
    }

    /// How many events may wait for demand before some are dropped.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = Some(n);
        self
    }

    /// Which events a full buffer keeps. A drop is logged as a warning and counted in
    /// `ferroway_stage_buffer_dropped_total`.
    pub fn buffer_keep(mut self, keep: BufferKeep) -> Self {
        self.buffer_keep = keep;
        self
    }

    pub(crate) fn into_outbox(self, kind: &str, default_buffer: usize) -> Outbox<T>
    where
        T: Send + 'static,
    {
        let name = self.name.unwrap_or_else(|| default_name(kind));
        Outbox::new(
            name,
            self.dispatcher,
            self.buffer_size.unwrap_or(default_buffer),
            self.buffer_keep,
        )
    }
}

/// A running producer.
#[derive(Debug)]
pub struct ProducerStage<T> {
    producer: ProducerRef<T>,
    task: StageTask,
}

impl<T> ProducerStage<T> {
    pub(crate) fn into_task(self) -> StageTask {
        self.task
    }

    /// A cloneable reference to subscribe to, drain or emit into the stage.
    pub fn producer_ref(&self) -> ProducerRef<T> {
        self.producer.clone()
    }

    /// See [`ProducerRef::drain`].
    pub fn drain(&self) -> bool {
        self.producer.drain()
    }

    /// See [`ProducerRef::emitter`].
    pub fn emitter(&self) -> Emitter<T> {
        self.producer.emitter()
    }

    /// Waits for the stage to stop. See [`StageTask::join`].
    pub async fn join(self) -> Result<(), StageError> {
        self.task.join().await
    }

    /// The stage's task.
    pub fn task(&self) -> &StageTask {
        &self.task
    }
}

impl<T> AsProducer<T> for ProducerStage<T> {
    fn producer_ref(&self) -> ProducerRef<T> {
        self.producer.clone()
    }
}

/// Starts `producer` as its own Tokio task.
///
/// # Panics
/// When called outside a Tokio runtime.
pub fn start_producer<P: Producer>(producer: P, opts: ProducerOptions<P::Output>) -> ProducerStage<P::Output> {
    let outbox = opts.into_outbox("producer", 10_000);
    let name = outbox.name.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = StageTask::spawn(name.clone(), run(producer, outbox, rx));
    ProducerStage {
        producer: ProducerRef { tx, name },
        task,
    }
}

async fn run<P: Producer>(
    mut p: P,
    mut outbox: Outbox<P::Output>,
    mut rx: mpsc::UnboundedReceiver<ProducerMsg<P::Output>>,
) -> Result<(), StageError> {
    let result = drive(&mut p, &mut outbox, &mut rx).await;
    outbox.close(match &result {
        Ok(()) => EndReason::Normal,
        Err(e) => EndReason::Failed(e.clone()),
    });
    result
}

/// The first pause after an empty answer; it doubles up to [`IDLE_MAX`] while answers stay empty.
const IDLE_MIN: Duration = Duration::from_millis(10);
const IDLE_MAX: Duration = Duration::from_secs(1);

async fn drive<P: Producer>(
    p: &mut P,
    outbox: &mut Outbox<P::Output>,
    rx: &mut mpsc::UnboundedReceiver<ProducerMsg<P::Output>>,
) -> Result<(), StageError> {
    let name = outbox.name.clone();
    // No more handle_demand calls: the producer is done or draining.
    let mut finishing = false;
    // The last handle_demand returned nothing: ask again at this instant, or sooner if the
    // mailbox brings news.
    let mut idle_until: Option<Instant> = None;
    let mut pause = IDLE_MIN;
    loop {
        let mut drain = false;
        // Take every waiting message first, so many small asks become one handle_demand call.
        while let Ok(msg) = rx.try_recv() {
            idle_until = None;
            drain |= outbox.handle(msg)? == After::Drain;
        }
        if drain && !finishing {
            finishing = true;
            begin_draining(p, outbox).await?;
        }
        if finishing && outbox.is_empty() {
            return Ok(());
        }
        let want = outbox.wanted();
        if finishing || idle_until.is_some() || want == 0 {
            let wake = idle_until.filter(|_| !finishing && want > 0);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        idle_until = None;
                        if outbox.handle(msg)? == After::Drain && !finishing {
                            finishing = true;
                            begin_draining(p, outbox).await?;
                        }
                    }
                    // Nobody can reach this stage any more.
                    None => return Ok(()),
                },
                () = sleep_until(wake), if wake.is_some() => {
                    idle_until = None;
                }
            }
            continue;
        }
        let answer = {
            let fut = AssertUnwindSafe(p.handle_demand(want)).catch_unwind();
            tokio::pin!(fut);
            let mut mailbox_open = true;
            loop {
                tokio::select! {
                    biased;
                    r = &mut fut => break Some(r),
                    msg = rx.recv(), if mailbox_open => match msg {
                        Some(msg) => if outbox.handle(msg)? == After::Drain { break None },
                        None => mailbox_open = false,
                    },
                }
            }
        };
        match answer {
            None => {
                finishing = true;
                begin_draining(p, outbox).await?;
            }
            Some(Ok(Ok(Emit::Events(events)))) => {
                if events.is_empty() {
                    idle_until = Some(Instant::now() + pause);
                    pause = (pause * 2).min(IDLE_MAX);
                } else {
                    pause = IDLE_MIN;
                }
                outbox.emit(events)?;
            }
            Some(Ok(Ok(Emit::Done(events)))) => {
                finishing = true;
                outbox.stop_accepting();
                outbox.emit(events)?;
            }
            Some(Ok(Err(e))) => return Err(StageError::failed(&name, e)),
            Some(Err(panic)) => return Err(StageError::panicked(&name, panic)),
        }
    }
}

/// Stops taking subscriptions and lets the producer hand over its last events.
async fn begin_draining<P: Producer>(p: &mut P, outbox: &mut Outbox<P::Output>) -> Result<(), StageError> {
    outbox.stop_accepting();
    let last = p.prepare_for_draining().await;
    outbox.emit(last)
}
