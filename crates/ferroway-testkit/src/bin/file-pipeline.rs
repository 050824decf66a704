//! The crash-test child for the file connectors: NDJSON files `{"id":N,...}` -> file source
//! (checkpointed) -> 2 processors (extract the id) -> batcher -> file sink (fsync before the
//! batch is acknowledged), writing `{"id":N}` lines.
//!
//! ```text
//! file-pipeline --input DIR|FILE|PATTERN --output FILE --checkpoints DIR
//!               [--max-pending LINES] [--batch-size N] [--rotate-bytes BYTES]
//! ```
//!
//! Prints `ready` once running. Exits 0 when the input is read and everything acknowledged,
//! or on SIGTERM after draining the pipeline and committing the checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::Ndjson;
use ferroway::connector::file::{FileProducer, FileSink, FileSinkOptions, FileSource, Rotation};
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway::stage::{Emit, Producer};
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

struct Args {
    input: PathBuf,
    output: PathBuf,
    checkpoints: PathBuf,
    max_pending: u64,
    batch_size: usize,
    rotate_bytes: u64,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut a = Args {
            input: PathBuf::new(),
            output: PathBuf::new(),
            checkpoints: PathBuf::new(),
            max_pending: 2_000,
            batch_size: 200,
            rotate_bytes: 1 << 20,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
            match flag.as_str() {
                "--input" => a.input = value.into(),
                "--output" => a.output = value.into(),
                "--checkpoints" => a.checkpoints = value.into(),
                "--max-pending" => a.max_pending = num(&value)?,
                "--batch-size" => a.batch_size = num(&value)? as usize,
                "--rotate-bytes" => a.rotate_bytes = num(&value)?,
                other => return Err(format!("unknown option {other}")),
            }
        }
        if a.input.as_os_str().is_empty() || a.output.as_os_str().is_empty() || a.checkpoints.as_os_str().is_empty() {
            return Err("--input, --output and --checkpoints are required".into());
        }
        Ok(a)
    }
}

struct CopyIds(FileSink);

impl Handler for CopyIds {
    type Data = Value;

    async fn handle_message(&self, m: &mut Message<Value>) -> Result<(), BoxError> {
        let id = m.data()["id"].as_u64().ok_or("no numeric `id`")?;
        *m.data_mut() = Value::from(id);
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<Value>], _: &BatchInfo) -> Result<(), BoxError> {
        let mut buf = Vec::with_capacity(batch.len() * 16);
        for m in batch.iter() {
            buf.extend_from_slice(format!("{{\"id\":{}}}\n", m.data()).as_bytes());
        }
        // fsynced before this returns, so before the batch is acknowledged.
        self.0.write_bytes(buf).await?;
        Ok(())
    }
}

/// Tells when the source has read everything: `Pipeline::join` takes the pipeline, so the
/// SIGTERM branch could no longer stop it; waiting for this instead keeps both open.
struct Finishing {
    inner: FileProducer<Ndjson>,
    done: Arc<Notify>,
}

impl Producer for Finishing {
    type Output = Message<Value>;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Value>>, BoxError> {
        let emit = self.inner.handle_demand(demand).await?;
        if let Emit::Done(_) = emit {
            self.done.notify_one();
        }
        Ok(emit)
    }
    fn prepare_for_draining(&mut self) -> impl Future<Output = Vec<Self::Output>> + Send {
        self.inner.prepare_for_draining()
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut term = signal(SignalKind::terminate())?;
    let source = FileSource::builder(&args.input)
        .ndjson()
        .name("crash")
        .checkpoint_dir(&args.checkpoints)
        .checkpoint_interval(Duration::from_millis(50))
        .max_pending_lines(args.max_pending)
        .with_metadata(false)
        .open()?;
    let sink = FileSink::open(
        &args.output,
        FileSinkOptions::new().rotation(Rotation::max_bytes(args.rotate_bytes)),
    )
    .await?;
    let done = Arc::new(Notify::new());
    let (factory, finished) = (source.clone(), done.clone());
    let pipeline = Pipeline::builder("file-pipeline", CopyIds(sink))
        .producer(move || Finishing {
            inner: factory.producer(),
            done: finished.clone(),
        })
        .processors(Processors::new().concurrency(2).max_demand(100))
        .batcher(
            Batcher::new("out")
                .batch_size(args.batch_size)
                .batch_timeout(Duration::from_millis(20))
                .concurrency(2),
        )
        .start()
        .await?;
    println!("ready");
    tokio::select! {
        _ = term.recv() => {
            pipeline.stop().await?;
        }
        _ = done.notified() => {
            pipeline.join().await?;
        }
    }
    // Drained, the pipeline already flushed the checkpoint (Acknowledger::flush), which only
    // logs a failure; this makes a failed write a failed exit.
    source.commit().await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    ferroway_testkit::child_main("file-pipeline", Args::parse(), run).await
}
