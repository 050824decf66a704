//! The producer side of a stage: subscribers, their demand, the dispatcher and the buffer.
//!
//! Shared by producers, producer-consumers and the pipeline's stages, so demand accounting
//! lives in exactly one place.

use std::sync::Arc;

use tracing::warn;

use super::buffer::{Buffer, BufferKeep};
use super::dispatcher::{Dispatch, Dispatcher};
use super::subscription::{EndReason, ProducerMsg};
use crate::error::{StageError, SubscribeError};
use crate::telemetry::LogThrottle;

pub(crate) struct Outbox<T> {
    pub(crate) name: Arc<str>,
    dispatcher: Box<dyn Dispatch<T>>,
    buffer: Buffer<T>,
    accepting: bool,
    dropped: metrics::Counter,
    drop_log: LogThrottle,
}

/// What the stage loop should do after a mailbox message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    Continue,
    Drain,
}

impl<T: Send + 'static> Outbox<T> {
    pub(crate) fn new(name: Arc<str>, dispatcher: Dispatcher<T>, buffer_size: usize, keep: BufferKeep) -> Self {
        let dropped = metrics::counter!(crate::telemetry::STAGE_BUFFER_DROPPED, "stage" => name.to_string());
        Outbox {
            dispatcher: dispatcher.build(name.clone()),
            buffer: Buffer::new(buffer_size, keep),
            name,
            accepting: true,
            dropped,
            drop_log: LogThrottle::new(std::time::Duration::from_secs(5)),
        }
    }

    /// Events the producer may still emit without exceeding demand.
    pub(crate) fn wanted(&self) -> usize {
        self.dispatcher.available().saturating_sub(self.buffer.len())
    }

    pub(crate) fn demand(&self) -> usize {
        self.dispatcher.available()
    }

    /// True when no emitted event is waiting (in the buffer or a partition queue).
    pub(crate) fn is_empty(&self) -> bool {
        self.buffer.is_empty() && self.dispatcher.queued() == 0
    }

    /// Stops accepting new subscriptions (the stage is finishing).
    pub(crate) fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    pub(crate) fn handle(&mut self, msg: ProducerMsg<T>) -> Result<After, StageError> {
        match msg {
            ProducerMsg::Subscribe { link, opts, ask, reply } => {
                if !self.accepting {
                    // The consumer already recorded the subscription: tell it to drop it.
                    link.close(EndReason::Rejected);
                    let _ = reply.send(Err(SubscribeError::ProducerStopped {
                        producer: self.name.clone(),
                    }));
                    return Ok(After::Continue);
                }
                let id = link.id;
                match self.dispatcher.subscribe(link, &opts) {
                    Ok(()) => {
                        let _ = reply.send(Ok(()));
                        self.dispatcher.ask(id, ask);
                        self.flush()?;
                    }
                    Err((link, e)) => {
                        link.close(EndReason::Rejected);
                        let _ = reply.send(Err(e));
                    }
                }
            }
            ProducerMsg::Ask { id, n } => {
                self.dispatcher.ask(id, n);
                self.flush()?;
            }
            ProducerMsg::Cancel { id } => {
                if let Some(link) = self.dispatcher.cancel(id) {
                    link.forget();
                }
            }
            ProducerMsg::Emit(events) => self.emit(events)?,
            ProducerMsg::Drain => return Ok(After::Drain),
        }
        Ok(After::Continue)
    }

    /// Dispatches events as demand allows; the rest waits in the buffer, behind what waits already.
    pub(crate) fn emit(&mut self, events: Vec<T>) -> Result<(), StageError> {
        if events.is_empty() {
            return Ok(());
        }
        let left = if self.buffer.is_empty() {
            self.dispatcher.dispatch(events)?
        } else {
            events
        };
        if !left.is_empty() {
            let dropped = self.buffer.push_back(left);
            if dropped > 0 {
                self.dropped.increment(dropped as u64);
                if let Some(suppressed) = self.drop_log.allow() {
                    warn!(stage = %self.name, dropped, suppressed, "producer buffer full; events dropped");
                }
            }
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StageError> {
        while self.dispatcher.available() > 0 {
            let Some(chunk) = self.buffer.pop_front() else { break };
            let left = self.dispatcher.dispatch(chunk)?;
            if !left.is_empty() {
                self.buffer.push_front(left);
                break;
            }
        }
        Ok(())
    }

    /// Ends every subscription with `reason`.
    pub(crate) fn close(&mut self, reason: EndReason) {
        for link in self.dispatcher.take_links() {
            link.close(reason.clone());
        }
    }
}
