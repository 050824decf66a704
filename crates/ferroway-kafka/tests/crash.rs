//! Crash tests (ferroway-testkit): a pipeline process (Kafka source -> fsynced file) is
//! SIGKILLed — or SIGTERMed — at seeded random moments and restarted in the same group; every
//! message must be in the file at least once, with duplicates bounded by what can be
//! acknowledged but not yet committed at each kill, and none after graceful stops.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use ferroway_testkit::{BoxError, CrashTest, Finish, Stop, Subject, count_lines, read_id_lines};

const N: u64 = 3_000;
/// Per kill: one commit interval of acknowledged messages (100 ms at about 400/s with the
/// batch delay below), plus the batches written but not yet acknowledged (2 x 20), with a wide
/// margin.
const DUPLICATES_PER_KILL: u64 = 250;

struct Topic {
    topic: String,
    group: String,
    out: PathBuf,
}

impl Topic {
    fn new(name: &str) -> Self {
        require_broker();
        let out = std::env::temp_dir().join(format!("{}.lines", unique(&format!("ferroway-kafka-{name}"))));
        Topic {
            topic: unique(name),
            group: unique(&format!("{name}-g")),
            out,
        }
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.out);
    }
}

impl Subject for Topic {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kafka-crash-child"));
        c.args([BROKER, &self.topic, &self.group])
            .arg(&self.out)
            .env("CRASH_CHILD_BATCH_DELAY_MS", "50");
        c
    }

    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            create_topic(&self.topic, 3).await;
            produce(&self.topic, 3, (1..=n).map(|i| i.to_string())).await;
        });
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
fn kill_9_at_random_moments_loses_nothing_and_bounds_duplicates() {
    let report = CrashTest::new("kafka-sigkill")
        .messages(N)
        .kills(3)
        .stop(Stop::Kill)
        .finish(Finish::WhenComplete)
        .max_duplicates(3 * DUPLICATES_PER_KILL)
        .run(&mut Topic::new("crash-kill"))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
}

#[test]
fn sigterm_drains_and_commits_so_restarts_see_no_duplicates() {
    let report = CrashTest::new("kafka-sigterm")
        .messages(N)
        .kills(2)
        .stop(Stop::Terminate)
        .finish(Finish::WhenComplete)
        .run(&mut Topic::new("crash-term"))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.duplicates, 0);
}
