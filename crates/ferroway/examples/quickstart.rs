//! A file pipeline end to end: NDJSON events (a few malformed on purpose) -> parse, filter,
//! enrich -> batches -> a file sink, durable before each batch is acknowledged; failures go to
//! a dead-letter file; a checkpoint lets a second run skip what the first one did.
//!
//! ```text
//! cargo run --release -p ferroway --example quickstart [EVENTS]      # default 500,000 events
//! ```
//!
//! Shows a live one-line progress display on a terminal (plain lines otherwise) and a summary.
//! Logs go to stderr (`RUST_LOG=debug` for more); Ctrl-C drains and stops early.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::connector::DeadLetterWriter;
use ferroway::connector::Sink;
use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource, Rotation};
use ferroway::pipeline::{BatchInfo, Batcher, BoxFuture, Handler, Message, Pipeline, Processors};
use serde_json::{Value, json};

#[derive(Default)]
struct Counts {
    handled: AtomicU64,
    filtered: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
}

struct Enrich {
    out: FileSink,
    counts: Arc<Counts>,
}

impl Handler for Enrich {
    type Data = Value;

    async fn handle_message(&self, m: &mut Message<Value>) -> Result<(), BoxError> {
        self.counts.handled.fetch_add(1, Ordering::Relaxed);
        // Filter: page views are not interesting here (acknowledged, not written).
        if m.data()["kind"] == "view" {
            self.counts.filtered.fetch_add(1, Ordering::Relaxed);
            m.discard();
            return Ok(());
        }
        let cents = m.data()["amount_cents"].as_u64().ok_or("no `amount_cents`")?;
        // Enrich: a derived field and a tier.
        let tier = match cents {
            0..1_000 => "small",
            1_000..10_000 => "medium",
            _ => "large",
        };
        let event = m.data_mut();
        event["amount"] = json!(cents as f64 / 100.0);
        event["tier"] = json!(tier);
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<Value>], _: &BatchInfo) -> Result<(), BoxError> {
        let mut buf = Vec::with_capacity(batch.len() * 128);
        for m in batch.iter() {
            serde_json::to_writer(&mut buf, m.data())?;
            buf.push(b'\n');
        }
        // Durable before this returns: only then is the batch acknowledged and the source's
        // checkpoint allowed past it.
        self.out.write_bytes(buf).await?;
        self.counts.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn handle_failed(&self, messages: &mut [Message<Value>]) {
        self.counts.failed.fetch_add(messages.len() as u64, Ordering::Relaxed);
    }
}

/// Counts what the dead-letter file took.
struct Counted<S>(S, Arc<Counts>);

impl<S: Sink<Value>> Sink<Value> for Counted<S> {
    fn write<'a>(&'a self, messages: &'a mut [Message<Value>]) -> BoxFuture<'a, Result<(), BoxError>> {
        let n = messages.len() as u64;
        Box::pin(async move {
            self.0.write(messages).await?;
            self.1.dead_lettered.fetch_add(n, Ordering::Relaxed);
            Ok(())
        })
    }
}

/// The sample: `n` events, every 9,973rd line malformed.
fn generate(path: &Path, n: u64) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let kinds = ["view", "click", "purchase", "view", "signup"];
    for i in 1..=n {
        if i % 9_973 == 0 {
            writeln!(w, "{{\"id\":{i},\"kind\":\"purchase\",\"amount_cents\":")?;
            continue;
        }
        let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let kind = kinds[(h % 5) as usize];
        writeln!(
            w,
            "{{\"id\":{i},\"user\":\"user-{}\",\"kind\":\"{kind}\",\"amount_cents\":{}}}",
            h % 1_000,
            h % 25_000
        )?;
    }
    w.flush()
}

fn progress_line(source: &FileSource<ferroway::connector::Ndjson>, c: &Counts, started: Instant) -> String {
    let read: u64 = source.positions().iter().map(|p| p.emitted_line).sum();
    let acked: u64 = source.positions().iter().map(|p| p.acked_line).sum();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    format!(
        "read {read:>9} · acked {acked:>9} · written {:>9} · filtered {:>8} · failed {:>4} · dead-lettered {:>4} · {:>9.0} msg/s",
        c.written.load(Ordering::Relaxed),
        c.filtered.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        c.dead_lettered.load(Ordering::Relaxed),
        c.handled.load(Ordering::Relaxed) as f64 / secs,
    )
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let n: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|e| format!("EVENTS must be a number: {e}"))?,
        None => 500_000,
    };
    let dir = std::env::temp_dir().join(format!("ferroway-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("events.ndjson");
    generate(&input, n)?;
    eprintln!("sample: {} ({n} events)", input.display());

    let counts = Arc::new(Counts::default());
    let out = FileSink::open(
        dir.join("enriched.ndjson"),
        FileSinkOptions::new().rotation(Rotation::max_bytes(64 << 20)),
    )
    .await?;
    let dead = FileSink::open(dir.join("dead-letters.ndjson"), FileSinkOptions::new()).await?;
    // A malformed line carries its raw text as a JSON string: keep it as it was read.
    let dead = DeadLetterWriter::new(dead, |v: &Value| match v {
        Value::String(raw) => raw.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    });
    let source = FileSource::builder(&input)
        .ndjson()
        .checkpoint_dir(dir.join("checkpoints"))
        .name("events")
        .open()?;

    let started = Instant::now();
    let factory = source.clone();
    let pipeline = Pipeline::builder(
        "events",
        Enrich {
            out,
            counts: counts.clone(),
        },
    )
    .producer(move || factory.producer())
    .processors(Processors::new().concurrency(2))
    .batcher(
        Batcher::new("enriched")
            .batch_size(2_000)
            .batch_timeout(Duration::from_millis(100))
            .concurrency(2),
    )
    .dead_letter(Counted(dead, counts.clone()))
    .start()
    .await?;

    let tty = std::io::stderr().is_terminal();
    let (display_source, display_counts) = (source.clone(), counts.clone());
    let display = tokio::spawn(async move {
        let every = if tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        loop {
            tokio::time::sleep(every).await;
            let line = progress_line(&display_source, &display_counts, started);
            if tty {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
    });
    // Runs until the file is done (or Ctrl-C drains it early). Once drained, the pipeline
    // flushes the source's acknowledger: the checkpoint is written.
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    display.abort();
    let elapsed = started.elapsed();
    if tty {
        eprintln!("\r{}", progress_line(&source, &counts, started));
    }

    let acked: u64 = source.positions().iter().map(|p| p.acked_line).sum();
    let c = &*counts;
    println!("summary");
    println!("  messages in      {n}");
    println!("  acked            {acked} (checkpoint: every line, in order)");
    println!("  written          {}", c.written.load(Ordering::Relaxed));
    println!("  filtered         {}", c.filtered.load(Ordering::Relaxed));
    println!("  failed           {}", c.failed.load(Ordering::Relaxed));
    println!("  dead-lettered    {}", c.dead_lettered.load(Ordering::Relaxed));
    println!("  elapsed          {elapsed:.2?}");
    println!("  throughput       {:.0} msg/s", n as f64 / elapsed.as_secs_f64());
    println!("  output           {}", dir.display());

    // Run again: the checkpoint says everything is done, so nothing is read.
    let again = FileSource::builder(&input)
        .ndjson()
        .checkpoint_dir(dir.join("checkpoints"))
        .name("events")
        .open()?;
    let mut p = again.producer();
    let rest = match ferroway::stage::Producer::handle_demand(&mut p, 10).await? {
        ferroway::stage::Emit::Events(v) | ferroway::stage::Emit::Done(v) => v.len(),
    };
    println!("  a second run reads {rest} lines (resumes from the checkpoint)");
    Ok(())
}
