//! The reducing stage of a partition: assigns events to windows, folds them into one
//! accumulator per window, tracks the watermark, and calls `on_trigger` when a window closes
//! or a trigger fires.

use std::sync::Arc;

use tokio::time::Instant;

use super::acks::{NONE, Progress, Retired, Tracker};
use super::lane::unwinding;
use super::panes::Panes;
use super::partition::KeyFn;
use super::session::{Session, Sessions};
use super::trigger::{Accumulator, Fired, Predicate, Trigger, TriggerInfo};
use super::window::{self, Bounds, Kind, Window};
use crate::error::StageError;
use crate::stage::SubscriptionId;
use crate::stage::outbox::Outbox;
use crate::stage::transform::Transform;

pub(crate) type Init<A> = Arc<dyn Fn() -> A + Send + Sync>;
pub(crate) type Fold<T, A> = Arc<dyn Fn(&mut A, &T) + Send + Sync>;
pub(crate) type OnTrigger<A, O> = Arc<dyn Fn(&mut A, &TriggerInfo) -> (Vec<O>, Accumulator) + Send + Sync>;

/// An event with the watermark of the lane it came from, as it stood before the event: so
/// each partition judges lateness by the event's own input, whichever partition saw what.
pub(crate) struct Stamped<T> {
    pub(crate) e: T,
    pub(crate) wm: i64,
    /// Over a connector source: the lane and batch the event came from ([`Stamped::at`]);
    /// 0 otherwise.
    pub(crate) at: u64,
}

impl<T> Stamped<T> {
    /// Packs a lane (16 bits) and a batch (48 bits).
    pub(crate) fn at(lane: usize, batch: u64) -> u64 {
        ((lane as u64) << 48) | (batch & ((1 << 48) - 1))
    }
}

fn lane_batch(at: u64) -> (usize, u64) {
    ((at >> 48) as usize, at & ((1 << 48) - 1))
}

/// A partition's part in acknowledging a connector source's messages.
struct Track {
    tracker: Arc<Tracker>,
    /// Events received from each lane, and the batch of the last.
    recv: Vec<u64>,
    last: Vec<u64>,
    /// Windows retired in this step.
    retired: Vec<Retired>,
    /// Results emitted so far.
    emitted: u64,
    /// Windows ending (with lateness) by this were written before a restart.
    restored: i64,
}

/// The user's three functions.
pub(crate) struct Reduction<T, A, O> {
    pub(crate) init: Init<A>,
    pub(crate) fold: Fold<T, A>,
    pub(crate) on_trigger: OnTrigger<A, O>,
}

impl<T, A, O> Clone for Reduction<T, A, O> {
    fn clone(&self) -> Self {
        Reduction {
            init: self.init.clone(),
            fold: self.fold.clone(),
            on_trigger: self.on_trigger.clone(),
        }
    }
}

struct Pane<A> {
    acc: A,
    /// Events since the last `Every` firing.
    since_every: u64,
    /// `Closed` has fired; later (allowed-late) events fire `Late`.
    closed: bool,
    /// A late event updated the pane since it last fired.
    updated_late: bool,
    /// Over a connector source: the oldest batch of each lane folded in (empty otherwise).
    held: Box<[u64]>,
}

/// An input's event-time progress.
struct Input {
    wm: i64,
    last_seen: Instant,
}

/// A partition's inputs (a handful: a vector beats a map on the per-event path).
#[derive(Default)]
struct Inputs(Vec<(SubscriptionId, Input)>);

impl Inputs {
    /// The input `from`, seen now.
    fn seen(&mut self, from: SubscriptionId, now: Instant) -> &mut Input {
        let i = match self.0.iter().position(|(id, _)| *id == from) {
            Some(i) => i,
            None => {
                self.0.push((
                    from,
                    Input {
                        wm: i64::MIN,
                        last_seen: now,
                    },
                ));
                self.0.len() - 1
            }
        };
        let input = &mut self.0[i].1;
        input.last_seen = now;
        input
    }

    #[inline]
    fn get_mut(&mut self, from: &SubscriptionId) -> Option<&mut Input> {
        self.0.iter_mut().find(|(id, _)| id == from).map(|(_, i)| i)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn values(&self) -> impl Iterator<Item = &Input> {
        self.0.iter().map(|(_, i)| i)
    }
}

pub(crate) struct Reducer<T, A, O> {
    name: Arc<str>,
    partition: usize,
    window: Window<T>,
    r: Reduction<T, A, O>,
    panes: Panes<Pane<A>>,
    inputs: Inputs,
    /// How many inputs feed this partition (for the watermark: the minimum over all of them).
    n_inputs: usize,
    started: Instant,
    watermark: i64,
    /// Events seen (count windows).
    seen: i64,
    every: Option<u64>,
    periodically: Option<(std::time::Duration, Instant)>,
    punctuation: Option<Predicate<T>>,
    late: u64,
    late_counter: metrics::Counter,
    /// Every pane up to this one has fired `Closed`.
    closed_upto: Bounds,
    /// The watermark at which [`advance`](Self::advance) next has something to close or
    /// drop: below it, an input's progress needs no more than noting.
    next_due: i64,
    out: Vec<O>,
    track: Option<Track>,
    /// Session windows: the sessions, and the key they are per.
    sessions: Option<Sessions<T, A>>,
    key: Option<KeyFn<T>>,
}

impl<T, A, O> Reducer<T, A, O> {
    pub(crate) fn new(
        name: Arc<str>,
        partition: usize,
        window: Window<T>,
        r: Reduction<T, A, O>,
        n_inputs: usize,
    ) -> Self {
        let now = Instant::now();
        let mut every = None;
        let mut periodically = None;
        let mut punctuation = None;
        for t in &window.triggers {
            match t {
                Trigger::Every(n) => every = Some(*n),
                Trigger::Periodically(d) => periodically = Some((*d, later(now, *d))),
                Trigger::Punctuation(f) => punctuation = Some(f.clone()),
            }
        }
        Reducer {
            late_counter: metrics::counter!("ferroway_flow_late_events_total", "stage" => name.to_string()),
            name,
            partition,
            r,
            panes: Panes::new(),
            inputs: Inputs::default(),
            n_inputs: n_inputs.max(1),
            started: now,
            watermark: i64::MIN,
            seen: 0,
            every,
            periodically,
            punctuation,
            late: 0,
            closed_upto: Bounds {
                start: i64::MIN,
                end: i64::MIN,
            },
            next_due: i64::MAX,
            out: Vec::new(),
            track: None,
            sessions: match window.kind {
                Kind::Session { gap } => Some(Sessions::new(gap)),
                _ => None,
            },
            key: None,
            window,
        }
    }

    /// This reducer, with `key` saying which session an event is in.
    pub(crate) fn keyed(mut self, key: KeyFn<T>) -> Self {
        self.key = Some(key);
        self
    }

    /// This reducer, telling `tracker` what its windows hold.
    pub(crate) fn tracked(mut self, tracker: Arc<Tracker>) -> Self {
        let lanes = tracker.lanes();
        self.track = Some(Track {
            restored: tracker.restored(self.partition),
            tracker,
            recv: vec![0; lanes],
            last: vec![0; lanes],
            retired: Vec::new(),
            emitted: 0,
        });
        self
    }

    /// Drops a window for good; over a connector source, what it held is released once the
    /// results emitted so far are written.
    fn retire(&mut self, b: Bounds) {
        let Some(pane) = self.panes.remove(b) else {
            return;
        };
        if let Some(t) = &mut self.track {
            t.retired.push(Retired {
                tag: t.emitted + self.out.len() as u64,
                held: pane.held,
                limit: b.end.saturating_add(self.window.lateness),
            });
        }
    }

    /// Whether the flow over a connector source is stopping gracefully.
    fn stopping(&self) -> bool {
        self.track.as_ref().is_some_and(|t| t.tracker.stopping())
    }

    /// Tells the tracker what this partition holds now.
    fn publish(&mut self) {
        let Some(t) = &mut self.track else {
            return;
        };
        let mut open = vec![NONE; t.recv.len()];
        for (_, p) in self.panes.iter() {
            for (o, h) in open.iter_mut().zip(p.held.iter()) {
                *o = (*o).min(*h);
            }
        }
        t.tracker.progress(
            self.partition,
            Progress {
                recv: &t.recv,
                last: &t.last,
                open: &open,
                retired: std::mem::take(&mut t.retired),
                wm: self.watermark,
                emitted: t.emitted,
            },
        );
    }

    fn fire(&mut self, bounds: Bounds, fired: Fired) {
        let Some(pane) = self.panes.get_mut(bounds) else {
            return;
        };
        let info = TriggerInfo {
            fired,
            window: bounds,
            partition: self.partition,
        };
        let (events, keep) = (self.r.on_trigger)(&mut pane.acc, &info);
        self.out.extend(events);
        if keep == Accumulator::Reset {
            pane.acc = (self.r.init)();
            // What the accumulator held went out: its messages wait only for the write.
            if let Some(t) = &mut self.track {
                let held = std::mem::replace(&mut pane.held, vec![NONE; t.recv.len()].into_boxed_slice());
                t.retired.push(Retired {
                    tag: t.emitted + self.out.len() as u64,
                    held,
                    limit: bounds.end.saturating_add(self.window.lateness),
                });
            }
        }
        pane.since_every = 0;
        pane.updated_late = false;
        if fired == Fired::Closed {
            pane.closed = true;
        }
    }

    /// Folds `e` into the pane `bounds`, firing `Every`/`Punctuation` as they come due.
    #[inline]
    fn fold_into(&mut self, bounds: Bounds, e: &T, punctuated: bool, at: u64) {
        let i = match self.panes.find(bounds) {
            Ok(i) => i,
            Err(i) => {
                // A window first seen after the watermark passed it (an allowed-late event)
                // is closed already: its events fire `Late`.
                let closed = bounds.end <= self.watermark;
                let due = if closed {
                    bounds.end.saturating_add(self.window.lateness)
                } else {
                    bounds.end
                };
                self.next_due = self.next_due.min(due);
                let lanes = self.track.as_ref().map_or(0, |t| t.recv.len());
                let pane = Pane {
                    acc: (self.r.init)(),
                    since_every: 0,
                    closed,
                    updated_late: false,
                    held: vec![NONE; lanes].into_boxed_slice(),
                };
                self.panes.insert_at(i, bounds, pane);
                i
            }
        };
        let pane = self.panes.at_mut(i);
        if !pane.held.is_empty() {
            let (lane, batch) = lane_batch(at);
            pane.held[lane] = pane.held[lane].min(batch);
        }
        (self.r.fold)(&mut pane.acc, e);
        pane.since_every += 1;
        if pane.closed {
            pane.updated_late = true;
        }
        if self.every.is_some_and(|n| pane.since_every >= n) {
            self.fire(bounds, Fired::Every);
        }
        if punctuated {
            self.fire(bounds, Fired::Punctuation);
        }
    }

    fn handle_event_time(&mut self, from: SubscriptionId, events: Vec<Stamped<T>>, time: &window::EventTime<T>) {
        let kind = self.window.kind;
        let (lateness, ooo) = (self.window.lateness, self.window.out_of_orderness);
        let now = Instant::now();
        let mut input_wm = self.inputs.seen(from, now).wm;
        let mut last_fixed: Option<Bounds> = None;
        let (tracked, restored) = self.track.as_ref().map_or((false, i64::MIN), |t| (true, t.restored));
        for Stamped { e, wm, at } in events {
            let ts = time(&e);
            input_wm = input_wm.max(wm);
            self.received(at);
            let punctuated = self.punctuation.as_ref().is_some_and(|p| p(&e));
            let mut took = false;
            // Lateness is judged by the event's own input: the same in every run, however
            // the inputs interleave and however the events are partitioned.
            let mut take = |b: Bounds| {
                let limit = b.end.saturating_add(lateness);
                if limit <= restored {
                    // Written before a restart: this is the replay of an event counted then.
                    took = true;
                } else if input_wm < limit && !(tracked && limit <= self.watermark) {
                    // (Over a connector source, a window already dropped stays dropped: its
                    // acknowledgements may be out, so it must not come back partial.)
                    took = true;
                    self.fold_into(b, &e, punctuated, at);
                }
            };
            match kind {
                // Most events fall in the window of the one before: no division for them.
                Kind::Fixed { .. } if last_fixed.is_some_and(|b| b.start <= ts && ts < b.end) => {
                    take(last_fixed.expect("checked"));
                }
                Kind::Fixed { .. } => window::assign(kind, ts, |b| {
                    last_fixed = Some(b);
                    take(b);
                }),
                _ => window::assign(kind, ts, take),
            }
            if !took {
                self.left_out(e);
            }
            let after = ts.saturating_sub(ooo);
            if after > input_wm {
                input_wm = after;
                self.input_moved(from, after, now);
            }
        }
        if let Some(i) = self.inputs.get_mut(&from) {
            i.wm = i.wm.max(input_wm);
        }
        self.advance(now);
        self.fire_late_updates();
    }

    /// Recomputes the watermark (the minimum over the inputs that are not idle) and closes and
    /// purges the windows it passed.
    fn advance(&mut self, now: Instant) {
        let idle = self.window.idle_timeout;
        if self.inputs.len() < self.n_inputs && now.duration_since(self.started) < idle {
            return;
        }
        let wm = if self.inputs.len() == 1 {
            self.inputs.values().next().map_or(i64::MIN, |i| i.wm)
        } else {
            self.inputs
                .values()
                .filter(|i| now.duration_since(i.last_seen) < idle)
                .map(|i| i.wm)
                .min()
                .unwrap_or(self.watermark)
        };
        // Never backwards: an input coming back from idleness does not reopen windows.
        self.watermark = self.watermark.max(wm);
        let wm = self.watermark;
        if wm < self.next_due {
            return;
        }
        // Panes are ordered by start and (one size for all) by end, too.
        while let Some(b) = self.panes.first_after(self.closed_upto).filter(|b| b.end <= wm) {
            // A pane made after the watermark passed it was closed from the start.
            if self.panes.get_mut(b).is_some_and(|p| !p.closed) {
                self.fire(b, Fired::Closed);
            }
            self.closed_upto = b;
        }
        let lateness = self.window.lateness;
        while let Some(b) = self.panes.first().filter(|b| b.end.saturating_add(lateness) <= wm) {
            if self.panes.get_mut(b).is_some_and(|p| p.updated_late) {
                // Its last late update still fires before it goes.
                self.fire(b, Fired::Late);
            }
            self.retire(b);
        }
        let unclosed = self.panes.first_after(self.closed_upto).map_or(i64::MAX, |b| b.end);
        let purge = self.panes.first().map_or(i64::MAX, |b| b.end.saturating_add(lateness));
        self.next_due = unclosed.min(purge);
    }

    fn handle_sessions(&mut self, from: SubscriptionId, events: Vec<Stamped<T>>, time: &window::EventTime<T>) {
        let ooo = self.window.out_of_orderness;
        let now = Instant::now();
        let mut input_wm = self.inputs.seen(from, now).wm;
        for Stamped { e, wm, .. } in events {
            let ts = time(&e);
            input_wm = input_wm.max(wm);
            let Some(sessions) = self.sessions.as_mut() else {
                return;
            };
            // Late by its own input's watermark (the same in every run), or behind what the
            // partition already put into sessions (an idle input skipped).
            if ts < input_wm || ts < sessions.drained {
                self.left_out(e);
            } else {
                let key = self.key.as_ref().map_or(0, |k| k(&e));
                sessions.push(key, ts, e);
            }
            let after = ts.saturating_sub(ooo);
            if after > input_wm {
                input_wm = after;
                self.input_moved(from, after, now);
                self.drain_sessions(self.watermark);
            }
        }
        if let Some(i) = self.inputs.get_mut(&from) {
            i.wm = i.wm.max(input_wm);
        }
        self.advance(now);
        self.drain_sessions(self.watermark);
    }

    /// An event of `from` moved its input's watermark to `after`. The partition's follows
    /// every event, so whether a window is closed when an event reaches it never depends on
    /// where batches were cut.
    #[inline]
    fn input_moved(&mut self, from: SubscriptionId, after: i64, now: Instant) {
        if self.n_inputs == 1 && after < self.next_due {
            // One input: its watermark is the partition's, kept without the inputs'
            // bookkeeping until something comes due.
            self.watermark = self.watermark.max(after);
        } else {
            if let Some(i) = self.inputs.get_mut(&from) {
                i.wm = i.wm.max(after);
            }
            self.advance(now);
        }
    }

    /// A late event: counted, and handed to the side output if there is one.
    fn left_out(&mut self, e: T) {
        self.late += 1;
        self.late_counter.increment(1);
        if let Some(f) = &self.window.on_late {
            f(e);
        }
    }

    /// Puts the events before `wm` into their sessions, in time order, and closes the
    /// sessions no later event can join.
    fn drain_sessions(&mut self, wm: i64) {
        let Some(sessions) = self.sessions.as_mut() else {
            return;
        };
        let (r, out, partition) = (&self.r, &mut self.out, self.partition);
        while let Some((key, ts, e)) = sessions.next_before(wm) {
            let (closed, s) = sessions.take(key, ts, &*r.init);
            if let Some(mut closed) = closed {
                fire_session(r, partition, out, &mut closed, Fired::Closed);
            }
            (r.fold)(&mut s.acc, &e);
            s.since_every += 1;
            if self.every.is_some_and(|n| s.since_every >= n) {
                fire_session(r, partition, out, s, Fired::Every);
            }
            if self.punctuation.as_ref().is_some_and(|p| p(&e)) {
                fire_session(r, partition, out, s, Fired::Punctuation);
            }
        }
        while let Some(mut closed) = sessions.next_ended(wm) {
            fire_session(r, partition, out, &mut closed, Fired::Closed);
        }
        sessions.drained = sessions.drained.max(wm);
    }

    /// Whether any window (or session, or event waiting for one) is open.
    fn has_state(&self) -> bool {
        !self.panes.is_empty() || self.sessions.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn fire_late_updates(&mut self) {
        let updated: Vec<Bounds> = self
            .panes
            .iter()
            .filter(|(_, p)| p.updated_late)
            .map(|(b, _)| b)
            .collect();
        for b in updated {
            self.fire(b, Fired::Late);
        }
    }

    fn handle_count(&mut self, events: Vec<Stamped<T>>, size: i64) {
        for Stamped { e, at, .. } in events {
            self.received(at);
            let start = self.seen.div_euclid(size) * size;
            let b = Bounds {
                start,
                end: start.saturating_add(size),
            };
            let punctuated = self.punctuation.as_ref().is_some_and(|p| p(&e));
            self.fold_into(b, &e, punctuated, at);
            self.seen += 1;
            if self.seen == b.end {
                self.fire(b, Fired::Closed);
                self.retire(b);
            }
        }
    }

    /// The periodic window holding `now`.
    fn period(&self, now: Instant, size: i64) -> Bounds {
        let ms = i64::try_from(now.duration_since(self.started).as_millis()).unwrap_or(i64::MAX);
        let start = ms.div_euclid(size) * size;
        Bounds {
            start,
            end: start.saturating_add(size),
        }
    }

    fn handle_untimed(&mut self, events: Vec<Stamped<T>>, b: Bounds) {
        for Stamped { e, at, .. } in events {
            self.received(at);
            let punctuated = self.punctuation.as_ref().is_some_and(|p| p(&e));
            self.fold_into(b, &e, punctuated, at);
        }
    }

    /// Counts an event of a connector source's batch `at` as received.
    #[inline]
    fn received(&mut self, at: u64) {
        if let Some(t) = &mut self.track {
            let (lane, batch) = lane_batch(at);
            t.recv[lane] += 1;
            t.last[lane] = batch;
        }
    }

    fn close_all(&mut self) {
        self.drain_sessions(i64::MAX);
        if self.window.time.is_some() {
            // The input ended: the windows it closes are final, as if the watermark had
            // passed them (a later run over more input treats their events as written).
            let last = self
                .panes
                .keys()
                .map(|b| b.end.saturating_add(self.window.lateness))
                .max();
            self.watermark = self.watermark.max(last.unwrap_or(i64::MIN));
        }
        let open: Vec<Bounds> = self.panes.iter().filter(|(_, p)| !p.closed).map(|(b, _)| b).collect();
        for b in open {
            self.fire(b, Fired::Closed);
        }
        self.fire_late_updates();
        let all: Vec<Bounds> = self.panes.keys().collect();
        for b in all {
            self.retire(b);
        }
    }

    fn emit(&mut self, out: Option<&mut Outbox<O>>) -> Result<(), StageError>
    where
        O: Send + 'static,
    {
        if let Some(t) = &mut self.track {
            t.emitted += self.out.len() as u64;
        }
        let emitted = match out {
            Some(out) if !self.out.is_empty() => out.emit(std::mem::take(&mut self.out)),
            _ => Ok(()),
        };
        self.publish();
        emitted
    }
}

impl<T, A, O> Transform<Stamped<T>, O> for Reducer<T, A, O>
where
    T: Send + 'static,
    A: Send + 'static,
    O: Send + 'static,
{
    async fn handle(
        &mut self,
        from: SubscriptionId,
        events: Vec<Stamped<T>>,
        out: Option<&mut Outbox<O>>,
    ) -> Result<(), StageError> {
        let name = self.name.clone();
        unwinding(&name, || match self.window.kind {
            kind @ (Kind::Fixed { .. } | Kind::Sliding { .. } | Kind::Session { .. }) => {
                let time = self
                    .window
                    .time
                    .clone()
                    .expect("validated: event-time windows have a time");
                if let Kind::Session { .. } = kind {
                    self.handle_sessions(from, events, &time);
                } else {
                    self.handle_event_time(from, events, &time);
                }
            }
            Kind::Count { size } => self.handle_count(events, size),
            Kind::Periodic { size } => {
                let b = self.period(Instant::now(), size);
                self.handle_untimed(events, b);
            }
            Kind::Global => self.handle_untimed(
                events,
                Bounds {
                    start: i64::MIN,
                    end: i64::MAX,
                },
            ),
        })?;
        self.emit(out)
    }

    fn deadline(&mut self) -> Option<Instant> {
        let periodic_end = match self.window.kind {
            Kind::Periodic { size } if !self.panes.is_empty() => {
                let b = self.period(Instant::now(), size);
                let first = self.panes.first().unwrap_or(b);
                Some(later(
                    self.started,
                    std::time::Duration::from_millis(first.end.max(0) as u64),
                ))
            }
            _ => None,
        };
        let trigger = self.periodically.filter(|_| self.has_state()).map(|(_, at)| at);
        match (periodic_end, trigger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn tick(&mut self, out: Option<&mut Outbox<O>>) -> Result<(), StageError> {
        if self.stopping() {
            // Nothing fires once a graceful stop counted what was written.
            return Ok(());
        }
        let now = Instant::now();
        let name = self.name.clone();
        unwinding(&name, || {
            if let Kind::Periodic { size } = self.window.kind {
                let current = self.period(now, size);
                let ended: Vec<Bounds> = self.panes.keys().filter(|b| b.end <= current.start).collect();
                for b in ended {
                    self.fire(b, Fired::Closed);
                    self.retire(b);
                }
            }
            if let Some((period, at)) = self.periodically
                && at <= now
            {
                let open: Vec<Bounds> = self.panes.keys().collect();
                for b in open {
                    self.fire(b, Fired::Periodically);
                }
                if let Some(sessions) = self.sessions.as_mut() {
                    for s in sessions.open_mut() {
                        fire_session(&self.r, self.partition, &mut self.out, s, Fired::Periodically);
                    }
                }
                self.periodically = Some((period, later(now, period)));
            }
        })?;
        self.emit(out)
    }

    fn flush(&mut self, out: Option<&mut Outbox<O>>) -> Result<(), StageError> {
        if self.stopping() {
            // The input did not end, the flow is stopping: open windows are not complete and
            // must not come out (nor be made final); their messages are read again next run.
            return Ok(());
        }
        let name = self.name.clone();
        unwinding(&name, || self.close_all())?;
        if self.late > 0 {
            tracing::debug!(stage = %self.name, late = self.late, "late events left out");
        }
        self.emit(out)
    }
}

/// Hands a session's accumulator to `on_trigger`.
fn fire_session<T, A, O>(r: &Reduction<T, A, O>, partition: usize, out: &mut Vec<O>, s: &mut Session<A>, fired: Fired) {
    let info = TriggerInfo {
        fired,
        window: s.bounds,
        partition,
    };
    let (events, keep) = (r.on_trigger)(&mut s.acc, &info);
    out.extend(events);
    if keep == Accumulator::Reset {
        s.acc = (r.init)();
    }
    s.since_every = 0;
}

/// `at + d`, or about a century later when that does not fit in an `Instant`.
fn later(at: Instant, d: std::time::Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(std::time::Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(at)
}
