//! What a queue-like broker source (SQS, Pub/Sub) keeps of the messages it handed out: each
//! one's handle for the broker (a receipt handle, an ack id), the lease it holds there, and
//! the copies the broker may hand out meanwhile.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::pipeline::AckToken;

/// The messages a source received and has not settled yet, by [`AckToken`], with the broker
/// handle that settles each and when its lease (visibility timeout, ack deadline) runs out.
///
/// Brokers of this kind deliver at least once: a message whose lease ran out, or that the
/// broker simply sent twice, comes again with a new handle. [`add`](Leases::add) recognises
/// such copies by the message's identity, so a message is handled once however many copies
/// arrive while it is in the pipeline, and a copy of one of the last 4,096 settled is
/// reported for the source to settle again rather than handle.
///
/// ```
/// use std::time::Duration;
/// use ferroway::connector::leases::{Arrival, Leases};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let leases = Leases::default();
/// let lease = Duration::from_secs(30);
/// let stale = Duration::from_secs(3600);
/// let Arrival::New(token) = leases.add("m-1", "handle-1".into(), 5, lease, stale) else { unreachable!() };
/// // The broker hands it out again while it is in the pipeline: not handled twice.
/// assert!(matches!(leases.add("m-1", "handle-2".into(), 5, lease, stale), Arrival::InPipeline));
/// // Settled with the newest handle; a later copy is settled again, not handled.
/// assert_eq!(leases.settle(token).as_deref(), Some("handle-2"));
/// assert!(matches!(leases.add("m-1", "handle-3".into(), 5, lease, stale), Arrival::Handled(h) if h == "handle-3"));
/// assert_eq!(leases.outstanding(), (0, 0));
/// # }
/// ```
#[derive(Default)]
pub struct Leases {
    table: Mutex<Table>,
    next: AtomicU64,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (messages, bytes) = self.outstanding();
        f.debug_struct("Leases")
            .field("messages", &messages)
            .field("bytes", &bytes)
            .finish()
    }
}

/// How many settled identities are remembered to recognise a late copy.
const RECENT: usize = 4096;

struct Lease {
    identity: String,
    handle: String,
    bytes: usize,
    received: Instant,
    /// When the lease runs out (as last set).
    deadline: Instant,
}

#[derive(Default)]
struct Table {
    pending: HashMap<u64, Lease>,
    by_identity: HashMap<String, u64>,
    /// The last [`RECENT`] identities settled, oldest first.
    settled: HashSet<String>,
    settled_order: VecDeque<String>,
    bytes: usize,
}

impl Table {
    fn remove(&mut self, token: u64) -> Option<Lease> {
        let l = self.pending.remove(&token)?;
        self.by_identity.remove(&l.identity);
        self.bytes -= l.bytes;
        Some(l)
    }
}

/// What a received message is to [`Leases::add`].
#[derive(Debug)]
pub enum Arrival {
    /// New: into the pipeline with this token.
    New(AckToken),
    /// A copy of a message still in the pipeline: that one is settled with this copy's
    /// newer handle (the one brokers honour), and its lease counts from now.
    InPipeline,
    /// A copy of a message already settled: settle it again by this handle.
    Handled(String),
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a message received now: `identity` names the message (copies share it; an
    /// empty one is never taken for a copy), `handle` settles it, `bytes` counts towards
    /// [`outstanding`](Leases::outstanding), and its lease runs for `lease`. A copy of a
    /// message in the pipeline longer than `stale` (past its last extension) is taken as
    /// new: the first one may never come back.
    pub fn add(&self, identity: &str, handle: String, bytes: usize, lease: Duration, stale: Duration) -> Arrival {
        let now = Instant::now();
        let mut table = self.lock();
        if let Some(token) = table.by_identity.get(identity).copied()
            && let Some(l) = table.pending.get_mut(&token)
        {
            if now.duration_since(l.received) <= stale {
                l.handle = handle;
                l.deadline = now + lease;
                return Arrival::InPipeline;
            }
            table.remove(token);
        }
        if table.settled.contains(identity) {
            return Arrival::Handled(handle);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if !identity.is_empty() {
            table.by_identity.insert(identity.to_owned(), id);
        }
        table.bytes += bytes;
        table.pending.insert(
            id,
            Lease {
                identity: identity.to_owned(),
                handle,
                bytes,
                received: now,
                deadline: now + lease,
            },
        );
        Arrival::New(AckToken(id, 0))
    }

    /// The pipeline finished with the message: its handle, to settle it (delete, ack). Its
    /// identity is remembered, so a late copy is settled rather than handled.
    pub fn settle(&self, token: AckToken) -> Option<String> {
        let mut table = self.lock();
        let l = table.remove(token.0)?;
        if !l.identity.is_empty() && table.settled.insert(l.identity.clone()) {
            table.settled_order.push_back(l.identity);
            if table.settled_order.len() > RECENT
                && let Some(old) = table.settled_order.pop_front()
            {
                table.settled.remove(&old);
            }
        }
        Some(l.handle)
    }

    /// The message goes back to the broker unsettled (it failed, or never reached the
    /// pipeline): its handle. Its next delivery is new.
    pub fn release(&self, token: AckToken) -> Option<String> {
        self.lock().remove(token.0).map(|l| l.handle)
    }

    /// The handles of messages whose lease runs out within `before`, unless they have been
    /// in the pipeline for `max` already (counting the new lease): their leases are taken
    /// as extended by `lease` from now, for the caller to tell the broker.
    pub fn due(&self, before: Duration, lease: Duration, max: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut table = self.lock();
        let mut due = Vec::new();
        for l in table.pending.values_mut() {
            if l.deadline.saturating_duration_since(now) > before || now.duration_since(l.received) + lease > max {
                continue;
            }
            l.deadline = now + lease;
            due.push(l.handle.clone());
        }
        due
    }

    /// Messages held and their bytes.
    pub fn outstanding(&self) -> (usize, usize) {
        let t = self.lock();
        (t.pending.len(), t.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Duration = Duration::from_secs(30);
    const STALE: Duration = Duration::from_secs(3600);

    fn new(leases: &Leases, id: &str, handle: &str) -> AckToken {
        match leases.add(id, handle.into(), 1, L, STALE) {
            Arrival::New(t) => t,
            other => panic!("{id} is new, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_released_message_comes_back_as_new() {
        let leases = Leases::default();
        let t = new(&leases, "m", "h1");
        assert_eq!(leases.release(t).as_deref(), Some("h1"));
        new(&leases, "m", "h2");
    }

    #[tokio::test]
    async fn only_the_last_settled_identities_are_remembered() {
        let leases = Leases::default();
        for i in 0..=RECENT {
            let t = new(&leases, &i.to_string(), "h");
            leases.settle(t);
        }
        new(&leases, "0", "x");
        assert!(matches!(leases.add("1", "y".into(), 1, L, STALE), Arrival::Handled(_)));
        assert!(leases.lock().settled.len() <= RECENT);
    }

    #[tokio::test]
    async fn a_copy_past_the_last_extension_is_taken_as_new() {
        let leases = Leases::default();
        let short = Duration::from_millis(1);
        assert!(matches!(leases.add("m", "h1".into(), 1, L, short), Arrival::New(_)));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(matches!(leases.add("m", "h2".into(), 1, L, short), Arrival::New(_)));
        assert_eq!(leases.outstanding().0, 1, "the stale entry went");
    }

    #[tokio::test(start_paused = true)]
    async fn leases_near_their_end_are_due_until_the_maximum() {
        let leases = Leases::default();
        new(&leases, "m", "h");
        let (before, max) = (Duration::from_secs(10), Duration::from_secs(100));
        assert!(leases.due(before, L, max).is_empty(), "30 s left");
        tokio::time::advance(Duration::from_secs(21)).await;
        assert_eq!(leases.due(before, L, max), ["h"]);
        assert!(leases.due(before, L, max).is_empty(), "extended by 30 s");
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(
            leases.due(before, L, max).is_empty(),
            "71 s in: another 30 s would pass 100 s"
        );
    }
}
