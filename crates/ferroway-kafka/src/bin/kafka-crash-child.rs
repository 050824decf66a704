//! Crash-test child for the kill -9 test: `kafka-crash-child BOOTSTRAP TOPIC GROUP OUT`.
//!
//! Consumes TOPIC as a member of GROUP and appends each message's payload as one line to the
//! file OUT, written and fsynced before the message is acknowledged — the durable record the
//! test checks after killing this process with SIGKILL at random moments. Runs until killed,
//! or drains and exits on SIGTERM.
//! `CRASH_CHILD_BATCH_DELAY_MS` slows each batch down (default 0) so kills land mid-stream.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway_kafka::{Connection, KafkaSource, KafkaSourceOptions};

struct Durable {
    file: Mutex<File>,
    delay: Duration,
}

impl Handler for Durable {
    type Data = Vec<u8>;

    async fn handle_message(&self, _: &mut Message<Vec<u8>>) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<Vec<u8>>], _: &BatchInfo) -> Result<(), BoxError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let mut buf = Vec::with_capacity(batch.len() * 8);
        for m in batch.iter() {
            buf.extend_from_slice(m.data());
            buf.push(b'\n');
        }
        let mut f = self.file.lock().map_err(|_| "poisoned")?;
        f.write_all(&buf)?;
        f.sync_data()?;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, topic, group, out] = args.as_slice() else {
        eprintln!("usage: kafka-crash-child BOOTSTRAP TOPIC GROUP OUT");
        std::process::exit(2);
    };
    let delay = std::env::var("CRASH_CHILD_BATCH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis);
    let file = OpenOptions::new().create(true).append(true).open(out)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let source = KafkaSource::factory(
            KafkaSourceOptions::new(Connection::new(bootstrap.as_str()), group.as_str(), [topic.as_str()])
                .commit_interval(Duration::from_millis(100))
                .session_timeout(Duration::from_secs(6))
                .heartbeat_interval(Duration::from_millis(500))
                .prefetch(100),
        )?;
        let handler = Durable {
            file: Mutex::new(file),
            delay,
        };
        let pipeline = Pipeline::builder("crash-child", handler)
            .source(source)
            .partition_by(ferroway_kafka::partition_key)
            .processors(Processors::new().concurrency(2).max_demand(50))
            .batcher(
                Batcher::new("default")
                    .batch_size(20)
                    .batch_timeout(Duration::from_millis(20))
                    .concurrency(2),
            )
            .start()
            .await?;
        // The crash harness waits for this line; SIGTERM drains gracefully (commits all).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        println!("ready");
        std::io::stdout().flush()?;
        let drainer = pipeline.drainer();
        tokio::spawn(async move {
            term.recv().await;
            drainer.drain();
        });
        pipeline.join().await?;
        Ok(())
    })
}
