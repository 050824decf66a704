//! A partition's open windows, ordered by bounds. A handful are open at a time and events
//! mostly land in the newest, so a vector searched from its back beats a tree (and a deque:
//! its index arithmetic cost more than the rare shift when the oldest window goes).

use super::window::Bounds;

pub(crate) struct Panes<P>(Vec<(Bounds, P)>);

impl<P> Panes<P> {
    pub(crate) fn new() -> Self {
        Panes(Vec::new())
    }

    /// Where `b` is, or where it would go.
    #[inline]
    pub(crate) fn find(&self, b: Bounds) -> Result<usize, usize> {
        for (i, (k, _)) in self.0.iter().enumerate().rev() {
            if *k == b {
                return Ok(i);
            }
            if *k < b {
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

    /// The pane at `i` (from [`find`](Self::find)).
    #[inline]
    pub(crate) fn at_mut(&mut self, i: usize) -> &mut P {
        &mut self.0[i].1
    }

    /// Puts `p` at `i` (where [`find`](Self::find) said `b` would go).
    #[inline]
    pub(crate) fn insert_at(&mut self, i: usize, b: Bounds, p: P) {
        self.0.insert(i, (b, p));
    }

    pub(crate) fn remove(&mut self, b: Bounds) -> Option<P> {
        let i = self.find(b).ok()?;
        Some(self.0.remove(i).1)
    }

    pub(crate) fn first(&self) -> Option<Bounds> {
        self.0.first().map(|(b, _)| *b)
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
