//! What the server and the producers share: the records taken and not yet emitted, and the
//! demand the producers wait with — what the server admits requests against.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ferroway::connector::Record;
use ferroway::pipeline::Message;
use tokio::sync::Notify;

/// What the server and the producers share.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Records arrived, or the server is closing: producers look again.
    arrived: Notify,
    /// Producers wait with more demand: requests waiting for admission look again.
    demand: Notify,
}

#[derive(Default)]
struct State {
    /// The demand the producers are waiting with.
    wanted: usize,
    /// Requests admitted and not yet queued: each holds a unit of demand.
    admitted: usize,
    queue: VecDeque<Message<Record>>,
    closing: bool,
}

/// Whether a request may come in.
pub(crate) enum Admit {
    Yes(Admission),
    NoDemand,
    Closing,
}

/// A unit of demand held by a request between its admission and its records' queueing.
pub(crate) struct Admission {
    shared: Arc<Shared>,
    done: bool,
}

impl Admission {
    /// Queues the request's records; `false` (nothing queued) when the server is closing.
    pub(crate) fn queue(mut self, records: Vec<Message<Record>>) -> bool {
        self.done = true;
        let mut s = self.shared.lock();
        s.admitted -= 1;
        if s.closing {
            return false;
        }
        s.queue.extend(records);
        drop(s);
        self.shared.arrived.notify_waiters();
        true
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.done {
            self.shared.lock().admitted -= 1;
            self.shared.demand.notify_waiters();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a request if the producers wait with demand that the records queued and the
    /// requests admitted do not already cover, waiting up to `wait` for it.
    pub(crate) async fn admit(self: &Arc<Self>, wait: Duration) -> Admit {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.demand.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.closing {
                    return Admit::Closing;
                }
                if s.wanted > s.queue.len() + s.admitted {
                    s.admitted += 1;
                    return Admit::Yes(Admission {
                        shared: self.clone(),
                        done: false,
                    });
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Admit::NoDemand;
            }
        }
    }
}

/// Demand a producer waits with, withdrawn when it stops waiting (returns or is dropped).
struct Waiting<'a> {
    shared: &'a Shared,
    demand: usize,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.lock().wanted -= self.demand;
    }
}

impl Shared {
    /// Up to `demand` records, waiting for them with that demand; `None` once closing.
    /// Cancel-safe: records leave the queue only in the returned value.
    pub(crate) async fn take(&self, demand: usize) -> Option<Vec<Message<Record>>> {
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if !s.queue.is_empty() {
                    let n = demand.min(s.queue.len());
                    return Some(s.queue.drain(..n).collect());
                }
                if s.closing {
                    return None;
                }
                if waiting.is_none() {
                    s.wanted += demand;
                    waiting = Some(Waiting { shared: self, demand });
                }
            }
            self.demand.notify_waiters();
            notified.await;
        }
    }

    /// Closes: no more admissions; what is queued is returned.
    pub(crate) fn close(&self) -> Vec<Message<Record>> {
        let last = {
            let mut s = self.lock();
            s.closing = true;
            s.queue.drain(..).collect()
        };
        self.demand.notify_waiters();
        self.arrived.notify_waiters();
        last
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Shared")
            .field("wanted", &s.wanted)
            .field("queued", &s.queue.len())
            .finish_non_exhaustive()
    }
}
