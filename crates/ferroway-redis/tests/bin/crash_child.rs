//! The pipeline the crash tests kill: a Redis source (records whose payload is the entry's `n`)
//! -> a file sink appending each payload as a line, fsynced before the batch is acknowledged.
//! SIGTERM drains gracefully.
//!
//! Usage: ferroway-redis-crash-child URL STREAM GROUP CONSUMER OUT_FILE [POISON DEAD_LETTERS]
//!
//! With POISON, handling entry `n == POISON` aborts the process (as a crash in a native
//! library would), entries delivered more than 3 times are dead-lettered, and dead letters
//! go to the file DEAD_LETTERS.

use std::io::Write;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::Record;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::pipeline::{Batcher, Handler, Message, Pipeline, Processors};
use ferroway_redis::{ClaimOptions, RedisSource, SourceOptions};

/// Passes every record on to the file sink, but aborts the process on the poison entry.
struct Poison(Option<u64>);

impl Handler for Poison {
    type Data = Record;
    async fn handle_message(&self, m: &mut Message<Record>) -> Result<(), BoxError> {
        let n: u64 = std::str::from_utf8(&m.data().payload)?.parse()?;
        if Some(n) == self.0 {
            std::process::abort();
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, stream, group, consumer, out, poison) = match args.as_slice() {
        [url, stream, group, consumer, out] => (url, stream, group, consumer, out, None),
        [url, stream, group, consumer, out, poison, dead] => (url, stream, group, consumer, out, Some((poison, dead))),
        _ => return Err("usage: URL STREAM GROUP CONSUMER OUT_FILE [POISON DEAD_LETTERS]".into()),
    };
    // The record's payload is the entry's `n`: the file gets one number per line.
    let opts = SourceOptions::new(url.as_str(), group.as_str(), [stream.as_str()])
        .consumer(consumer.as_str())
        .block(Duration::from_millis(100))
        .payload_field("n")
        .claim(ClaimOptions {
            min_idle: Duration::from_secs(30),
            max_deliveries: if poison.is_some() { 3 } else { 5 },
            ..Default::default()
        });
    let source = RedisSource::factory(opts)?.records();
    // fsynced before the batch is acknowledged: what makes the crash test's promise hold. A
    // line torn by a kill is cut when it opens (`repair_torn_tail`, on by default).
    let sink = FileSink::open(out, FileSinkOptions::new()).await?;
    let mut pipeline = Pipeline::builder("crash-child", Poison(poison.map(|(n, _)| n.parse()).transpose()?));
    if let Some((_, dead)) = poison {
        // Each dead letter a JSON record whose `data` is the entry's `n`.
        pipeline = pipeline.dead_letter(FileSink::open(dead, FileSinkOptions::new()).await?);
    }
    let pipeline = pipeline
        .source(source)
        .processors(Processors::new().concurrency(2).max_demand(100))
        .sink(
            sink,
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
