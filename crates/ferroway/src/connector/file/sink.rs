//! The file sink: appends lines, and says when they are durable.

use crate::connector::format::join_lines;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{info, warn};

use super::FileError;
use super::checkpoint::sync_dir;
use crate::connector::dead_letter::{self, LineSink};
use crate::connector::{self};
use crate::connector::{AsRecord, Sink};
use crate::error::BoxError;
use crate::pipeline::{BoxFuture, Message};

/// When a [`FileSink`]'s writes are made durable (fsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// Every write is fsynced before it returns. Concurrent writers (several batch processors)
    /// share fsyncs (group commit): a write that finds an fsync running waits for the next
    /// one, which covers everything written meanwhile.
    EveryWrite,
    /// A background task fsyncs on this interval; writes return before, with a
    /// [`WriteReceipt`] whose [`durable`](WriteReceipt::durable) resolves after the next fsync.
    /// A handler that acknowledges only durable output awaits it, so its batch is acknowledged
    /// up to one interval later — in exchange, concurrent batches share one fsync.
    Interval(Duration),
}

/// How rotated files are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationNaming {
    /// `out.log.1`, `out.log.2`, …: the number grows, so the highest is the newest.
    Numbered,
    /// `out.log.<unix milliseconds>`.
    Timestamped,
}

/// Size-based rotation of a [`FileSink`]: before a write would take the file past
/// `max_bytes`, the file is fsynced, renamed aside, and a new one started at the path. A single
/// write larger than `max_bytes` goes whole into a file of its own: lines are never split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    max_bytes: u64,
    naming: RotationNaming,
}

impl Rotation {
    /// Rotate at `max_bytes`, numbered names.
    pub fn max_bytes(max_bytes: u64) -> Self {
        Rotation {
            max_bytes: max_bytes.max(1),
            naming: RotationNaming::Numbered,
        }
    }

    /// How rotated files are named.
    pub fn naming(mut self, naming: RotationNaming) -> Self {
        self.naming = naming;
        self
    }
}

/// Options of a [`FileSink`].
///
/// ```
/// use std::time::Duration;
/// use ferroway::connector::file::{FileSinkOptions, Rotation, SyncPolicy};
/// let opts = FileSinkOptions::new()
///     .sync(SyncPolicy::Interval(Duration::from_millis(100)))
///     .rotation(Rotation::max_bytes(64 << 20));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
pub struct FileSinkOptions {
    sync: SyncPolicy,
    rotation: Option<Rotation>,
    repair_torn_tail: bool,
    name: Option<String>,
}

impl Default for FileSinkOptions {
    fn default() -> Self {
        FileSinkOptions {
            sync: SyncPolicy::EveryWrite,
            rotation: None,
            repair_torn_tail: true,
            name: None,
        }
    }
}

impl FileSinkOptions {
    /// Defaults: fsync every write, no rotation, torn tails repaired.
    pub fn new() -> Self {
        Self::default()
    }

    /// When writes are made durable.
    pub fn sync(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// Rotate by size.
    pub fn rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = Some(rotation);
        self
    }

    /// On open, cut an unterminated last line — the remains of a write torn by a crash, which
    /// was never reported durable — so new lines do not glue onto it (default on).
    pub fn repair_torn_tail(mut self, on: bool) -> Self {
        self.repair_torn_tail = on;
        self
    }

    /// The sink's name in logs and metrics (default: the file's name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// Appends lines to a file; usable from `handle_batch` (a cheap handle: clone it, share it
/// between batch processors). Writes run on Tokio's blocking threads.
///
/// With the default [`SyncPolicy::EveryWrite`], [`write_batch`](Self::write_batch) returns
/// once the lines are on disk, so a batch acknowledged after it is never lost.
///
/// ```
/// use ferroway::connector::file::{FileSink, FileSinkOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("ferroway-doc-sink-{}.log", std::process::id()));
/// let sink = FileSink::open(&path, FileSinkOptions::new()).await?;
/// sink.write_batch(["first", "second"]).await?;
/// assert_eq!(std::fs::read_to_string(&path)?, "first\nsecond\n");
/// # std::fs::remove_file(&path)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileSink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    dir: PathBuf,
    name: Arc<str>,
    sync: SyncPolicy,
    rotation: Option<Rotation>,
    state: Mutex<State>,
    /// Highest write sequence known durable, and whether the sink is poisoned.
    synced: watch::Sender<(u64, bool)>,
    /// An fsync is running (group commit: others wait for it, then maybe start the next).
    syncing: AtomicBool,
    bytes_written: metrics::Counter,
    fsyncs: metrics::Counter,
    rotations: metrics::Counter,
}

#[derive(Debug)]
struct State {
    file: File,
    size: u64,
    /// Sequence number of the last write.
    written: u64,
    next_index: u64,
    poisoned: Option<String>,
}

/// Proof of a write to a [`FileSink`]; [`durable`](Self::durable) waits until it is on disk.
#[derive(Debug)]
pub struct WriteReceipt {
    inner: Arc<Inner>,
    seq: u64,
}

impl WriteReceipt {
    /// Resolves once the write is durable: at once with [`SyncPolicy::EveryWrite`], after the
    /// next background fsync with [`SyncPolicy::Interval`].
    ///
    /// # Errors
    /// [`FileError::Poisoned`] if a write or fsync failed meanwhile.
    pub async fn durable(self) -> Result<(), FileError> {
        self.inner.durable(self.seq).await
    }
}

impl FileSink {
    /// Opens (creating it if needed) `path` for appending.
    ///
    /// # Errors
    /// The file or its directory cannot be opened, repaired or synced.
    pub async fn open(path: impl AsRef<Path>, opts: FileSinkOptions) -> Result<FileSink, FileError> {
        let path = path.as_ref().to_owned();
        let sink = tokio::task::spawn_blocking(move || FileSink::open_blocking(path, opts))
            .await
            .map_err(|e| FileError::Io {
                path: PathBuf::new(),
                op: "open",
                source: std::io::Error::other(e.to_string()),
            })??;
        if let SyncPolicy::Interval(every) = sink.inner.sync {
            spawn_syncer(Arc::downgrade(&sink.inner), every);
        }
        Ok(sink)
    }

    fn open_blocking(path: PathBuf, opts: FileSinkOptions) -> Result<FileSink, FileError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .append(true)
            .read(true)
            .create(true)
            .open(&path)
            .map_err(FileError::io(&path, "open"))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if !existed {
            sync_dir(&dir)?;
        }
        let mut size = file.metadata().map_err(FileError::io(&path, "stat"))?.len();
        if opts.repair_torn_tail && size > 0 {
            size = repair_tail(&file, size, &path)?;
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let next_index = highest_index(&dir, &file_name) + 1;
        let name: Arc<str> = opts.name.as_deref().unwrap_or(&file_name).into();
        let label = name.to_string();
        Ok(FileSink {
            inner: Arc::new(Inner {
                bytes_written: metrics::counter!(connector::BYTES_WRITTEN, "sink" => label.clone()),
                fsyncs: metrics::counter!(connector::FSYNCS, "sink" => label.clone()),
                rotations: metrics::counter!(connector::SINK_ROTATIONS, "sink" => label),
                path,
                dir,
                name,
                sync: opts.sync,
                rotation: opts.rotation,
                state: Mutex::new(State {
                    file,
                    size,
                    written: 0,
                    next_index,
                    poisoned: None,
                }),
                synced: watch::Sender::new((0, false)),
                syncing: AtomicBool::new(false),
            }),
        })
    }

    /// Appends each of `lines` followed by `\n` in one write. With [`SyncPolicy::EveryWrite`]
    /// they are durable when this returns; otherwise await the receipt's
    /// [`durable`](WriteReceipt::durable).
    ///
    /// # Errors
    /// The write or fsync failed; the sink is unusable from then on ([`FileError::Poisoned`]).
    pub async fn write_batch<I>(&self, lines: I) -> Result<WriteReceipt, FileError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.write_bytes(join_lines(lines)).await
    }

    /// Appends `bytes` as they are, in one write (lines already terminated by `\n`, e.g.
    /// serialized straight into one buffer).
    ///
    /// # Errors
    /// As [`write_batch`](Self::write_batch).
    pub async fn write_bytes(&self, bytes: Vec<u8>) -> Result<WriteReceipt, FileError> {
        let inner = self.inner.clone();
        let seq = tokio::task::spawn_blocking(move || inner.write(&bytes))
            .await
            .map_err(|e| self.inner.fail("write", std::io::Error::other(e.to_string())))??;
        if self.inner.sync == SyncPolicy::EveryWrite {
            self.inner.durable(seq).await?;
        }
        Ok(WriteReceipt {
            inner: self.inner.clone(),
            seq,
        })
    }

    /// Makes everything written so far durable now.
    ///
    /// # Errors
    /// The fsync failed, now or earlier.
    pub async fn sync(&self) -> Result<(), FileError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.sync_now())
            .await
            .map_err(|e| self.inner.fail("sync", std::io::Error::other(e.to_string())))?
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, bytes: &[u8]) -> Result<u64, FileError> {
        let mut st = self.state();
        if let Some(reason) = &st.poisoned {
            return Err(self.poisoned_with(reason));
        }
        if let Some(r) = self.rotation
            && st.size > 0
            && st.size + bytes.len() as u64 > r.max_bytes
        {
            self.rotate(&mut st, r.naming)?;
        }
        if let Err(e) = st.file.write_all(bytes) {
            return Err(self.poison(&mut st, "write", e));
        }
        st.size += bytes.len() as u64;
        st.written += 1;
        self.bytes_written.increment(bytes.len() as u64);
        Ok(st.written)
    }

    /// Waits until write `seq` is durable. With [`SyncPolicy::EveryWrite`] the first waiter
    /// runs an fsync for everyone; on an interval the background task does.
    async fn durable(self: &Arc<Self>, seq: u64) -> Result<(), FileError> {
        let mut rx = self.synced.subscribe();
        loop {
            let (synced, poisoned) = *rx.borrow_and_update();
            if poisoned {
                return Err(self.poisoned());
            }
            if synced >= seq {
                return Ok(());
            }
            if self.sync == SyncPolicy::EveryWrite && !self.syncing.swap(true, Ordering::AcqRel) {
                let _syncer = Syncer(self);
                let inner = self.clone();
                let r = tokio::task::spawn_blocking(move || inner.sync_now()).await;
                match r {
                    Ok(r) => r?,
                    Err(e) => return Err(self.fail("sync", std::io::Error::other(e.to_string()))),
                }
                continue;
            }
            if rx.changed().await.is_err() {
                return Err(self.poisoned());
            }
        }
    }

    /// fsync under the state lock, then publish what it covered.
    fn fsync(&self, st: &mut State) -> Result<(), FileError> {
        let seq = st.written;
        if self.synced.borrow().0 >= seq {
            return Ok(());
        }
        if let Err(e) = st.file.sync_data() {
            return Err(self.poison(st, "sync", e));
        }
        self.fsyncs.increment(1);
        self.synced.send_modify(|s| s.0 = s.0.max(seq));
        Ok(())
    }

    /// fsyncs everything written so far, without holding up writers meanwhile.
    fn sync_now(&self) -> Result<(), FileError> {
        let (file, seq) = {
            let mut st = self.state();
            if let Some(reason) = &st.poisoned {
                return Err(self.poisoned_with(reason));
            }
            if self.synced.borrow().0 >= st.written {
                return Ok(());
            }
            // A rotation meanwhile fsyncs the old file itself; syncing it again is harmless.
            match st.file.try_clone() {
                Ok(f) => (f, st.written),
                Err(e) => return Err(self.poison(&mut st, "sync", e)),
            }
        };
        if let Err(e) = file.sync_data() {
            return Err(self.fail("sync", e));
        }
        self.fsyncs.increment(1);
        self.synced.send_modify(|s| s.0 = s.0.max(seq));
        Ok(())
    }

    fn rotate(&self, st: &mut State, naming: RotationNaming) -> Result<(), FileError> {
        // Whatever is in the old file must be durable before it leaves the path.
        self.fsync(st)?;
        let base = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = match naming {
            RotationNaming::Numbered => {
                st.next_index += 1;
                self.dir.join(format!("{base}.{}", st.next_index - 1))
            }
            RotationNaming::Timestamped => {
                let ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let mut p = self.dir.join(format!("{base}.{ms}"));
                let mut k = 1;
                while p.exists() {
                    p = self.dir.join(format!("{base}.{ms}-{k}"));
                    k += 1;
                }
                p
            }
        };
        if let Err(e) = fs::rename(&self.path, &aside) {
            return Err(self.poison(st, "rotate", e));
        }
        let file = OpenOptions::new().append(true).read(true).create(true).open(&self.path);
        match file {
            Ok(f) => st.file = f,
            Err(e) => return Err(self.poison(st, "open after rotation", e)),
        }
        st.size = 0;
        if let Err(e) = sync_dir(&self.dir) {
            st.poisoned = Some(e.to_string());
            self.synced.send_modify(|s| s.1 = true);
            return Err(e);
        }
        self.rotations.increment(1);
        info!(sink = %self.name, rotated = %aside.display(), "rotated");
        Ok(())
    }

    /// Records the first failure: after a failed write or fsync, what the file holds is
    /// unknown (Linux may drop unsynced pages), so nothing more is reported durable.
    fn poison(&self, st: &mut State, op: &'static str, e: std::io::Error) -> FileError {
        warn!(sink = %self.name, path = %self.path.display(), op, error = %e, "file sink failed; it reports nothing durable from now on");
        st.poisoned.get_or_insert_with(|| format!("{op}: {e}"));
        self.synced.send_modify(|s| s.1 = true);
        FileError::Io {
            path: self.path.clone(),
            op,
            source: e,
        }
    }

    fn fail(&self, op: &'static str, e: std::io::Error) -> FileError {
        let mut st = self.state();
        self.poison(&mut st, op, e)
    }

    fn poisoned(&self) -> FileError {
        let reason = self.state().poisoned.clone().unwrap_or_default();
        self.poisoned_with(&reason)
    }

    fn poisoned_with(&self, reason: &str) -> FileError {
        FileError::Poisoned {
            path: self.path.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// The group-commit syncer's turn; ends even if its waiter is cancelled, so others go on.
struct Syncer<'a>(&'a Inner);

impl Drop for Syncer<'_> {
    fn drop(&mut self) {
        self.0.syncing.store(false, Ordering::Release);
        // Wake the waiters even if nothing changed, so one of them takes over.
        self.0.synced.send_modify(|_| {});
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Interval mode may hold unsynced writes; the last handle going away makes them durable.
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if st.poisoned.is_none()
            && self.synced.borrow().0 < st.written
            && let Err(e) = st.file.sync_data()
        {
            warn!(sink = %self.name, error = %e, "final fsync failed");
        }
    }
}

fn spawn_syncer(inner: Weak<Inner>, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = inner.upgrade() else { return };
            if inner.synced.borrow().1 {
                return;
            }
            let due = inner.state().written > inner.synced.borrow().0;
            if due {
                let name = inner.name.clone();
                match tokio::task::spawn_blocking(move || inner.sync_now()).await {
                    Ok(Ok(())) => {}
                    // Poisoned: the receipts waiting learn it through `synced`.
                    Ok(Err(e)) => warn!(sink = %name, error = %e, "background fsync failed"),
                    Err(e) => warn!(sink = %name, error = %e, "background fsync did not run"),
                }
            }
        }
    });
}

/// Cuts an unterminated last line; returns the new size.
fn repair_tail(file: &File, size: u64, path: &Path) -> Result<u64, FileError> {
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, size - 1)
        .map_err(FileError::io(path, "read"))?;
    if last[0] == b'\n' {
        return Ok(size);
    }
    let mut end = size;
    let mut buf = vec![0u8; 64 * 1024];
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start).map_err(FileError::io(path, "read"))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    file.set_len(keep).map_err(FileError::io(path, "truncate torn tail"))?;
    file.sync_all().map_err(FileError::io(path, "sync"))?;
    warn!(path = %path.display(), cut = size - keep, "cut an unterminated last line (a write torn by a crash)");
    Ok(keep)
}

/// The highest `N` among files named `<base>.N` in `dir` (0 if none).
fn highest_index(dir: &Path, base: &str) -> u64 {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{base}.");
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&prefix)?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0)
}

impl LineSink for FileSink {
    fn append_durable(&self, lines: Vec<u8>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            self.write_bytes(lines).await?.durable().await?;
            Ok(())
        })
    }
}

/// Each message's payload as a line, durable (per the sink's sync policy) before `write`
/// returns; a dead letter as its JSON record (see
/// [`DeadLetterWriter`](crate::connector::DeadLetterWriter), also for data that is not a record).
impl<T: AsRecord + Send + Sync + 'static> Sink<T> for FileSink {
    fn write<'a>(&'a self, messages: &'a mut [Message<T>]) -> BoxFuture<'a, Result<(), BoxError>> {
        dead_letter::write_lines(self, messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::file::tests::TempDir;
    use crate::pipeline::{Handler, Pipeline, Processors};

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[tokio::test]
    async fn appends_lines_durably_before_returning() {
        let dir = TempDir::new("sink");
        let path = dir.join("out.log");
        let sink = FileSink::open(&path, FileSinkOptions::new()).await.unwrap();
        let r = sink.write_batch(["a", "b"]).await.unwrap();
        assert_eq!(sink.inner.synced.borrow().0, r.seq, "fsynced before returning");
        r.durable().await.unwrap();
        sink.write_bytes(b"c\n".to_vec())
            .await
            .unwrap()
            .durable()
            .await
            .unwrap();
        drop(sink);
        let sink = FileSink::open(&path, FileSinkOptions::new()).await.unwrap();
        sink.write_batch(["d"]).await.unwrap();
        assert_eq!(read(&path), "a\nb\nc\nd\n");
    }

    #[tokio::test]
    async fn cuts_a_torn_last_line_on_open() {
        let dir = TempDir::new("torn");
        let path = dir.join("out.log");
        fs::write(&path, "whole\nhalf a li").unwrap();
        let sink = FileSink::open(&path, FileSinkOptions::new()).await.unwrap();
        sink.write_batch(["next"]).await.unwrap();
        assert_eq!(read(&path), "whole\nnext\n");
        fs::write(&path, "no newline at all").unwrap();
        drop(sink);
        let sink = FileSink::open(&path, FileSinkOptions::new().repair_torn_tail(false))
            .await
            .unwrap();
        sink.write_batch(["kept"]).await.unwrap();
        assert_eq!(read(&path), "no newline at allkept\n");
    }

    #[tokio::test]
    async fn rotates_by_size_without_splitting_writes() {
        let dir = TempDir::new("rotate");
        let path = dir.join("out.log");
        fs::write(dir.join("out.log.3"), "from an earlier run\n").unwrap();
        let opts = FileSinkOptions::new().rotation(Rotation::max_bytes(10));
        let sink = FileSink::open(&path, opts).await.unwrap();
        sink.write_batch(["1234"]).await.unwrap(); // 5 bytes
        sink.write_batch(["5678"]).await.unwrap(); // 10: fits
        sink.write_batch(["9"]).await.unwrap(); // would be 12: rotate first
        sink.write_batch(["a very long line"]).await.unwrap(); // larger than the limit: alone
        sink.write_batch(["z"]).await.unwrap();
        assert_eq!(read(&dir.join("out.log.3")), "from an earlier run\n");
        assert_eq!(read(&dir.join("out.log.4")), "1234\n5678\n");
        assert_eq!(read(&dir.join("out.log.5")), "9\n");
        assert_eq!(read(&dir.join("out.log.6")), "a very long line\n");
        assert_eq!(read(&path), "z\n");

        let ts = dir.join("ts.log");
        let opts = FileSinkOptions::new().rotation(Rotation::max_bytes(2).naming(RotationNaming::Timestamped));
        let sink = FileSink::open(&ts, opts).await.unwrap();
        for l in ["a", "b", "c"] {
            sink.write_batch([l]).await.unwrap();
        }
        let mut aside: Vec<String> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ts.log."))
            .collect();
        aside.sort();
        assert_eq!(aside.len(), 2, "{aside:?}");
        assert!(
            aside
                .iter()
                .all(|n| n["ts.log.".len()..].chars().all(|c| c.is_ascii_digit() || c == '-'))
        );
        assert_eq!(read(&ts), "c\n");
    }

    #[tokio::test(start_paused = true)]
    async fn on_an_interval_a_receipt_is_durable_after_the_next_fsync() {
        let dir = TempDir::new("interval");
        let path = dir.join("out.log");
        let opts = FileSinkOptions::new().sync(SyncPolicy::Interval(Duration::from_millis(100)));
        let sink = FileSink::open(&path, opts).await.unwrap();
        let r1 = sink.write_batch(["a"]).await.unwrap();
        let r2 = sink.write_batch(["b"]).await.unwrap();
        assert_eq!(sink.inner.synced.borrow().0, 0, "not synced yet");
        let started = tokio::time::Instant::now();
        r2.durable().await.unwrap();
        r1.durable().await.unwrap();
        assert!(
            started.elapsed() <= Duration::from_millis(100),
            "one background fsync covered both"
        );
        assert!(sink.inner.synced.borrow().0 >= 2);
        // An explicit sync does not wait for the interval.
        let r3 = sink.write_batch(["c"]).await.unwrap();
        let before = tokio::time::Instant::now();
        sink.sync().await.unwrap();
        assert_eq!(before.elapsed(), Duration::ZERO);
        r3.durable().await.unwrap();
        assert_eq!(read(&path), "a\nb\nc\n");
    }

    struct RejectOdd;
    impl Handler for RejectOdd {
        type Data = String;
        async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
            let n: u64 = m.data().parse()?;
            if n % 2 == 1 {
                m.fail(format_args!("{n} is odd"));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn is_a_dead_letter_sink_writing_one_record_per_message() {
        let dir = TempDir::new("dlq");
        fs::write(dir.join("in.txt"), "1\n2\n3\n").unwrap();
        let dlq = FileSink::open(dir.join("dead.ndjson"), FileSinkOptions::new())
            .await
            .unwrap();
        let source = crate::connector::file::FileSource::builder(dir.join("in.txt"))
            .open()
            .unwrap();
        let factory = source.clone();
        let pipeline = Pipeline::builder("odd", RejectOdd)
            .producer(move || factory.producer())
            .processors(Processors::new().concurrency(1))
            .dead_letter(dlq)
            .start()
            .await
            .unwrap();
        pipeline.join().await.unwrap();
        let path = dir.join("in.txt");
        let want = format!(
            "{{\"pipeline\":\"odd\",\"stage\":\"processor\",\"reason\":\"1 is odd\",\"origin\":{{\"path\":\"{p}\",\"line\":\"1\",\"offset\":\"0\"}},\"data\":\"1\"}}\n\
             {{\"pipeline\":\"odd\",\"stage\":\"processor\",\"reason\":\"3 is odd\",\"origin\":{{\"path\":\"{p}\",\"line\":\"3\",\"offset\":\"4\"}},\"data\":\"3\"}}\n",
            p = path.display()
        );
        assert_eq!(read(&dir.join("dead.ndjson")), want);
        // Dead-lettered lines are done: the checkpoint covers all three.
        assert_eq!(source.positions()[0].acked_line, 3);
    }
}
