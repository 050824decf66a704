//! The file source's producer: reads as many lines as demanded, off the runtime's threads.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use tracing::{debug, info};

use super::checkpoint::{self, Checkpoints, FINGERPRINT_BYTES, FileId};
use super::follow::Found;
use super::{FileError, FileMetadata, FileSource};
use crate::connector::{self, LineFormat, format::strip_line_ending};
use crate::error::BoxError;
use crate::pipeline::{Acknowledger, Message};
use crate::stage::{Emit, Producer};

/// The producer of a [`FileSource`]; make one with [`FileSource::producer`].
#[derive(Debug)]
pub struct FileProducer<F> {
    source: FileSource<F>,
    /// Moved to a blocking thread for each read; `None` before the first read, or if a read
    /// was abandoned (the stage draining), after which it is rebuilt from the checkpoints.
    files: Option<Files>,
}

impl<F: LineFormat> FileProducer<F> {
    pub(super) fn new(source: FileSource<F>) -> Self {
        FileProducer { source, files: None }
    }
}

/// What one blocking read step produced.
enum Step<T> {
    Lines(Vec<Message<T>>),
    /// Following: nothing new yet.
    Idle,
    /// Not following: every file read to its end.
    Finished,
}

impl<F: LineFormat> Producer for FileProducer<F> {
    type Output = Message<F::Item>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<F::Item>>, BoxError> {
        let ck = self.source.checkpoints.clone();
        ck.spawn_flusher();
        let cfg = self.source.config.clone();
        loop {
            let mut want = demand;
            if let Some(max) = cfg.max_pending {
                let durable = ck.durable.notified();
                let pending = ck.pending();
                if pending >= max {
                    ck.urgent.notify_one();
                    durable.await;
                    continue;
                }
                want = want.min((max - pending) as usize);
            }
            let files = self.files.take();
            let source = self.source.clone();
            let (files, step) = tokio::task::spawn_blocking(move || {
                let mut files = match files {
                    Some(f) => f,
                    None => Files::open(&source)?,
                };
                let step = files.step(&source, want)?;
                Ok::<_, FileError>((files, step))
            })
            .await??;
            self.files = Some(files);
            match step {
                // Every line read was skipped: an empty answer would idle the stage.
                Step::Lines(messages) if messages.is_empty() => {}
                Step::Lines(messages) => return Ok(Emit::Events(messages)),
                Step::Finished => {
                    info!(source = %cfg.name, "all files read");
                    return Ok(Emit::Done(Vec::new()));
                }
                Step::Idle => tokio::time::sleep(cfg.poll_interval).await,
            }
        }
    }
}

/// The files a producer reads.
#[derive(Debug)]
struct Files {
    open: Vec<OpenFile>,
    /// Round-robin position among followed files.
    next: usize,
    lines_read: metrics::Counter,
    bytes_read: metrics::Counter,
    decode_failures: metrics::Counter,
    rotated: metrics::Counter,
    truncated: metrics::Counter,
}

#[derive(Debug)]
struct OpenFile {
    slot: u32,
    path: Arc<Path>,
    reader: BufReader<File>,
    dev: u64,
    ino: u64,
    /// Identity as last verified (the fingerprint grows with a short file).
    id: FileId,
    /// Offset just after the last complete line read.
    offset: u64,
    /// The last line number read.
    line: u64,
    /// Bytes of a line whose end has not been written yet (following).
    partial: Vec<u8>,
    /// No longer at any discovered path (rotated away): read to its end, then closed.
    orphan: bool,
    finished: bool,
}

impl Files {
    fn open<F>(source: &FileSource<F>) -> Result<Files, FileError> {
        let ck = &source.checkpoints;
        let name = source.config.name.to_string();
        let mut files = Files {
            open: Vec::new(),
            next: 0,
            lines_read: metrics::counter!(connector::LINES_READ, "source" => name.clone()),
            bytes_read: metrics::counter!(connector::BYTES_READ, "source" => name.clone()),
            decode_failures: metrics::counter!(connector::DECODE_FAILURES, "source" => name.clone()),
            rotated: metrics::counter!(connector::FILE_SWITCHES, "source" => name.clone(), "reason" => "rotated"),
            truncated: metrics::counter!(connector::FILE_SWITCHES, "source" => name, "reason" => "truncated"),
        };
        for found in source.config.input.discover()? {
            if let Some(f) = OpenFile::open(&found, ck)? {
                files.open.push(f);
            }
        }
        ck.forget_unmatched();
        Ok(files)
    }

    fn step<F: LineFormat>(&mut self, source: &FileSource<F>, want: usize) -> Result<Step<F::Item>, FileError> {
        let follow = source.config.follow;
        let mut raw = Vec::new();
        if !follow {
            // In path order, one file after the other.
            while let Some(f) = self.open.iter_mut().find(|f| !f.finished) {
                f.finished = f.read(&source.checkpoints, want, true, &mut raw)?;
                if !raw.is_empty() {
                    return Ok(self.emit(source, raw));
                }
            }
            return Ok(Step::Finished);
        }
        // A file rotated away is finished before any other is read, so its successor's
        // lines come after its own.
        for f in self.open.iter_mut().filter(|f| f.orphan && !f.finished) {
            f.finished = f.read(&source.checkpoints, want, true, &mut raw)?;
            if !raw.is_empty() {
                return Ok(self.emit(source, raw));
            }
        }
        for f in self.open.iter().filter(|f| f.finished) {
            debug!(source = %source.config.name, path = %f.path.display(), "rotated file read to its end");
            source.checkpoints.retire(f.slot);
        }
        self.open.retain(|f| !f.finished);
        let n = self.open.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let f = &mut self.open[i];
            if f.orphan {
                continue;
            }
            // A file rewritten in place must not be read on from the old offset: that gives a
            // torn line and then the new content's tail. Check before reading, and again after
            // (a rewrite between the two voids what was read).
            if f.replaced_in_place(&source.checkpoints)? {
                self.truncated.increment(1);
                info!(source = %source.config.name, path = %f.path.display(), "file truncated or rewritten; reading from its start");
            }
            f.read(&source.checkpoints, want, false, &mut raw)?;
            if !raw.is_empty() && f.replaced_in_place(&source.checkpoints)? {
                raw.clear();
                self.truncated.increment(1);
                info!(source = %source.config.name, path = %f.path.display(), "file rewritten while read; reading from its start");
                f.read(&source.checkpoints, want, false, &mut raw)?;
            }
            if !raw.is_empty() {
                self.next = i + 1;
                return Ok(self.emit(source, raw));
            }
        }
        self.maintain(source)?;
        Ok(Step::Idle)
    }

    /// Following, with nothing to read: notice rotation and new files.
    fn maintain<F>(&mut self, source: &FileSource<F>) -> Result<(), FileError> {
        let ck = &source.checkpoints;
        let found = source.config.input.discover()?;
        for f in &mut self.open {
            let at = found.iter().find(|x| x.dev == f.dev && x.ino == f.ino);
            match at {
                Some(x) => f.path = x.path.as_path().into(),
                None if !f.orphan => {
                    f.orphan = true;
                    self.rotated.increment(1);
                    info!(source = %source.config.name, path = %f.path.display(), "file rotated away; finishing it");
                }
                None => {}
            }
        }
        for x in found {
            if !self.open.iter().any(|f| f.dev == x.dev && f.ino == x.ino)
                && let Some(f) = OpenFile::open(&x, ck)?
            {
                info!(source = %source.config.name, path = %f.path.display(), line = f.line, "following new file");
                self.open.push(f);
            }
        }
        Ok(())
    }

    /// Turns raw lines into messages, counting what was read.
    fn emit<F: LineFormat>(&mut self, source: &FileSource<F>, raw: Vec<RawLine>) -> Step<F::Item> {
        let ck = &source.checkpoints;
        let acker: Arc<dyn Acknowledger> = ck.clone();
        let format = &source.config.format;
        let mut out = Vec::with_capacity(raw.len());
        let mut bytes = 0;
        let mut last: Option<(u32, u64)> = None;
        for mut l in raw {
            bytes += l.end - l.start;
            if last.is_some_and(|(s, _)| s != l.slot) {
                let (s, line) = last.expect("checked");
                ck.emitted(s, line);
            }
            last = Some((l.slot, l.line));
            strip_line_ending(&mut l.bytes);
            if format.skip(&l.bytes) {
                ck.skipped(l.slot, l.line, l.end);
                continue;
            }
            let mut m = match format.decode(l.bytes) {
                Ok(item) => Message::with_acker(item, acker.clone(), checkpoint::token(l.slot, l.line, l.end)),
                Err((item, reason)) => {
                    self.decode_failures.increment(1);
                    let mut m = Message::with_acker(item, acker.clone(), checkpoint::token(l.slot, l.line, l.end));
                    m.fail(format_args!("line {}: {reason}", l.line));
                    m
                }
            };
            if source.config.metadata {
                m.put_origin(FileMetadata {
                    path: l.path,
                    line: l.line,
                    offset: l.start,
                });
            }
            out.push(m);
        }
        if let Some((s, line)) = last {
            ck.emitted(s, line);
        }
        self.lines_read.increment(out.len() as u64);
        self.bytes_read.increment(bytes);
        Step::Lines(out)
    }
}

/// A line as read, before decoding.
struct RawLine {
    bytes: Vec<u8>,
    slot: u32,
    path: Arc<Path>,
    line: u64,
    start: u64,
    end: u64,
}

impl OpenFile {
    /// Opens a discovered file where its checkpoint says; `None` if it vanished meanwhile.
    fn open(found: &Found, ck: &Checkpoints) -> Result<Option<OpenFile>, FileError> {
        let file = match File::open(&found.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FileError::io(&found.path, "open")(e)),
        };
        let meta = file.metadata().map_err(FileError::io(&found.path, "stat"))?;
        let head = read_head(&file).map_err(FileError::io(&found.path, "read"))?;
        let resume = ck.attach(&found.path, meta.dev(), meta.ino(), &head, meta.len());
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        reader
            .seek(SeekFrom::Start(resume.offset))
            .map_err(FileError::io(&found.path, "seek"))?;
        Ok(Some(OpenFile {
            slot: resume.slot,
            path: ck.slot_path(resume.slot).unwrap_or_else(|| found.path.as_path().into()),
            reader,
            dev: meta.dev(),
            ino: meta.ino(),
            id: FileId::new(meta.dev(), meta.ino(), &head),
            offset: resume.offset,
            line: resume.line,
            partial: Vec::new(),
            orphan: false,
            finished: false,
        }))
    }

    /// Reads up to `max` lines into `out`; returns whether the end of the file was reached.
    /// At the end, an unterminated last line is a line when `last` (the file will not grow),
    /// and otherwise waits for the rest of it.
    fn read(&mut self, ck: &Checkpoints, max: usize, last: bool, out: &mut Vec<RawLine>) -> Result<bool, FileError> {
        let start_len = out.len();
        let mut eof = false;
        while out.len() - start_len < max {
            let n = self
                .reader
                .read_until(b'\n', &mut self.partial)
                .map_err(FileError::io(&self.path, "read"))?;
            if n == 0 || self.partial.last() != Some(&b'\n') {
                eof = true;
                // An unterminated last line counts only when the file is final.
                if !last || self.partial.is_empty() {
                    break;
                }
            }
            let bytes = self.partial.as_slice().to_vec();
            self.partial.clear();
            let start = self.offset;
            self.offset += bytes.len() as u64;
            self.line += 1;
            out.push(RawLine {
                bytes,
                slot: self.slot,
                path: self.path.clone(),
                line: self.line,
                start,
                end: self.offset,
            });
            if eof {
                break;
            }
        }
        if (self.id.fp_len as usize) < FINGERPRINT_BYTES && self.offset > self.id.fp_len as u64 {
            // Grown past a short fingerprint: lengthen it, so the checkpoint row cannot match
            // another file that later reuses the inode.
            let head = read_head(self.reader.get_ref()).map_err(FileError::io(&self.path, "read"))?;
            if self.id.matches(self.dev, self.ino, &head) {
                self.id = FileId::new(self.dev, self.ino, &head);
                ck.refine(self.slot, &head);
            }
        }
        Ok(eof)
    }

    /// Whether the file was truncated (shorter than what was read) or rewritten (its first
    /// bytes changed) in place; if so, it restarts from its beginning under a new slot.
    fn replaced_in_place(&mut self, ck: &Checkpoints) -> Result<bool, FileError> {
        let file = self.reader.get_ref();
        let size = file.metadata().map_err(FileError::io(&self.path, "stat"))?.len();
        let head = read_head(file).map_err(FileError::io(&self.path, "read"))?;
        if size >= self.offset + self.partial.len() as u64 && self.id.matches(self.dev, self.ino, &head) {
            return Ok(false);
        }
        self.id = FileId::new(self.dev, self.ino, &head);
        self.slot = ck.restart(self.slot, &self.path, self.id);
        self.reader
            .seek(SeekFrom::Start(0))
            .map_err(FileError::io(&self.path, "seek"))?;
        self.offset = 0;
        self.line = 0;
        self.partial.clear();
        Ok(true)
    }
}

/// The first bytes of a file, which with its inode identify it.
fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut head = vec![0; FINGERPRINT_BYTES];
    let mut n = 0;
    while n < head.len() {
        match file.read_at(&mut head[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    Ok(head)
}
