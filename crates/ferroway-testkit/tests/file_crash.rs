//! Crash tests of the file source -> file sink pipeline (`src/bin/file-pipeline.rs`): killed
//! at random moments it loses nothing and repeats at most what was in flight; stopped with
//! SIGTERM it repeats nothing.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::Command;

use ferroway_testkit::{BoxError, CrashTest, Stop, Subject};

const MESSAGES: u64 = 200_000;
const FILES: u64 = 4;
/// The child's `--max-pending`: lines beyond the durable checkpoint, so what one kill can
/// make the pipeline deliver twice.
const MAX_PENDING: u64 = 2_000;

struct FilePipeline {
    dir: PathBuf,
}

impl FilePipeline {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ferroway-crash-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(dir.join("input")).unwrap();
        fs::create_dir_all(dir.join("output")).unwrap();
        FilePipeline { dir }
    }

    /// The sink's files — `out.ndjson` and its rotated predecessors — and their contents.
    /// A running child may rotate between listing and reading: then list again.
    fn read_outputs(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, BoxError> {
        'again: loop {
            let mut v = Vec::new();
            for e in fs::read_dir(self.dir.join("output"))? {
                let path = e?.path();
                match fs::read(&path) {
                    Ok(bytes) => v.push((path, bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'again,
                    Err(e) => return Err(format!("{}: {e}", path.display()).into()),
                }
            }
            return Ok(v);
        }
    }
}

impl Drop for FilePipeline {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Subject for FilePipeline {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_file-pipeline"));
        c.arg("--input")
            .arg(self.dir.join("input"))
            .arg("--output")
            .arg(self.dir.join("output/out.ndjson"))
            .arg("--checkpoints")
            .arg(self.dir.join("checkpoints"))
            .args(["--max-pending", &MAX_PENDING.to_string()])
            .args(["--batch-size", "200", "--rotate-bytes", "262144"]);
        c
    }

    /// Ids split over several files, read one after the other: checkpoints of finished,
    /// current and unread files all matter.
    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        let per_file = n.div_ceil(FILES);
        for f in 0..FILES {
            let path = self.dir.join(format!("input/part-{f}.ndjson"));
            let mut w = BufWriter::new(fs::File::create(path)?);
            for id in (f * per_file + 1)..=((f + 1) * per_file).min(n) {
                writeln!(w, "{{\"id\":{id},\"payload\":\"message number {id}\"}}")?;
            }
            w.flush()?;
        }
        Ok(())
    }

    fn record(&mut self) -> Result<Vec<u64>, BoxError> {
        let mut ids = Vec::new();
        for (path, text) in self.read_outputs()? {
            let text = String::from_utf8(text).map_err(|e| format!("{}: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let id = line
                    .strip_prefix("{\"id\":")
                    .and_then(|r| r.strip_suffix('}'))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("{}:{}: malformed line {line:?}", path.display(), i + 1))?;
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn progress(&mut self) -> Result<u64, BoxError> {
        let mut n = 0;
        for (_, bytes) in self.read_outputs()? {
            n += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        }
        Ok(n)
    }
}

#[test]
fn sigkill_loses_nothing_and_repeats_at_most_what_was_in_flight() {
    let kills = 6;
    let mut subject = FilePipeline::new("kill");
    let report = CrashTest::new("file-pipeline SIGKILL")
        .messages(MESSAGES)
        .kills(kills)
        .stop(Stop::Kill)
        .max_duplicates(kills as u64 * MAX_PENDING)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.kills, kills);
}

#[test]
fn sigterm_drains_and_repeats_nothing() {
    let mut subject = FilePipeline::new("term");
    let report = CrashTest::new("file-pipeline SIGTERM")
        .messages(MESSAGES)
        .kills(5)
        .stop(Stop::Terminate)
        .max_duplicates(0)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!((report.kills, report.duplicates), (5, 0));
}
