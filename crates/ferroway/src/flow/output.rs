//! Running a flow: wire its stages, let the sources go, hand the last stages' events to a
//! stream, and report the first failure.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, Stream};
use tokio::sync::mpsc;

use super::FlowError;
use super::builder::{Ctx, Flow, Out};
use crate::BoxError;
use crate::error::StageError;
use crate::stage::{self, CancelMode, Consumer, ConsumerOptions, StageTask, SubscribeOptions};

/// The last stage: hands each batch to the stream, waiting while the stream's reader is behind.
struct ToChannel<T>(mpsc::Sender<Result<Vec<T>, FlowError>>);

impl<T: Send + 'static> Consumer for ToChannel<T> {
    type Input = T;

    async fn handle_events(&mut self, events: Vec<T>) -> Result<(), BoxError> {
        self.0
            .send(Ok(events))
            .await
            .map_err(|_| "the flow's stream was dropped".into())
    }
}

pub(crate) fn stream<T: Send + 'static>(flow: Flow<T>) -> impl Stream<Item = Result<T, FlowError>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Result<Vec<T>, FlowError>>(2);
    let name = flow.name.clone();
    let driver = tokio::spawn(async move {
        // A panic while wiring (in a user's option, say) must end the stream with an error,
        // not look like a flow that ended with no results.
        if let Err(panic) = AssertUnwindSafe(drive(flow, tx.clone())).catch_unwind().await {
            let _ = tx.send(Err(StageError::panicked(&name, panic).into())).await;
        }
    });
    let state = (rx, VecDeque::<T>::new(), Some(AbortOnDrop(driver)));
    futures_util::stream::unfold(state, |(mut rx, mut buf, guard)| async move {
        loop {
            if let Some(e) = buf.pop_front() {
                return Some((Ok(e), (rx, buf, guard)));
            }
            match rx.recv().await? {
                Ok(batch) => buf.extend(batch),
                Err(e) => return Some((Err(e), (rx, buf, guard))),
            }
        }
    })
}

/// Stops the flow's driver (and with it every stage) when the stream is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
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

async fn drive<T: Send + 'static>(flow: Flow<T>, tx: mpsc::Sender<Result<Vec<T>, FlowError>>) {
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
    let first = first.or(last.err());
    if let Some(e) = first {
        let _ = tx.send(Err(e.into())).await;
    }
}
