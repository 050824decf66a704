//! `cli-file` and `cli-transform`: `ferroway run` of a pipeline file, in this process.
//!
//! - `cli-file`: the 200 MB NDJSON file of the `file` workload -> `type = "file"` source
//!   (checkpoints on) -> no steps -> `type = "file"` sink (batches of 4,000, 4 at once, each
//!   fsynced before acknowledgement). Baseline, in the same run: the same pipeline written
//!   with the library (file source as records -> `Forward` -> file sink, same options).
//! - `cli-transform`: the same file with one jq step mapping one field (`.id = .seq`);
//!   baseline: `cli-file`, in the same run. The ratio is what the transform costs.
//!
//! Checksum: every output holds every line (the transform's: each with `id` equal to its
//! `seq`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource};
use ferroway::connector::{Bytes, Record, Source};
use ferroway::pipeline::{Batcher, Forward, Pipeline, Processors};
use ferroway_cli::progress::Mode;
use ferroway_cli::registry::Registry;
use ferroway_cli::run::{RunOptions, run};

use crate::file::input;
use crate::report::Report;

const BATCH: usize = 4_000;
const BATCHES_AT_ONCE: usize = 4;
const PROCESSORS: usize = 2;

/// The library's pipeline: what a user writes in Rust for the same job.
async fn library(input: &Path, dir: &Path) -> Result<(f64, PathBuf), BoxError> {
    let out = fresh(dir, "library");
    let started = Instant::now();
    let source = FileSource::builder(input)
        .format(Bytes)
        .checkpoint_dir(dir.join("library-state"))
        .open()?
        .map(Record::from);
    let sink = FileSink::open(&out, FileSinkOptions::new()).await?;
    Pipeline::builder("library", Forward::new())
        .source(source)
        .processors(Processors::new().concurrency(PROCESSORS))
        .sink(
            sink,
            Batcher::new("out")
                .batch_size(BATCH)
                .batch_timeout(Duration::from_millis(100))
                .concurrency(BATCHES_AT_ONCE),
        )
        .start()
        .await?
        .join()
        .await?;
    Ok((started.elapsed().as_secs_f64(), out))
}

/// `ferroway run` of a file holding `steps`.
async fn cli(input: &Path, dir: &Path, name: &str, steps: &str) -> Result<(f64, PathBuf), BoxError> {
    let out = fresh(dir, name);
    let config = dir.join(format!("{name}.toml"));
    fs::write(
        &config,
        format!(
            r#"
[sources.in]
type = "file"
path = "{input}"
checkpoint_dir = "{state}"

[processors]
concurrency = {PROCESSORS}

{steps}

[sinks.out]
type = "file"
path = "{out}"
batch_size = {BATCH}
batch_timeout = "100ms"
concurrency = {BATCHES_AT_ONCE}
"#,
            input = input.display(),
            state = dir.join(format!("{name}-state")).display(),
            out = out.display(),
        ),
    )?;
    let started = Instant::now();
    let options = RunOptions {
        progress: Mode::Off,
        metrics: None,
    };
    run(&[config], &Registry::with_compiled_in(), options).await?;
    Ok((started.elapsed().as_secs_f64(), out))
}

/// An output path with nothing at it, nor a checkpoint from an earlier run.
fn fresh(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}-out.ndjson"));
    let _ = fs::remove_file(&out);
    let _ = fs::remove_dir_all(dir.join(format!("{name}-state")));
    out
}

/// Lines of `path`; with `mapped`, only those whose `id` is their `seq`.
fn count(path: &Path, mapped: bool) -> std::io::Result<u64> {
    let mut n = 0;
    for line in BufReader::with_capacity(1 << 20, fs::File::open(path)?).lines() {
        let line = line?;
        if mapped {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            if v["id"] != v["seq"] || v["id"].is_null() {
                continue;
            }
        }
        n += 1;
    }
    Ok(n)
}

fn setup() -> (PathBuf, PathBuf, u64) {
    let dir = std::env::temp_dir().join("ferroway-bench-file");
    fs::create_dir_all(&dir).expect("bench dir");
    let (input, lines) = input(&dir).expect("input file");
    (dir, input, lines)
}

pub async fn run_file() -> Report {
    let (dir, input, lines) = setup();
    eprintln!("cli-file: library pipeline ...");
    let (lib_s, lib_out) = library(&input, &dir).await.expect("library pipeline");
    eprintln!("cli-file: ferroway run ...");
    let (s, out) = cli(&input, &dir, "cli", "").await.expect("ferroway run");
    let ok = count(&lib_out, false).ok() == Some(lines) && count(&out, false).ok() == Some(lines);
    let mut r = Report::new("cli-file", "messages", lines, s);
    r.baseline_per_sec = Some(lines as f64 / lib_s);
    r.checksum_ok = Some(ok);
    r.extra
        .insert("baseline".into(), "the same pipeline written with the library".into());
    let _ = fs::remove_file(lib_out);
    let _ = fs::remove_file(out);
    r
}

pub async fn run_transform() -> Report {
    let (dir, input, lines) = setup();
    eprintln!("cli-transform: ferroway run, no steps ...");
    let (plain_s, plain_out) = cli(&input, &dir, "cli", "").await.expect("ferroway run");
    eprintln!("cli-transform: ferroway run, one jq mapping ...");
    let (s, out) = cli(&input, &dir, "cli-jq", "[[steps]]\nmap = '.id = .seq'\n")
        .await
        .expect("ferroway run");
    let ok = count(&plain_out, false).ok() == Some(lines) && count(&out, true).ok() == Some(lines);
    let mut r = Report::new("cli-transform", "messages", lines, s);
    r.baseline_per_sec = Some(lines as f64 / plain_s);
    r.checksum_ok = Some(ok);
    r.extra.insert("language".into(), "jq (jaq)".into());
    r.extra.insert("transform".into(), ".id = .seq".into());
    r.extra
        .insert("baseline".into(), "cli-file: the same file with no step".into());
    let _ = fs::remove_file(plain_out);
    let _ = fs::remove_file(out);
    r
}
