//! The broadcast dispatcher: every event to every subscriber, at the pace of the slowest.

use super::{Dispatch, take_front};
use crate::error::{StageError, SubscribeError};
use crate::stage::subscription::{Link, Selector, SubscribeOptions, SubscriptionId};

struct Sub<T> {
    link: Link<T>,
    demand: usize,
    selector: Option<Selector<T>>,
}

pub(crate) struct BroadcastDispatcher<T> {
    subs: Vec<Sub<T>>,
    clone: fn(&T) -> T,
}

impl<T> BroadcastDispatcher<T> {
    pub(crate) fn new(clone: fn(&T) -> T) -> Self {
        BroadcastDispatcher {
            subs: Vec::new(),
            clone,
        }
    }
}

impl<T: Send> Dispatch<T> for BroadcastDispatcher<T> {
    fn subscribe(&mut self, link: Link<T>, opts: &SubscribeOptions<T>) -> Result<(), (Link<T>, SubscribeError)> {
        self.subs.push(Sub {
            link,
            demand: 0,
            selector: opts.selector.clone(),
        });
        Ok(())
    }

    fn cancel(&mut self, id: SubscriptionId) -> Option<Link<T>> {
        let i = self.subs.iter().position(|s| s.link.id == id)?;
        Some(self.subs.remove(i).link)
    }

    fn ask(&mut self, id: SubscriptionId, n: usize) {
        if let Some(s) = self.subs.iter_mut().find(|s| s.link.id == id) {
            s.demand += n;
        }
    }

    fn available(&self) -> usize {
        self.subs.iter().map(|s| s.demand).min().unwrap_or(0)
    }

    fn dispatch(&mut self, mut events: Vec<T>) -> Result<Vec<T>, StageError> {
        let k = self.available().min(events.len());
        if k == 0 {
            return Ok(events);
        }
        let chunk = take_front(&mut events, k);
        let last = self.subs.len() - 1;
        let mut gone = Vec::new();
        let mut chunk = Some(chunk);
        for i in 0..=last {
            let sub = &self.subs[i];
            let mut mine: Vec<T> = if i == last {
                chunk.take().unwrap_or_default()
            } else {
                let c = chunk.as_ref().map_or(&[][..], |c| &c[..]);
                match &sub.selector {
                    Some(sel) => c.iter().filter(|e| sel(e)).map(self.clone).collect(),
                    None => c.iter().map(self.clone).collect(),
                }
            };
            if i == last
                && let Some(sel) = &sub.selector
            {
                mine.retain(|e| sel(e));
            }
            let n = mine.len();
            if n == 0 {
                continue;
            }
            match sub.link.send(mine) {
                Ok(()) => self.subs[i].demand -= n,
                Err(_) => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.subs.remove(i).link.forget();
        }
        Ok(events)
    }

    fn take_links(&mut self) -> Vec<Link<T>> {
        self.subs.drain(..).map(|s| s.link).collect()
    }
}
