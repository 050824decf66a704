//! Triggers: when a window's accumulator is handed to `on_trigger` besides the window closing.

use std::sync::Arc;
use std::time::Duration;

use super::window::Bounds;

/// A test on an event.
pub(crate) type Predicate<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// A condition on which results are emitted before (or besides) a window closing.
///
/// ```
/// use std::time::Duration;
/// use ferroway::flow::Trigger;
///
/// let every: Trigger<String> = Trigger::every(1_000);
/// let tick: Trigger<String> = Trigger::periodically(Duration::from_secs(1));
/// let marker = Trigger::punctuation(|line: &String| line.is_empty());
/// # let _ = (every, tick, marker);
/// ```
pub enum Trigger<T> {
    /// After every `n` events of a window.
    Every(u64),
    /// Every `period` of processing time.
    Periodically(Duration),
    /// After an event for which the predicate holds (the event is reduced first).
    Punctuation(Predicate<T>),
}

impl<T> Trigger<T> {
    /// Fires after every `n` events of a window.
    pub fn every(n: u64) -> Self {
        Trigger::Every(n.max(1))
    }

    /// Fires every `period` of processing time, for every open window.
    pub fn periodically(period: Duration) -> Self {
        Trigger::Periodically(period.max(Duration::from_millis(1)))
    }

    /// Fires after an event for which `f` holds, for that event's windows.
    pub fn punctuation(f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        Trigger::Punctuation(Arc::new(f))
    }
}

impl<T> Clone for Trigger<T> {
    fn clone(&self) -> Self {
        match self {
            Trigger::Every(n) => Trigger::Every(*n),
            Trigger::Periodically(d) => Trigger::Periodically(*d),
            Trigger::Punctuation(f) => Trigger::Punctuation(f.clone()),
        }
    }
}

impl<T> std::fmt::Debug for Trigger<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Every(n) => write!(f, "Every({n})"),
            Trigger::Periodically(d) => write!(f, "Periodically({d:?})"),
            Trigger::Punctuation(_) => f.write_str("Punctuation"),
        }
    }
}

/// Why `on_trigger` was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fired {
    /// The window closed: the watermark passed its end (event time), it is full (count), its
    /// period ended (periodic), or the input ended. Its state is dropped after this call,
    /// unless a lateness allowance keeps an event-time window open for late events.
    Closed,
    /// A late event (within the allowed lateness) updated a closed window.
    Late,
    /// [`Trigger::Every`] fired.
    Every,
    /// [`Trigger::Periodically`] fired.
    Periodically,
    /// [`Trigger::Punctuation`] fired.
    Punctuation,
}

/// What `on_trigger` learns: why, and for which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerInfo {
    /// Why.
    pub fired: Fired,
    /// The window.
    pub window: Bounds,
    /// The partition (0-based) whose accumulator it is.
    pub partition: usize,
}

/// What to do with an accumulator after `on_trigger` emitted from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulator {
    /// Keep it: later emissions include what was emitted now.
    Keep,
    /// Start again from the initial accumulator.
    Reset,
}
