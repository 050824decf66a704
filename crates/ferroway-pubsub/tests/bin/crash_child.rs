//! The pipeline the crash tests kill: a Pub/Sub subscription (data are decimal numbers) ->
//! a file sink appending each message's data as a line, fsynced before the batch is
//! acknowledged. SIGTERM drains gracefully.
//!
//! Usage: ferroway-pubsub-crash-child EMULATOR_HOST SUBSCRIPTION OUT_FILE
//! (SUBSCRIPTION: projects/<project>/subscriptions/<id>)

use std::io::Write;
use std::time::Duration;

use ferroway::connector::file::{FileSink, FileSinkOptions};
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Pipeline, Processors};
use ferroway_pubsub::{ClientOptions, PubSubOptions, PubSubSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [emulator, subscription, out] = args.as_slice() else {
        return Err("usage: EMULATOR_HOST SUBSCRIPTION OUT_FILE".into());
    };
    // The shortest ack deadline: what a kill left unacknowledged comes back within seconds.
    let client = ClientOptions::default().emulator_host(emulator.as_str());
    let opts = PubSubOptions::new(client, subscription.as_str())
        .ack_deadline(Duration::from_secs(10))
        .extend_before(Duration::from_secs(3))
        .max_outstanding_messages(200);
    let source = PubSubSource::factory(opts)?.map(|m| Record::new(m.data));
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
