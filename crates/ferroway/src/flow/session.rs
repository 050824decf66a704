//! Session windows: per key, a run of events each less than a gap after the one before.
//!
//! Events wait until the watermark passes their time and then join their sessions in time
//! order, so a session only ever grows at its end: two sessions never have to be merged (no
//! merge function to ask for), and the result is the same however the events arrived. The
//! wait costs the events within the out-of-orderness, no more.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use super::window::Bounds;

/// An event waiting for the watermark to pass its time.
struct Pending<T> {
    ts: i64,
    /// Arrival order, for ties.
    seq: u64,
    key: u64,
    e: T,
}

impl<T> PartialEq for Pending<T> {
    fn eq(&self, o: &Self) -> bool {
        (self.ts, self.seq) == (o.ts, o.seq)
    }
}
impl<T> Eq for Pending<T> {}
impl<T> PartialOrd for Pending<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Pending<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(o.ts, o.seq))
    }
}

/// One key's open session.
pub(crate) struct Session<A> {
    pub(crate) bounds: Bounds,
    pub(crate) acc: A,
    pub(crate) since_every: u64,
}

/// A partition's sessions.
pub(crate) struct Sessions<T, A> {
    gap: i64,
    pending: BinaryHeap<Reverse<Pending<T>>>,
    seq: u64,
    open: HashMap<u64, Session<A>>,
    /// Open sessions by end, to close them as the watermark passes.
    by_end: BTreeSet<(i64, u64)>,
    /// Every event before this time has joined its session: an event before it is late.
    pub(crate) drained: i64,
}

impl<T, A> Sessions<T, A> {
    pub(crate) fn new(gap: i64) -> Self {
        Sessions {
            gap,
            pending: BinaryHeap::new(),
            seq: 0,
            open: HashMap::new(),
            by_end: BTreeSet::new(),
            drained: i64::MIN,
        }
    }

    /// Holds `e` (of `key`, at `ts`) until the watermark passes `ts`.
    pub(crate) fn push(&mut self, key: u64, ts: i64, e: T) {
        self.seq += 1;
        self.pending.push(Reverse(Pending {
            ts,
            seq: self.seq,
            key,
            e,
        }));
    }

    /// The next waiting event before `wm`, in time order.
    pub(crate) fn next_before(&mut self, wm: i64) -> Option<(u64, i64, T)> {
        // `i64::MAX`: the input ended, everything goes.
        if self.pending.peek().is_none_or(|p| p.0.ts >= wm && wm < i64::MAX) {
            return None;
        }
        let Reverse(p) = self.pending.pop()?;
        Some((p.key, p.ts, p.e))
    }

    /// Takes in an event of `key` at `ts` (in time order): returns the key's session it
    /// closed, if it came a gap or more after it, and the session it is in now (new or
    /// grown), to fold it into.
    pub(crate) fn take(
        &mut self,
        key: u64,
        ts: i64,
        init: impl FnOnce() -> A,
    ) -> (Option<Session<A>>, &mut Session<A>) {
        let end = ts.saturating_add(self.gap);
        let closed = match self.open.get(&key) {
            Some(s) if ts >= s.bounds.end => {
                self.by_end.remove(&(s.bounds.end, key));
                self.open.remove(&key)
            }
            _ => None,
        };
        let s = self.open.entry(key).or_insert_with(|| Session {
            bounds: Bounds { start: ts, end },
            acc: init(),
            since_every: 0,
        });
        if end > s.bounds.end {
            self.by_end.remove(&(s.bounds.end, key));
            s.bounds.end = end;
        }
        self.by_end.insert((s.bounds.end, key));
        (closed, s)
    }

    /// The next session ending at or before `wm` (no event can join it any more).
    pub(crate) fn next_ended(&mut self, wm: i64) -> Option<Session<A>> {
        let &(end, key) = self.by_end.first().filter(|(end, _)| *end <= wm)?;
        self.by_end.remove(&(end, key));
        self.open.remove(&key)
    }

    /// Every open session, for a trigger.
    pub(crate) fn open_mut(&mut self) -> impl Iterator<Item = &mut Session<A>> {
        self.open.values_mut()
    }

    /// Whether nothing is open or waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty() && self.pending.is_empty()
    }
}
