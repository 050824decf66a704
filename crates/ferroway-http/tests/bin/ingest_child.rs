//! The pipeline the ingest crash tests kill and restart: an ingest server on a fixed address
//! into a file, fsynced before each batch is acknowledged (so before each `200`).

use std::io::Write;
use std::time::Duration;

use ferroway::connector::Record;
use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::pipeline::{Batcher, Forward, Pipeline, Processors};
use ferroway_http::ingest::{IngestOptions, IngestSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, out] = args.as_slice() else {
        return Err("usage: LISTEN_ADDR OUT_FILE".into());
    };
    let source = IngestSource::bind(IngestOptions::new(listen.as_str()))?;
    // A line torn by a kill is cut when the file opens again.
    let sink = FileSink::open(out, FileSinkOptions::new()).await?;
    let pipeline = Pipeline::builder("ingest-child", Forward::<Record>::new())
        .source(source)
        .processors(Processors::new().concurrency(2).max_demand(10))
        .sink(
            sink,
            Batcher::new("file")
                .max_demand(20)
                .batch_size(10)
                .batch_timeout(Duration::from_millis(20)),
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
