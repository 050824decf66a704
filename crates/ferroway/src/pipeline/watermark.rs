//! The contiguous-acknowledgement watermark: the position below which every message is done.

use std::collections::VecDeque;

/// Tracks messages of one ordered source (a Kafka partition, a file) by position, and tells
/// how far it is safe to commit: the end of the longest prefix in which every message has
/// been acknowledged. Acknowledgements may arrive in any order; a slow or failed message holds
/// the watermark back until it is done.
///
/// Positions are ranges `[start, end)`: for Kafka offsets `[o, o + 1)`, for a file the bytes of
/// a line. Ranges must be tracked in increasing order.
///
/// ```
/// use ferroway::pipeline::Watermark;
/// let mut w = Watermark::new(100);
/// for o in 100..105 {
///     w.track(o, o + 1);
/// }
/// w.complete(101);
/// w.complete(102);
/// assert_eq!(w.committable(), 100); // 100 is still in flight
/// w.complete(100);
/// assert_eq!(w.committable(), 103); // commit "next to read" = 103
/// assert_eq!(w.in_flight(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Watermark {
    committable: u64,
    // (start, end, done), in increasing order of start.
    ranges: VecDeque<(u64, u64, bool)>,
}

impl Watermark {
    /// Starts at `position`: nothing below it is tracked.
    pub fn new(position: u64) -> Self {
        Watermark {
            committable: position,
            ranges: VecDeque::new(),
        }
    }

    /// Records a message occupying `[start, end)`, emitted after every one tracked before.
    /// A gap (e.g. compacted offsets) between ranges counts as done.
    pub fn track(&mut self, start: u64, end: u64) {
        debug_assert!(
            self.ranges.back().is_none_or(|r| r.1 <= start),
            "ranges must be tracked in order"
        );
        if self.ranges.is_empty() && start > self.committable {
            self.committable = start;
        }
        self.ranges.push_back((start, end, false));
    }

    /// Marks the message starting at `start` done. Returns false if it is not tracked
    /// (already completed, or never tracked).
    pub fn complete(&mut self, start: u64) -> bool {
        let Some(i) = self.position(start) else {
            return false;
        };
        if self.ranges[i].2 {
            return false;
        }
        self.ranges[i].2 = true;
        while let Some(&(_, end, true)) = self.ranges.front() {
            self.committable = end;
            self.ranges.pop_front();
            // The next range's start is where reading resumes, even across a gap.
            if let Some(next) = self.ranges.front() {
                self.committable = self.committable.max(next.0);
            }
        }
        true
    }

    /// The index of the range starting at `start`. Kafka offsets are mostly consecutive, so
    /// the range is usually exactly `start - first start` places in: try there first.
    fn position(&self, start: u64) -> Option<usize> {
        let first = self.ranges.front()?.0;
        let guess = usize::try_from(start.checked_sub(first)?).ok()?;
        if self.ranges.get(guess).is_some_and(|r| r.0 == start) {
            return Some(guess);
        }
        self.ranges.binary_search_by_key(&start, |r| r.0).ok()
    }

    /// Everything below this position is done: the position to resume from after a restart.
    pub fn committable(&self) -> u64 {
        self.committable
    }

    /// Messages tracked and not yet done.
    pub fn in_flight(&self) -> usize {
        self.ranges.iter().filter(|r| !r.2).count()
    }

    /// True when every tracked message is done.
    pub fn is_idle(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_acks_advance_only_over_a_contiguous_prefix() {
        let mut w = Watermark::new(0);
        for (s, e) in [(0, 10), (10, 25), (25, 26), (30, 40)] {
            w.track(s, e);
        }
        assert!(w.complete(25));
        assert_eq!(w.committable(), 0);
        assert!(w.complete(0));
        assert_eq!(w.committable(), 10);
        assert!(!w.complete(0), "twice");
        assert!(!w.complete(7), "not a tracked start");
        assert!(w.complete(10));
        // 26..30 is a gap: resume at 30.
        assert_eq!(w.committable(), 30);
        assert!(w.complete(30));
        assert_eq!(w.committable(), 40);
        assert!(w.is_idle());
    }

    #[test]
    fn the_first_tracked_range_may_start_past_the_initial_position() {
        let mut w = Watermark::new(5);
        w.track(9, 10);
        assert_eq!(w.committable(), 9);
        w.complete(9);
        assert_eq!(w.committable(), 10);
    }
}
