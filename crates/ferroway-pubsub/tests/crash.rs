//! Kill -9 and SIGTERM crash tests: a pipeline process consuming a Pub/Sub subscription (the
//! emulator) is stopped at seeded random moments and restarted; every message must be
//! processed at least once, and nothing may be left unacknowledged at the end.

mod support;

use std::path::PathBuf;
use std::process::Command;

use ferroway_testkit::{BoxError, CrashTest, Finish, Stop, Subject, count_lines, read_id_lines};
use gcloud_pubsub::subscription::SubscriptionConfig;
use support::{client, publish_range, topic_and_subscription, unique};

/// Outstanding at most per run: the child's `max_outstanding_messages`.
const OUTSTANDING: u64 = 200;

/// Kills before the final run, and how long a run may take.
///
/// The emulator never notices that a killed client's stream is gone (its gRPC server fails
/// to cancel the call): it goes on pulling for the dead stream, so each kill leaves a
/// stream that takes its turn at the subscription's messages and holds them an ack deadline
/// (10 s) at a time, again and again. With `k` such streams, a batch held by one reaches the
/// live stream with probability 1/(k+1) every 10 s: after 3 kills and 6 minutes, a batch is
/// still held with probability (3/4)^36 ≈ 3·10⁻⁵. (Google's service redelivers at the
/// deadline; a graceful stop half-closes its stream, which the emulator does notice.)
const KILLS: usize = 3;
const RUN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(360);

struct Subscription {
    topic: String,
    subscription: String,
    out: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Subscription {
    fn new(name: &str) -> Self {
        let name = unique(name);
        let out = std::env::temp_dir().join(format!("{name}.out"));
        let _ = std::fs::remove_file(&out);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (topic, subscription) = runtime
            .block_on(async { topic_and_subscription(&client().await, &name, SubscriptionConfig::default()).await });
        Subscription {
            topic,
            subscription,
            out,
            runtime,
        }
    }

    /// Messages still waiting (pulled and acknowledged to count them).
    fn left(&self) -> usize {
        self.runtime
            .block_on(async { support::drain(&client().await, &self.subscription).await.len() })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.runtime
            .block_on(async { support::delete(&client().await, &self.topic, &self.subscription).await });
        let _ = std::fs::remove_file(&self.out);
    }
}

impl Subject for Subscription {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferroway-pubsub-crash-child"));
        c.arg(support::emulator())
            .arg(format!(
                "projects/{}/subscriptions/{}",
                support::PROJECT,
                self.subscription
            ))
            .arg(&self.out);
        c
    }

    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        self.runtime
            .block_on(async { publish_range(&client().await, &self.topic, 1, n + 1).await });
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
fn killed_with_sigkill_and_restarted_every_message_is_processed_and_none_is_left() {
    let mut subject = Subscription::new("crash-kill");
    let report = CrashTest::new("pubsub-sigkill")
        .messages(5_000)
        .kills(KILLS)
        .stop(Stop::Kill)
        .finish(Finish::WhenComplete)
        .deadline(RUN_DEADLINE)
        .max_duplicates(KILLS as u64 * OUTSTANDING)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(subject.left(), 0, "the final graceful stop acknowledged everything");
}

#[test]
fn stopped_with_sigterm_and_restarted_there_are_no_duplicates() {
    let mut subject = Subscription::new("crash-term");
    let report = CrashTest::new("pubsub-sigterm")
        .messages(5_000)
        .kills(3)
        .stop(Stop::Terminate)
        .finish(Finish::WhenComplete)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.duplicates, 0);
    assert_eq!(subject.left(), 0);
}
