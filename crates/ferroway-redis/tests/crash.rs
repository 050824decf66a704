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

/// A child killed if the test fails while it runs.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A file removed when the test ends, failed or not.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The dead-letter records' data (the entries' `n`) and reasons.
fn dead_letters(path: &std::path::Path) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            let n = v["data"].as_str().and_then(|d| d.parse().ok()).expect("data: n");
            (n, v["reason"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[test]
fn an_entry_that_crashes_the_process_is_the_only_one_dead_lettered() {
    use std::os::unix::process::ExitStatusExt;
    const N: u64 = 400;
    const POISON: u64 = 150;
    let mut subject = RedisStream::new("crash-poison");
    let dead = subject.out.with_extension("dead");
    let _ = std::fs::remove_file(&dead);
    let _cleanup = Removed(dead.clone());
    subject.feed(N).unwrap();
    let innocent = |ids: &[u64]| {
        let got: std::collections::HashSet<u64> = ids.iter().copied().collect();
        (1..=N).filter(|&i| i != POISON).all(|i| got.contains(&i))
    };
    let started = std::time::Instant::now();
    let mut crashes = 0;
    let mut finished = false;
    while !finished && crashes < 10 {
        let mut child = Reaped(
            subject
                .command()
                .arg(POISON.to_string())
                .arg(&dead)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let child = &mut child.0;
        loop {
            let letters = dead_letters(&dead);
            assert!(
                letters.iter().all(|(n, _)| *n == POISON),
                "{} innocent entries dead-lettered, e.g. {:?}",
                letters.iter().filter(|(n, _)| *n != POISON).count(),
                letters.iter().find(|(n, _)| *n != POISON)
            );
            if let Some(status) = child.try_wait().unwrap() {
                assert_eq!(
                    status.signal(),
                    Some(6),
                    "the child ended otherwise than by the poison's abort: {status}"
                );
                crashes += 1;
                eprintln!("crash {crashes} after {:.1?}", started.elapsed());
                break;
            }
            if !letters.is_empty() && innocent(&subject.record().unwrap()) {
                let pid = child.id().to_string();
                assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
                assert!(child.wait().unwrap().success(), "a clean stop after SIGTERM");
                finished = true;
                break;
            }
            if started.elapsed() > std::time::Duration::from_secs(180) {
                panic!(
                    "not done within 180 s: {crashes} crashes, dead letters {letters:?}, {} entries recorded",
                    subject.record().unwrap().len()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    eprintln!("poison test: {crashes} crashes, done in {:.1?}", started.elapsed());
    // Delivered and crashed 3 times; the 4th delivery exceeds the limit of 3.
    assert_eq!(crashes, 3);
    let letters = dead_letters(&dead);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(letters[0].1.contains("delivered 4 times (limit 3)"), "{letters:?}");
    let record = subject.record().unwrap();
    assert!(!record.contains(&POISON));
    assert!(innocent(&record), "every innocent entry was processed");
    assert_eq!(subject.pending(), 0);
}
