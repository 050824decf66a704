//! Crash tests for Ferroway connectors.
//!
//! A [`CrashTest`] runs a pipeline as a child process, feeds N uniquely numbered messages
//! through its real source, stops it at seeded random moments — `SIGKILL`, or `SIGTERM` for a
//! graceful drain — restarts it each time, lets the last run finish, and then checks the
//! sink's durable record:
//!
//! - every id `1..=N` is there at least once (nothing acknowledged was lost);
//! - nothing else is: an id outside `1..=N` or an unreadable entry fails the test;
//! - the number of duplicates (ids seen more than once) is at most the bound the test gives —
//!   with `SIGTERM`, zero unless told otherwise.
//!
//! What is tested is described by a [`Subject`]: how to start the child, how to feed the
//! messages, how to read the durable record. The same harness serves every connector: a
//! Kafka subject feeds a topic and reads the output topic, a file subject writes files.
//!
//! Runs are reproducible: the seed is printed first, and `FERROWAY_CRASH_SEED=<seed>` replays
//! the same kill points.
//!
//! ```no_run
//! use std::process::Command;
//! use ferroway_testkit::{CrashTest, Subject};
//!
//! struct Files;
//! impl Subject for Files {
//!     fn command(&mut self) -> Command {
//!         Command::new("my-pipeline")
//!     }
//!     fn feed(&mut self, n: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!         // write messages 1..=n where the source reads them
//!         # let _ = n;
//!         Ok(())
//!     }
//!     fn record(&mut self) -> Result<Vec<u64>, Box<dyn std::error::Error + Send + Sync>> {
//!         // read back the ids the sink holds durably
//!         Ok(Vec::new())
//!     }
//! }
//!
//! let report = CrashTest::new("files").messages(10_000).kills(5).max_duplicates(5 * 1_000).run(&mut Files);
//! let report = report.unwrap_or_else(|e| panic!("{e}"));
//! println!("{report}");
//! ```

use std::fmt;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An error from the subject's own code (feeding, reading).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The end of a crash-test child's `main`: runs `run` with the parsed arguments and turns
/// the outcome into the exit code the harness reads — 0, 1 with the error on stderr, or 2
/// for bad arguments.
///
/// ```no_run
/// # async fn run(_: String) -> Result<(), ferroway_testkit::BoxError> { Ok(()) }
/// # async fn main_() -> std::process::ExitCode {
/// let args = std::env::args().nth(1).ok_or_else(|| "an input is required".to_string());
/// ferroway_testkit::child_main("my-child", args, run).await
/// # }
/// ```
pub async fn child_main<A, F>(name: &str, args: Result<A, String>, run: impl FnOnce(A) -> F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), BoxError>>,
{
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The environment variable that replays a seed.
pub const SEED_ENV: &str = "FERROWAY_CRASH_SEED";

/// What a crash test runs and checks.
pub trait Subject {
    /// The child process, as started for each run (the harness pipes its stdout to watch for
    /// the ready line and passes everything else on to stderr).
    fn command(&mut self) -> Command;

    /// Makes messages `1..=n` available to the child's source, before the first run.
    fn feed(&mut self, n: u64) -> Result<(), BoxError>;

    /// The ids in the sink's durable record, duplicates included, in any order. An entry that
    /// cannot be read is an error (the test fails on it).
    fn record(&mut self) -> Result<Vec<u64>, BoxError>;

    /// How many entries the record holds now, polled often while a run goes on to pick kill
    /// moments. Default: the length of [`record`](Self::record); override with something
    /// cheaper (e.g. counting lines) for big records.
    fn progress(&mut self) -> Result<u64, BoxError> {
        Ok(self.record()?.len() as u64)
    }
}

/// How a run is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `SIGKILL`: no chance to clean up. Duplicates are expected, bounded by the in-flight
    /// limit; losses are not.
    Kill,
    /// `SIGTERM`: the child drains (`pipeline.stop()`), commits and exits 0. No duplicates.
    Terminate,
}

/// How the last run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The child exits 0 by itself once its source is exhausted (files, bounded generators).
    Exits,
    /// The source never ends (a followed file, a broker topic): once the record holds every
    /// id, the child is sent `SIGTERM` and must exit 0.
    WhenComplete,
}

/// A crash test: see the [crate documentation](crate).
#[derive(Debug, Clone)]
pub struct CrashTest {
    name: String,
    messages: u64,
    kills: usize,
    stop: Stop,
    finish: Finish,
    seed: Option<u64>,
    max_duplicates: Option<u64>,
    ready_line: Option<String>,
    ready_on_stderr: bool,
    deadline: Duration,
    poll: Duration,
    max_jitter: Duration,
}

/// What a crash test saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashReport {
    /// The test's name.
    pub name: String,
    /// The seed (replay with `FERROWAY_CRASH_SEED`).
    pub seed: u64,
    /// Messages fed.
    pub messages: u64,
    /// How the runs were interrupted.
    pub stop: Stop,
    /// Interruptions that hit a running child.
    pub kills: usize,
    /// Entries in the record.
    pub entries: u64,
    /// Entries beyond the first of each id.
    pub duplicates: u64,
    /// The most entries any single id had.
    pub max_copies: u32,
    /// Wall time of the whole test.
    pub elapsed: Duration,
}

impl fmt::Display for CrashReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash test `{}`: {} messages, {} × {:?}, {} entries, {} duplicates (at most {} copies of one id), all present; seed {} ({:.1?})",
            self.name,
            self.messages,
            self.kills,
            self.stop,
            self.entries,
            self.duplicates,
            self.max_copies,
            self.seed,
            self.elapsed
        )
    }
}

/// Why a crash test failed; says how to replay it.
#[derive(Debug)]
pub struct CrashError {
    /// The test's name.
    pub name: String,
    /// The seed.
    pub seed: u64,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for CrashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash test `{}` failed: {} (replay with {SEED_ENV}={})",
            self.name, self.reason, self.seed
        )
    }
}

impl std::error::Error for CrashError {}

impl CrashTest {
    /// A crash test named `name`. Defaults: 10,000 messages, 5 kills with `SIGKILL`, no bound
    /// on duplicates (zero with `SIGTERM`), the child exits by itself at the end, ready line
    /// `ready`, 120 s deadline per run.
    pub fn new(name: impl Into<String>) -> Self {
        CrashTest {
            name: name.into(),
            messages: 10_000,
            kills: 5,
            stop: Stop::Kill,
            finish: Finish::Exits,
            seed: None,
            max_duplicates: None,
            ready_line: Some("ready".into()),
            ready_on_stderr: false,
            deadline: Duration::from_secs(120),
            poll: Duration::from_millis(2),
            max_jitter: Duration::from_millis(20),
        }
    }

    /// How many messages to feed.
    pub fn messages(mut self, n: u64) -> Self {
        self.messages = n;
        self
    }

    /// How many times to interrupt the child before the final run.
    pub fn kills(mut self, n: usize) -> Self {
        self.kills = n;
        self
    }

    /// How to interrupt it.
    pub fn stop(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
    }

    /// How the last run ends.
    pub fn finish(mut self, finish: Finish) -> Self {
        self.finish = finish;
        self
    }

    /// The seed, unless `FERROWAY_CRASH_SEED` is set (default: random).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The most duplicates allowed in the record (typically kills × the child's in-flight
    /// limit).
    pub fn max_duplicates(mut self, n: u64) -> Self {
        self.max_duplicates = Some(n);
        self
    }

    /// The line the child prints on stdout once it is running (and, for `SIGTERM`, handles
    /// the signal); no interruption comes before it. `None`: do not wait.
    pub fn ready_line(mut self, line: Option<&str>) -> Self {
        self.ready_line = line.map(str::to_owned);
        self
    }

    /// Waits for a line of the child's stderr that contains `text` instead (e.g. a log line
    /// saying the child is up, for a child whose stdout is not its own). Other lines pass on to
    /// the test's stderr as they come.
    ///
    /// ```
    /// use ferroway_testkit::CrashTest;
    /// let test = CrashTest::new("cli").ready_log("pipeline started");
    /// # let _ = test;
    /// ```
    pub fn ready_log(mut self, text: &str) -> Self {
        self.ready_line = Some(text.to_owned());
        self.ready_on_stderr = true;
        self
    }

    /// The longest any one run may take before the test fails.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// Runs the test.
    ///
    /// # Errors
    /// A [`CrashError`] naming what failed — a lost id, an unexpected entry, too many
    /// duplicates, a child that failed or hung — and the seed to replay it.
    pub fn run(self, subject: &mut impl Subject) -> Result<CrashReport, CrashError> {
        let seed = std::env::var(SEED_ENV)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .or(self.seed)
            .unwrap_or_else(|| fastrand::u64(..));
        eprintln!("crash test `{}`: seed {seed} (replay: {SEED_ENV}={seed})", self.name);
        let fail = |reason: String| CrashError {
            name: self.name.clone(),
            seed,
            reason,
        };
        let started = Instant::now();
        let mut rng = fastrand::Rng::with_seed(seed);
        subject.feed(self.messages).map_err(|e| fail(format!("feeding: {e}")))?;

        // Kill points: amounts of record entries, spread over 5%..85% of the messages, so
        // each lands while the child is busy; plus a small random delay after reaching one.
        let n = self.messages.max(1);
        let mut targets: Vec<u64> = (0..self.kills).map(|_| rng.u64(n / 20..=n * 85 / 100)).collect();
        targets.sort_unstable();
        let mut kills = 0;
        for (k, target) in targets.iter().enumerate() {
            let mut child = Running::start(subject, &self).map_err(|e| fail(format!("run {}: {e}", k + 1)))?;
            loop {
                if let Some(status) = child.exited().map_err(&fail)? {
                    return Err(fail(format!(
                        "run {}: the child exited ({status}) before kill point {target} (of {n}); {}",
                        k + 1,
                        if status.success() {
                            "give it more messages so the kills land mid-stream"
                        } else {
                            "it failed"
                        }
                    )));
                }
                let p = subject.progress().map_err(|e| fail(format!("reading progress: {e}")))?;
                if p >= *target {
                    break;
                }
                if child.started.elapsed() > self.deadline {
                    child.kill();
                    return Err(fail(format!(
                        "run {}: no progress to {target} within {:?}",
                        k + 1,
                        self.deadline
                    )));
                }
                std::thread::sleep(self.poll);
            }
            std::thread::sleep(Duration::from_micros(rng.u64(..=self.max_jitter.as_micros() as u64)));
            match self.stop {
                Stop::Kill => child.kill(),
                Stop::Terminate => {
                    let status = child.terminate(self.deadline).map_err(&fail)?;
                    if !status.success() {
                        return Err(fail(format!(
                            "run {}: after SIGTERM the child exited with {status}",
                            k + 1
                        )));
                    }
                }
            }
            kills += 1;
            eprintln!(
                "crash test `{}`: {:?} #{} at {target}+ entries",
                self.name,
                self.stop,
                k + 1
            );
        }

        let mut child = Running::start(subject, &self).map_err(|e| fail(format!("final run: {e}")))?;
        loop {
            if let Some(status) = child.exited().map_err(&fail)? {
                if !status.success() {
                    return Err(fail(format!("final run: the child exited with {status}")));
                }
                if self.finish == Finish::Exits {
                    break;
                }
                return Err(fail(
                    "final run: the child exited before the record was complete".into(),
                ));
            }
            if self.finish == Finish::WhenComplete {
                let ids = subject.record().map_err(|e| fail(format!("reading the record: {e}")))?;
                if check(&ids, self.messages).is_ok_and(|c| c.missing.is_empty()) {
                    let status = child.terminate(self.deadline).map_err(&fail)?;
                    if !status.success() {
                        return Err(fail(format!("final run: after SIGTERM the child exited with {status}")));
                    }
                    break;
                }
            }
            if child.started.elapsed() > self.deadline {
                child.kill();
                // Lost or merely slow? Say which ids never arrived.
                let missing = subject
                    .record()
                    .ok()
                    .and_then(|ids| check(&ids, self.messages).ok())
                    .map_or_else(String::new, |c| {
                        let shown: Vec<_> = c.missing.iter().take(10).collect();
                        format!(
                            ": {} of {} ids still missing, e.g. {shown:?}",
                            c.missing.len(),
                            self.messages
                        )
                    });
                return Err(fail(format!(
                    "final run: not finished within {:?}{missing}",
                    self.deadline
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }

        let ids = subject.record().map_err(|e| fail(format!("reading the record: {e}")))?;
        let c = check(&ids, self.messages).map_err(&fail)?;
        if !c.missing.is_empty() {
            let shown: Vec<_> = c.missing.iter().take(10).collect();
            return Err(fail(format!(
                "{} of {} ids missing from the record (lost), e.g. {shown:?}",
                c.missing.len(),
                self.messages
            )));
        }
        let bound = self.max_duplicates.unwrap_or(match self.stop {
            Stop::Kill => u64::MAX,
            Stop::Terminate => 0,
        });
        if c.duplicates > bound {
            return Err(fail(format!(
                "{} duplicates, more than the bound of {bound} (at most {} copies of one id)",
                c.duplicates, c.max_copies
            )));
        }
        Ok(CrashReport {
            name: self.name,
            seed,
            messages: self.messages,
            stop: self.stop,
            kills,
            entries: ids.len() as u64,
            duplicates: c.duplicates,
            max_copies: c.max_copies,
            elapsed: started.elapsed(),
        })
    }
}

#[derive(Debug)]
struct Checked {
    missing: Vec<u64>,
    duplicates: u64,
    max_copies: u32,
}

fn check(ids: &[u64], n: u64) -> Result<Checked, String> {
    let mut copies = vec![0u32; n as usize + 1];
    for &id in ids {
        if id == 0 || id > n {
            return Err(format!("unexpected id {id} in the record (expected 1..={n})"));
        }
        copies[id as usize] += 1;
    }
    let missing = (1..=n).filter(|&i| copies[i as usize] == 0).collect();
    let duplicates = copies.iter().map(|&c| c.saturating_sub(1) as u64).sum();
    let max_copies = copies.iter().copied().max().unwrap_or(0);
    Ok(Checked {
        missing,
        duplicates,
        max_copies,
    })
}

/// A child process of one run.
struct Running {
    child: Child,
    started: Instant,
}

impl Running {
    fn start(subject: &mut impl Subject, test: &CrashTest) -> Result<Running, String> {
        let mut cmd = subject.command();
        let program = format!("{:?}", cmd.get_program());
        if test.ready_on_stderr {
            cmd.stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {program}: {e}"))?;
        let started = Instant::now();
        let watched: Box<dyn std::io::Read + Send> = match (child.stdout.take(), child.stderr.take()) {
            (Some(out), _) => Box::new(out),
            (None, Some(err)) => Box::new(err),
            (None, None) => unreachable!("one of them is piped"),
        };
        let (tx, rx) = mpsc::channel();
        let ready = test.ready_line.clone();
        let on_stderr = test.ready_on_stderr;
        let name = test.name.clone();
        std::thread::spawn(move || {
            let mut seen = false;
            for line in BufReader::new(watched).lines() {
                let Ok(line) = line else { break };
                let is_ready = match &ready {
                    Some(r) if on_stderr => line.contains(r.as_str()),
                    Some(r) => r == line.trim(),
                    None => false,
                };
                if is_ready && !seen {
                    seen = true;
                    let _ = tx.send(());
                }
                if !is_ready || on_stderr {
                    eprintln!("[{name} child] {line}");
                }
            }
        });
        let mut running = Running { child, started };
        if test.ready_line.is_some() {
            loop {
                match rx.recv_timeout(Duration::from_millis(10)) {
                    Ok(()) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        let status = running.child.wait().map_err(|e| e.to_string())?;
                        return Err(format!("the child exited ({status}) before printing its ready line"));
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() > test.deadline => {
                        running.kill();
                        return Err(format!("no ready line within {:?}", test.deadline));
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
            }
        }
        Ok(running)
    }

    fn exited(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child.try_wait().map_err(|e| format!("waiting for the child: {e}"))
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    fn terminate(&mut self, deadline: Duration) -> Result<ExitStatus, String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("cannot run `kill -TERM {pid}`: {e}"))?;
        if !sent.success() {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            return Err(format!("`kill -TERM {pid}` failed: {sent}"));
        }
        let asked = Instant::now();
        loop {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            if asked.elapsed() > deadline {
                self.kill();
                return Err(format!("the child did not exit within {deadline:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing test must not leave its child running.
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// The ids in a record file holding one decimal id per line, as connector crash-test children
/// write it. A last line without its newline was cut by a kill and never acknowledged (its
/// batch comes again): it is left out. A missing file is an empty record; any other line is an
/// error naming it.
pub fn read_id_lines(path: &std::path::Path) -> Result<Vec<u64>, BoxError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display()).into()),
    };
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .enumerate()
        .map(|(i, l)| {
            l.parse::<u64>()
                .map_err(|e| format!("{}:{}: bad line {l:?}: {e}", path.display(), i + 1).into())
        })
        .collect()
}

/// How many whole lines a record file holds (a cheap [`Subject::progress`]).
pub fn count_lines(path: &std::path::Path) -> Result<u64, BoxError> {
    match std::fs::read(path) {
        Ok(d) => Ok(d.iter().filter(|&&b| b == b'\n').count() as u64),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_counts_duplicates_and_finds_missing_and_unexpected_ids() {
        let c = check(&[1, 2, 2, 4, 4, 4], 5).unwrap();
        assert_eq!(c.missing, [3, 5]);
        assert_eq!((c.duplicates, c.max_copies), (3, 3));
        assert!(check(&[1, 6], 5).unwrap_err().contains("unexpected id 6"));
        assert!(check(&[0], 5).is_err());
    }

    /// A subject whose "child" is `sh`, appending ids to a file as it goes: it proves the
    /// harness itself finds losses and duplicates.
    struct Shell {
        dir: std::path::PathBuf,
        script: String,
    }

    impl Subject for Shell {
        fn command(&mut self) -> Command {
            let mut c = Command::new("sh");
            c.arg("-c").arg(&self.script).current_dir(&self.dir);
            c
        }
        fn feed(&mut self, _: u64) -> Result<(), BoxError> {
            Ok(())
        }
        fn record(&mut self) -> Result<Vec<u64>, BoxError> {
            let text = std::fs::read_to_string(self.dir.join("out")).unwrap_or_default();
            text.lines().map(|l| Ok(l.trim().parse::<u64>()?)).collect()
        }
    }

    fn shell(tag: &str, script: &str) -> Shell {
        let dir = std::env::temp_dir().join(format!(
            "ferroway-testkit-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Shell {
            dir,
            script: script.into(),
        }
    }

    // Resumes after the last id written: no loss, no duplicates (kill lands between lines).
    const RESUMING: &str = "echo ready; i=$(( $(cat out 2>/dev/null | wc -l) + 1 )); \
        while [ $i -le 300 ]; do echo $i >> out; i=$((i+1)); sleep 0.001; done";

    #[test]
    fn a_correct_child_passes_and_the_seed_is_reported() {
        let mut s = shell("ok", RESUMING);
        let r = CrashTest::new("sh").messages(300).kills(3).seed(7).run(&mut s).unwrap();
        assert_eq!((r.seed, r.kills, r.messages), (7, 3, 300));
        assert!(r.duplicates <= 3, "{r}");
        std::fs::remove_dir_all(&s.dir).unwrap();
    }

    #[test]
    fn a_child_that_loses_messages_fails_the_test() {
        // Skips ahead by 5 after each restart: ids are lost.
        let mut s = shell(
            "lossy",
            "echo ready; i=$(( $(cat out 2>/dev/null | wc -l) + 1 )); [ $i -gt 1 ] && i=$((i+5)); \
             while [ $i -le 300 ]; do echo $i >> out; i=$((i+1)); sleep 0.001; done",
        );
        let e = CrashTest::new("sh")
            .messages(300)
            .kills(2)
            .seed(1)
            .run(&mut s)
            .unwrap_err();
        assert!(e.to_string().contains("missing from the record"), "{e}");
        assert!(e.to_string().contains("FERROWAY_CRASH_SEED=1"), "{e}");
        std::fs::remove_dir_all(&s.dir).unwrap();
    }

    #[test]
    fn duplicates_beyond_the_bound_fail_the_test() {
        // Starts over from 1 after each restart.
        let mut s = shell(
            "dups",
            "echo ready; i=1; while [ $i -le 300 ]; do echo $i >> out; i=$((i+1)); sleep 0.001; done",
        );
        let e = CrashTest::new("sh")
            .messages(300)
            .kills(2)
            .seed(3)
            .max_duplicates(5)
            .run(&mut s)
            .unwrap_err();
        assert!(e.to_string().contains("duplicates, more than the bound of 5"), "{e}");
        std::fs::remove_dir_all(&s.dir).unwrap();
    }
}
