//! `flow-wordcount` and `flow-window`: the Flow workloads of `shared/bench/README.md`, each
//! against a plain single-threaded loop over the same input in the same run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::flow::{Accumulator, Flow, Partition, Window};
use serde_json::json;

use crate::report::Report;

type Fast = foldhash::fast::FixedState;
type Counts = HashMap<String, u64, Fast>;

const WORDS_BYTES: u64 = 200_000_000;

/// splitmix64, as `gen_words.py` defines it.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Writes the word file of `gen_words.py` (byte for byte) to `out`.
pub fn generate_words(out: &Path, target: u64) -> std::io::Result<()> {
    let mut rng = SplitMix64(42);
    let mut vocab: Vec<String> = Vec::with_capacity(10_000);
    let mut seen = std::collections::HashSet::new();
    while vocab.len() < 10_000 {
        let r = rng.next();
        let n = 3 + r % 8;
        let w: String = (0..n)
            .map(|j| char::from(b'a' + ((r >> (8 + 5 * j)) % 26) as u8))
            .collect();
        if seen.insert(w.clone()) {
            vocab.push(w);
        }
    }
    let tmp = out.with_extension("partial");
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut size = 0u64;
    while size < target {
        let mut line = String::with_capacity(128);
        for d in 0..3 {
            let r = rng.next();
            for k in [1u64, 10_000, 100_000_000, 1_000_000_000_000] {
                if d > 0 || k > 1 {
                    line.push(' ');
                }
                line.push_str(&vocab[((r / k) % 10_000) as usize]);
            }
        }
        line.push('\n');
        size += line.len() as u64;
        f.write_all(line.as_bytes())?;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(tmp, out)
}

fn words_file() -> PathBuf {
    let dir = std::env::var_os("FERROWAY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ferroway"))
        .join("bench");
    std::fs::create_dir_all(&dir).expect("bench cache directory");
    let path = dir.join(format!("words-{WORDS_BYTES}.txt"));
    if !path.exists() {
        eprintln!("writing the word file {} ...", path.display());
        generate_words(&path, WORDS_BYTES).expect("word file");
    }
    path
}

fn count_line(line: &str, counts: &mut Counts) {
    for w in line.split(' ') {
        match counts.get_mut(w) {
            Some(n) => *n += 1,
            None => {
                counts.insert(w.to_owned(), 1);
            }
        }
    }
}

/// The plain loop: read, split, count in a hash map, one thread.
fn baseline_wordcount(path: &Path) -> Counts {
    let mut counts = Counts::default();
    let mut r = BufReader::with_capacity(256 * 1024, std::fs::File::open(path).expect("word file"));
    let mut line = String::new();
    while r.read_line(&mut line).expect("read") > 0 {
        count_line(line.trim_end_matches('\n'), &mut counts);
        line.clear();
    }
    counts
}

fn top3(counts: &Counts) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = counts.iter().map(|(w, n)| (w.clone(), *n)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(3);
    all
}

/// The flow: the file's lines read by two lanes, each counting its words (a reduction per
/// lane), then the per-lane counts partitioned by word and summed.
async fn flow_wordcount(path: &Path, shuffle_words: bool) -> Counts {
    let lines = Flow::from_file_lines(path, 2).max_demand(1024);
    let pairs: Flow<(String, u64)> = if shuffle_words {
        // Elixir Flow's own shape: every word crosses the partition boundary.
        lines.flat_map(|l: String| l.split(' ').map(|w| (w.to_owned(), 1)).collect::<Vec<_>>())
    } else {
        lines
            .reduce_with(
                Counts::default,
                |c, l: &String| count_line(l, c),
                |c, _| (vec![std::mem::take(c)], Accumulator::Reset),
            )
            .flat_map(|c: Counts| c.into_iter().collect::<Vec<_>>())
    };
    let partials: Vec<Counts> = pairs
        .partition(Partition::by_key(|p: &(String, u64)| p.0.clone()).stages(2))
        .reduce_with(
            Counts::default,
            |c, (w, n): &(String, u64)| match c.get_mut(w.as_str()) {
                Some(m) => *m += n,
                None => {
                    c.insert(w.clone(), *n);
                }
            },
            |c, _| (vec![std::mem::take(c)], Accumulator::Reset),
        )
        .collect()
        .await
        .expect("flow");
    let mut all = Counts::default();
    for p in partials {
        all.extend(p);
    }
    all
}

pub async fn run_wordcount() -> Vec<Report> {
    let path = words_file();
    let bytes = std::fs::metadata(&path).expect("word file").len();
    let mut reports = Vec::new();

    let t = Instant::now();
    let base = tokio::task::spawn_blocking({
        let p = path.clone();
        move || baseline_wordcount(&p)
    })
    .await
    .expect("baseline");
    let base_secs = t.elapsed().as_secs_f64();
    let base_words: u64 = base.values().sum();

    for (workload, shuffle) in [("flow-wordcount", false), ("flow-wordcount-shuffle", true)] {
        let t = Instant::now();
        let counts = flow_wordcount(&path, shuffle).await;
        let secs = t.elapsed().as_secs_f64();
        let mut r = Report::new(workload, "bytes", bytes, secs);
        r.baseline_per_sec = Some(bytes as f64 / base_secs);
        r.checksum_ok = Some(counts == base);
        r.extra.insert(
            "mb_per_sec".into(),
            json!((bytes as f64 / secs / 1e6 * 10.0).round() / 10.0),
        );
        r.extra.insert(
            "baseline_mb_per_sec".into(),
            json!((bytes as f64 / base_secs / 1e6 * 10.0).round() / 10.0),
        );
        r.extra.insert("words".into(), json!(base_words));
        r.extra.insert("distinct".into(), json!(counts.len()));
        r.extra.insert("top".into(), json!(top3(&counts)));
        reports.push(r);
    }
    reports
}

const EVENTS: u64 = 10_000_000;

/// Event `i` of the README: (key, ts_ms).
fn event(i: u64) -> (u64, i64) {
    let h = i.wrapping_mul(2_654_435_761) % (1 << 32);
    (i % 100, 1_700_000_000_000 + (i / 10) as i64 + (h % 101) as i64 - 50)
}

const OUT_OF_ORDERNESS_MS: u64 = 100;

/// The plain loop: the same windows and watermark rule (per event, no lateness allowed), one
/// thread. Returns (sum of counts, late events, checksum over (window, key, count)).
fn baseline_window() -> (u64, u64, u64) {
    let mut open: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
    let (mut wm, mut late, mut counted, mut sum) = (i64::MIN, 0u64, 0u64, 0u64);
    let close = |w: i64, c: Vec<u64>, sum: &mut u64, counted: &mut u64| {
        for (k, n) in c.iter().enumerate() {
            *counted += n;
            *sum = sum.wrapping_add((w as u64).wrapping_mul(31).wrapping_add(k as u64).wrapping_mul(*n));
        }
    };
    for i in 1..=EVENTS {
        let (key, ts) = event(i);
        let start = ts.div_euclid(1000) * 1000;
        if wm >= start + 1000 {
            late += 1;
        } else {
            open.entry(start).or_insert_with(|| vec![0; 100])[key as usize] += 1;
        }
        let cand = ts - OUT_OF_ORDERNESS_MS as i64;
        if cand > wm {
            wm = cand;
            while let Some(e) = open.first_entry() {
                if *e.key() + 1000 > wm {
                    break;
                }
                let (w, c) = e.remove_entry();
                close(w, c, &mut sum, &mut counted);
            }
        }
    }
    for (w, c) in std::mem::take(&mut open) {
        close(w, c, &mut sum, &mut counted);
    }
    (counted, late, sum)
}

pub async fn run_window() -> Vec<Report> {
    let t = Instant::now();
    let (base_counted, base_late, base_sum) = tokio::task::spawn_blocking(baseline_window).await.expect("baseline");
    let base_secs = t.elapsed().as_secs_f64();

    let mut reports = Vec::new();
    for (workload, lanes) in [("flow-window", 1u64), ("flow-window-2-lanes", 2)] {
        reports.push(window_flow(workload, lanes, base_secs, (base_counted, base_late, base_sum)).await);
    }
    reports
}

/// The flow over `lanes` lanes (event `i` in lane `(i - 1) % lanes`: like a topic's partitions, each
/// in time order), checked against the plain loop's (counted, late, checksum).
async fn window_flow(workload: &'static str, lanes: u64, base_secs: f64, base: (u64, u64, u64)) -> Report {
    let late = Arc::new(AtomicU64::new(0));
    let l = late.clone();
    let window = Window::fixed(Duration::from_secs(1))
        .event_time(|e: &(u64, i64)| e.1)
        .out_of_orderness(Duration::from_millis(OUT_OF_ORDERNESS_MS))
        .on_late(move |_| {
            l.fetch_add(1, Ordering::Relaxed);
        });
    let t = Instant::now();
    let windows: Vec<(i64, Vec<u64>)> =
        Flow::from_iterables((0..lanes).map(|lane| (1 + lane..=EVENTS).step_by(lanes as usize).map(event)))
            .partition(Partition::by_key(|e: &(u64, i64)| e.0).stages(2).window(window))
            .reduce_with(
                || vec![0u64; 100],
                |c, e: &(u64, i64)| c[e.0 as usize] += 1,
                |c, t| {
                    (
                        vec![(t.window.start, std::mem::replace(c, vec![0; 100]))],
                        Accumulator::Reset,
                    )
                },
            )
            .collect()
            .await
            .expect("flow");
    let secs = t.elapsed().as_secs_f64();
    let (mut counted, mut sum) = (0u64, 0u64);
    let mut per_window: HashMap<i64, Vec<u64>> = HashMap::new();
    for (w, c) in windows {
        let acc = per_window.entry(w).or_insert_with(|| vec![0; 100]);
        for (k, n) in c.iter().enumerate() {
            acc[k] += n;
        }
    }
    for (w, c) in &per_window {
        for (k, n) in c.iter().enumerate() {
            counted += n;
            sum = sum.wrapping_add((*w as u64).wrapping_mul(31).wrapping_add(k as u64).wrapping_mul(*n));
        }
    }
    let late = late.load(Ordering::Relaxed);
    let mut r = Report::new(workload, "events", EVENTS, secs);
    r.baseline_per_sec = Some(EVENTS as f64 / base_secs);
    r.checksum_ok = Some((counted, late, sum) == base && counted + late == EVENTS);
    r.extra.insert("counted".into(), json!(counted));
    r.extra.insert("late".into(), json!(late));
    r.extra.insert("windows".into(), json!(per_window.len()));
    r.extra.insert(
        "settings".into(),
        json!(format!(
            "{lanes} source lane(s), fixed 1 s event-time windows, 2 partitions by key, watermark = max ts - {OUT_OF_ORDERNESS_MS} ms per lane, allowed lateness 0"
        )),
    );
    r
}

#[cfg(test)]
mod tests {
    /// The first megabyte of `gen_words.py`'s output (`python3 gen_words.py OUT 1000000`):
    /// 1,000,087 bytes with this FNV-1a hash.
    #[test]
    fn the_word_file_is_the_one_gen_words_py_writes() {
        let path = std::env::temp_dir().join(format!("ferroway-words-{}.txt", std::process::id()));
        super::generate_words(&path, 1_000_000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let fnv = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!((bytes.len(), fnv), (1_000_087, 0x4150_7059_0dcb_2812));
    }
}
