//! Joins of two flows by key: bounded (all of both sides) or per window (unbounded flows).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use super::builder::Flow;
use super::partition::Partition;
use super::trigger::{Accumulator, Fired};
use super::window::Window;

/// An event of either side of a join, for a join's window (its event time may read both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side<L, R> {
    /// From the flow `join` was called on.
    Left(L),
    /// From the other flow.
    Right(R),
}

/// Which rows a join emits, as in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Only keys found on both sides: every left event with every right event of its key.
    Inner,
    /// Also left events without a right match, with `None` on the right.
    Left,
    /// Also right events without a left match, with `None` on the left.
    Right,
    /// Both of the above.
    Full,
}

/// One key's events of one window.
struct Rows<L, R>(Vec<L>, Vec<R>);

impl<L: Clone, R: Clone> Rows<L, R> {
    fn joined(self, how: Join, out: &mut Vec<(Option<L>, Option<R>)>) {
        let Rows(ls, rs) = self;
        match (ls.is_empty(), rs.is_empty()) {
            (false, false) => {
                for l in &ls {
                    out.extend(rs.iter().map(|r| (Some(l.clone()), Some(r.clone()))));
                }
            }
            (false, true) if matches!(how, Join::Left | Join::Full) => {
                out.extend(ls.into_iter().map(|l| (Some(l), None)))
            }
            (true, false) if matches!(how, Join::Right | Join::Full) => {
                out.extend(rs.into_iter().map(|r| (None, Some(r))))
            }
            _ => {}
        }
    }
}

impl<L: Clone + Send + 'static> Flow<L> {
    /// Joins this flow with `right` by key, once both have ended (bounded flows): rows of
    /// `(left, right)`, `None` on a side without a match in an outer join.
    ///
    /// ```
    /// use ferroway::flow::{Flow, Join};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let users = Flow::from_iterable([(1, "ann"), (2, "bob")]);
    /// let orders = Flow::from_iterable([(1, 30), (1, 12), (3, 7)]);
    /// let mut rows = users.join(orders, |u| u.0, |o| o.0, Join::Full).collect().await?;
    /// rows.sort();
    /// assert_eq!(rows, [
    ///     (None, Some((3, 7))),
    ///     (Some((1, "ann")), Some((1, 12))),
    ///     (Some((1, "ann")), Some((1, 30))),
    ///     (Some((2, "bob")), None),
    /// ]);
    /// # Ok(()) }
    /// ```
    pub fn join<R, K>(
        self,
        right: Flow<R>,
        left_key: impl Fn(&L) -> K + Send + Sync + 'static,
        right_key: impl Fn(&R) -> K + Send + Sync + 'static,
        how: Join,
    ) -> Flow<(Option<L>, Option<R>)>
    where
        R: Clone + Send + 'static,
        K: Hash + Eq + Clone + Send + 'static,
    {
        self.join_in(right, left_key, right_key, how, Window::global())
    }

    /// Joins this flow with `right` by key within each window of `window` (unbounded flows):
    /// a window's rows are emitted when it closes, and its events are then dropped. The
    /// window's event time reads a [`Side`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferroway::flow::{Flow, Join, Side, Window};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// // (key, ts_ms): clicks and views meet only within the same 10 ms window.
    /// let clicks = Flow::from_iterable([(1u8, 1i64), (1, 15)]);
    /// let views = Flow::from_iterable([(1u8, 3i64), (1, 25)]);
    /// let w = Window::fixed(Duration::from_millis(10)).event_time(|s: &Side<(u8, i64), (u8, i64)>| match s {
    ///     Side::Left(c) => c.1,
    ///     Side::Right(v) => v.1,
    /// });
    /// let rows = clicks.join_in(views, |c| c.0, |v| v.0, Join::Inner, w).collect().await?;
    /// assert_eq!(rows, [(Some((1, 1)), Some((1, 3)))]);
    /// # Ok(()) }
    /// ```
    pub fn join_in<R, K>(
        self,
        right: Flow<R>,
        left_key: impl Fn(&L) -> K + Send + Sync + 'static,
        right_key: impl Fn(&R) -> K + Send + Sync + 'static,
        how: Join,
        window: Window<Side<L, R>>,
    ) -> Flow<(Option<L>, Option<R>)>
    where
        R: Clone + Send + 'static,
        K: Hash + Eq + Clone + Send + 'static,
    {
        // A window's rows go out once, when it closes: an allowed-late event would have no
        // rows to join with any more.
        let refused = (window.lateness > 0).then_some(super::FlowError::Invalid {
            option: "allowed_lateness",
            reason: "a join emits a window's rows once, when it closes: no lateness",
        });
        let (lk, rk) = (Arc::new(left_key), Arc::new(right_key));
        let key = move |s: &Side<L, R>| match s {
            Side::Left(l) => lk(l),
            Side::Right(r) => rk(r),
        };
        let key = Arc::new(key);
        let fold_key = key.clone();
        let joined = Flow::merge([self.map(Side::Left), right.map(Side::Right)])
            .partition(Partition::by_key(move |s: &Side<L, R>| key(s)).window(window))
            .reduce_with(
                HashMap::<K, Rows<L, R>>::new,
                move |rows, s| {
                    let e = rows.entry(fold_key(s)).or_insert_with(|| Rows(Vec::new(), Vec::new()));
                    match s {
                        Side::Left(l) => e.0.push(l.clone()),
                        Side::Right(r) => e.1.push(r.clone()),
                    }
                },
                move |rows, t| {
                    if t.fired != Fired::Closed {
                        return (Vec::new(), Accumulator::Keep);
                    }
                    let mut out = Vec::new();
                    for (_, r) in rows.drain() {
                        r.joined(how, &mut out);
                    }
                    (out, Accumulator::Reset)
                },
            );
        match refused {
            Some(e) => joined.failing(e),
            None => joined,
        }
    }
}
