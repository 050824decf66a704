//! Kill -9 and SIGTERM crash tests: a pipeline process reading a Redis stream is stopped at
//! seeded random moments and restarted with the same consumer name; every entry must be
//! processed at least once, and the pending entries list must be empty at the end.

mod support;

use std::path::PathBuf;
use std::process::Command;

use ferroway_testkit::{BoxError, CrashTest, Finish, Stop, Subject, count_lines, read_id_lines};

/// In flight at most: processors 2 x 100, the batcher 2 x 100, batch processors 2 x 2 x 50.
const IN_FLIGHT: u64 = 600;

struct RedisStream {
    stream: String,
    group: String,
    out: PathBuf,
}

impl RedisStream {
    fn new(name: &str) -> Self {
        let stream = support::unique(name);
        let out = std::env::temp_dir().join(format!("{stream}.out"));
        let _ = std::fs::remove_file(&out);
        RedisStream {
            group: "crash".into(),
            stream,
            out,
        }
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(support::url())
            .unwrap()
            .get_connection()
            .unwrap_or_else(|e| {
                panic!(
                    "Redis is not reachable at {} ({e}). Start it with `bash scripts/services/redis.sh`.",
                    support::url()
                )
            })
    }

    fn pending(&self) -> u64 {
        let v: redis::Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(&self.group)
            .query(&mut self.connection())
            .unwrap();
        match v {
            redis::Value::Array(items) => match items.first() {
                Some(redis::Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => u64::MAX,
        }
    }
}

impl Drop for RedisStream {
    fn drop(&mut self) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&self.stream).query(&mut self.connection());
        let _ = std::fs::remove_file(&self.out);
    }
}

impl Subject for RedisStream {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferroway-redis-crash-child"));
        c.arg(support::url())
            .arg(&self.stream)
            .arg(&self.group)
            .arg("crash-consumer")
            .arg(&self.out);
        c
    }

    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        let mut c = self.connection();
        for chunk in (1..=n).collect::<Vec<_>>().chunks(5_000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.cmd("XADD").arg(&self.stream).arg("*").arg("n").arg(*i).ignore();
            }
            pipe.query::<()>(&mut c)?;
        }
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
fn killed_with_sigkill_and_restarted_every_entry_is_processed_and_nothing_stays_pending() {
    let mut subject = RedisStream::new("crash-kill");
    let report = CrashTest::new("redis-sigkill")
        .messages(20_000)
        .kills(5)
        .stop(Stop::Kill)
        .finish(Finish::WhenComplete)
        .max_duplicates(5 * IN_FLIGHT)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(subject.pending(), 0, "the final graceful stop acknowledged everything");
}

#[test]
fn stopped_with_sigterm_and_restarted_there_are_no_duplicates() {
    let mut subject = RedisStream::new("crash-term");
    let report = CrashTest::new("redis-sigterm")
        .messages(20_000)
        .kills(4)
        .stop(Stop::Terminate)
        .finish(Finish::WhenComplete)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.duplicates, 0);
    assert_eq!(subject.pending(), 0);
}
