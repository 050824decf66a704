//! The pipeline the crash tests kill: an SQS queue (bodies are decimal numbers) -> a file
//! sink appending each body as a line, fsynced before the batch is acknowledged (the
//! messages deleted). SIGTERM drains gracefully.
//!
//! Usage: ferroway-sqs-crash-child QUEUE_URL OUT_FILE

use std::io::Write;
use std::time::Duration;

use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Pipeline, Processors};
use ferroway_sqs::{Credentials, SqsOptions, SqsSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, out] = args.as_slice() else {
        return Err("usage: QUEUE_URL OUT_FILE".into());
    };
    // A short visibility timeout: what a kill left undeleted comes back within seconds.
    let opts = SqsOptions::new(url.as_str())
        .region("us-east-1")
        .credentials(Credentials::new("test", "test"))
        .wait_time(Duration::from_secs(1))
        .visibility_timeout(Duration::from_secs(3))
        .extend_before(Duration::from_secs(1));
    let source = SqsSource::factory(opts)?.map(|m| Record::new(m.body));
    // fsynced before the batch is acknowledged: what makes the crash test's promise hold. A
    // line torn by a kill is cut when it opens (`repair_torn_tail`, on by default).
    let sink = FileSink::open(out, FileSinkOptions::new()).await?;
    let pipeline = Pipeline::builder("crash-child", Forward::<Record>::new())
        .source(source)
        .processors(Processors::new().concurrency(2).max_demand(10))
        .sink(
            sink,
            Batcher::new("file")
                .max_demand(20)
                .batch_size(10)
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
