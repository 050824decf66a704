//! The loop every stage that consumes and produces runs: producer-consumers, and the
//! pipeline's processors and batchers. One place for the back-pressure rule — take new input
//! only when downstream can take the result — and for finishing in order.

use std::collections::VecDeque;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::inbox::{Inbox, Verdict};
use super::outbox::{After, Outbox};
use super::subscription::{ConsumerMsg, EndReason, ProducerMsg, SubscriptionId};
use crate::error::StageError;

/// What a consuming-and-producing stage does with its input.
pub(crate) trait Transform<I, O: Send + 'static>: Send {
    /// Handles one group from upstream (`from`: the subscription it came by), emitting into `out` (`None`: the stage has no
    /// downstream, e.g. a processor without batchers).
    fn handle(
        &mut self,
        from: SubscriptionId,
        events: Vec<I>,
        out: Option<&mut Outbox<O>>,
    ) -> impl Future<Output = Result<(), StageError>> + Send;

    /// Whether to take new input now. By default: while downstream has demand and nothing
    /// emitted is waiting, which bounds memory by demand.
    fn ready(&self, out: Option<&Outbox<O>>) -> bool {
        out.is_none_or(|o| o.demand() > 0 && o.is_empty())
    }

    /// When [`tick`](Transform::tick) must next run, if ever.
    fn deadline(&mut self) -> Option<Instant> {
        None
    }

    /// Runs at the deadline (e.g. a batch timeout).
    fn tick(&mut self, _out: Option<&mut Outbox<O>>) -> Result<(), StageError> {
        Ok(())
    }

    /// Upstream is done and all input handled: emit whatever is held back.
    fn flush(&mut self, _out: Option<&mut Outbox<O>>) -> Result<(), StageError> {
        Ok(())
    }
}

/// The downstream side of a transforming stage.
pub(crate) struct Downstream<O> {
    pub(crate) outbox: Outbox<O>,
    pub(crate) rx: mpsc::UnboundedReceiver<ProducerMsg<O>>,
}

/// Spawns a stage task running `t`.
pub(crate) fn spawn<I, O, T>(
    name: std::sync::Arc<str>,
    mut t: T,
    mut inbox: Inbox<I>,
    mut crx: mpsc::UnboundedReceiver<ConsumerMsg<I>>,
    down: Option<Downstream<O>>,
) -> super::StageTask
where
    I: Send + 'static,
    O: Send + 'static,
    T: Transform<I, O> + 'static,
{
    super::StageTask::spawn(name, async move { run(&mut t, &mut inbox, &mut crx, down).await })
}

/// Runs `t` until upstream is done and everything received was handed on, then ends the
/// downstream subscriptions with the outcome.
pub(crate) async fn run<I, O, T>(
    t: &mut T,
    inbox: &mut Inbox<I>,
    crx: &mut mpsc::UnboundedReceiver<ConsumerMsg<I>>,
    mut down: Option<Downstream<O>>,
) -> Result<(), StageError>
where
    I: Send + 'static,
    O: Send + 'static,
    T: Transform<I, O>,
{
    let result = drive(t, inbox, crx, &mut down).await;
    if let Some(d) = &mut down {
        d.outbox.close(match &result {
            Ok(()) => EndReason::Normal,
            Err(e) => EndReason::Failed(e.clone()),
        });
    }
    result
}

async fn drive<I, O, T>(
    t: &mut T,
    inbox: &mut Inbox<I>,
    crx: &mut mpsc::UnboundedReceiver<ConsumerMsg<I>>,
    down: &mut Option<Downstream<O>>,
) -> Result<(), StageError>
where
    I: Send + 'static,
    O: Send + 'static,
    T: Transform<I, O>,
{
    let mut pending: VecDeque<(SubscriptionId, Vec<I>)> = VecDeque::new();
    // Set once upstream is done: finish what was received, then stop with this result.
    let mut stopping: Option<Result<(), StageError>> = None;
    let mut downstream_open = down.is_some();
    loop {
        if let Some(d) = down.as_mut() {
            while let Ok(msg) = d.rx.try_recv() {
                if d.outbox.handle(msg)? == After::Drain && stopping.is_none() {
                    inbox.cancel_all();
                    stopping = Some(Ok(()));
                }
            }
        }
        while t.ready(down.as_ref().map(|d| &d.outbox)) {
            let Some((id, events)) = pending.pop_front() else { break };
            let n = events.len();
            t.handle(id, events, down.as_mut().map(|d| &mut d.outbox)).await?;
            inbox.handled(id, n);
        }
        if stopping.is_some() && pending.is_empty() {
            t.flush(down.as_mut().map(|d| &mut d.outbox))?;
            if down.as_ref().is_none_or(|d| d.outbox.is_empty()) {
                return stopping.unwrap_or(Ok(()));
            }
        }
        let deadline = t.deadline();
        tokio::select! {
            biased;
            msg = recv(down), if downstream_open => match msg {
                Some(msg) => {
                    if let Some(d) = down.as_mut()
                        && d.outbox.handle(msg)? == After::Drain && stopping.is_none() {
                            inbox.cancel_all();
                            stopping = Some(Ok(()));
                        }
                }
                None => downstream_open = false,
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                t.tick(down.as_mut().map(|d| &mut d.outbox))?;
            },
            msg = crx.recv(), if stopping.is_none() => match msg {
                Some(ConsumerMsg::Events { id, events }) => pending.push_back((id, events)),
                Some(other) => {
                    if let Verdict::Stop(r) = inbox.control(other) {
                        if let Some(d) = down.as_mut() {
                            d.outbox.stop_accepting();
                        }
                        stopping = Some(r);
                    }
                }
                None => stopping = Some(Ok(())),
            },
            else => return stopping.unwrap_or(Ok(())),
        }
    }
}

/// Sleeps until `deadline`; never wakes without one (and costs no clock read then: select!
/// builds every branch's future on every turn, a disabled one's too).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn recv<O>(down: &mut Option<Downstream<O>>) -> Option<ProducerMsg<O>> {
    match down {
        Some(d) => d.rx.recv().await,
        None => std::future::pending().await,
    }
}
