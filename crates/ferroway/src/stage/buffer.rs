//! The producer's buffer: events emitted beyond current demand wait here, in order.

use std::collections::VecDeque;

/// Which events a full producer buffer keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BufferKeep {
    /// Keep the events already buffered; drop the newest. The default.
    #[default]
    First,
    /// Keep the newest events; drop the oldest buffered ones.
    Last,
}

/// Chunks of events in emission order; chunks are kept whole so events are never copied one by one.
pub(crate) struct Buffer<T> {
    chunks: VecDeque<Vec<T>>,
    len: usize,
    capacity: usize,
    keep: BufferKeep,
}

impl<T> Buffer<T> {
    pub(crate) fn new(capacity: usize, keep: BufferKeep) -> Self {
        Buffer {
            chunks: VecDeque::new(),
            len: 0,
            capacity,
            keep,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends events; returns how many events were dropped to respect the capacity.
    pub(crate) fn push_back(&mut self, mut events: Vec<T>) -> usize {
        let room = self.capacity - self.len;
        let mut dropped = 0;
        if events.len() > room {
            match self.keep {
                BufferKeep::First => {
                    dropped = events.len() - room;
                    events.truncate(room);
                }
                BufferKeep::Last => {
                    let excess = events.len() - room;
                    dropped = excess;
                    if events.len() > self.capacity {
                        // Even the new events alone overflow: keep their tail, drop all buffered.
                        let over = events.len() - self.capacity;
                        events.drain(..over);
                        dropped = over + self.len;
                        self.chunks.clear();
                        self.len = 0;
                    } else {
                        self.drop_oldest(excess);
                    }
                }
            }
        }
        if !events.is_empty() {
            self.len += events.len();
            self.chunks.push_back(events);
        }
        dropped
    }

    fn drop_oldest(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            if front.len() <= n {
                n -= front.len();
                self.len -= front.len();
                self.chunks.pop_front();
            } else {
                front.drain(..n);
                self.len -= n;
                n = 0;
            }
        }
    }

    pub(crate) fn pop_front(&mut self) -> Option<Vec<T>> {
        let c = self.chunks.pop_front()?;
        self.len -= c.len();
        Some(c)
    }

    /// Puts back, at the front, what could not be dispatched (never counts as overflow).
    pub(crate) fn push_front(&mut self, events: Vec<T>) {
        if !events.is_empty() {
            self.len += events.len();
            self.chunks.push_front(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(b: &mut Buffer<u32>) -> Vec<u32> {
        let mut v = Vec::new();
        while let Some(c) = b.pop_front() {
            v.extend(c);
        }
        v
    }

    #[test]
    fn keep_first_drops_newest() {
        let mut b = Buffer::new(5, BufferKeep::First);
        assert_eq!(b.push_back(vec![1, 2, 3]), 0);
        assert_eq!(b.push_back(vec![4, 5, 6, 7]), 2);
        assert_eq!(all(&mut b), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn keep_last_drops_oldest() {
        let mut b = Buffer::new(5, BufferKeep::Last);
        assert_eq!(b.push_back(vec![1, 2, 3]), 0);
        assert_eq!(b.push_back(vec![4, 5, 6, 7]), 2);
        assert_eq!(all(&mut b), vec![3, 4, 5, 6, 7]);
        assert_eq!(b.push_back(vec![1, 2]), 0);
        assert_eq!(b.push_back((10..20).collect()), 7);
        assert_eq!(all(&mut b), vec![15, 16, 17, 18, 19]);
    }
}
