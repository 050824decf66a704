//! Flows over connector sources: a message is acknowledged only after every window it went
//! into was written; a restarted flow recomputes what was not acknowledged and does not emit
//! a finished window again.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::file::FileSource;
use ferroway::connector::{Sink, Source};
use ferroway::flow::{Accumulator, Fired, Flow, FlowError, Partition, Trigger, Window};
use ferroway::pipeline::{AckToken, Acknowledger, Acks, BoxFuture, Message};
use ferroway::stage::{Emit, Producer};

const WINDOW_MS: i64 = 100;
const KEYS: u64 = 3;

/// What the sink has written and what the source saw acknowledged, shared by both.
#[derive(Default)]
struct Books {
    /// `(window start, key)` results written.
    written: Mutex<HashSet<(i64, u64)>>,
    acked: Mutex<Vec<u64>>,
    /// Messages acknowledged before their window's result was written.
    early: Mutex<Vec<u64>>,
    results: Mutex<BTreeMap<(i64, u64), u64>>,
}

/// Message `n` happened at `n` ms and has key `n % KEYS`.
fn window_of(n: u64) -> (i64, u64) {
    ((n as i64) / WINDOW_MS * WINDOW_MS, n % KEYS)
}

impl Acknowledger for Books {
    fn ack(&self, acks: Acks) {
        assert!(acks.failed.is_empty());
        let written = self.written.lock().unwrap();
        for t in &acks.successful {
            if !written.contains(&window_of(t.0)) {
                self.early.lock().unwrap().push(t.0);
            }
        }
        self.acked.lock().unwrap().extend(acks.successful.iter().map(|t| t.0));
    }
}

/// Messages `1..=n`, producer `i` of `lanes` emitting `i + 1, i + 1 + lanes, ...`.
struct Numbers {
    n: u64,
    lanes: u64,
    books: Arc<Books>,
    gate: u64,
}

struct NumberProducer {
    next: u64,
    step: u64,
    n: u64,
    books: Arc<Books>,
    /// Emits nothing past this number before something was acknowledged (as a source with
    /// a limit on unacknowledged messages would).
    gate: u64,
}

impl Producer for NumberProducer {
    type Output = Message<u64>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<u64>>, BoxError> {
        // Small batches at a time, so windows span many batches and acknowledgements.
        let mut out = Vec::new();
        if self.next >= self.gate {
            let waited = tokio::time::timeout(Duration::from_secs(10), async {
                while self.books.acked.lock().unwrap().is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            waited
                .await
                .map_err(|_| "nothing was acknowledged: the source is stuck")?;
        }
        while out.len() < demand.min(7) && self.next <= self.n {
            let acker: Arc<dyn Acknowledger> = self.books.clone();
            out.push(Message::with_acker(self.next, acker, AckToken(self.next, 0)));
            self.next += self.step;
        }
        tokio::task::yield_now().await;
        Ok(if self.next > self.n {
            Emit::Done(out)
        } else {
            Emit::Events(out)
        })
    }
}

impl Numbers {
    fn new(n: u64, lanes: u64, books: &Arc<Books>) -> Self {
        Numbers {
            n,
            lanes,
            books: books.clone(),
            gate: u64::MAX,
        }
    }
}

impl Source for Numbers {
    type Data = u64;
    type Producer = NumberProducer;

    fn producer(&self, index: usize) -> Result<NumberProducer, BoxError> {
        Ok(NumberProducer {
            next: index as u64 + 1,
            step: self.lanes,
            n: self.n,
            books: self.books.clone(),
            gate: self.gate,
        })
    }
}

/// Writes `(window start, key, count)` results, slowly, then records them.
struct Results(Arc<Books>);

impl Sink<(i64, u64, u64)> for Results {
    fn write<'a>(&'a self, batch: &'a mut [Message<(i64, u64, u64)>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            for m in batch.iter() {
                let (start, key, n) = *m.data();
                self.0.written.lock().unwrap().insert((start, key));
                let previous = self.0.results.lock().unwrap().insert((start, key), n);
                assert_eq!(previous, None, "window ({start}, {key}) written twice");
            }
            Ok(())
        })
    }
}

fn checkpoint(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "ferroway-flow-{tag}-{}-{}.ckpt",
        std::process::id(),
        fastrand::u64(..)
    ))
}

/// Counts per `(window, key)`, emitted as `(window start, key, count)` when the window closes.
fn counts(flow: Flow<u64>, partitions: usize, ooo_ms: u64) -> Flow<(i64, u64, u64)> {
    let w = Window::fixed(Duration::from_millis(WINDOW_MS as u64))
        .event_time(|n: &u64| *n as i64)
        .out_of_orderness(Duration::from_millis(ooo_ms));
    flow.partition(Partition::by_key(|n: &u64| n % KEYS).stages(partitions).window(w))
        .reduce_with(
            BTreeMap::<u64, u64>::new,
            |m, n| *m.entry(n % KEYS).or_default() += 1,
            |m, t| {
                let out = m.iter().map(|(k, n)| (t.window.start, *k, *n)).collect();
                (out, Accumulator::Reset)
            },
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_acknowledged_only_after_its_windows_result_is_written() {
    let n = 5_000u64;
    for (lanes, partitions) in [(1, 1), (2, 3), (3, 2)] {
        let books = Arc::new(Books::default());
        let source = Numbers::new(n, lanes, &books);
        let path = checkpoint("acks");
        let flow = counts(
            Flow::from_source(source, lanes as usize, &path).max_demand(16),
            partitions,
            50,
        );
        let written = flow.into_sink(Results(books.clone()), 5).await.unwrap();

        let mut reference = BTreeMap::new();
        for i in 1..=n {
            *reference.entry(window_of(i)).or_insert(0u64) += 1;
        }
        assert_eq!(
            *books.results.lock().unwrap(),
            reference,
            "{lanes} lanes, {partitions} partitions"
        );
        assert_eq!(written, reference.len() as u64);
        let early = books.early.lock().unwrap();
        assert!(
            early.is_empty(),
            "acknowledged before written: {:?}",
            &early[..early.len().min(10)]
        );
        let mut acked = books.acked.lock().unwrap().clone();
        acked.sort_unstable();
        assert_eq!(acked, (1..=n).collect::<Vec<_>>(), "every message acknowledged once");
        std::fs::remove_file(&path).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_follow_a_flat_map_and_a_filter_before_the_partition() {
    let n = 2_000u64;
    let books = Arc::new(Books::default());
    let source = Numbers::new(n, 2, &books);
    let path = checkpoint("ops");
    // Every message becomes itself twice; odd keys' copies are dropped (whole batches of
    // nothing included): the counts are 2 per even message, and every message is acknowledged.
    let flow = Flow::from_source(source, 2, &path)
        .max_demand(8)
        .flat_map(|n: u64| [n, n])
        .filter(|n: &u64| n.is_multiple_of(2));
    let out = counts(flow, 2, 50).collect().await.unwrap();
    let total: u64 = out.iter().map(|r| r.2).sum();
    assert_eq!(total, 2 * (n / 2));
    let mut acked = books.acked.lock().unwrap().clone();
    acked.sort_unstable();
    assert_eq!(acked, (1..=n).collect::<Vec<_>>());
    std::fs::remove_file(&path).ok();
}

#[tokio::test]
async fn what_acknowledgements_cannot_follow_is_refused_by_name() {
    let books = Arc::new(Books::default());
    let numbers = || Numbers::new(10, 1, &books);
    let path = checkpoint("refused");
    let not_reduced = Flow::from_source(numbers(), 1, &path).collect().await.unwrap_err();
    let after_reduce = counts(Flow::from_source(numbers(), 1, &path), 1, 0)
        .map(|r| r.2)
        .collect()
        .await
        .unwrap_err();
    let merged = counts(
        Flow::merge([Flow::from_source(numbers(), 1, &path), Flow::from_iterable([1u64])]),
        1,
        0,
    )
    .collect()
    .await
    .unwrap_err();
    let repartitioned = counts(Flow::from_source(numbers(), 1, &path), 1, 0)
        .partition(Partition::hashed().stages(2))
        .reduce(|| 0u64, |n, _| *n += 1)
        .collect()
        .await
        .unwrap_err();
    let per_lane = Flow::from_source(numbers(), 1, &path)
        .reduce(|| 0u64, |n, _| *n += 1)
        .collect()
        .await
        .unwrap_err();
    // A restart could not tell a finished session's stragglers from an open one's.
    let sessions = Window::session(Duration::from_millis(10)).event_time(|n: &u64| *n as i64);
    let session = Flow::from_source(numbers(), 1, &path)
        .partition(Partition::by_key(|n: &u64| *n).stages(1).window(sessions))
        .reduce(|| 0u64, |c, _| *c += 1)
        .collect()
        .await
        .unwrap_err();
    // Other flows stop by dropping their stream.
    let plain = Flow::from_iterable([1u64])
        .stop_when(std::future::pending())
        .collect()
        .await
        .unwrap_err();
    let refused = [
        (plain, "stop_when"),
        (not_reduced, "from_source"),
        (after_reduce, "from_source"),
        (merged, "from_source"),
        (repartitioned, "from_source"),
        (per_lane, "partition"),
        (session, "window"),
    ];
    // A result taken by a stage is not yet handled by its consumer.
    let staged = counts(Flow::from_source(numbers(), 1, &path), 1, 0).into_stage();
    let drain = ferroway::stage::start_consumer(
        Drain,
        ferroway::stage::ConsumerOptions::new().stop_when_unsubscribed(true),
    );
    drain
        .subscribe_to(&staged.producer_ref(), ferroway::stage::SubscribeOptions::new())
        .await
        .unwrap();
    let e = staged.join().await.unwrap_err().to_string();
    assert!(e.contains("into_stage"), "{e}");
    for (e, option) in refused {
        assert!(matches!(e, FlowError::Invalid { option: o, .. } if o == option), "{e}");
    }
    assert!(
        books.acked.lock().unwrap().is_empty(),
        "nothing ran, nothing acknowledged"
    );
}

/// Takes whatever comes.
struct Drain;

impl ferroway::stage::Consumer for Drain {
    type Input = (i64, u64, u64);
    async fn handle_events(&mut self, _: Vec<(i64, u64, u64)>) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Writes results as lines `start key count` to a shared log; refuses after `fail_after`
/// writes (a crash, as far as the flow is concerned).
struct Log {
    lines: Arc<Mutex<Vec<(i64, u64, u64)>>>,
    writes: AtomicU64,
    fail_after: u64,
}

impl Sink<(i64, u64, u64)> for Log {
    fn write<'a>(&'a self, batch: &'a mut [Message<(i64, u64, u64)>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if self.writes.fetch_add(1, Ordering::SeqCst) >= self.fail_after {
                for m in batch.iter_mut() {
                    m.fail("the test's sink stops here");
                }
                return Ok(());
            }
            self.lines.lock().unwrap().extend(batch.iter().map(|m| *m.data()));
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_flow_recomputes_unfinished_windows_and_never_emits_a_partial_one() {
    let dir = std::env::temp_dir().join(format!(
        "ferroway-flow-restart-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("events.txt");
    // Timestamps out of order by up to 40 ms (within the flow's 50 ms out-of-orderness), so windows
    // straddle the acknowledged prefix at every stop.
    let n = 6_000u64;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut text = String::new();
    let mut reference: BTreeMap<(i64, u64), u64> = BTreeMap::new();
    for id in 1..=n {
        let ts = (id as i64 + rng.i64(-20..=20)).max(0);
        text.push_str(&format!("{ts}\n"));
        *reference
            .entry((ts / WINDOW_MS * WINDOW_MS, ts as u64 % KEYS))
            .or_default() += 1;
    }
    std::fs::write(&input, text).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let ckpt = dir.join("flow.ckpt");
    let mut stops = 0;
    for fail_after in [3, 7, 5, 4, u64::MAX] {
        let source = FileSource::builder(&input)
            .checkpoint_dir(dir.join("offsets"))
            .checkpoint_interval(Duration::from_millis(10))
            .open()
            .unwrap();
        let flow = Flow::from_source(source, 1, &ckpt)
            .max_demand(64)
            .filter_map(|line: String| line.parse::<u64>().ok());
        let sink = Log {
            lines: lines.clone(),
            writes: AtomicU64::new(0),
            fail_after,
        };
        match counts(flow, 2, 50).into_sink(sink, 4).await {
            Ok(_) => break,
            Err(FlowError::Sink(_)) => stops += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(stops, 4);
    // A sink keyed by window and key keeps the last result of each.
    let mut last = BTreeMap::new();
    for (start, key, count) in lines.lock().unwrap().iter() {
        last.insert((*start, *key), *count);
    }
    assert_eq!(last, reference);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_stays_open_across_many_acknowledgement_rounds_without_early_acks() {
    // One global window over everything: nothing may be acknowledged before the input ends
    // and the one result is written.
    let books = Arc::new(Books::default());
    let source = Numbers::new(3_000, 2, &books);
    let path = checkpoint("global");
    let seen_at_end = Arc::new(AtomicU64::new(u64::MAX));
    let (b, seen) = (books.clone(), seen_at_end.clone());
    let out: Vec<u64> = Flow::from_source(source, 2, &path)
        .partition(Partition::by_key(|_: &u64| 0).stages(1))
        .reduce_with(
            || 0u64,
            |n, _| *n += 1,
            move |n, t| {
                assert_eq!(t.fired, Fired::Closed);
                seen.store(b.acked.lock().unwrap().len() as u64, Ordering::SeqCst);
                (vec![*n], Accumulator::Reset)
            },
        )
        .collect()
        .await
        .unwrap();
    assert_eq!(out, [3_000]);
    assert_eq!(
        seen_at_end.load(Ordering::SeqCst),
        0,
        "acknowledged before the window closed"
    );
    assert_eq!(books.acked.lock().unwrap().len(), 3_000);
    std::fs::remove_file(&path).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_firing_releases_what_it_emitted_so_a_long_window_does_not_stall_its_source() {
    // One global window over everything, emitted and reset every 100 events: the source
    // goes on past message 500 only once something was acknowledged.
    let books = Arc::new(Books::default());
    let source = Numbers {
        gate: 500,
        ..Numbers::new(2_000, 1, &books)
    };
    let path = checkpoint("reset");
    let sums: Vec<u64> = Flow::from_source(source, 1, &path)
        .partition(
            Partition::by_key(|_: &u64| 0)
                .stages(1)
                .window(Window::global().trigger(Trigger::every(100))),
        )
        .reduce_with(|| 0u64, |n, _| *n += 1, |n, _| (vec![*n], Accumulator::Reset))
        .collect()
        .await
        .unwrap();
    assert_eq!(sums.iter().sum::<u64>(), 2_000);
    assert_eq!(books.acked.lock().unwrap().len(), 2_000);
    std::fs::remove_file(&path).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_closed_by_the_end_of_a_bounded_input_are_final_for_the_next_run() {
    let dir = std::env::temp_dir().join(format!(
        "ferroway-flow-rerun-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("events.txt");
    let ckpt = dir.join("flow.ckpt");
    let run = |fail_after: u64| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let source = FileSource::builder(&input)
            .checkpoint_dir(dir.join("offsets"))
            .open()
            .unwrap();
        let flow = Flow::from_source(source, 1, &ckpt).filter_map(|line: String| line.parse::<u64>().ok());
        let sink = Log {
            lines: lines.clone(),
            writes: AtomicU64::new(0),
            fail_after,
        };
        async move {
            counts(flow, 2, 0).into_sink(sink, 4).await.unwrap();
            let mut out = lines.lock().unwrap().clone();
            out.sort_unstable();
            out
        }
    };
    std::fs::write(&input, "10\n20\n110\n250\n").unwrap();
    assert_eq!(run(u64::MAX).await, [(0, 1, 1), (0, 2, 1), (100, 2, 1), (200, 1, 1)]);
    // More input, some of it for windows the first run closed and wrote: those stay as
    // written (their events count as late), the new window is emitted.
    let mut more = std::fs::OpenOptions::new().append(true).open(&input).unwrap();
    std::io::Write::write_all(&mut more, b"120\n310\n").unwrap();
    drop(more);
    assert_eq!(run(u64::MAX).await, [(300, 1, 1)]);
    std::fs::remove_dir_all(&dir).unwrap();
}
