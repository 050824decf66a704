//! The demand dispatcher: each batch goes to the subscriber that asked for the most.

use super::{Dispatch, put_front, take_front};
use crate::error::{StageError, SubscribeError};
use crate::stage::subscription::{Link, SubscribeOptions, SubscriptionId};

struct Sub<T> {
    link: Link<T>,
    demand: usize,
}

pub(crate) struct DemandDispatcher<T> {
    // Kept in order of last service: the front was served longest ago, so ties favour it.
    subs: Vec<Sub<T>>,
    total: usize,
}

impl<T> DemandDispatcher<T> {
    pub(crate) fn new() -> Self {
        DemandDispatcher {
            subs: Vec::new(),
            total: 0,
        }
    }

    fn neediest(&self) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, s) in self.subs.iter().enumerate() {
            if s.demand > best.map_or(0, |b| b.1) {
                best = Some((i, s.demand));
            }
        }
        best.map(|b| b.0)
    }
}

impl<T: Send> Dispatch<T> for DemandDispatcher<T> {
    fn subscribe(&mut self, link: Link<T>, _: &SubscribeOptions<T>) -> Result<(), (Link<T>, SubscribeError)> {
        self.subs.push(Sub { link, demand: 0 });
        Ok(())
    }

    fn cancel(&mut self, id: SubscriptionId) -> Option<Link<T>> {
        let i = self.subs.iter().position(|s| s.link.id == id)?;
        let s = self.subs.remove(i);
        self.total -= s.demand;
        Some(s.link)
    }

    fn ask(&mut self, id: SubscriptionId, n: usize) {
        if let Some(s) = self.subs.iter_mut().find(|s| s.link.id == id) {
            s.demand += n;
            self.total += n;
        }
    }

    fn available(&self) -> usize {
        self.total
    }

    fn dispatch(&mut self, mut events: Vec<T>) -> Result<Vec<T>, StageError> {
        while !events.is_empty() {
            let Some(i) = self.neediest() else { break };
            let k = self.subs[i].demand.min(events.len());
            let chunk = take_front(&mut events, k);
            match self.subs[i].link.send(chunk) {
                Ok(()) => {
                    self.subs[i].demand -= k;
                    self.total -= k;
                    let served = self.subs.remove(i);
                    self.subs.push(served);
                }
                Err(chunk) => {
                    // The consumer is gone; its Cancel is on the way. Give the events to others.
                    put_front(&mut events, chunk);
                    let gone = self.subs.remove(i);
                    self.total -= gone.demand;
                    gone.link.forget();
                }
            }
        }
        Ok(events)
    }

    fn take_links(&mut self) -> Vec<Link<T>> {
        self.total = 0;
        self.subs.drain(..).map(|s| s.link).collect()
    }
}
