//! Durable checkpoints: per file, the byte offset up to which every line has been acknowledged.
//!
//! Acknowledgements arrive out of order (concurrent processors, batchers), so each file keeps
//! the set of acknowledged line ranges beyond its watermark and moves the watermark only over
//! a contiguous run. The checkpoint file is replaced atomically (temp file, fsync, rename,
//! fsync of the directory), so after a crash it holds either the old or the new table.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, warn};

use super::{FileError, OnFailed};
use crate::connector;
use crate::pipeline::{AckToken, Acknowledger, Acks, BoxFuture, OnFailure};

/// How many leading bytes identify a file, next to its device and inode.
pub(crate) const FINGERPRINT_BYTES: usize = 256;
const HEADER: &str = "ferroway-file-checkpoint v1";
const LINE_BITS: u32 = 44;
const LINE_MASK: u64 = (1 << LINE_BITS) - 1;
const SLOT_LIMIT: u32 = 1 << (64 - LINE_BITS);

/// What identifies a file across renames and restarts: a name can be reused by another file
/// (rotation), and an inode can be reused after a delete, so both inode and content count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// How many leading bytes the fingerprint covers (fewer than 256 while the file is short).
    pub(crate) fp_len: u32,
    pub(crate) fp: u64,
}

impl FileId {
    pub(crate) fn new(dev: u64, ino: u64, head: &[u8]) -> Self {
        FileId {
            dev,
            ino,
            fp_len: head.len() as u32,
            fp: fnv1a(head),
        }
    }

    /// Whether a file with this device, inode and first bytes is the same file.
    pub(crate) fn matches(&self, dev: u64, ino: u64, head: &[u8]) -> bool {
        self.dev == dev
            && self.ino == ino
            && head.len() >= self.fp_len as usize
            && fnv1a(&head[..self.fp_len as usize]) == self.fp
    }
}

/// FNV-1a, 64 bits: stable across processes and versions, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One row of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: FileId,
    /// The last line fully acknowledged (1-based; 0: none).
    pub(crate) line: u64,
    /// The byte offset just after that line.
    pub(crate) offset: u64,
    /// Where the file was seen, for people reading the checkpoint; never used to match.
    pub(crate) path: PathBuf,
}

/// The checkpoint file of one source.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub(crate) path: PathBuf,
    dir: PathBuf,
}

impl Store {
    pub(crate) fn new(dir: &Path, name: &str) -> Result<Self, FileError> {
        fs::create_dir_all(dir).map_err(FileError::io(dir, "create checkpoint directory"))?;
        Ok(Store {
            path: dir.join(format!("{name}.checkpoint")),
            dir: dir.to_owned(),
        })
    }

    pub(crate) fn load(&self) -> Result<Vec<Entry>, FileError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FileError::io(&self.path, "read checkpoint")(e)),
        };
        let corrupt = |line: usize, reason: &str| FileError::Checkpoint {
            path: self.path.clone(),
            line,
            reason: reason.to_owned(),
        };
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(corrupt(1, "missing header `ferroway-file-checkpoint v1`")),
        }
        let mut entries = Vec::new();
        for (i, l) in lines {
            let mut f = l.splitn(7, ' ');
            let mut num = |radix: u32| {
                f.next()
                    .and_then(|s| u64::from_str_radix(s, radix).ok())
                    .ok_or_else(|| corrupt(i + 1, "expected `dev ino fp_len fp line offset path`"))
            };
            let (dev, ino, fp_len, fp, line, offset) = (num(10)?, num(10)?, num(10)?, num(16)?, num(10)?, num(10)?);
            if fp_len > FINGERPRINT_BYTES as u64 {
                return Err(corrupt(i + 1, "fingerprint longer than 256 bytes"));
            }
            entries.push(Entry {
                id: FileId {
                    dev,
                    ino,
                    fp_len: fp_len as u32,
                    fp,
                },
                line,
                offset,
                path: PathBuf::from(f.next().unwrap_or_default()),
            });
        }
        Ok(entries)
    }

    /// Replaces the checkpoint atomically and durably.
    pub(crate) fn save(&self, entries: &[Entry]) -> Result<(), FileError> {
        let mut text = String::with_capacity(64 + entries.len() * 96);
        text.push_str(HEADER);
        text.push('\n');
        for e in entries {
            let path = e.path.to_string_lossy().replace(['\n', '\r'], "?");
            let FileId { dev, ino, fp_len, fp } = e.id;
            text.push_str(&format!(
                "{dev} {ino} {fp_len} {fp:016x} {} {} {path}\n",
                e.line, e.offset
            ));
        }
        let tmp = self.path.with_extension("checkpoint.tmp");
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write().map_err(FileError::io(&tmp, "write checkpoint"))?;
        fs::rename(&tmp, &self.path).map_err(FileError::io(&self.path, "replace checkpoint"))?;
        sync_dir(&self.dir)
    }
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FileError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(FileError::io(dir, "sync directory"))
}

/// Acknowledgement state of one open file (a "slot"; a truncated file gets a new one).
#[derive(Debug)]
struct Slot {
    id: FileId,
    path: Arc<Path>,
    wm_line: u64,
    wm_offset: u64,
    /// Acknowledged runs beyond the watermark: first line -> (last line, offset after it).
    acked: BTreeMap<u64, (u64, u64)>,
    /// The last line handed to the pipeline.
    emitted: u64,
    /// The watermark the checkpoint file holds.
    durable_line: u64,
}

impl Slot {
    /// Marks lines `first..=last` done; `offset` is the offset just after `last`.
    fn done(&mut self, first: u64, last: u64, offset: u64) -> bool {
        if last <= self.wm_line {
            return false;
        }
        let (mut first, mut last, mut offset) = (first.max(self.wm_line + 1), last, offset);
        // Absorb every run that overlaps or touches first..=last.
        while let Some((&s, &(e, o))) = self.acked.range(..=last + 1).next_back() {
            if e + 1 < first {
                break;
            }
            self.acked.remove(&s);
            first = first.min(s);
            if e > last {
                (last, offset) = (e, o);
            }
        }
        if first == self.wm_line + 1 {
            self.wm_line = last;
            self.wm_offset = offset;
            true
        } else {
            self.acked.insert(first, (last, offset));
            false
        }
    }
}

/// A slot and the watermark line a checkpoint write makes durable for it.
type DurableMark = (u32, u64);

/// Where a file resumes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resume {
    pub(crate) slot: u32,
    pub(crate) line: u64,
    pub(crate) offset: u64,
}

/// A file's position, as [`FileSource::positions`](super::FileSource::positions) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePosition {
    /// Where the file was found.
    pub path: PathBuf,
    /// Every line up to this one (1-based) is acknowledged.
    pub acked_line: u64,
    /// The byte offset just after `acked_line`.
    pub acked_offset: u64,
    /// The last line handed to the pipeline.
    pub emitted_line: u64,
    /// The acknowledged line the checkpoint file holds (equal to `acked_line` once committed).
    pub durable_line: u64,
}

#[derive(Debug, Default)]
struct Table {
    slots: HashMap<u32, Slot>,
    next_slot: u32,
    /// Rows of the checkpoint file not yet matched to a file; dropped after the first
    /// discovery, so files deleted since do not linger in the table forever.
    loaded: Vec<Entry>,
    dirty: bool,
}

/// The acknowledgement tracker and checkpoint writer of one file source; also the
/// acknowledger of its messages.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    pub(crate) name: Arc<str>,
    table: Mutex<Table>,
    store: Option<Store>,
    on_failed: OnFailed,
    interval: Duration,
    /// One write at a time, so an older table never replaces a newer one.
    write_lock: tokio::sync::Mutex<()>,
    /// Wakes the flusher at once (a producer waits for durability).
    pub(crate) urgent: Arc<Notify>,
    /// Signalled after each successful write.
    pub(crate) durable: Notify,
    flusher: AtomicBool,
    skipped: metrics::Counter,
    held: metrics::Counter,
    written: metrics::Counter,
    write_errors: metrics::Counter,
}

impl Checkpoints {
    pub(crate) fn new(
        name: Arc<str>,
        store: Option<Store>,
        on_failed: OnFailed,
        interval: Duration,
    ) -> Result<Self, FileError> {
        let loaded = match &store {
            Some(s) => s.load()?,
            None => Vec::new(),
        };
        let label = name.to_string();
        Ok(Checkpoints {
            table: Mutex::new(Table {
                loaded,
                ..Table::default()
            }),
            store,
            on_failed,
            interval,
            write_lock: tokio::sync::Mutex::new(()),
            urgent: Arc::new(Notify::new()),
            durable: Notify::new(),
            flusher: AtomicBool::new(false),
            skipped: metrics::counter!(connector::FAILED_ACKS, "source" => label.clone(), "action" => "skipped"),
            held: metrics::counter!(connector::FAILED_ACKS, "source" => label.clone(), "action" => "held"),
            written: metrics::counter!(connector::CHECKPOINTS, "source" => label.clone()),
            write_errors: metrics::counter!(connector::CHECKPOINT_ERRORS, "source" => label),
            name,
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finds where the file `(dev, ino)` starting with `head` resumes: its live slot, else its
    /// checkpoint row, else a new slot at the start. `size` detects truncation while down.
    pub(crate) fn attach(&self, path: &Path, dev: u64, ino: u64, head: &[u8], size: u64) -> Resume {
        let mut t = self.table();
        let live = t
            .slots
            .iter()
            .find(|(_, s)| s.id.dev == dev && s.id.ino == ino)
            .map(|(&k, s)| (k, s.id.matches(dev, ino, head) && s.wm_offset <= size));
        match live {
            Some((slot, true)) => {
                let s = t.slots.get_mut(&slot).expect("found above");
                s.path = path.into();
                if head.len() > s.id.fp_len as usize {
                    s.id = FileId::new(dev, ino, head);
                }
                // Whatever a previous producer emitted beyond the watermark is read again.
                s.emitted = s.wm_line;
                return Resume {
                    slot,
                    line: s.wm_line,
                    offset: s.wm_offset,
                };
            }
            Some((slot, false)) => {
                debug!(source = %self.name, path = %path.display(), "file replaced; reading from the start");
                t.slots.remove(&slot);
            }
            None => {}
        }
        let mut resume = (0, 0, 0);
        if let Some(i) = t.loaded.iter().position(|e| e.id.dev == dev && e.id.ino == ino) {
            let e = t.loaded.swap_remove(i);
            if e.id.matches(dev, ino, head) && e.offset <= size {
                resume = (e.line, e.offset, e.line);
            } else {
                warn!(source = %self.name, path = %path.display(), "file differs from its checkpoint (replaced or truncated); reading from the start");
            }
        }
        let slot = self.new_slot(&mut t, path, FileId::new(dev, ino, head), resume.0, resume.1);
        t.slots.get_mut(&slot).expect("just added").durable_line = resume.2;
        Resume {
            slot,
            line: resume.0,
            offset: resume.1,
        }
    }

    /// A new slot for a file that starts over (truncated in place).
    pub(crate) fn restart(&self, old: u32, path: &Path, id: FileId) -> u32 {
        let mut t = self.table();
        t.slots.remove(&old);
        self.new_slot(&mut t, path, id, 0, 0)
    }

    fn new_slot(&self, t: &mut Table, path: &Path, id: FileId, line: u64, offset: u64) -> u32 {
        let mut slot = t.next_slot;
        while t.slots.contains_key(&slot) {
            slot = (slot + 1) % SLOT_LIMIT;
        }
        t.next_slot = (slot + 1) % SLOT_LIMIT;
        t.slots.insert(
            slot,
            Slot {
                id,
                path: path.into(),
                wm_line: line,
                wm_offset: offset,
                acked: BTreeMap::new(),
                emitted: line,
                durable_line: 0,
            },
        );
        t.dirty = true;
        slot
    }

    /// The file of `slot` was read to its end and will not be seen again (rotated away).
    pub(crate) fn retire(&self, slot: u32) {
        let mut t = self.table();
        t.slots.remove(&slot);
        t.dirty = true;
    }

    /// The first discovery is over: checkpoint rows that matched no file are dropped.
    pub(crate) fn forget_unmatched(&self) {
        let mut t = self.table();
        if !t.loaded.is_empty() {
            t.loaded.clear();
            t.dirty = true;
        }
    }

    /// A longer fingerprint for a file that has grown since it was first seen.
    pub(crate) fn refine(&self, slot: u32, head: &[u8]) {
        let mut t = self.table();
        if let Some(s) = t.slots.get_mut(&slot)
            && head.len() > s.id.fp_len as usize
        {
            s.id = FileId::new(s.id.dev, s.id.ino, head);
            t.dirty = true;
        }
    }

    pub(crate) fn emitted(&self, slot: u32, line: u64) {
        if let Some(s) = self.table().slots.get_mut(&slot) {
            s.emitted = s.emitted.max(line);
        }
    }

    /// Lines a source skipped without a message: done at once.
    pub(crate) fn skipped(&self, slot: u32, line: u64, offset: u64) {
        let mut t = self.table();
        if let Some(s) = t.slots.get_mut(&slot) {
            t.dirty |= s.done(line, line, offset);
        }
    }

    /// Lines emitted but not yet in the checkpoint file: what a crash now would deliver again.
    pub(crate) fn pending(&self) -> u64 {
        self.table()
            .slots
            .values()
            .map(|s| s.emitted.saturating_sub(s.durable_line))
            .sum()
    }

    pub(crate) fn positions(&self) -> Vec<FilePosition> {
        let t = self.table();
        let mut v: Vec<_> = t
            .slots
            .values()
            .map(|s| FilePosition {
                path: s.path.to_path_buf(),
                acked_line: s.wm_line,
                acked_offset: s.wm_offset,
                emitted_line: s.emitted,
                durable_line: s.durable_line,
            })
            .collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    pub(crate) fn slot_path(&self, slot: u32) -> Option<Arc<Path>> {
        self.table().slots.get(&slot).map(|s| s.path.clone())
    }

    /// Writes the table if it changed since the last write. Returns whether it wrote.
    pub(crate) async fn commit(&self) -> Result<bool, FileError> {
        let _one = self.write_lock.lock().await;
        let Some((entries, marks)) = self.snapshot() else {
            return Ok(false);
        };
        if let Some(store) = self.store.clone() {
            let path = store.path.clone();
            match tokio::task::spawn_blocking(move || store.save(&entries)).await {
                Ok(Ok(())) => self.written.increment(1),
                Ok(Err(e)) => return Err(self.write_failed(e)),
                Err(join) => {
                    let e = FileError::io(&path, "write checkpoint")(io::Error::other(join.to_string()));
                    return Err(self.write_failed(e));
                }
            }
        }
        self.mark_durable(&marks);
        Ok(true)
    }

    fn write_failed(&self, e: FileError) -> FileError {
        self.write_errors.increment(1);
        self.table().dirty = true;
        e
    }

    /// The rows to write and the watermarks they make durable; `None` if nothing changed.
    fn snapshot(&self) -> Option<(Vec<Entry>, Vec<DurableMark>)> {
        let mut t = self.table();
        if !t.dirty {
            return None;
        }
        t.dirty = false;
        let mut entries: Vec<Entry> = t
            .slots
            .values()
            .map(|s| Entry {
                id: s.id,
                line: s.wm_line,
                offset: s.wm_offset,
                path: s.path.to_path_buf(),
            })
            .collect();
        entries.extend(t.loaded.iter().cloned());
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let marks = t.slots.iter().map(|(&k, s)| (k, s.wm_line)).collect();
        Some((entries, marks))
    }

    fn mark_durable(&self, marks: &[DurableMark]) {
        {
            let mut t = self.table();
            for &(slot, line) in marks {
                if let Some(s) = t.slots.get_mut(&slot) {
                    s.durable_line = s.durable_line.max(line);
                }
            }
        }
        self.durable.notify_waiters();
    }

    /// Starts the task that commits every `interval` (and at once when asked), once.
    pub(crate) fn spawn_flusher(self: &Arc<Self>) {
        if self.flusher.swap(true, Ordering::AcqRel) {
            return;
        }
        // Only a weak reference while waiting: the source's last handle going away must end
        // this task, and its drop writes the final checkpoint.
        let weak: Weak<Self> = Arc::downgrade(self);
        let urgent = self.urgent.clone();
        let interval = self.interval;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = urgent.notified() => {}
                    _ = tokio::time::sleep(interval) => {}
                }
                let Some(this) = weak.upgrade() else { return };
                if let Err(e) = this.commit().await {
                    warn!(source = %this.name, error = %e, "checkpoint write failed; retrying");
                }
            }
        });
    }
}

impl Acknowledger for Checkpoints {
    /// The pipeline drained: every message is acknowledged, so the checkpoint becomes exact.
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.commit().await {
                warn!(source = %self.name, error = %e, "checkpoint write after draining failed");
            }
        })
    }

    fn ack(&self, acks: Acks) {
        let mut done: Vec<AckToken> = acks.successful;
        for f in &acks.failed {
            let skip = match f.on_failure {
                OnFailure::Ack | OnFailure::Reject => true,
                OnFailure::Requeue => false,
                _ => self.on_failed == OnFailed::Skip,
            };
            let (slot, line) = split(f.token);
            if skip {
                self.skipped.increment(1);
                done.push(f.token);
                warn!(source = %self.name, slot, line, reason = %f.reason, "failed line acknowledged; checkpoint moves past it");
            } else {
                self.held.increment(1);
                warn!(source = %self.name, slot, line, reason = %f.reason, "failed line held; checkpoint stays before it until a restart reads it again");
            }
        }
        if done.is_empty() {
            return;
        }
        done.sort_unstable();
        let mut t = self.table();
        let mut moved = false;
        let mut i = 0;
        while i < done.len() {
            let (slot, first) = split(done[i]);
            let mut j = i;
            // A run of consecutive lines of one file: one range insert.
            while j + 1 < done.len() && split(done[j + 1]) == (slot, split(done[j]).1 + 1) {
                j += 1;
            }
            if let Some(s) = t.slots.get_mut(&slot) {
                moved |= s.done(first, split(done[j]).1, done[j].1);
            }
            i = j + 1;
        }
        t.dirty |= moved;
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        // The source's last handle is gone: every message was acknowledged or dropped, so this
        // is the final table. Blocking once here is the price of not losing it.
        if let Some(store) = &self.store
            && let Some((entries, _)) = self.snapshot()
        {
            match store.save(&entries) {
                Ok(()) => self.written.increment(1),
                Err(e) => warn!(source = %self.name, error = %e, "final checkpoint write failed"),
            }
        }
    }
}

pub(crate) fn token(slot: u32, line: u64, end_offset: u64) -> AckToken {
    AckToken(((slot as u64) << LINE_BITS) | (line & LINE_MASK), end_offset)
}

fn split(t: AckToken) -> (u32, u64) {
    ((t.0 >> LINE_BITS) as u32, t.0 & LINE_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::FailedAck;

    fn slot_at(line: u64) -> Slot {
        Slot {
            id: FileId::new(1, 2, b"x"),
            path: Path::new("f").into(),
            wm_line: line,
            wm_offset: line * 10,
            acked: BTreeMap::new(),
            emitted: line,
            durable_line: 0,
        }
    }

    #[test]
    fn watermark_moves_only_over_contiguous_acks() {
        let mut s = slot_at(0);
        assert!(!s.done(3, 4, 40));
        assert!(!s.done(7, 7, 70));
        assert_eq!((s.wm_line, s.acked.len()), (0, 2));
        assert!(s.done(1, 1, 10));
        assert_eq!(s.wm_line, 1);
        assert!(s.done(2, 2, 20)); // joins 3..=4
        assert_eq!((s.wm_line, s.wm_offset), (4, 40));
        assert!(!s.done(6, 6, 60)); // joins 7 but 5 is missing
        assert_eq!(s.acked.get(&6), Some(&(7, 70)));
        assert!(s.done(5, 5, 50));
        assert_eq!((s.wm_line, s.wm_offset, s.acked.len()), (7, 70, 0));
    }

    #[test]
    fn duplicate_and_overlapping_acks_are_harmless() {
        let mut s = slot_at(10);
        assert!(!s.done(5, 9, 90)); // already below the watermark
        assert!(!s.done(12, 15, 150));
        assert!(!s.done(13, 20, 200)); // overlaps and extends
        assert!(!s.done(14, 14, 140)); // inside
        assert_eq!(s.acked.get(&12), Some(&(20, 200)));
        assert!(s.done(8, 11, 110)); // straddles the watermark
        assert_eq!((s.wm_line, s.wm_offset), (20, 200));
    }

    #[test]
    fn fingerprint_matches_prefix_and_rejects_other_content() {
        let id = FileId::new(1, 2, b"hello");
        assert!(id.matches(1, 2, b"hello world")); // the file grew
        assert!(!id.matches(1, 2, b"hell")); // shrank
        assert!(!id.matches(1, 2, b"jello world")); // inode reused by another file
        assert!(!id.matches(1, 3, b"hello"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325); // stable across versions
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ferroway-ckpt-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn store_round_trips_and_rejects_corruption() {
        let dir = temp_dir("store");
        let store = Store::new(&dir, "src").unwrap();
        assert!(store.load().unwrap().is_empty());
        let entries = vec![Entry {
            id: FileId::new(7, 8, b"abc"),
            line: 12,
            offset: 345,
            path: PathBuf::from("/some dir/with spaces.log"),
        }];
        store.save(&entries).unwrap();
        assert_eq!(store.load().unwrap(), entries);
        assert!(!dir.join("src.checkpoint.tmp").exists());
        fs::write(&store.path, format!("{HEADER}\n1 2 x\n")).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("src.checkpoint:2: corrupt checkpoint"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn acks_group_by_file_apply_policy_and_resume_from_checkpoint() {
        let dir = temp_dir("acks");
        let ck = Arc::new(
            Checkpoints::new(
                "t".into(),
                Some(Store::new(&dir, "t").unwrap()),
                OnFailed::Hold,
                Duration::from_secs(1),
            )
            .unwrap(),
        );
        let a = ck.attach(Path::new("a"), 1, 10, b"aaaa", 100);
        let b = ck.attach(Path::new("b"), 1, 11, b"bbbb", 100);
        ck.emitted(a.slot, 4);
        ck.emitted(b.slot, 2);
        let failed = |slot, line, on_failure| FailedAck {
            token: token(slot, line, line * 10),
            reason: "boom".into(),
            on_failure,
        };
        ck.ack(Acks {
            successful: vec![token(a.slot, 2, 20), token(b.slot, 1, 10), token(a.slot, 1, 10)],
            failed: vec![failed(a.slot, 3, OnFailure::Default), failed(b.slot, 2, OnFailure::Ack)],
        });
        ck.ack(Acks {
            successful: vec![token(a.slot, 4, 40)],
            failed: vec![],
        });
        let pos = ck.positions();
        // a: line 3 failed and is held; b: its failure asked to be acknowledged anyway.
        assert_eq!((pos[0].acked_line, pos[0].acked_offset), (2, 20));
        assert_eq!((pos[1].acked_line, pos[1].acked_offset), (2, 20));
        assert_eq!(ck.pending(), 6);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(rt.block_on(ck.commit()).unwrap());
        assert!(!rt.block_on(ck.commit()).unwrap(), "nothing changed");
        assert_eq!(ck.pending(), 2);
        drop(ck);

        let again = Checkpoints::new(
            "t".into(),
            Some(Store::new(&dir, "t").unwrap()),
            OnFailed::Skip,
            Duration::from_secs(1),
        )
        .unwrap();
        let r = again.attach(Path::new("a"), 1, 10, b"aaaa and more", 200);
        assert_eq!((r.line, r.offset), (2, 20));
        // Same inode, other content: a new file.
        let r = again.attach(Path::new("b"), 1, 11, b"zzzz", 200);
        assert_eq!((r.line, r.offset), (0, 0));
        fs::remove_dir_all(&dir).unwrap();
    }
}
