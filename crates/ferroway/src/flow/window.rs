//! Windows split a partition's events into groups reduced together: by event time (fixed,
//! sliding), by count, by processing time (periodic), or not at all (global).

use std::sync::Arc;
use std::time::Duration;

use super::trigger::Trigger;

/// Extracts an event's time, in milliseconds on any clock the events share (usually since the
/// Unix epoch).
pub(crate) type EventTime<T> = Arc<dyn Fn(&T) -> i64 + Send + Sync>;

/// The bounds of a window: `[start, end)`, in event-time milliseconds for event-time windows,
/// in event counts for count windows, in milliseconds since the flow started for periodic
/// windows; `i64::MIN..i64::MAX` for the global window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bounds {
    /// First instant (or event index) in the window.
    pub start: i64,
    /// First instant past the window.
    pub end: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Global,
    Fixed { size: i64 },
    Sliding { size: i64, slide: i64 },
    Count { size: i64 },
    Periodic { size: i64 },
    Session { gap: i64 },
}

/// How a partition groups events before reducing them, and when results are emitted.
///
/// ```
/// use std::time::Duration;
/// use ferroway::flow::{Trigger, Window};
///
/// // One-second windows by the event's own timestamp; events may arrive up to 200 ms out of
/// // order, and a closed window still takes events up to 1 s late (it fires again).
/// let w: Window<(u64, i64)> = Window::fixed(Duration::from_secs(1))
///     .event_time(|e: &(u64, i64)| e.1)
///     .out_of_orderness(Duration::from_millis(200))
///     .allowed_lateness(Duration::from_secs(1))
///     .trigger(Trigger::every(10_000));
/// # let _ = w;
/// ```
pub struct Window<T> {
    pub(crate) kind: Kind,
    pub(crate) time: Option<EventTime<T>>,
    pub(crate) out_of_orderness: i64,
    pub(crate) lateness: i64,
    pub(crate) idle_timeout: Duration,
    pub(crate) triggers: Vec<Trigger<T>>,
    pub(crate) on_late: Option<Arc<dyn Fn(T) + Send + Sync>>,
}

impl<T> Clone for Window<T> {
    fn clone(&self) -> Self {
        Window {
            kind: self.kind,
            time: self.time.clone(),
            out_of_orderness: self.out_of_orderness,
            lateness: self.lateness,
            idle_timeout: self.idle_timeout,
            triggers: self.triggers.clone(),
            on_late: self.on_late.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Window<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("kind", &self.kind)
            .field("event_time", &self.time.is_some())
            .field("out_of_orderness_ms", &self.out_of_orderness)
            .field("allowed_lateness_ms", &self.lateness)
            .field("triggers", &self.triggers)
            .finish()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<T> Window<T> {
    fn of(kind: Kind) -> Self {
        Window {
            kind,
            time: None,
            out_of_orderness: 0,
            lateness: 0,
            idle_timeout: Duration::from_secs(5),
            triggers: Vec::new(),
            on_late: None,
        }
    }

    /// One window over everything: it fires when the input ends (and on its triggers).
    ///
    /// ```
    /// let w = ferroway::flow::Window::<u64>::global();
    /// # let _ = w;
    /// ```
    pub fn global() -> Self {
        Self::of(Kind::Global)
    }

    /// Back-to-back windows of `size` by event time, aligned to multiples of `size` (tumbling).
    /// Needs [`event_time`](Self::event_time).
    ///
    /// ```
    /// use std::time::Duration;
    /// let w = ferroway::flow::Window::fixed(Duration::from_secs(60)).event_time(|ts: &i64| *ts);
    /// # let _ = w;
    /// ```
    pub fn fixed(size: Duration) -> Self {
        Self::of(Kind::Fixed { size: millis(size) })
    }

    /// Windows of `size` starting every `slide` (aligned to multiples of `slide`, which is at
    /// most `size`): an event is in `size / slide` windows (rounded up). Needs [`event_time`](Self::event_time).
    ///
    /// ```
    /// use std::time::Duration;
    /// let w = ferroway::flow::Window::sliding(Duration::from_secs(60), Duration::from_secs(10))
    ///     .event_time(|ts: &i64| *ts);
    /// # let _ = w;
    /// ```
    pub fn sliding(size: Duration, slide: Duration) -> Self {
        Self::of(Kind::Sliding {
            size: millis(size),
            slide: millis(slide),
        })
    }

    /// Sessions by event time, per key (the partition's key): a session ends once its key
    /// has had no event for `gap`; its bounds are its first event's time and its last
    /// event's time plus the gap. Needs [`event_time`](Self::event_time); takes no allowed
    /// lateness (a late event could join two closed sessions). Events wait for the watermark
    /// to pass them before they join their session, so sessions never merge and the results
    /// do not depend on arrival order within the out-of-orderness.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferroway::flow::{Accumulator, Flow, Partition, Window};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// // (user, ts_ms) clicks, up to 100 ms out of order: a session ends after 30 ms
    /// // without a click of that user.
    /// let clicks = [("ann", 0), ("bob", 5), ("ann", 20), ("ann", 100), ("bob", 10)];
    /// let w = Window::session(Duration::from_millis(30))
    ///     .event_time(|c: &(&str, i64)| c.1)
    ///     .out_of_orderness(Duration::from_millis(100));
    /// let mut sessions: Vec<(&str, i64, i64, usize)> = Flow::from_iterable(clicks)
    ///     .partition(Partition::by_key(|c: &(&str, i64)| c.0).stages(2).window(w))
    ///     .reduce_with(Vec::new, |v, c| v.push(c.0), |v, t| {
    ///         (vec![(v[0], t.window.start, t.window.end, v.len())], Accumulator::Reset)
    ///     })
    ///     .collect()
    ///     .await?;
    /// sessions.sort();
    /// assert_eq!(sessions, [("ann", 0, 50, 2), ("ann", 100, 130, 1), ("bob", 5, 40, 2)]);
    /// # Ok(()) }
    /// ```
    pub fn session(gap: Duration) -> Self {
        Self::of(Kind::Session { gap: millis(gap) })
    }

    /// Windows of `n` events each, counted per partition in arrival order.
    ///
    /// ```
    /// let w = ferroway::flow::Window::<String>::count(1_000);
    /// # let _ = w;
    /// ```
    pub fn count(n: u64) -> Self {
        Self::of(Kind::Count {
            size: i64::try_from(n).unwrap_or(i64::MAX),
        })
    }

    /// Windows of `period` by processing time (the flow's own clock, from its start): each
    /// fires when its period ends, whatever the events say.
    ///
    /// ```
    /// use std::time::Duration;
    /// let w = ferroway::flow::Window::<String>::periodic(Duration::from_secs(5));
    /// # let _ = w;
    /// ```
    pub fn periodic(period: Duration) -> Self {
        Self::of(Kind::Periodic { size: millis(period) })
    }

    /// Takes each event's time (milliseconds) from the event. Fixed and sliding windows need it.
    pub fn event_time(mut self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> Self {
        self.time = Some(Arc::new(f));
        self
    }

    /// How far out of order events may arrive: each input's watermark trails the latest event
    /// time it delivered by this much. Default: 0 (in order).
    pub fn out_of_orderness(mut self, d: Duration) -> Self {
        self.out_of_orderness = millis(d);
        self
    }

    /// How long after a window closed it still takes events. Such an event updates the window
    /// and fires it again; a later one is late. Default: 0.
    pub fn allowed_lateness(mut self, d: Duration) -> Self {
        self.lateness = millis(d);
        self
    }

    /// An input that delivered nothing for this long (processing time) stops holding back the
    /// partition's watermark until it delivers again. Default: 5 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Adds a trigger: results are also emitted when it fires, not only when a window closes.
    pub fn trigger(mut self, t: Trigger<T>) -> Self {
        self.triggers.push(t);
        self
    }

    /// Hands late events (past the allowed lateness) to `f` (a side output) instead of dropping
    /// them. Either way they are counted in `ferroway_flow_late_events_total`.
    pub fn on_late(mut self, f: impl Fn(T) + Send + Sync + 'static) -> Self {
        self.on_late = Some(Arc::new(f));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), super::FlowError> {
        let invalid = |option, reason| Err(super::FlowError::Invalid { option, reason });
        match self.kind {
            Kind::Fixed { size } | Kind::Count { size } | Kind::Periodic { size } | Kind::Session { gap: size }
                if size <= 0 =>
            {
                invalid("window size", "must be more than zero")
            }
            Kind::Session { .. } if self.time.is_none() => invalid("event_time", "session windows need an event time"),
            Kind::Session { .. } if self.lateness > 0 => invalid(
                "allowed_lateness",
                "session windows take none: a late event could join two closed sessions",
            ),
            Kind::Sliding { size, slide } if size <= 0 || slide <= 0 || slide > size => invalid(
                "window size",
                "size and slide must be more than zero, and slide at most size",
            ),
            Kind::Fixed { .. } | Kind::Sliding { .. } if self.time.is_none() => {
                invalid("event_time", "fixed and sliding windows need an event time")
            }
            _ if self.idle_timeout.is_zero() => invalid("idle_timeout", "must be more than zero"),
            _ => Ok(()),
        }
    }
}

/// Calls `f` with every event-time window of `kind` holding `ts`, oldest first. A window
/// whose start does not fit in an `i64` (within one size of `i64::MIN`) is left out; one whose
/// end does not fit ends at `i64::MAX`.
#[inline]
pub(crate) fn assign(kind: Kind, ts: i64, mut f: impl FnMut(Bounds)) {
    let bounds = |start: i128, size: i64| {
        let start = i64::try_from(start).ok()?;
        Some(Bounds {
            start,
            end: start.saturating_add(size),
        })
    };
    match kind {
        Kind::Fixed { size } => {
            // i64 arithmetic when it fits (nearly always; a 128-bit division costs more than
            // the rest of the event's path).
            let start = match ts.div_euclid(size).checked_mul(size) {
                Some(start) => Some(Bounds {
                    start,
                    end: start.saturating_add(size),
                }),
                None => bounds(i128::from(ts).div_euclid(i128::from(size)) * i128::from(size), size),
            };
            if let Some(b) = start {
                f(b);
            }
        }
        Kind::Sliding { size, slide } => {
            let (ts, size128, slide128) = (i128::from(ts), i128::from(size), i128::from(slide));
            let last = match (ts as i64).div_euclid(slide).checked_mul(slide) {
                Some(last) => i128::from(last),
                None => ts.div_euclid(slide128) * slide128,
            };
            // The oldest window still holding `ts` starts after `ts - size`.
            let mut start = last - ((size128 - 1) / slide128) * slide128;
            while start <= last {
                if ts < start + size128
                    && let Some(b) = bounds(start, size)
                {
                    f(b);
                }
                start += slide128;
            }
        }
        Kind::Global | Kind::Count { .. } | Kind::Periodic { .. } | Kind::Session { .. } => f(Bounds {
            start: i64::MIN,
            end: i64::MAX,
        }),
    }
}
