//! Acknowledgements of a flow over a connector [`Source`](crate::connector::Source): a message
//! is acknowledged once every window it went into has been emitted and written.
//!
//! The state is small and never holds payloads: per source lane, the acknowledgement tokens
//! of the batches not yet acknowledged (consecutive tokens stored as one run); per partition,
//! the oldest batch of each lane its open windows hold, and the windows it retired whose
//! results are not written yet. Batches are numbered per lane from 1; a lane's batch is
//! acknowledged once no partition holds it, none of its events is still on the way, and every
//! result made from it was written.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use super::FlowError;
use super::checkpoint;
use crate::pipeline::{AckToken, Acknowledger, Acks, Message};

/// No batch: what a partition holding nothing of a lane holds.
pub(crate) const NONE: u64 = u64::MAX;

/// How often the checkpoint is written when nothing needs it written.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// How often the acknowledgement task looks for batches to acknowledge when nobody told it.
const INTERVAL: Duration = Duration::from_millis(200);

/// One batch's tokens for one acknowledger, consecutive tokens as `(first, count)`.
struct Run {
    batch: u64,
    acker: Arc<dyn Acknowledger>,
    tokens: Vec<(AckToken, u32)>,
}

#[derive(Default)]
struct LaneState {
    runs: VecDeque<Run>,
    /// Every batch up to this one has been stamped and counted in `sent`.
    stamped: u64,
    /// The batch the lane's events come from now.
    current: u64,
    /// Events sent to each partition so far.
    sent: Vec<u64>,
}

/// A window a partition retired (closed for good) whose results may not be written yet.
pub(crate) struct Retired {
    /// Results the partition had emitted once this window's were: written when the output
    /// wrote that many.
    pub(crate) tag: u64,
    /// The oldest batch of each lane in the window.
    pub(crate) held: Box<[u64]>,
    /// The window's end plus the allowed lateness.
    pub(crate) limit: i64,
}

struct PartitionState {
    /// Events received from each lane, and the batch of the last one.
    recv: Vec<u64>,
    last: Vec<u64>,
    /// The oldest batch of each lane the open windows hold.
    open: Vec<u64>,
    retired: VecDeque<Retired>,
    /// Results the partition emitted, and the output wrote.
    emitted: u64,
    written: u64,
    /// The partition's watermark.
    wm: i64,
}

/// What one partition tells the tracker after a step.
pub(crate) struct Progress<'a> {
    pub(crate) recv: &'a [u64],
    pub(crate) last: &'a [u64],
    pub(crate) open: &'a [u64],
    pub(crate) retired: Vec<Retired>,
    pub(crate) wm: i64,
    pub(crate) emitted: u64,
}

/// The acknowledgement state of one flow run.
pub(crate) struct Tracker {
    lanes: Vec<Mutex<LaneState>>,
    partitions: Vec<Mutex<PartitionState>>,
    /// Where finalized watermarks are kept across restarts.
    path: PathBuf,
    /// As read from the checkpoint when the flow started.
    restored: Vec<i64>,
    /// As last written to the checkpoint, and when.
    durable: Mutex<Vec<i64>>,
    synced: Mutex<std::time::Instant>,
    advancing: tokio::sync::Mutex<()>,
    ackers: Mutex<Vec<Arc<dyn Acknowledger>>>,
    wake: Notify,
    /// Set by a graceful stop: the lanes pull no more.
    stopping: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tracker {
    /// A tracker for `lanes` source lanes and `partitions` partitions, resuming from the
    /// checkpoint at `path` if there is one.
    pub(crate) fn open(lanes: usize, partitions: usize, path: PathBuf) -> Result<Arc<Self>, FlowError> {
        let restored = match checkpoint::read(&path)? {
            Some(f) if f.len() != partitions => {
                return Err(FlowError::Invalid {
                    option: "partition",
                    reason: "the flow's checkpoint was written with another number of partitions: \
                             keep the number, or start over with a new checkpoint file and a new \
                             consumer position",
                });
            }
            Some(f) => f,
            None => vec![i64::MIN; partitions],
        };
        Ok(Arc::new(Tracker {
            lanes: (0..lanes)
                .map(|_| {
                    Mutex::new(LaneState {
                        sent: vec![0; partitions],
                        ..LaneState::default()
                    })
                })
                .collect(),
            partitions: restored
                .iter()
                .map(|_| {
                    Mutex::new(PartitionState {
                        recv: vec![0; lanes],
                        last: vec![0; lanes],
                        open: vec![NONE; lanes],
                        retired: VecDeque::new(),
                        emitted: 0,
                        written: 0,
                        wm: i64::MIN,
                    })
                })
                .collect(),
            path,
            durable: Mutex::new(restored.clone()),
            synced: Mutex::new(std::time::Instant::now()),
            restored,
            advancing: tokio::sync::Mutex::new(()),
            ackers: Mutex::new(Vec::new()),
            wake: Notify::new(),
            stopping: false.into(),
        }))
    }

    pub(crate) fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// What partition `p` had finalized when the flow started: windows ending (with their
    /// lateness) at or before it were written by an earlier run.
    pub(crate) fn restored(&self, p: usize) -> i64 {
        self.restored.get(p).copied().unwrap_or(i64::MIN)
    }

    /// Records a batch of messages lane `lane` pulled; returns their data.
    pub(crate) fn pulled<T>(&self, lane: usize, messages: Vec<Message<T>>) -> Vec<T> {
        if messages.is_empty() {
            return Vec::new();
        }
        let mut st = lock(&self.lanes[lane]);
        // A new pull means the lane's previous batch was stamped or had no events left (a
        // filter dropped them all): nothing of it is on its way any more.
        st.stamped = st.current;
        let batch = st.current + 1;
        st.current = batch;
        let mut data = Vec::with_capacity(messages.len());
        for m in messages {
            let (d, ack) = m.into_parts();
            data.push(d);
            let run = match st.runs.back_mut() {
                Some(r) if r.batch == batch && Arc::ptr_eq(&r.acker, &ack.acker) => r,
                _ => {
                    st.runs.push_back(Run {
                        batch,
                        acker: ack.acker,
                        tokens: Vec::new(),
                    });
                    st.runs.back_mut().expect("just pushed")
                }
            };
            match run.tokens.last_mut() {
                Some((first, n))
                    if first.1 == ack.token.1 && first.0.checked_add(u64::from(*n)) == Some(ack.token.0) =>
                {
                    *n += 1
                }
                _ => run.tokens.push((ack.token, 1)),
            }
        }
        data
    }

    /// The batch lane `lane`'s events come from now.
    pub(crate) fn current(&self, lane: usize) -> u64 {
        lock(&self.lanes[lane]).current
    }

    /// Lane `lane` is about to hand on its current batch: `per_partition[p]` events to
    /// partition `p`.
    pub(crate) fn stamped(&self, lane: usize, per_partition: &[u64]) {
        let mut st = lock(&self.lanes[lane]);
        for (s, n) in st.sent.iter_mut().zip(per_partition) {
            *s += n;
        }
        st.stamped = st.current;
        drop(st);
        self.wake.notify_one();
    }

    /// Partition `p`'s state after a step.
    pub(crate) fn progress(&self, p: usize, step: Progress<'_>) {
        let mut st = lock(&self.partitions[p]);
        st.recv.copy_from_slice(step.recv);
        st.last.copy_from_slice(step.last);
        st.open.copy_from_slice(step.open);
        st.retired.extend(step.retired);
        st.wm = step.wm;
        st.emitted = step.emitted;
        drop(st);
        self.wake.notify_one();
    }

    /// The output wrote `n` more results of partition `p`.
    pub(crate) fn written(&self, p: usize, n: u64) {
        lock(&self.partitions[p]).written += n;
        self.wake.notify_one();
    }

    /// Results written in all.
    pub(crate) fn total_written(&self) -> u64 {
        self.partitions.iter().map(|p| lock(p).written).sum()
    }

    /// Acknowledges every batch nothing holds any more, after making the finalized
    /// watermarks durable. Returns how many batches were acknowledged. One call at a time;
    /// cancelled, it leaves nothing half done (the batches stay until the next call).
    pub(crate) async fn advance(&self) -> Result<usize, FlowError> {
        self.round(false).await
    }

    /// The last round of a run: the checkpoint written if anything became final, even with
    /// nothing to acknowledge, so that the next run skips windows already written whose
    /// messages an older open window held.
    pub(crate) async fn advance_final(&self) -> Result<usize, FlowError> {
        self.round(true).await
    }

    async fn round(&self, last: bool) -> Result<usize, FlowError> {
        let _one = self.advancing.lock().await;
        let (frontier, finalized) = self.frontier();
        let due = self
            .lanes
            .iter()
            .zip(&frontier)
            .any(|(lane, f)| lock(lane).runs.front().is_some_and(|r| r.batch < *f));
        // The checkpoint first: a window whose messages are acknowledged must be final on disk
        // before, or a replay of its stragglers would emit it again, partial. Also every so
        // often without acknowledgements (a restart then skips windows written while an older
        // open window held their messages), and at the end; not on every move of the watermark.
        let durable = lock(&self.durable).clone();
        let a_while = lock(&self.synced).elapsed() >= CHECKPOINT_EVERY;
        if (due || last || a_while) && finalized != durable {
            let path = self.path.clone();
            let f = finalized.clone();
            tokio::task::spawn_blocking(move || checkpoint::write(&path, &f))
                .await
                .map_err(|e| FlowError::Sink(format!("writing the flow checkpoint: {e}").into()))??;
            *lock(&self.durable) = finalized;
            *lock(&self.synced) = std::time::Instant::now();
        }
        let mut runs: Vec<Run> = Vec::new();
        for (lane, f) in self.lanes.iter().zip(&frontier) {
            let mut st = lock(lane);
            while st.runs.front().is_some_and(|r| r.batch < *f) {
                runs.extend(st.runs.pop_front());
            }
        }
        let batches = runs.len();
        let mut groups: Vec<(Arc<dyn Acknowledger>, Acks)> = Vec::new();
        for run in runs {
            let i = match groups.iter().position(|(a, _)| Arc::ptr_eq(a, &run.acker)) {
                Some(i) => i,
                None => {
                    groups.push((run.acker.clone(), Acks::default()));
                    groups.len() - 1
                }
            };
            let acks = &mut groups[i].1;
            for (first, n) in run.tokens {
                acks.successful
                    .extend((0..u64::from(n)).map(|k| AckToken(first.0 + k, first.1)));
            }
        }
        let mut seen = lock(&self.ackers);
        for (acker, acks) in groups {
            acker.ack(acks);
            if !seen.iter().any(|a| Arc::ptr_eq(a, &acker)) {
                seen.push(acker);
            }
        }
        Ok(batches)
    }

    /// Per lane, the oldest batch something still holds; per partition, the watermark up to
    /// which every window was written.
    fn frontier(&self) -> (Vec<u64>, Vec<i64>) {
        // Lanes first: whatever they counted as sent is, by the time the partitions are read,
        // either received there or still on its way (and then held below).
        let mut frontier: Vec<u64> = Vec::with_capacity(self.lanes.len());
        let mut sent: Vec<Vec<u64>> = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            let st = lock(lane);
            frontier.push(st.stamped + 1);
            sent.push(st.sent.clone());
        }
        let durable = lock(&self.durable).clone();
        let mut finalized = Vec::with_capacity(self.partitions.len());
        for (p, part) in self.partitions.iter().enumerate() {
            let mut st = lock(part);
            let written = st.written;
            while st.retired.front().is_some_and(|r| r.tag <= written) {
                st.retired.pop_front();
            }
            for (l, f) in frontier.iter_mut().enumerate() {
                if st.recv[l] < sent[l][p] {
                    // The events on the way are of this batch or later ones.
                    *f = (*f).min(st.last[l].max(1));
                }
                *f = (*f).min(st.open[l]);
                for r in &st.retired {
                    *f = (*f).min(r.held[l]);
                }
            }
            // Final: every window ending (with lateness) by here was written.
            let unwritten = st.retired.iter().map(|r| r.limit.saturating_sub(1)).min();
            let bound = st.wm.min(unwritten.unwrap_or(i64::MAX));
            finalized.push(bound.max(durable[p]));
        }
        (frontier, finalized)
    }

    /// Waits until a step may have released something, or a while passed.
    pub(crate) async fn changed(&self) {
        let _ = tokio::time::timeout(INTERVAL, self.wake.notified()).await;
    }

    /// Stops the lanes pulling (a graceful stop).
    pub(crate) fn stop_pulling(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether everything the lanes sent was received and every result emitted was written:
    /// nothing is on its way, only open windows hold messages.
    pub(crate) fn drained(&self) -> bool {
        let sent: Vec<Vec<u64>> = self.lanes.iter().map(|l| lock(l).sent.clone()).collect();
        self.partitions.iter().enumerate().all(|(p, part)| {
            let st = lock(part);
            st.written >= st.emitted && st.recv.iter().zip(&sent).all(|(r, s)| *r >= s[p])
        })
    }

    /// Whether every batch pulled has been acknowledged.
    pub(crate) fn settled(&self) -> bool {
        self.lanes.iter().all(|l| lock(l).runs.is_empty())
    }

    /// Flushes every acknowledger acknowledged through (commits their last positions).
    pub(crate) async fn flush(&self) {
        let all: Vec<_> = lock(&self.ackers).clone();
        for a in all {
            a.flush().await;
        }
    }
}

/// A flow's connector source, as the flow's stages need it when they start.
pub(crate) struct AckPlan {
    pub(crate) lanes: usize,
    path: PathBuf,
    /// Set when the flow is reduced: how many partitions the reduction has.
    pub(crate) partitions: std::sync::OnceLock<usize>,
    tracker: std::sync::OnceLock<Arc<Tracker>>,
    close: Box<dyn Fn() -> crate::pipeline::BoxFuture<'static, ()> + Send + Sync>,
    /// Resolves when the flow is to stop gracefully ([`Flow::stop_when`](super::Flow::stop_when)).
    pub(crate) stop: Mutex<Option<crate::pipeline::BoxFuture<'static, ()>>>,
}

impl AckPlan {
    pub(crate) fn new<S: crate::connector::Source>(source: Arc<S>, lanes: usize, path: PathBuf) -> Self {
        AckPlan {
            lanes,
            path,
            partitions: std::sync::OnceLock::new(),
            tracker: std::sync::OnceLock::new(),
            stop: Mutex::new(None),
            close: Box::new(move || {
                let source = source.clone();
                Box::pin(async move { source.close().await })
            }),
        }
    }

    /// The tracker of this run, opened (its checkpoint read) on first use.
    pub(crate) fn tracker(&self) -> Result<Arc<Tracker>, FlowError> {
        if let Some(t) = self.tracker.get() {
            return Ok(t.clone());
        }
        let partitions = *self.partitions.get().unwrap_or(&self.lanes);
        let t = Tracker::open(self.lanes, partitions, self.path.clone())?;
        Ok(self.tracker.get_or_init(|| t).clone())
    }

    /// The tracker, if the flow started.
    pub(crate) fn started(&self) -> Option<Arc<Tracker>> {
        self.tracker.get().cloned()
    }

    /// Resolves once the source committed its last acknowledgements.
    pub(crate) fn close(&self) -> crate::pipeline::BoxFuture<'static, ()> {
        (self.close)()
    }
}

/// Whether a flow reads a connector source, and if so whether its acknowledgements can still
/// follow its events.
#[derive(Clone)]
pub(crate) enum Acked {
    /// Source lanes with per-event operations fused in: ready for a reduction.
    Lanes(Arc<AckPlan>),
    /// Reduced: the reduction's results are what the output writes.
    Reduced(Arc<AckPlan>),
    /// Something between the source and the output the acknowledgements cannot follow.
    Broken,
}

impl Acked {
    /// Why this flow cannot run, if it cannot.
    pub(crate) fn refusal(&self) -> Option<FlowError> {
        let reason = match self {
            Acked::Reduced(_) => return None,
            Acked::Lanes(_) => {
                "a flow over a connector source acknowledges its messages through its windows: \
                 reduce it (results come out of `reduce`/`reduce_with`); for per-message work use a pipeline"
            }
            Acked::Broken => {
                "a flow over a connector source takes per-event operations (map, filter, ...) \
                 before its partition, then one reduce whose results go to the output: do \
                 per-result work in `on_trigger`; merge and join are not supported"
            }
        };
        Some(FlowError::Invalid {
            option: "from_source",
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nobody;
    impl Acknowledger for Nobody {
        fn ack(&self, _: Acks) {}
    }

    #[test]
    fn consecutive_tokens_are_kept_as_one_run_not_one_entry_each() {
        let dir = std::env::temp_dir().join(format!("ferroway-acks-{}", std::process::id()));
        let t = Tracker::open(1, 1, dir.join("never-written.ckpt")).unwrap();
        let acker: Arc<dyn Acknowledger> = Arc::new(Nobody);
        // Offsets 100..10100 of one partition, then a gap, then another partition's.
        let mut batch: Vec<Message<u32>> = (100..10_100)
            .map(|o| Message::with_acker(0, acker.clone(), AckToken(o, 3)))
            .collect();
        batch.extend((7..9).map(|o| Message::with_acker(0, acker.clone(), AckToken(o, 4))));
        assert_eq!(t.pulled(0, batch).len(), 10_002);
        let lane = lock(&t.lanes[0]);
        let tokens: Vec<(AckToken, u32)> = lane.runs.iter().flat_map(|r| r.tokens.clone()).collect();
        assert_eq!(tokens, [(AckToken(100, 3), 10_000), (AckToken(7, 4), 2)]);
    }
}
