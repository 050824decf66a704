//! Kill -9 and SIGTERM crash tests: a pipeline process consuming an SQS queue (moto) is
//! stopped at seeded random moments and restarted; every message must be processed at least
//! once, and the queue must be empty at the end.
//!
//! moto scans its whole queue on every call, so the tests use hundreds of messages, not the
//! tens of thousands the Kafka and NATS ones use.

mod support;

use std::path::PathBuf;
use std::process::Command;

use ferroway_testkit::{BoxError, CrashTest, Finish, Stop, Subject, count_lines, read_id_lines};
use support::{client, counts, queue, send_range, unique};

/// In flight at most: the pipeline's demand (receives never ask for more): processors 2 × 10,
/// the batcher 20, batch processors 2 × 2 × 10, and one receive of ten.
const IN_FLIGHT: u64 = 90;

struct Queue {
    url: String,
    out: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Queue {
    fn new(name: &str) -> Self {
        let name = unique(name);
        let out = std::env::temp_dir().join(format!("{name}.out"));
        let _ = std::fs::remove_file(&out);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = runtime.block_on(async { queue(&client().await, &name, &[]).await });
        Queue { url, out, runtime }
    }

    fn left(&self) -> (u64, u64) {
        self.runtime
            .block_on(async { counts(&client().await, &self.url).await })
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.runtime
            .block_on(async { support::delete_queue(&client().await, &self.url).await });
        let _ = std::fs::remove_file(&self.out);
    }
}

impl Subject for Queue {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferroway-sqs-crash-child"));
        c.arg(&self.url).arg(&self.out);
        c
    }

    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        self.runtime
            .block_on(async { send_range(&client().await, &self.url, 1, n + 1).await });
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
fn killed_with_sigkill_and_restarted_every_message_is_processed_and_the_queue_ends_empty() {
    let mut subject = Queue::new("crash-kill");
    let report = CrashTest::new("sqs-sigkill")
        .messages(600)
        .kills(4)
        .stop(Stop::Kill)
        .finish(Finish::WhenComplete)
        .max_duplicates(4 * IN_FLIGHT)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(subject.left(), (0, 0), "the final graceful stop deleted everything");
}

#[test]
fn stopped_with_sigterm_and_restarted_there_are_no_duplicates() {
    let mut subject = Queue::new("crash-term");
    let report = CrashTest::new("sqs-sigterm")
        .messages(600)
        .kills(3)
        .stop(Stop::Terminate)
        .finish(Finish::WhenComplete)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.duplicates, 0);
    assert_eq!(subject.left(), (0, 0));
}
