//! Per-partition offset tracking and what to commit.
//!
//! Each assigned partition gets a *slot*: a number unique for the life of the source, so a
//! partition revoked and assigned again gets a new one. Messages carry their slot in their
//! acknowledgement token, so acknowledgements for a partition this member no longer owns (or
//! owned in an earlier assignment) find no slot and are dropped — they can never move a commit.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use ferroway::pipeline::{AckToken, Watermark};

/// One assigned partition.
#[derive(Debug)]
pub(crate) struct PartitionOffsets {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// Created at the first emitted message: before that, nothing may be committed (the
    /// partition's position is the group's committed offset, or the reset policy's).
    watermark: Option<Watermark>,
    /// The last offset committed (or being committed) by this member; -1 for none.
    last_committed: i64,
    /// Set while a revoke is draining this partition.
    pub(crate) revoking: bool,
    /// Failed messages held below the commit ([`OnFailed::Hold`](crate::OnFailed::Hold)):
    /// never completed, so the watermark counts them, but nothing more will happen to them
    /// until the partition is delivered again — a drain must not wait for them.
    held: usize,
}

impl PartitionOffsets {
    /// The offset to commit (next to read), if it is ahead of the last commit.
    fn pending(&self) -> Option<i64> {
        let c = self.watermark.as_ref()?.committable() as i64;
        (c > self.last_committed).then_some(c)
    }

    /// Messages emitted and not yet acknowledged (held failures are acknowledged).
    pub(crate) fn in_flight(&self) -> usize {
        self.watermark.as_ref().map_or(0, Watermark::in_flight) - self.held
    }
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Commit {
    pub(crate) slot: u64,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// The next offset to read.
    pub(crate) offset: i64,
}

/// Every partition this member owns, by slot.
#[derive(Debug, Default)]
pub(crate) struct OffsetBook {
    slots: HashMap<u64, PartitionOffsets, BuildHasherDefault<SlotHasher>>,
    next_slot: u64,
}

impl OffsetBook {
    /// A new slot for a newly assigned partition. A partition that already has one keeps it.
    pub(crate) fn assign(&mut self, topic: &str, partition: i32) -> u64 {
        if let Some((&slot, _)) = self
            .slots
            .iter()
            .find(|(_, p)| p.partition == partition && &*p.topic == topic)
        {
            return slot;
        }
        self.next_slot += 1;
        let slot = self.next_slot;
        self.slots.insert(
            slot,
            PartitionOffsets {
                topic: topic.into(),
                partition,
                watermark: None,
                last_committed: -1,
                revoking: false,
                held: 0,
            },
        );
        slot
    }

    /// The slot of a partition, if owned.
    pub(crate) fn slot_of(&self, topic: &str, partition: i32) -> Option<u64> {
        self.slots
            .iter()
            .find(|(_, p)| p.partition == partition && &*p.topic == topic)
            .map(|(&s, _)| s)
    }

    /// How many partitions are owned.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The partition of a slot, if still owned.
    pub(crate) fn get(&self, slot: u64) -> Option<&PartitionOffsets> {
        self.slots.get(&slot)
    }

    pub(crate) fn get_mut(&mut self, slot: u64) -> Option<&mut PartitionOffsets> {
        self.slots.get_mut(&slot)
    }

    /// Forgets a partition: later acknowledgements for its slot are dropped.
    pub(crate) fn remove(&mut self, slot: u64) -> Option<PartitionOffsets> {
        self.slots.remove(&slot)
    }

    /// Records an emitted message. Returns false, tracking nothing, if the slot is gone or
    /// being revoked: the message must not be emitted.
    pub(crate) fn track(&mut self, slot: u64, offset: i64) -> bool {
        let Some(p) = self.slots.get_mut(&slot).filter(|p| !p.revoking) else {
            return false;
        };
        let o = offset as u64;
        if p.watermark.is_none() {
            // The partition's position is already here: committing it would change nothing.
            p.last_committed = p.last_committed.max(offset);
        }
        p.watermark.get_or_insert_with(|| Watermark::new(o)).track(o, o + 1);
        true
    }

    /// Marks a message done. Returns false if its slot is gone (revoked: the ack is dropped)
    /// or it was not in flight.
    pub(crate) fn complete(&mut self, slot: u64, offset: i64) -> bool {
        match self.slots.get_mut(&slot).and_then(|p| p.watermark.as_mut()) {
            Some(w) => w.complete(offset as u64),
            None => false,
        }
    }

    /// Holds a failed message below the commit: it stays incomplete, so the partition's
    /// commit never passes it, but it no longer counts as in flight (each message is
    /// acknowledged once, so it was). Returns false if its slot is gone.
    pub(crate) fn hold(&mut self, slot: u64) -> bool {
        match self.slots.get_mut(&slot).filter(|p| p.watermark.is_some()) {
            Some(p) => {
                p.held += 1;
                true
            }
            None => false,
        }
    }

    /// Marks messages done, given by their acknowledgement tokens (offset, slot). Returns how
    /// many were dropped: slot gone, or not in flight.
    pub(crate) fn complete_all(&mut self, tokens: &[AckToken]) -> usize {
        let mut dropped = 0;
        // Acknowledgements come in runs of one partition: one lookup per run.
        for run in tokens.chunk_by(|a, b| a.1 == b.1) {
            match self.slots.get_mut(&run[0].1).and_then(|p| p.watermark.as_mut()) {
                Some(w) => dropped += run.iter().filter(|t| !w.complete(t.0)).count(),
                None => dropped += run.len(),
            }
        }
        dropped
    }

    /// True when none of `slots` (that still exist) has a message in flight.
    pub(crate) fn idle(&self, slots: &[u64]) -> bool {
        slots
            .iter()
            .all(|s| self.slots.get(s).is_none_or(|p| p.in_flight() == 0))
    }

    /// Messages in flight over every slot.
    pub(crate) fn in_flight(&self) -> usize {
        self.slots.values().map(PartitionOffsets::in_flight).sum()
    }

    /// Offsets to commit for `slots` (or every slot), marked as committed: call
    /// [`commit_failed`](Self::commit_failed) if the commit fails.
    pub(crate) fn take_commits(&mut self, only: Option<&[u64]>) -> Vec<Commit> {
        let mut out = Vec::new();
        for (&slot, p) in &mut self.slots {
            if only.is_some_and(|o| !o.contains(&slot)) {
                continue;
            }
            if let Some(offset) = p.pending() {
                p.last_committed = offset;
                out.push(Commit {
                    slot,
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset,
                });
            }
        }
        out
    }

    /// A commit of `offset` for `topic`/`partition` failed: commit it again next time, if the
    /// partition is still owned.
    pub(crate) fn commit_failed(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self
            .slots
            .values_mut()
            .find(|p| p.partition == partition && &*p.topic == topic)
            && p.last_committed == offset
        {
            p.last_committed = -1;
        }
    }
}

/// Slots are small sequential numbers chosen here, never by a peer: a multiplicative hash
/// spreads them well enough, at a fraction of SipHash's cost.
#[derive(Debug, Default, Clone, Copy)]
struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; bytes are folded FNV-style for completeness.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut b = OffsetBook::default();
        let s = b.assign("t", 0);
        assert!(b.take_commits(None).is_empty(), "nothing emitted: nothing to commit");
        for o in 10..15 {
            assert!(b.track(s, o));
        }
        assert!(b.complete(s, 11));
        assert!(b.complete(s, 12));
        assert!(b.take_commits(None).is_empty(), "10 is in flight");
        assert!(b.complete(s, 10));
        let c = b.take_commits(None);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].partition, c[0].offset), (0, 13));
        assert!(b.take_commits(None).is_empty(), "already committed");
        b.commit_failed("t", 0, 13);
        assert_eq!(b.take_commits(None)[0].offset, 13, "a failed commit is retried");
        assert!(!b.idle(&[s]));
        b.complete(s, 13);
        b.complete(s, 14);
        assert!(b.idle(&[s]));
        assert_eq!(b.take_commits(Some(&[s]))[0].offset, 15);
    }

    #[test]
    fn a_held_failure_blocks_the_commit_but_is_not_in_flight() {
        let mut b = OffsetBook::default();
        let s = b.assign("t", 0);
        for o in 0..3 {
            b.track(s, o);
        }
        b.complete(s, 0);
        assert!(b.hold(s));
        b.complete(s, 2);
        assert_eq!(b.in_flight(), 0, "a held message is not waited for");
        assert!(b.idle(&[s]));
        assert_eq!(b.take_commits(None)[0].offset, 1, "the commit stays below it");
        assert!(!b.hold(99), "unknown slot");
    }

    #[test]
    fn acks_for_a_revoked_assignment_are_dropped() {
        let mut b = OffsetBook::default();
        let old = b.assign("t", 0);
        b.track(old, 0);
        b.track(old, 1);
        b.complete(old, 0);
        assert_eq!(b.take_commits(None)[0].offset, 1);
        b.remove(old);
        // Assigned again: a new slot, starting from what was committed.
        let new = b.assign("t", 0);
        assert_ne!(old, new);
        assert!(!b.complete(old, 1), "late ack of the old assignment");
        b.track(new, 1);
        assert!(b.take_commits(None).is_empty());
        assert!(b.complete(new, 1));
        assert_eq!(b.take_commits(None)[0].offset, 2);
        assert_eq!(b.slot_of("t", 0), Some(new));
    }
}
