//! The shuffle boundary: which partition an event goes to, how many there are, and how each
//! windows its events.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use super::window::Window;

pub(crate) type KeyFn<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;

/// How events are spread over partitions: N stages (default: the machine's cores), by the hash
/// of a key, each with its own window. Every event of one key goes to the same partition.
///
/// ```
/// use ferroway::flow::{Partition, Window};
///
/// let by_word = Partition::by_key(|(word, _n): &(String, u64)| word.clone()).stages(4);
/// let by_hash = Partition::<u64>::hashed().window(Window::count(100));
/// # let _ = (by_word, by_hash);
/// ```
pub struct Partition<T> {
    pub(crate) stages: usize,
    pub(crate) key: KeyFn<T>,
    pub(crate) window: Window<T>,
}

impl<T> Clone for Partition<T> {
    fn clone(&self) -> Self {
        Partition {
            stages: self.stages,
            key: self.key.clone(),
            window: self.window.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Partition<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("stages", &self.stages)
            .field("window", &self.window)
            .finish()
    }
}

/// The number of cores, the default number of stages.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A fixed hasher: the same key goes to the same partition in every run and process.
fn hash_of<K: Hash + ?Sized>(k: &K) -> u64 {
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(k)
}

impl<T> Partition<T> {
    /// Partitions by the hash of `key(event)`.
    pub fn by_key<K: Hash>(key: impl Fn(&T) -> K + Send + Sync + 'static) -> Self {
        Partition {
            stages: cores(),
            key: Arc::new(move |e| hash_of(&key(e))),
            window: Window::global(),
        }
    }

    /// Partitions by the hash of the whole event.
    pub fn hashed() -> Self
    where
        T: Hash,
    {
        Partition {
            stages: cores(),
            key: Arc::new(|e| hash_of(e)),
            window: Window::global(),
        }
    }

    /// How many partitions (stages); at least 1.
    pub fn stages(mut self, n: usize) -> Self {
        self.stages = n.max(1);
        self
    }

    /// How each partition groups its events (default: [`Window::global`]).
    pub fn window(mut self, w: Window<T>) -> Self {
        self.window = w;
        self
    }

    pub(crate) fn index(&self, e: &T) -> usize {
        // Multiply-shift: uniform over the stages without a division.
        ((u128::from((self.key)(e)) * self.stages as u128) >> 64) as usize
    }
}
