//! What the source reads next, and the Redis commands that read it: this consumer's own
//! pending entries, entries claimed from idle consumers, new entries.
//!
//! Redelivered entries (own pending ones and claimed ones) come in groups that the source hands
//! out alone — nothing else in flight — so that an entry that crashes the process takes only
//! its group past another delivery. The group halves with every further delivery, and an entry
//! at its last allowed delivery is alone: a poison entry cannot drag an innocent one past the
//! delivery limit.

use std::collections::VecDeque;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};
use tokio::time::Instant;
use tracing::info;

use crate::entry::{RawEntry, StreamId, parse_entries, parse_pending, parse_read};
use crate::group;
use crate::options::SourceOptions;

/// Entries of one stream, read together.
pub(crate) struct Batch {
    pub(crate) stream: usize,
    pub(crate) entries: Vec<RawEntry>,
}

/// An idle entry of another consumer, found by `XPENDING … IDLE`.
struct Candidate {
    stream: usize,
    id: StreamId,
    deliveries: u64,
}

/// The reading state of a source. It moves into the task that reads and comes back with the
/// reply, so that a read Redis answered is never lost with a dropped future.
pub(crate) struct Reader {
    opts: Arc<SourceOptions>,
    joined: bool,
    /// Per stream: recovering this consumer's own pending entries after this id.
    history: Vec<Option<StreamId>>,
    /// Per stream: the highest id read; after a lost connection, own pending entries above it
    /// are the ones whose reply was lost.
    last_read: Vec<StreamId>,
    claims: VecDeque<Candidate>,
    next_claim: Instant,
    /// Own pending entries read by the recovery under way.
    recovered: u64,
    claimed: Vec<metrics::Counter>,
}

impl Reader {
    pub(crate) fn new(opts: Arc<SourceOptions>) -> Self {
        let n = opts.streams.len();
        Reader {
            claimed: opts
                .streams
                .iter()
                .map(|s| metrics::counter!(crate::metrics::CLAIMED, "stream" => s.to_string()))
                .collect(),
            joined: false,
            history: vec![Some(StreamId::ZERO); n],
            last_read: vec![StreamId::ZERO; n],
            claims: VecDeque::new(),
            next_claim: Instant::now(),
            recovered: 0,
            opts,
        }
    }

    /// The next read hands out redelivered entries, which must be alone in the pipeline.
    pub(crate) fn redelivering(&self) -> bool {
        self.history.iter().any(Option::is_some) || !self.claims.is_empty()
    }

    /// The connection was lost, maybe with a reply: entries above the last one read that sit
    /// in this consumer's pending list are read again.
    pub(crate) fn connection_lost(&mut self) {
        for (h, last) in self.history.iter_mut().zip(&self.last_read) {
            h.get_or_insert(*last);
        }
    }

    /// The group vanished (e.g. the stream was deleted): join it again before reading.
    pub(crate) fn rejoin(&mut self) {
        self.joined = false;
    }

    /// One read of at most `count` entries. Empty when a `BLOCK` timed out, or when this step
    /// only moved the state on (joined, finished a recovery, found entries to claim).
    pub(crate) async fn step(&mut self, c: &mut MultiplexedConnection, count: usize) -> Result<Vec<Batch>, RedisError> {
        if !self.joined {
            group::join(&self.opts, c).await?;
            self.joined = true;
        }
        if let Some(i) = self.history.iter().position(Option::is_some) {
            return self.recover_own(c, i, count).await;
        }
        if !self.claims.is_empty() {
            return self.claim(c, count).await;
        }
        if let Some(claim) = &self.opts.claim
            && Instant::now() >= self.next_claim
        {
            self.next_claim = Instant::now() + claim.interval;
            self.find_idle(c).await?;
            if !self.claims.is_empty() {
                return Ok(Vec::new());
            }
        }
        self.read_new(c, count).await
    }

    fn limit(&self) -> Option<u64> {
        self.opts.claim.as_ref().map(|c| c.max_deliveries)
    }

    fn read_cmd(&self, count: usize) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.opts.group)
            .arg(&self.opts.consumer)
            .arg("COUNT")
            .arg(count);
        cmd
    }

    fn note_read(&mut self, stream: usize, entries: &[RawEntry]) {
        if let Some(last) = entries.iter().map(|e| e.id).max() {
            self.last_read[stream] = self.last_read[stream].max(last);
        }
    }

    /// The next group of this consumer's own pending entries of stream `i`.
    async fn recover_own(
        &mut self,
        c: &mut MultiplexedConnection,
        i: usize,
        count: usize,
    ) -> Result<Vec<Batch>, RedisError> {
        let cursor = self.history[i].unwrap_or(StreamId::ZERO);
        let stream = self.opts.streams[i].clone();
        let own_after = |cmd: &mut redis::Cmd, n: usize| {
            cmd.arg(&*stream)
                .arg(&self.opts.group)
                .arg(cursor.next().to_string())
                .arg("+")
                .arg(n)
                .arg(&self.opts.consumer);
        };
        // Delivery counts first (XPENDING does not deliver), to size the group.
        let mut pending = redis::cmd("XPENDING");
        own_after(&mut pending, count);
        let before = parse_pending(pending.query_async(c).await?);
        if before.is_empty() {
            self.history[i] = None;
            if self.recovered > 0 {
                info!(stream = %stream, consumer = %self.opts.consumer, count = self.recovered,
                    "re-read this consumer's pending entries");
            }
            self.recovered = 0;
            return Ok(Vec::new());
        }
        let n = group_len(before.iter().map(|(_, _, d)| d + 1), self.limit(), count);
        let mut read = self.read_cmd(n);
        read.arg("STREAMS").arg(&*stream).arg(cursor.to_string());
        let mut after = redis::cmd("XPENDING");
        own_after(&mut after, n);
        let (reply, counts): (Value, Value) = redis::pipe()
            .add_command(read)
            .add_command(after)
            .query_async(c)
            .await?;
        let counts = parse_pending(counts);
        let mut entries = parse_read(reply).into_iter().next().map(|(_, e)| e).unwrap_or_default();
        for e in &mut entries {
            e.deliveries = counts.iter().find(|(id, _, _)| *id == e.id).map_or(2, |(_, _, d)| *d);
        }
        // An entry acknowledged in between leaves nothing to read here: move past it anyway.
        let last = entries.last().map_or(before[n - 1].0, |e| e.id);
        self.history[i] = Some(last);
        self.recovered += entries.len() as u64;
        self.note_read(i, &entries);
        Ok(vec![Batch { stream: i, entries }])
    }

    /// Claims the next group of idle entries found by [`find_idle`](Self::find_idle).
    async fn claim(&mut self, c: &mut MultiplexedConnection, count: usize) -> Result<Vec<Batch>, RedisError> {
        let Some(claim) = self.opts.claim.clone() else {
            self.claims.clear();
            return Ok(Vec::new());
        };
        let stream = self.claims[0].stream;
        let same_stream = self.claims.iter().take_while(|x| x.stream == stream);
        let n = group_len(same_stream.map(|x| x.deliveries + 1), self.limit(), count);
        let group: Vec<Candidate> = self.claims.drain(..n).collect();
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&*self.opts.streams[stream])
            .arg(&self.opts.group)
            .arg(&self.opts.consumer)
            .arg(claim.min_idle.as_millis() as u64);
        for x in &group {
            cmd.arg(x.id.to_string());
        }
        // Entries another consumer claimed or acknowledged meanwhile are not returned.
        let mut entries = parse_entries(cmd.query_async(c).await?);
        for e in &mut entries {
            e.deliveries = group.iter().find(|x| x.id == e.id).map_or(2, |x| x.deliveries + 1);
        }
        self.claimed[stream].increment(entries.len() as u64);
        self.note_read(stream, &entries);
        Ok(vec![Batch { stream, entries }])
    }

    /// Looks for entries other consumers left idle longer than the claim's `min_idle`.
    async fn find_idle(&mut self, c: &mut MultiplexedConnection) -> Result<(), RedisError> {
        let Some(claim) = self.opts.claim.clone() else {
            return Ok(());
        };
        for (i, stream) in self.opts.streams.iter().enumerate() {
            let v: Value = redis::cmd("XPENDING")
                .arg(&**stream)
                .arg(&self.opts.group)
                .arg("IDLE")
                .arg(claim.min_idle.as_millis() as u64)
                .arg("-")
                .arg("+")
                .arg(self.opts.max_count)
                .query_async(c)
                .await?;
            let found = parse_pending(v)
                .into_iter()
                .filter(|(_, consumer, _)| *consumer != self.opts.consumer)
                .map(|(id, _, deliveries)| Candidate {
                    stream: i,
                    id,
                    deliveries,
                });
            let before = self.claims.len();
            self.claims.extend(found);
            if self.claims.len() > before {
                info!(stream = %stream, count = self.claims.len() - before, min_idle = ?claim.min_idle,
                    "claiming entries other consumers left idle");
            }
        }
        Ok(())
    }

    /// New entries, waiting up to `block` for some.
    async fn read_new(&mut self, c: &mut MultiplexedConnection, count: usize) -> Result<Vec<Batch>, RedisError> {
        let mut cmd = self.read_cmd(count);
        cmd.arg("BLOCK").arg(self.opts.block.as_millis() as u64).arg("STREAMS");
        for s in &self.opts.streams {
            cmd.arg(&**s);
        }
        for _ in &self.opts.streams {
            cmd.arg(">");
        }
        let mut out = Vec::new();
        for (name, entries) in parse_read(cmd.query_async(c).await?) {
            if let Some(i) = self.opts.streams.iter().position(|s| **s == *name) {
                self.note_read(i, &entries);
                out.push(Batch { stream: i, entries });
            }
        }
        Ok(out)
    }
}

/// How many of the next redelivered entries (their delivery counts, in order) go out together:
/// up to `max` on a second delivery, half as many with each further one, and one alone at the
/// last delivery the limit allows (or past it).
fn group_len(deliveries: impl Iterator<Item = u64>, limit: Option<u64>, max: usize) -> usize {
    let mut n = 0;
    let mut worst = 0;
    for d in deliveries {
        worst = worst.max(d);
        let size = if limit.is_some_and(|l| worst >= l) {
            1
        } else {
            (max >> worst.saturating_sub(2).min(63)).max(1)
        };
        if n >= size {
            break;
        }
        n += 1;
    }
    n.max(1)
}

#[cfg(test)]
mod tests {
    use super::group_len;

    #[test]
    fn groups_halve_with_each_delivery_and_the_last_allowed_one_is_alone() {
        let len = |d: &[u64], limit| group_len(d.iter().copied(), limit, 8);
        assert_eq!(len(&[2; 20], Some(5)), 8);
        assert_eq!(len(&[3; 20], Some(5)), 4);
        assert_eq!(len(&[4; 20], Some(5)), 2);
        assert_eq!(len(&[5; 20], Some(5)), 1);
        assert_eq!(len(&[9; 20], Some(5)), 1);
        // The worst count seen so far sizes the group: stop before an entry that would
        // shrink it below what it already holds.
        assert_eq!(len(&[2, 2, 2, 4, 2], Some(5)), 3);
        assert_eq!(len(&[2, 2, 3, 5], Some(3)), 2);
        assert_eq!(len(&[2; 3], None), 3);
        assert_eq!(len(&[40; 3], None), 1);
        assert_eq!(len(&[], Some(5)), 1);
    }
}
