//! The committed cursor of the NDJSON and polling sources: records are numbered as read; once every record up to one is
//! finished, its cursor is committed — kept in memory and written to the cursor file by a
//! task of its own (acknowledgements must not block), always the newest value, atomically.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ferroway::pipeline::{AckToken, Acknowledger, Acks, Watermark};
use tokio::sync::watch;
use tracing::warn;

/// The builders of an options type with `cursor`, `cursor_file` and `start_after` fields:
/// one definition for the NDJSON and polling sources.
macro_rules! cursor_builders {
    () => {
        /// Resumption: each record's top-level JSON field `field` (a string or a number) is
        /// its cursor, and the next request (a reconnection, the next poll) asks for what
        /// follows the last record read with query parameter `param`.
        pub fn cursor(mut self, field: impl Into<String>, param: impl Into<String>) -> Self {
            self.cursor = Some((field.into(), param.into()));
            self
        }

        /// Keeps the cursor of the last record the pipeline finished (all before it finished
        /// too) in this file, written atomically as acknowledgements come, and starts from it.
        pub fn cursor_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
            self.cursor_file = Some(path.into());
            self
        }

        /// The cursor to start after when no cursor file holds one.
        pub fn start_after(mut self, cursor: impl Into<String>) -> Self {
            self.start_after = Some(cursor.into());
            self
        }
    };
}
pub(crate) use cursor_builders;

/// The cursor of a JSON record: its top-level `field`, a string or a number.
pub(crate) fn of(record: &[u8], field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(record).ok()?;
    match value.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The cursor options that cannot work, named.
pub(crate) fn validate(
    cursor: Option<&(String, String)>,
    file: Option<&Path>,
    start_after: Option<&str>,
) -> Result<(), crate::error::OptionsError> {
    use crate::error::OptionsError;
    if let Some((field, param)) = cursor
        && (field.is_empty() || param.is_empty())
    {
        return Err(OptionsError::new("cursor", "needs a field and a query parameter"));
    }
    if cursor.is_none() && (file.is_some() || start_after.is_some()) {
        return Err(OptionsError::new(
            if file.is_some() { "cursor_file" } else { "start_after" },
            "needs `cursor` (which field, which query parameter)",
        ));
    }
    Ok(())
}

/// Numbers records, learns which are finished, commits cursors.
pub(crate) struct Tracker {
    state: Mutex<State>,
    committed: watch::Sender<Commit>,
}

/// The committed cursor, and whether the source closed (the writer's last write).
#[derive(Clone, Default)]
struct Commit {
    cursor: Option<String>,
    closed: bool,
}

struct State {
    watermark: Watermark,
    next: u64,
    /// Records read and not yet below the watermark, with their cursors.
    cursors: VecDeque<(u64, Option<String>)>,
}

impl Tracker {
    /// A tracker whose committed cursor starts as `start`; with a file, the writer task
    /// (returned) keeps it there.
    pub(crate) fn new(
        start: Option<String>,
        file: Option<PathBuf>,
    ) -> (Arc<Tracker>, Option<tokio::task::JoinHandle<()>>) {
        let (committed, watched) = watch::channel(Commit {
            cursor: start,
            closed: false,
        });
        let writer = file.map(|path| tokio::spawn(write(path, watched)));
        let tracker = Tracker {
            state: Mutex::new(State {
                watermark: Watermark::new(0),
                next: 0,
                cursors: VecDeque::new(),
            }),
            committed,
        };
        (Arc::new(tracker), writer)
    }

    /// A record read, with its cursor if it has one: its token.
    pub(crate) fn track(&self, cursor: Option<String>) -> AckToken {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let seq = s.next;
        s.next += 1;
        s.watermark.track(seq, seq + 1);
        s.cursors.push_back((seq, cursor));
        AckToken(seq, 0)
    }

    /// The last committed cursor.
    pub(crate) fn committed(&self) -> Option<String> {
        self.committed.borrow().cursor.clone()
    }

    /// No more commits: the writer task writes the last one and ends.
    pub(crate) fn close(&self) {
        self.committed.send_modify(|c| c.closed = true);
    }
}

impl Acknowledger for Tracker {
    fn ack(&self, acks: Acks) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A failed record is finished too: it went where the pipeline sends failures.
        for t in acks.successful.iter().chain(acks.failed.iter().map(|f| &f.token)) {
            s.watermark.complete(t.0);
        }
        let below = s.watermark.committable();
        let mut newest = None;
        while s.cursors.front().is_some_and(|(seq, _)| *seq < below) {
            if let Some((_, Some(c))) = s.cursors.pop_front() {
                newest = Some(c);
            }
        }
        drop(s);
        if let Some(c) = newest {
            self.committed.send_modify(|commit| commit.cursor = Some(c));
        }
    }
}

/// The cursor in `path`, if the file exists and holds one.
pub(crate) fn read(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()).filter(|c| !c.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes each new committed cursor to `path` (a temporary file renamed over it, fsynced),
/// until the source closes.
async fn write(path: PathBuf, mut committed: watch::Receiver<Commit>) {
    let mut written: Option<String> = committed.borrow_and_update().cursor.clone();
    loop {
        if committed.changed().await.is_err() {
            return;
        }
        let now = committed.borrow_and_update().clone();
        if now.cursor != written
            && let Some(cursor) = &now.cursor
        {
            let (file, cursor) = (path.clone(), cursor.clone());
            match tokio::task::spawn_blocking(move || replace(&file, &cursor)).await {
                Ok(Ok(())) => written = now.cursor,
                Ok(Err(e)) => {
                    warn!(path = %path.display(), error = %e, "cannot write the cursor file; the cursor stays in memory")
                }
                Err(e) => warn!(error = %e, "the cursor writer failed"),
            }
        }
        if now.closed {
            return;
        }
    }
}

fn replace(path: &Path, cursor: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(cursor.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A tracker and the task writing its cursor file.
type Tracked = (Arc<Tracker>, Option<tokio::task::JoinHandle<()>>);

/// The cursor side of a source factory: where producers start, the tracker they share, and
/// the last write of the cursor file when the source closes.
pub(crate) struct Cursors {
    enabled: bool,
    start: Option<String>,
    file: Option<PathBuf>,
    tracked: Mutex<Option<Tracked>>,
}

impl Cursors {
    /// Reads the cursor file (if any); `start_after` when it holds none.
    pub(crate) fn open(
        enabled: bool,
        file: Option<PathBuf>,
        start_after: Option<String>,
    ) -> Result<Cursors, crate::error::OptionsError> {
        let start = match &file {
            Some(path) => read(path)
                .map_err(|e| crate::error::OptionsError::new("cursor_file", format!("{}: {e}", path.display())))?
                .or(start_after),
            None => start_after,
        };
        Ok(Cursors {
            enabled,
            start,
            file,
            tracked: Mutex::new(None),
        })
    }

    /// Where a (re)started producer starts, and the tracker its messages report to: a
    /// restarted producer resumes after what the pipeline finished.
    pub(crate) fn for_producer(&self) -> (Option<String>, Option<Arc<Tracker>>) {
        let mut slot = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        if !self.enabled {
            return (self.start.clone(), None);
        }
        if let Some((t, _)) = slot.as_ref() {
            return (t.committed(), Some(t.clone()));
        }
        let (t, writer) = Tracker::new(self.start.clone(), self.file.clone());
        *slot = Some((t.clone(), writer));
        (self.start.clone(), Some(t))
    }

    /// The last committed cursor (or the start).
    pub(crate) fn committed(&self) -> Option<String> {
        let slot = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some((t, _)) => t.committed(),
            None => self.start.clone(),
        }
    }

    /// Resolves once the last committed cursor is in the file.
    pub(crate) fn close(&self) -> ferroway::pipeline::BoxFuture<'_, ()> {
        let taken = self.tracked.lock().unwrap_or_else(|p| p.into_inner()).take();
        Box::pin(async move {
            if let Some((tracker, writer)) = taken {
                tracker.close();
                if let Some(w) = writer {
                    let _ = w.await;
                }
            }
        })
    }
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursors")
            .field("start", &self.start)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}
