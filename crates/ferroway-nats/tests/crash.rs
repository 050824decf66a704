//! Kill -9 and SIGTERM crash tests: a pipeline process consuming a JetStream stream through
//! a durable consumer is stopped at seeded random moments and restarted; every message must
//! be processed at least once, and nothing may stay unacknowledged at the end.

mod support;

use std::path::PathBuf;
use std::process::Command;

use ferroway_testkit::{BoxError, CrashTest, Finish, Stop, Subject, count_lines, read_id_lines};
use support::{client, consumer_state, publish_range, stream, unique, url};

/// In flight at most: the pipeline's demand (pulls never ask for more): processors 2 × 50,
/// the batcher 100, batch processors 2 × 2 × 50.
const IN_FLIGHT: u64 = 400;

struct Stream {
    stream: String,
    out: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Stream {
    fn new(name: &str) -> Self {
        let stream_name = unique(name);
        let out = std::env::temp_dir().join(format!("{stream_name}.out"));
        let _ = std::fs::remove_file(&out);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { stream(&client().await, &stream_name).await });
        Stream {
            stream: stream_name,
            out,
            runtime,
        }
    }

    fn left(&self) -> (u64, usize) {
        self.runtime
            .block_on(async { consumer_state(&client().await, &self.stream, "crash").await })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.runtime
            .block_on(async { support::delete_stream(&client().await, &self.stream).await });
        let _ = std::fs::remove_file(&self.out);
    }
}

impl Subject for Stream {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferroway-nats-crash-child"));
        c.arg(url()).arg(&self.stream).arg("crash").arg(&self.out);
        c
    }

    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        let subject = format!("{}.n", self.stream);
        self.runtime
            .block_on(async { publish_range(&client().await, &subject, 1, n + 1).await });
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
fn killed_with_sigkill_and_restarted_every_message_is_processed_and_all_are_acked() {
    let mut subject = Stream::new("crash-kill");
    let report = CrashTest::new("nats-sigkill")
        .messages(20_000)
        .kills(5)
        .stop(Stop::Kill)
        .finish(Finish::WhenComplete)
        .max_duplicates(5 * IN_FLIGHT)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(subject.left(), (0, 0), "the final graceful stop acked everything");
}

#[test]
fn stopped_with_sigterm_and_restarted_there_are_no_duplicates() {
    let mut subject = Stream::new("crash-term");
    let report = CrashTest::new("nats-sigterm")
        .messages(20_000)
        .kills(4)
        .stop(Stop::Terminate)
        .finish(Finish::WhenComplete)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.duplicates, 0);
    assert_eq!(subject.left(), (0, 0));
}
