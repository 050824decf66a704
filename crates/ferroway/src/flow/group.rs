//! Reductions everyone writes: grouping events by key, and merging every partition's results
//! into one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use super::lane::unwinding;
use super::{Accumulator, Flow, Partition};
use crate::error::StageError;
use crate::stage::SubscriptionId;
use crate::stage::outbox::Outbox;
use crate::stage::transform::Transform;

impl<T: Send + 'static> Flow<T> {
    /// Groups each window's events by `key` (per partition, or per lane without one):
    /// emits `(key, events)` for every key when the window fires. Partition by the same key
    /// first for one group per key flow-wide.
    ///
    /// ```
    /// use ferroway::flow::{Flow, Partition};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let words = ["apple", "avocado", "banana", "blueberry", "cherry"];
    /// let mut groups: Vec<(char, Vec<&str>)> = Flow::from_iterable(words)
    ///     .partition(Partition::by_key(|w: &&str| w.chars().next()).stages(2))
    ///     .group_by(|w: &&str| w.chars().next().unwrap_or(' '))
    ///     .collect()
    ///     .await?;
    /// groups.sort();
    /// assert_eq!(groups[0], ('a', vec!["apple", "avocado"]));
    /// # Ok(()) }
    /// ```
    pub fn group_by<K>(self, key: impl Fn(&T) -> K + Send + Sync + 'static) -> Flow<(K, Vec<T>)>
    where
        K: Hash + Eq + Clone + Send + 'static,
        T: Clone,
    {
        self.grouped(move |e| (key(e), e.clone()))
    }

    /// Groups what `kv` makes of each event by its key, per window: what `group_by` and
    /// `group_by_key` both are.
    fn grouped<K, V>(self, kv: impl Fn(&T) -> (K, V) + Send + Sync + 'static) -> Flow<(K, Vec<V>)>
    where
        K: Hash + Eq + Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.reduce_with(
            HashMap::<K, Vec<V>>::new,
            move |groups, e| {
                let (k, v) = kv(e);
                groups.entry(k).or_default().push(v);
            },
            |groups, _| {
                let out = groups.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                (out, Accumulator::Keep)
            },
        )
    }

    /// Merges every partition's (or lane's) events into one accumulator in one stage, and
    /// emits `done(accumulator)` when the input ends — Flow's `departition`, for bounded
    /// flows (an unbounded flow partitions into one stage with a window and reduces instead).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use ferroway::flow::{Flow, Partition};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// // Count per word in parallel partitions, then the top word over all of them.
    /// let top: Vec<(String, u64)> = Flow::from_iterable(["a b a", "c a b"])
    ///     .flat_map(|l: &str| l.split(' ').map(String::from).collect::<Vec<_>>())
    ///     .partition(Partition::hashed().stages(3))
    ///     .reduce(HashMap::new, |m: &mut HashMap<String, u64>, w: &String| *m.entry(w.clone()).or_default() += 1)
    ///     .departition(
    ///         || None::<(String, u64)>,
    ///         |best, counts: HashMap<String, u64>| {
    ///             for (w, n) in counts {
    ///                 if best.as_ref().is_none_or(|b: &(String, u64)| n > b.1) {
    ///                     *best = Some((w, n));
    ///                 }
    ///             }
    ///         },
    ///         |best| best,
    ///     )
    ///     .collect()
    ///     .await?;
    /// assert_eq!(top, [("a".to_string(), 3)]);
    /// # Ok(()) }
    /// ```
    pub fn departition<B, U, I>(
        self,
        init: impl Fn() -> B + Send + Sync + 'static,
        merge: impl Fn(&mut B, T) + Send + Sync + 'static,
        done: impl Fn(B) -> I + Send + Sync + 'static,
    ) -> Flow<U>
    where
        B: Send + 'static,
        U: Send + 'static,
        I: IntoIterator<Item = U>,
    {
        let (init, merge, done) = (Arc::new(init), Arc::new(merge), Arc::new(done));
        let mut one = self.settled();
        one.set_partition(Partition::by_key(|_: &T| ()).stages(1));
        one.then("departition", move |name, _, _| Departition {
            name,
            acc: Some(init()),
            merge: merge.clone(),
            done: done.clone(),
        })
    }
}

/// The one stage of [`Flow::departition`].
struct Departition<B, M, D> {
    name: Arc<str>,
    acc: Option<B>,
    merge: Arc<M>,
    done: Arc<D>,
}

impl<T, U, B, I, M, D> Transform<T, U> for Departition<B, M, D>
where
    T: Send + 'static,
    U: Send + 'static,
    B: Send + 'static,
    I: IntoIterator<Item = U>,
    M: Fn(&mut B, T) + Send + Sync + 'static,
    D: Fn(B) -> I + Send + Sync + 'static,
{
    async fn handle(&mut self, _: SubscriptionId, events: Vec<T>, _: Option<&mut Outbox<U>>) -> Result<(), StageError> {
        let Some(acc) = self.acc.as_mut() else {
            return Ok(());
        };
        let merge = &self.merge;
        unwinding(&self.name, || events.into_iter().for_each(|e| merge(acc, e)))
    }

    fn flush(&mut self, out: Option<&mut Outbox<U>>) -> Result<(), StageError> {
        let Some(acc) = self.acc.take() else {
            return Ok(());
        };
        let done = &self.done;
        let results: Vec<U> = unwinding(&self.name, || done(acc).into_iter().collect())?;
        match out {
            Some(out) if !results.is_empty() => out.emit(results),
            _ => Ok(()),
        }
    }
}

impl<K, V> Flow<(K, V)>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Groups `(key, value)` events by key: emits `(key, values)` for every key when the
    /// window fires (per partition, or per lane without one).
    ///
    /// ```
    /// use ferroway::flow::{Flow, Partition};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let sales = [("eu", 3), ("us", 5), ("eu", 4)];
    /// let mut by_region: Vec<(&str, Vec<i32>)> = Flow::from_iterable(sales)
    ///     .partition(Partition::by_key(|s: &(&str, i32)| s.0))
    ///     .group_by_key()
    ///     .collect()
    ///     .await?;
    /// by_region.sort();
    /// assert_eq!(by_region, [("eu", vec![3, 4]), ("us", vec![5])]);
    /// # Ok(()) }
    /// ```
    pub fn group_by_key(self) -> Flow<(K, Vec<V>)> {
        self.grouped(|(k, v)| (k.clone(), v.clone()))
    }
}
