//! `file`: a 200 MB NDJSON file (`{"seq":N,"name":"...","value":...}` lines, generated once
//! into the temp dir) -> file source (checkpoints on) -> 2 processors parse it with serde_json
//! and re-serialize it -> batcher (4,000 lines, 4 batch processors) -> file sink, each batch
//! fsynced (group commit) before it is acknowledged. The baseline, in the same run:
//! a bare loop with the same parse and the same serialization, `BufReader` -> `BufWriter`,
//! fsynced once at the end. Reports lines/s and input MB/s of both.
//!
//! Checksum: both outputs hold every line, byte for byte the same amount (serde_json's
//! objects keep keys sorted, so each line re-serializes identically in either order).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::connector::Bytes;
use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource};
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use serde_json::Value;

use crate::report::Report;

const TARGET_BYTES: u64 = 200_000_000;

/// The input file; generated once (deterministically) and kept for later runs.
pub(crate) fn input(dir: &Path) -> std::io::Result<(PathBuf, u64)> {
    let path = dir.join("input-200mb.ndjson");
    let count_lines = |p: &Path| -> std::io::Result<u64> {
        let mut n = 0;
        let mut r = BufReader::with_capacity(1 << 20, File::open(p)?);
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Ok(n);
            }
            n += buf.iter().filter(|&&b| b == b'\n').count() as u64;
            let len = buf.len();
            r.consume(len);
        }
    };
    if fs::metadata(&path).is_ok_and(|m| m.len() >= TARGET_BYTES) {
        return Ok((path.clone(), count_lines(&path)?));
    }
    eprintln!("generating {} ...", path.display());
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let (mut written, mut seq) = (0u64, 0u64);
    while written < TARGET_BYTES {
        seq += 1;
        // splitmix64 of seq: varied but reproducible values.
        let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let line = format!(
            "{{\"seq\":{seq},\"name\":\"user-{}\",\"value\":{}.{:02}}}\n",
            z % 10_000,
            (z >> 16) % 100_000,
            (z >> 40) % 100
        );
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    w.flush()?;
    drop(w);
    fs::rename(&tmp, &path)?;
    Ok((path, seq))
}

struct Reserialize(FileSink);

impl Handler for Reserialize {
    type Data = Vec<u8>;

    async fn handle_message(&self, m: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
        let v: Value = serde_json::from_slice(m.data())?;
        // The parsed value travels as its serialization: one buffer per message, written
        // as is by the batch.
        let mut out = Vec::with_capacity(m.data().len() + 1);
        serde_json::to_writer(&mut out, &v)?;
        out.push(b'\n');
        *m.data_mut() = out;
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<Vec<u8>>], _: &BatchInfo) -> Result<(), BoxError> {
        let mut buf = Vec::with_capacity(batch.iter().map(|m| m.data().len()).sum());
        for m in batch.iter() {
            buf.extend_from_slice(m.data());
        }
        // Durable before it returns: the batch is acknowledged only once on disk.
        self.0.write_bytes(buf).await?;
        Ok(())
    }
}

async fn pipeline(input: &Path, dir: &Path) -> Result<(f64, u64), BoxError> {
    let out = dir.join("pipeline-out.ndjson");
    let _ = fs::remove_file(&out);
    let _ = fs::remove_dir_all(dir.join("checkpoints"));
    let started = Instant::now();
    let source = FileSource::builder(input)
        .format(Bytes)
        .with_metadata(false)
        .checkpoint_dir(dir.join("checkpoints"))
        .name("bench")
        .open()?;
    let sink = FileSink::open(&out, FileSinkOptions::new()).await?;
    let factory = source.clone();
    let pipeline = Pipeline::builder("file-bench", Reserialize(sink.clone()))
        .producer(move || factory.producer())
        .processors(Processors::new().concurrency(2))
        .batcher(
            Batcher::new("out")
                .batch_size(4_000)
                .batch_timeout(Duration::from_millis(100))
                .concurrency(4)
                .max_demand(4_000),
        )
        .start()
        .await?;
    pipeline.join().await?;
    source.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    let acked: u64 = source.positions().iter().map(|p| p.acked_line).sum();
    let size = fs::metadata(&out)?.len();
    drop(sink);
    fs::remove_file(&out)?;
    if acked == 0 {
        return Err("nothing acknowledged".into());
    }
    Ok((seconds, size))
}

fn bare(input: &Path, dir: &Path) -> Result<(f64, u64, u64), BoxError> {
    let out = dir.join("bare-out.ndjson");
    let started = Instant::now();
    let mut r = BufReader::with_capacity(64 * 1024, File::open(input)?);
    let mut w = BufWriter::with_capacity(64 * 1024, File::create(&out)?);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let v: Value = serde_json::from_slice(&line)?;
        serde_json::to_writer(&mut w, &v)?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()?;
    w.get_ref().sync_data()?;
    let seconds = started.elapsed().as_secs_f64();
    let size = fs::metadata(&out)?.len();
    fs::remove_file(&out)?;
    Ok((seconds, n, size))
}

pub async fn run() -> Report {
    let dir = std::env::temp_dir().join("ferroway-bench-file");
    fs::create_dir_all(&dir).expect("bench dir");
    let (input, lines) = input(&dir).expect("input file");
    let mb = fs::metadata(&input).expect("input").len() as f64 / 1e6;
    let bare_dir = dir.clone();
    let bare_input = input.clone();
    eprintln!("file: bare loop ...");
    let (bare_s, bare_n, bare_size) = tokio::task::spawn_blocking(move || bare(&bare_input, &bare_dir))
        .await
        .expect("bare loop")
        .expect("bare loop");
    eprintln!("file: pipeline ...");
    let (s, size) = pipeline(&input, &dir).await.expect("pipeline");
    let mut r = Report::new("file", "messages", lines, s);
    r.baseline_per_sec = Some(bare_n as f64 / bare_s);
    r.checksum_ok = Some(bare_n == lines && size == bare_size);
    r.extra
        .insert("mb_per_sec".into(), (((mb / s) * 10.0).round() / 10.0).into());
    r.extra.insert(
        "baseline_mb_per_sec".into(),
        (((mb / bare_s) * 10.0).round() / 10.0).into(),
    );
    r.extra.insert("input_mb".into(), mb.round().into());
    r.extra
        .insert("sync".into(), "fsync per batch (group commit) before ack".into());
    r
}
