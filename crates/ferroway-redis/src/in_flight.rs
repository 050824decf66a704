//! How many entries a consumer has handed to pipelines and not yet settled: `XACK`ed, or left
//! pending after a failure.
//!
//! A redelivered entry is read only when this is zero — so it is handled alone, and nothing
//! in flight or acknowledged but not yet `XACK`ed can be read again from the pending list —
//! and the consumer leaves its group at a clean stop only when it is zero. One count per
//! consumer (URL, group, name, streams) in a process: a producer restarted by its pipeline is
//! the same Redis consumer as the one it replaces, and must see that one's entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    zero: Notify,
}

impl InFlight {
    /// The count shared by every source of consumer `key` in this process.
    pub(crate) fn of(key: String) -> Arc<InFlight> {
        static ALL: LazyLock<Mutex<HashMap<String, Weak<InFlight>>>> = LazyLock::new(Default::default);
        let mut all = ALL.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = all.get(&key).and_then(Weak::upgrade) {
            return shared;
        }
        let shared = Arc::new(InFlight::default());
        all.insert(key, Arc::downgrade(&shared));
        shared
    }

    pub(crate) fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn done(&self, n: usize) {
        if n > 0 && self.count.fetch_sub(n, Ordering::AcqRel) == n {
            self.zero.notify_waiters();
        }
    }

    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves once nothing is in flight. Cancel-safe.
    pub(crate) async fn empty(&self) {
        loop {
            let notified = self.zero.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_waits_for_the_last_acknowledgement_and_names_share_a_count() {
        let a = InFlight::of("k".into());
        let b = InFlight::of("k".into());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &InFlight::of("other".into())));
        a.add(3);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.empty().await }
        });
        a.done(2);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        a.done(1);
        waiter.await.unwrap();
    }
}
