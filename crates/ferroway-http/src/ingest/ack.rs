//! One acknowledger per request: it learns how each of the request's records ended and,
//! once all have, hands the outcome to the request's handler.

use std::sync::{Arc, Mutex};

use ferroway::pipeline::{Acknowledger, Acks};
use tokio::sync::oneshot;

/// The records of a request that failed: index in the request and reason.
pub(crate) type Failed = Vec<(usize, Arc<str>)>;

pub(crate) struct RequestAck {
    state: Mutex<State>,
}

struct State {
    left: usize,
    failed: Failed,
    done: Option<oneshot::Sender<Failed>>,
}

impl RequestAck {
    /// An acknowledger for `records` records; the receiver gets the failures once every
    /// record ended.
    pub(crate) fn new(records: usize) -> (Arc<RequestAck>, oneshot::Receiver<Failed>) {
        let (tx, rx) = oneshot::channel();
        let ack = RequestAck {
            state: Mutex::new(State {
                left: records,
                failed: Vec::new(),
                done: Some(tx),
            }),
        };
        (Arc::new(ack), rx)
    }
}

impl Acknowledger for RequestAck {
    fn ack(&self, acks: Acks) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.left = s.left.saturating_sub(acks.successful.len() + acks.failed.len());
        s.failed
            .extend(acks.failed.into_iter().map(|f| (f.token.0 as usize, f.reason)));
        if s.left == 0
            && let Some(done) = s.done.take()
        {
            let mut failed = std::mem::take(&mut s.failed);
            failed.sort_unstable_by_key(|f| f.0);
            // The client may have gone: its records were handled all the same.
            let _ = done.send(failed);
        }
    }
}
