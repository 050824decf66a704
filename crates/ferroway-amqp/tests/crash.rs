//! Kill -9 and SIGTERM crash tests: a pipeline process consuming a RabbitMQ queue is stopped at
//! seeded random moments and restarted; every message must be processed at least once, and
//! the queue must be empty at the end.

mod support;

use std::path::PathBuf;
use std::process::Command;

use ferroway_testkit::{BoxError, CrashTest, Finish, Stop, Subject, count_lines, read_id_lines};
use support::{Rabbit, unique, uri};

/// In flight at most: the prefetch (200) — everything the broker sent and the child did not
/// ack is redelivered after a kill.
const IN_FLIGHT: u64 = 200;

struct Queue {
    queue: String,
    out: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Queue {
    fn new(name: &str) -> Self {
        let queue = unique(name);
        let out = std::env::temp_dir().join(format!("{queue}.out"));
        let _ = std::fs::remove_file(&out);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { Rabbit::new().await.queue(&queue).await });
        Queue { queue, out, runtime }
    }

    /// Ready and unacknowledged messages: 0 once everything was acked.
    fn left(&self) -> u32 {
        self.runtime
            .block_on(async { Rabbit::new().await.ready(&self.queue).await })
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.runtime
            .block_on(async { Rabbit::new().await.delete(&self.queue).await });
        let _ = std::fs::remove_file(&self.out);
    }
}

impl Subject for Queue {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferroway-amqp-crash-child"));
        c.arg(uri()).arg(&self.queue).arg(&self.out);
        c
    }

    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        self.runtime
            .block_on(async { Rabbit::new().await.publish_range(&self.queue, 1, n + 1).await });
        Ok(())
    }

    fn record(&mut self) -> Result<Vec<u64>, BoxError> {
        read_id_lines(&self.out)
    }

    fn progress(&mut self) -> Result<u64, BoxError> {
        count_lines(&self.out)
    }
}

#[test]
fn killed_with_sigkill_and_restarted_every_message_is_processed_and_the_queue_is_empty() {
    let mut subject = Queue::new("crash-kill");
    let report = CrashTest::new("amqp-sigkill")
        .messages(20_000)
        .kills(5)
        .stop(Stop::Kill)
        .finish(Finish::WhenComplete)
        .max_duplicates(5 * IN_FLIGHT)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(subject.left(), 0, "the final graceful stop acked everything");
}

#[test]
fn stopped_with_sigterm_and_restarted_there_are_no_duplicates() {
    let mut subject = Queue::new("crash-term");
    let report = CrashTest::new("amqp-sigterm")
        .messages(20_000)
        .kills(4)
        .stop(Stop::Terminate)
        .finish(Finish::WhenComplete)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.duplicates, 0);
    assert_eq!(subject.left(), 0);
}
