//! Crash test of a windowed count over a file source into a file sink
//! (`src/bin/flow-window-count.rs`): killed at random moments and restarted, the flow loses no
//! event, and every window's last result — what a sink keyed by window and key keeps — holds
//! exactly the window's events, as a sequential reference computes them. Stopped with SIGTERM
//! instead, it writes every window exactly once.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::Command;

use ferroway_testkit::{BoxError, CrashTest, Stop, Subject};

const EVENTS: u64 = 200_000;
const KEYS: u64 = 4;

struct WindowCount {
    dir: PathBuf,
    /// `(window start, key)` -> the ids in it, sorted.
    reference: BTreeMap<(i64, u64), Vec<u64>>,
}

impl WindowCount {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ferroway-flow-crash-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        fs::create_dir_all(dir.join("state")).unwrap();
        WindowCount {
            dir,
            reference: BTreeMap::new(),
        }
    }

    /// Every result line.
    fn results(&self) -> Result<Vec<Line>, BoxError> {
        let path = self.dir.join("out.txt");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        // A line being written when the child was killed may be cut short; only whole lines
        // count (the sink syncs before acknowledging, so a cut line was never acknowledged).
        for (i, line) in text.split_inclusive('\n').filter(|l| l.ends_with('\n')).enumerate() {
            let bad = || format!("{}:{}: malformed line {line:?}", path.display(), i + 1);
            let mut f = line.trim_end().split(' ');
            let start = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let key = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let count: usize = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
            let ids = f
                .map(|v| v.parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad())?;
            if ids.len() != count {
                return Err(bad().into());
            }
            out.push(Line { start, key, ids });
        }
        Ok(out)
    }
}

/// A result line: `start key count id id ...`.
struct Line {
    start: i64,
    key: u64,
    ids: Vec<u64>,
}

impl Drop for WindowCount {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Subject for WindowCount {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flow-window-count"));
        c.arg("--input")
            .arg(self.dir.join("events.txt"))
            .arg("--output")
            .arg(self.dir.join("out.txt"))
            .arg("--state")
            .arg(self.dir.join("state"));
        c
    }

    /// Event `id` at about `2 * id` ms, up to 40 ms either way (so out of order, within the
    /// flow's 100 ms allowance): 500 events per 1-second window.
    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut w = BufWriter::new(fs::File::create(self.dir.join("events.txt"))?);
        for id in 1..=n {
            let ts = 2 * id as i64 + rng.i64(-40..=40);
            writeln!(w, "{id} {ts}")?;
            self.reference
                .entry((ts.div_euclid(1000) * 1000, id % KEYS))
                .or_default()
                .push(id);
        }
        w.flush()?;
        for ids in self.reference.values_mut() {
            ids.sort_unstable();
        }
        Ok(())
    }

    fn record(&mut self) -> Result<Vec<u64>, BoxError> {
        Ok(self.results()?.into_iter().flat_map(|r| r.ids).collect())
    }
}

/// Every window and key's last result equals the reference; returns how many results there are.
fn check_final_results(subject: &mut WindowCount) -> usize {
    let mut last: BTreeMap<(i64, u64), Vec<u64>> = BTreeMap::new();
    let mut emitted = 0;
    for Line { start, key, ids } in subject.results().unwrap() {
        last.insert((start, key), ids);
        emitted += 1;
    }
    assert_eq!(last.len(), subject.reference.len(), "every window and key has a result");
    for (window, ids) in &subject.reference {
        assert_eq!(
            last.get(window),
            Some(ids),
            "window {window:?}: its last result is not its events ({emitted} results in all)"
        );
    }
    emitted
}

#[test]
fn sigkill_then_every_windows_final_result_equals_the_reference() {
    let kills = 6;
    let mut subject = WindowCount::new();
    let report = CrashTest::new("flow-window-count SIGKILL")
        .messages(EVENTS)
        .kills(kills)
        .stop(Stop::Kill)
        // A restart emits again the windows written but not yet acknowledged when it died.
        .max_duplicates(kills as u64 * 20_000)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.kills, kills);
    check_final_results(&mut subject);
}

#[test]
fn sigterm_then_every_window_is_written_exactly_once() {
    let mut subject = WindowCount::new();
    let report = CrashTest::new("flow-window-count SIGTERM")
        .messages(EVENTS)
        .kills(5)
        .stop(Stop::Terminate)
        .max_duplicates(0)
        .run(&mut subject)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!((report.kills, report.duplicates), (5, 0));
    assert_eq!(check_final_results(&mut subject), subject.reference.len());
}
