//! Running a flow: wire its stages, let the sources go, hand the last stages' events to a
//! stream, and report the first failure.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, Stream};
use tokio::sync::mpsc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::FlowError;
use super::acks::{AckPlan, Acked, Tracker};
use super::builder::{Ctx, Flow, Out};
use super::lane;
use crate::BoxError;
use crate::connector::Sink;
use crate::error::StageError;
use crate::pipeline::Message;
use crate::stage::outbox::Outbox;
use crate::stage::transform::Transform;
use crate::stage::{
    self, CancelMode, Consumer, ConsumerOptions, ProducerRef, StageTask, SubscribeOptions, SubscriptionId,
};

/// Results on their way to the stream's reader.
struct Batch<T> {
    events: Vec<T>,
    /// Over a connector source: whose results they are, told to the tracker once the reader
    /// took them all.
    taken: Option<Taken>,
}

struct Taken {
    tracker: Arc<Tracker>,
    partition: usize,
    n: u64,
}

type Results<T> = mpsc::Sender<Result<Batch<T>, FlowError>>;

/// The last stage: hands each batch to the stream, waiting while the stream's reader is behind.
struct ToChannel<T>(Results<T>);

impl<T: Send + 'static> Consumer for ToChannel<T> {
    type Input = T;

    async fn handle_events(&mut self, events: Vec<T>) -> Result<(), BoxError> {
        self.0
            .send(Ok(Batch { events, taken: None }))
            .await
            .map_err(|_| "the flow's stream was dropped".into())
    }
}

/// A flow's results as a GenStage producer (see [`Flow::into_stage`]): pulls from the
/// flow's stream as its consumers ask; the flow's error fails the stage.
pub(crate) struct FlowProducer<S> {
    pub(crate) results: S,
    /// An error that came after results already taken: reported on the next demand.
    pub(crate) failed: Option<FlowError>,
}

impl<T, S> stage::Producer for FlowProducer<S>
where
    T: Send + 'static,
    S: Stream<Item = Result<T, FlowError>> + Unpin + Send + 'static,
{
    type Output = T;

    async fn handle_demand(&mut self, demand: usize) -> Result<stage::Emit<T>, BoxError> {
        use futures_util::StreamExt;
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        let mut batch = Vec::new();
        match self.results.next().await {
            Some(first) => batch.push(first?),
            None => return Ok(stage::Emit::Done(batch)),
        }
        while batch.len() < demand {
            match self.results.next().now_or_never() {
                Some(Some(Ok(e))) => batch.push(e),
                Some(Some(Err(e))) => {
                    self.failed = Some(e);
                    break;
                }
                Some(None) => return Ok(stage::Emit::Done(batch)),
                None => break,
            }
        }
        Ok(stage::Emit::Events(batch))
    }
}

/// A sink results go to straight from the last stage (a flow over a connector source), in
/// batches of at most the given size.
pub(crate) type SinkTo<T> = (Arc<dyn Sink<T>>, usize);

/// Runs `flow`, its results going to the stream — or, over a connector source, to `sink` if
/// given (the stream then only reports the outcome).
pub(crate) fn stream<T: Send + 'static>(
    flow: Flow<T>,
    sink: Option<SinkTo<T>>,
) -> impl Stream<Item = Result<T, FlowError>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Result<Batch<T>, FlowError>>(2);
    let name = flow.name.clone();
    let driver = tokio::spawn(async move {
        let run = async {
            match flow.acked.clone() {
                None => drive(flow, tx.clone()).await,
                Some(Acked::Reduced(plan)) => drive_acked(flow, plan, tx.clone(), sink).await,
                Some(other) => {
                    let refusal = other.refusal().expect("only a reduced flow runs");
                    let _ = tx.send(Err(refusal)).await;
                }
            }
        };
        // A panic while wiring (in a user's option, say) must end the stream with an error,
        // not look like a flow that ended with no results.
        if let Err(panic) = AssertUnwindSafe(run).catch_unwind().await {
            let _ = tx.send(Err(StageError::panicked(&name, panic).into())).await;
        }
    });
    let state = (rx, VecDeque::<T>::new(), None::<Taken>, Some(AbortOnDrop(driver)));
    futures_util::stream::unfold(state, |(mut rx, mut buf, mut taken, guard)| async move {
        loop {
            if let Some(e) = buf.pop_front() {
                return Some((Ok(e), (rx, buf, taken, guard)));
            }
            // Asked for more after the last of a batch: the reader has taken it all.
            if let Some(t) = taken.take() {
                t.tracker.written(t.partition, t.n);
            }
            match rx.recv().await? {
                Ok(batch) => {
                    buf.extend(batch.events);
                    taken = batch.taken;
                }
                Err(e) => return Some((Err(e), (rx, buf, taken, guard))),
            }
        }
    })
}

/// Stops the flow's driver (and with it every stage) when the stream is dropped.
struct AbortOnDrop<R = ()>(tokio::task::JoinHandle<R>);

impl<R> Drop for AbortOnDrop<R> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Aborts every stage when the driver ends or is aborted.
struct Stages(Vec<StageTask>);

impl Drop for Stages {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn drive<T: Send + 'static>(flow: Flow<T>, tx: Results<T>) {
    let (build, _, name, max_demand) = flow.into_parts();
    let ctx = Ctx::new(name.clone(), max_demand);
    let sink = stage::start_consumer(
        ToChannel(tx.clone()),
        ConsumerOptions::new()
            .name(format!("{name}.output"))
            .stop_when_unsubscribed(true),
    );
    let wired = async {
        let lanes = build(ctx.clone(), Out::Demand).await?;
        for lane in &lanes {
            sink.subscribe_to(
                lane,
                SubscribeOptions::new()
                    .max_demand(max_demand)
                    .min_demand(max_demand / 2)
                    .cancel(CancelMode::Transient),
            )
            .await?;
        }
        Ok::<_, FlowError>(lanes.is_empty())
    }
    .await;
    let mut stages = Stages(std::mem::take(
        &mut *ctx.tasks.lock().unwrap_or_else(|p| p.into_inner()),
    ));
    match wired {
        Err(e) => {
            // The output stage holds a sender too: the stream ends only once it is gone.
            sink.task().abort();
            let _ = tx.send(Err(e)).await;
            return;
        }
        Ok(true) => {
            sink.task().abort();
            return;
        }
        Ok(false) => {}
    }
    let _ = ctx.go.send(true);
    let last = sink.join().await;
    if let Some(e) = root_cause(&mut stages, last).await {
        let _ = tx.send(Err(e.into())).await;
    }
}

/// Waits for every stage once the last one ended, and returns the error that started it all.
async fn root_cause(stages: &mut Stages, last: Result<(), StageError>) -> Option<StageError> {
    if last.is_err() {
        // A failed stage leaves the stages upstream of it without a consumer: stop them.
        for t in &stages.0 {
            t.abort();
        }
    }
    let mut first: Option<StageError> = None;
    for t in std::mem::take(&mut stages.0) {
        match t.join().await {
            // The root cause beats the failures it caused downstream and the stops it forced.
            Err(e) if first.is_none() && !matches!(e, StageError::Upstream { .. } | StageError::Aborted { .. }) => {
                first = Some(e)
            }
            _ => {}
        }
    }
    first.or(last.err())
}

/// Drives a flow over a connector source: its last stage writes the results and tells the
/// tracker, a task acknowledges what nothing holds any more, and at the end the last
/// acknowledgements are flushed and the source closed — after a failure too, for what was
/// acknowledged before it.
async fn drive_acked<T: Send + 'static>(flow: Flow<T>, plan: Arc<AckPlan>, tx: Results<T>, sink: Option<SinkTo<T>>) {
    let (build, _, name, max_demand) = flow.into_parts();
    let ctx = Ctx::new(name.clone(), max_demand);
    let wired = build(ctx.clone(), Out::Demand).await;
    let mut stages = Stages(std::mem::take(
        &mut *ctx.tasks.lock().unwrap_or_else(|p| p.into_inner()),
    ));
    let outcome = match (wired, plan.started()) {
        (Err(e), _) => Err(e),
        (Ok(_), None) => Err(FlowError::Invalid {
            option: "from_source",
            reason: "the flow has no source lanes",
        }),
        (Ok(lanes), Some(tracker)) => {
            let signal = plan.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
            run_acked(&mut stages, &ctx, lanes, &tracker, tx.clone(), sink, signal).await
        }
    };
    drop(stages);
    if let Some(tracker) = plan.started() {
        tracker.flush().await;
    }
    plan.close().await;
    if let Err(e) = outcome {
        let _ = tx.send(Err(e)).await;
    }
}

async fn run_acked<T: Send + 'static>(
    stages: &mut Stages,
    ctx: &Ctx,
    lanes: Vec<ProducerRef<T>>,
    tracker: &Arc<Tracker>,
    tx: Results<T>,
    sink: Option<SinkTo<T>>,
    plan_stop: Option<crate::pipeline::BoxFuture<'static, ()>>,
) -> Result<(), FlowError> {
    let name: &str = &ctx.name;
    let parts = Arc::new(Mutex::new(HashMap::new()));
    let streamed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let refused = Arc::new(Mutex::new(None));
    let to = match sink {
        Some((sink, batch)) => To::Sink(sink, batch.max(1), refused.clone()),
        None => To::Stream(tx, streamed.clone()),
    };
    let deliver = Deliver {
        name: format!("{name}.output").into(),
        to,
        parts: parts.clone(),
        tracker: tracker.clone(),
    };
    let (input, task) = lane::start_last(format!("{name}.output"), deliver);
    for (p, lane) in lanes.iter().enumerate() {
        let subscribed = input
            .subscribe_to(
                lane,
                SubscribeOptions::new()
                    .max_demand(ctx.max_demand)
                    .min_demand(ctx.max_demand / 2)
                    .cancel(CancelMode::Transient),
            )
            .await;
        match subscribed {
            Ok(id) => {
                parts.lock().unwrap_or_else(|p| p.into_inner()).insert(id, p);
            }
            Err(e) => {
                // The output stage holds the stream's sender: the stream ends once it is gone.
                task.abort();
                return Err(e.into());
            }
        }
    }
    let _ = ctx.go.send(true);
    // Acknowledges as windows are written; asked to stop, it finishes the round it is in
    // (a checkpoint write is not cut short).
    let (acking, stop) = (tracker.clone(), Arc::new(tokio::sync::Notify::new()));
    let stopping = stop.clone();
    let mut acking = AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = acking.changed() => {}
                _ = stopping.notified() => return None,
            }
            if let Err(e) = acking.advance().await {
                return Some(e);
            }
            // At most a hundred rounds a second: a round takes every lane's and partition's
            // lock, and may sync the checkpoint.
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
                _ = stopping.notified() => return None,
            }
        }
    }));
    let deliver = task.abort_handle();
    let mut task = std::pin::pin!(task.join());
    let signal = plan_stop.unwrap_or_else(|| Box::pin(std::future::pending()));
    let ended = tokio::select! {
        last = &mut task => Some(last),
        () = signal => None,
        failed = &mut acking.0 => {
            for t in &stages.0 {
                t.abort();
            }
            let _ = task.await;
            return Err(match failed {
                Ok(Some(e)) => e,
                Ok(None) => FlowError::Sink("the acknowledging task stopped".into()),
                Err(e) => FlowError::Sink(format!("the acknowledging task: {e}").into()),
            });
        }
    };
    let last = match ended {
        Some(last) => last,
        None => match graceful_stop(stages, tracker, name, &mut task, &deliver).await {
            // The output ended while the flow was stopping: that is how it ended.
            Some(last) => last,
            None => {
                stop.notify_one();
                if let Ok(Some(e)) = (&mut acking.0).await {
                    return Err(e);
                }
                if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(e);
                }
                // Acknowledge what the written windows held; the open ones went with their
                // stages, unacknowledged, for the next run.
                tracker.advance_final().await?;
                return Ok(());
            }
        },
    };
    stop.notify_one();
    if let Ok(Some(e)) = (&mut acking.0).await {
        return Err(e);
    }
    let failed = root_cause(stages, last).await;
    if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    // Every window was emitted and written (results in the stream: once the reader took
    // them): acknowledge the rest.
    while tracker.total_written() < streamed.load(std::sync::atomic::Ordering::SeqCst) {
        tracker.changed().await;
    }
    tracker.advance_final().await?;
    if !tracker.settled() {
        tracing::error!(flow = %name, "a flow ended with messages it never acknowledged; they will be redelivered");
    }
    Ok(())
}

/// A graceful stop: no more pulls; once everything on its way was reduced and written (a
/// minute at most: a reader that stopped reading the stream must not hold the stop forever),
/// the lanes and reducers end — reducers that are stopping neither close their open windows
/// nor fire timers — and the output writes what it holds and ends, all before the last
/// acknowledgements count what was written. Returns how the output ended if it ended on its
/// own first.
async fn graceful_stop(
    stages: &mut Stages,
    tracker: &Tracker,
    name: &str,
    output: &mut std::pin::Pin<&mut impl std::future::Future<Output = Result<(), StageError>>>,
    deliver: &tokio::task::AbortHandle,
) -> Option<Result<(), StageError>> {
    tracing::info!(flow = %name, "stopping: no more input; writing what is on its way");
    tracker.stop_pulling();
    let drained = async {
        while !tracker.drained() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        waited = tokio::time::timeout(std::time::Duration::from_secs(60), drained) => {
            if waited.is_err() {
                tracing::warn!(flow = %name, "stopping: results still unwritten after a minute; their messages will be read again");
            }
        }
        last = &mut *output => return Some(last),
    }
    for t in &stages.0 {
        t.abort();
    }
    for t in std::mem::take(&mut stages.0) {
        let _ = t.join().await;
    }
    if tokio::time::timeout(std::time::Duration::from_secs(60), &mut *output)
        .await
        .is_err()
    {
        tracing::warn!(flow = %name, "stopping: the output did not finish within a minute");
        deliver.abort();
    }
    None
}

/// Where a flow over a connector source puts its results.
enum To<T> {
    /// The stream, and how many results went into it.
    Stream(Results<T>, Arc<std::sync::atomic::AtomicU64>),
    /// The sink, its batch size, and where a refusal is kept for the flow's error.
    Sink(Arc<dyn Sink<T>>, usize, Arc<Mutex<Option<FlowError>>>),
}

/// The last stage of a flow over a connector source: writes each partition's results and
/// tells the tracker how many are written.
struct Deliver<T> {
    name: Arc<str>,
    to: To<T>,
    parts: Arc<Mutex<HashMap<SubscriptionId, usize>>>,
    tracker: Arc<Tracker>,
}

impl<T: Send + 'static> Transform<T, ()> for Deliver<T> {
    async fn handle(
        &mut self,
        from: SubscriptionId,
        events: Vec<T>,
        _: Option<&mut Outbox<()>>,
    ) -> Result<(), StageError> {
        let failed = |source: crate::BoxError| StageError::Failed {
            stage: self.name.clone(),
            source: Arc::from(source),
        };
        let p = self.parts.lock().unwrap_or_else(|p| p.into_inner()).get(&from).copied();
        let p = p.ok_or_else(|| failed("results from a stage that is not a partition of the flow".into()))?;
        match &self.to {
            To::Stream(tx, streamed) => {
                // Written once the reader took them (see `stream`).
                let n = events.len() as u64;
                let taken = Some(Taken {
                    tracker: self.tracker.clone(),
                    partition: p,
                    n,
                });
                tx.send(Ok(Batch { events, taken }))
                    .await
                    .map_err(|_| failed("the flow's stream was dropped".into()))?;
                streamed.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            }
            To::Sink(sink, size, refused) => {
                let mut events = events.into_iter().peekable();
                while events.peek().is_some() {
                    let mut batch: Vec<Message<T>> = events.by_ref().take(*size).map(Message::new).collect();
                    if let Err(e) = super::sink::write_batch(&**sink, &mut batch).await {
                        let reason = e.to_string();
                        *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return Err(failed(reason.into()));
                    }
                    self.tracker.written(p, batch.len() as u64);
                }
            }
        }
        Ok(())
    }
}
