//! A partition's open windows, ordered by bounds. A handful are open at a time and events
//! mostly land in the newest, so a deque searched from its back beats a tree.

use std::collections::VecDeque;

use super::window::Bounds;

pub(crate) struct Panes<P>(VecDeque<(Bounds, P)>);

impl<P> Panes<P> {
    pub(crate) fn new() -> Self {
        Panes(VecDeque::new())
    }

    /// Where `b` is, or where it would go.
    #[inline]
    fn find(&self, b: Bounds) -> Result<usize, usize> {
        for i in (0..self.0.len()).rev() {
            let k = self.0[i].0;
            if k == b {
                return Ok(i);
            }
            if k < b {
                return Err(i + 1);
            }
        }
        Err(0)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, b: Bounds) -> Option<&mut P> {
        let i = self.find(b).ok()?;
        Some(&mut self.0[i].1)
    }

    #[inline]
    pub(crate) fn get_or_insert_with(&mut self, b: Bounds, f: impl FnOnce() -> P) -> &mut P {
        let i = match self.find(b) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (b, f()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub(crate) fn remove(&mut self, b: Bounds) -> Option<P> {
        let i = self.find(b).ok()?;
        self.0.remove(i).map(|(_, p)| p)
    }

    pub(crate) fn first(&self) -> Option<Bounds> {
        self.0.front().map(|(b, _)| *b)
    }

    /// The first window after `b`.
    pub(crate) fn first_after(&self, b: Bounds) -> Option<Bounds> {
        let i = match self.find(b) {
            Ok(i) => i + 1,
            Err(i) => i,
        };
        self.0.get(i).map(|(b, _)| *b)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Bounds, &P)> {
        self.0.iter().map(|(b, p)| (*b, p))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = Bounds> + '_ {
        self.0.iter().map(|(b, _)| *b)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
