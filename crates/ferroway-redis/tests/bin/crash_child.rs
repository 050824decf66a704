//! The pipeline the crash tests kill: a Redis source -> a batch handler appending each entry's
//! `n` to a file and fsyncing it before the batch is acknowledged. SIGTERM drains gracefully.
//!
//! Usage: ferroway-redis-crash-child URL STREAM GROUP CONSUMER OUT_FILE [POISON DEAD_LETTERS]
//!
//! With POISON, handling entry `n == POISON` aborts the process (as a crash in a native
//! library would), entries delivered more than 3 times are dead-lettered, and dead letters
//! go to the file DEAD_LETTERS.

use std::io::Write;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::DeadLetterWriter;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway_redis::{ClaimOptions, Entry, RedisSource, SourceOptions};

struct Record {
    out: std::path::PathBuf,
    poison: Option<u64>,
}

impl Handler for Record {
    type Data = Entry;
    async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), BoxError> {
        let n = m.data().get_str("n").ok_or("entry without n")?.parse::<u64>()?;
        if Some(n) == self.poison {
            std::process::abort();
        }
        Ok(())
    }
    async fn handle_batch(&self, batch: &mut [Message<Entry>], _: &BatchInfo) -> Result<(), BoxError> {
        let mut out = String::new();
        for m in batch.iter() {
            out.push_str(m.data().get_str("n").unwrap_or("?"));
            out.push('\n');
        }
        let path = self.out.clone();
        // Durable before acknowledged: that is what makes the crash test's promise hold.
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            f.write_all(out.as_bytes())?;
            f.sync_data()
        })
        .await??;
        Ok(())
    }
}

/// A kill during a write can leave a partial last line; it was never acknowledged (its batch
/// comes again), so cut it off rather than let the next run append to it.
fn repair(path: &std::path::Path) -> std::io::Result<()> {
    let Ok(data) = std::fs::read(path) else { return Ok(()) };
    if data.last().is_some_and(|&b| b != b'\n') {
        let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(keep as u64)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, stream, group, consumer, out, poison) = match args.as_slice() {
        [url, stream, group, consumer, out] => (url, stream, group, consumer, out, None),
        [url, stream, group, consumer, out, poison, dead] => (url, stream, group, consumer, out, Some((poison, dead))),
        _ => return Err("usage: URL STREAM GROUP CONSUMER OUT_FILE [POISON DEAD_LETTERS]".into()),
    };
    let opts = SourceOptions::new(url.as_str(), group.as_str(), [stream.as_str()])
        .consumer(consumer.as_str())
        .block(Duration::from_millis(100))
        .claim(ClaimOptions {
            min_idle: Duration::from_secs(30),
            max_deliveries: if poison.is_some() { 3 } else { 5 },
            ..Default::default()
        });
    opts.validate()?;
    repair(std::path::Path::new(out))?;
    let handler = Record {
        out: out.into(),
        poison: poison.map(|(n, _)| n.parse()).transpose()?,
    };
    let mut pipeline = Pipeline::builder("crash-child", handler);
    if let Some((_, dead)) = poison {
        let sink = FileSink::open(dead, FileSinkOptions::new()).await?;
        // The record keeps the entry's `n` as its data.
        pipeline = pipeline.dead_letter(DeadLetterWriter::new(sink, |e: &Entry| {
            e.get("n").unwrap_or_default().to_vec()
        }));
    }
    let pipeline = pipeline
        .producer(move || RedisSource::new(opts.clone()).expect("validated"))
        .processors(Processors::new().concurrency(2).max_demand(100))
        .batcher(
            Batcher::new("file")
                .max_demand(100)
                .batch_size(50)
                .batch_timeout(Duration::from_millis(20))
                .concurrency(2),
        )
        .start()
        .await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!("ready");
    std::io::stdout().flush()?;
    term.recv().await;
    pipeline.stop().await?;
    Ok(())
}
