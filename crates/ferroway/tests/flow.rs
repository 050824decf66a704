//! Flow against plain sequential reference implementations, on random inputs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferroway::flow::{Accumulator, Fired, Flow, FlowError, Join, Partition, Side, Trigger, Window};
use proptest::prelude::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `items` dealt round-robin to `lanes` lanes.
fn deal<T: Clone>(items: &[T], lanes: usize) -> Vec<Vec<T>> {
    (0..lanes)
        .map(|l| items.iter().skip(l).step_by(lanes).cloned().collect())
        .collect()
}

fn word_count(lines: Vec<String>, lanes: usize, partitions: usize, max_demand: usize) -> BTreeMap<String, u64> {
    let per_lane = deal(&lines, lanes);
    let counts: Vec<(String, u64)> = rt()
        .block_on(
            Flow::from_iterables(per_lane)
                .max_demand(max_demand)
                .flat_map(|l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .partition(Partition::hashed().stages(partitions))
                .reduce(HashMap::new, |m: &mut HashMap<String, u64>, w: &String| {
                    *m.entry(w.clone()).or_default() += 1
                })
                .flat_map(|m| m)
                .collect(),
        )
        .unwrap();
    let mut out = BTreeMap::new();
    for (w, n) in counts {
        assert!(out.insert(w, n).is_none(), "a word was counted in two partitions");
    }
    out
}

fn reference_count(lines: &[String]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in lines.iter().flat_map(|l| l.split_whitespace()) {
        *m.entry(w.to_string()).or_default() += 1;
    }
    m
}

/// Window starts holding `ts`, by the definition (not the code under test).
fn reference_windows(size: i64, slide: i64, ts: i64) -> Vec<i64> {
    let mut starts = Vec::new();
    let mut s = (ts - size).div_euclid(slide) * slide;
    while s <= ts {
        if s <= ts && ts < s + size {
            starts.push(s);
        }
        s += slide;
    }
    starts
}

/// The sequential reference for event-time windows: one pass per input, in its order. An
/// event is counted in each of its windows the input's watermark (latest ts so far less the
/// out-of-orderness) has not passed by more than the lateness; with none, it is late.
fn reference_windowed(
    inputs: &[Vec<(u8, i64)>],
    size: i64,
    slide: i64,
    ooo: i64,
    lateness: i64,
) -> (BTreeMap<(u8, i64), u64>, u64) {
    let mut counts = BTreeMap::new();
    let mut late = 0;
    for input in inputs {
        let mut wm = i64::MIN;
        for &(k, ts) in input {
            let mut took = false;
            for s in reference_windows(size, slide, ts) {
                if wm < s + size + lateness {
                    took = true;
                    *counts.entry((k, s)).or_default() += 1;
                }
            }
            if !took {
                late += 1;
            }
            wm = wm.max(ts - ooo);
        }
    }
    (counts, late)
}

#[allow(clippy::type_complexity)]
fn flow_windowed(
    inputs: Vec<Vec<(u8, i64)>>,
    size: i64,
    slide: i64,
    ooo: i64,
    lateness: i64,
    partitions: usize,
) -> (BTreeMap<(u8, i64), u64>, u64) {
    let late = Arc::new(AtomicUsize::new(0));
    let l = late.clone();
    let window = Window::sliding(Duration::from_millis(size as u64), Duration::from_millis(slide as u64))
        .event_time(|e: &(u8, i64)| e.1)
        .out_of_orderness(Duration::from_millis(ooo as u64))
        .allowed_lateness(Duration::from_millis(lateness as u64))
        .on_late(move |_| {
            l.fetch_add(1, Ordering::Relaxed);
        });
    let fired: Vec<(u8, i64, u64)> = rt()
        .block_on(
            Flow::from_iterables(inputs)
                .max_demand(7)
                .partition(Partition::by_key(|e: &(u8, i64)| e.0).stages(partitions).window(window))
                .reduce_with(
                    BTreeMap::<u8, u64>::new,
                    |m, e| *m.entry(e.0).or_default() += 1,
                    |m, t| {
                        let out = m.iter().map(|(k, n)| (*k, t.window.start, *n)).collect();
                        (out, Accumulator::Keep)
                    },
                )
                .collect(),
        )
        .unwrap();
    // Every firing carries the window's whole count so far: the last one is final.
    let mut counts = BTreeMap::new();
    for (k, s, n) in fired {
        let c = counts.entry((k, s)).or_insert(0);
        assert!(n >= *c, "a later firing of window {s} key {k} counted fewer events");
        *c = n;
    }
    (counts, late.load(Ordering::Relaxed) as u64)
}

fn events() -> impl Strategy<Value = Vec<(u8, i64)>> {
    // Mostly increasing timestamps with jitter, so that some events are late and some not.
    prop::collection::vec((0u8..5, 0i64..40, -30i64..30), 0..120).prop_map(|v| {
        let mut t = 1_000;
        v.into_iter()
            .map(|(k, step, jitter)| {
                t += step;
                (k, t + jitter)
            })
            .collect()
    })
}

type Row = (Option<(u8, u16)>, Option<(u8, u16)>);

/// The nested-loop reference join.
fn reference_join(left: &[(u8, u16)], right: &[(u8, u16)], how: Join) -> Vec<Row> {
    let mut rows = Vec::new();
    for l in left {
        let matches: Vec<_> = right.iter().filter(|r| r.0 == l.0).collect();
        rows.extend(matches.iter().map(|r| (Some(*l), Some(**r))));
        if matches.is_empty() && matches!(how, Join::Left | Join::Full) {
            rows.push((Some(*l), None));
        }
    }
    if matches!(how, Join::Right | Join::Full) {
        rows.extend(
            right
                .iter()
                .filter(|r| !left.iter().any(|l| l.0 == r.0))
                .map(|r| (None, Some(*r))),
        );
    }
    rows.sort();
    rows
}

fn side_time(s: &Side<(u8, u16), (u8, u16)>) -> i64 {
    match s {
        Side::Left(l) => i64::from(l.1),
        Side::Right(r) => i64::from(r.1),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn joins_equal_the_nested_loop_reference(
        left in prop::collection::vec((0u8..6, 0u16..1000), 0..30),
        right in prop::collection::vec((0u8..6, 0u16..1000), 0..30),
        how in prop_oneof![Just(Join::Inner), Just(Join::Left), Just(Join::Right), Just(Join::Full)],
    ) {
        let mut rows = rt().block_on(
            Flow::from_iterables([left.clone(), vec![]])
                .join(Flow::from_iterable(right.clone()), |l| l.0, |r| r.0, how)
                .collect(),
        ).unwrap();
        rows.sort();
        prop_assert_eq!(rows, reference_join(&left, &right, how));
    }

    #[test]
    fn a_windowed_join_joins_within_each_window(
        mut left in prop::collection::vec((0u8..4, 0u16..1000), 0..30),
        mut right in prop::collection::vec((0u8..4, 0u16..1000), 0..30),
        how in prop_oneof![Just(Join::Inner), Just(Join::Full)],
    ) {
        // In time order, so that nothing is late: each window is joined on its own.
        left.sort_by_key(|e| e.1);
        right.sort_by_key(|e| e.1);
        let w = Window::fixed(Duration::from_millis(100)).event_time(side_time);
        let mut rows = rt().block_on(
            Flow::from_iterable(left.clone())
                .join_in(Flow::from_iterable(right.clone()), |l| l.0, |r| r.0, how, w)
                .collect(),
        ).unwrap();
        rows.sort();
        let mut expected = Vec::new();
        for start in (0..1000u16).step_by(100) {
            let l: Vec<_> = left.iter().copied().filter(|e| e.1 / 100 * 100 == start).collect();
            let r: Vec<_> = right.iter().copied().filter(|e| e.1 / 100 * 100 == start).collect();
            expected.extend(reference_join(&l, &r, how));
        }
        expected.sort();
        prop_assert_eq!(rows, expected);
    }

    #[test]
    fn word_count_equals_the_reference_for_any_partition_count(
        lines in prop::collection::vec(prop::collection::vec("[a-e]{1,2}", 0..8).prop_map(|w| w.join(" ")), 0..60),
        lanes in 1usize..4,
        partitions in 1usize..5,
        max_demand in 2usize..20,
    ) {
        prop_assert_eq!(word_count(lines.clone(), lanes, partitions, max_demand), reference_count(&lines));
    }

    #[test]
    fn every_window_kind_assigns_every_event_and_lateness_follows_the_reference(
        inputs in prop::collection::vec(events(), 1..3),
        (size, slide) in prop_oneof![(10i64..60).prop_map(|s| (s, s)), (10i64..60, 3i64..30).prop_map(|(a, b)| (a, b.min(a)))],
        ooo in 0i64..40,
        lateness in prop_oneof![Just(0i64), 0i64..50],
        partitions in 1usize..4,
    ) {
        let expected = reference_windowed(&inputs, size, slide, ooo, lateness);
        prop_assert_eq!(flow_windowed(inputs, size, slide, ooo, lateness, partitions), expected);
    }

    #[test]
    fn count_windows_hold_n_events_each_in_arrival_order(n in 1u64..20, len in 0u64..200) {
        let sums: Vec<(i64, u64)> = rt().block_on(
            Flow::from_iterable(0..len)
                .max_demand(5)
                .partition(Partition::by_key(|_: &u64| 0).stages(1).window(Window::count(n)))
                .reduce_with(|| 0u64, |s, x| *s += x, |s, t| (vec![(t.window.start, *s)], Accumulator::Reset))
                .collect(),
        ).unwrap();
        let expected: Vec<(i64, u64)> = (0..len)
            .collect::<Vec<_>>()
            .chunks(n as usize)
            .enumerate()
            .map(|(i, c)| ((i as u64 * n) as i64, c.iter().sum()))
            .collect();
        prop_assert_eq!(sums, expected);
    }
}

#[tokio::test]
async fn every_n_and_punctuation_triggers_emit_before_the_window_closes() {
    let fired: Vec<(Fired, u64)> = Flow::from_iterable(1..=10u64)
        .partition(
            Partition::by_key(|_: &u64| 0).stages(1).window(
                Window::global()
                    .trigger(Trigger::every(4))
                    .trigger(Trigger::punctuation(|x: &u64| *x == 6)),
            ),
        )
        .reduce_with(|| 0u64, |s, x| *s += x, |s, t| (vec![(t.fired, *s)], Accumulator::Keep))
        .collect()
        .await
        .unwrap();
    assert_eq!(
        fired,
        [
            (Fired::Every, 10),
            (Fired::Punctuation, 21),
            (Fired::Every, 55),
            (Fired::Closed, 55)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn periodic_windows_close_by_processing_time() {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let flow = Flow::from_stream(Box::pin(stream))
        .partition(
            Partition::by_key(|_: &u64| 0)
                .stages(1)
                .window(Window::periodic(Duration::from_secs(10))),
        )
        .reduce_with(
            || 0u64,
            |s, x| *s += x,
            |s, t| (vec![(t.fired, t.window.start, *s)], Accumulator::Reset),
        );
    let out = tokio::spawn(flow.collect());
    tokio::time::sleep(Duration::from_secs(1)).await;
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    tx.send(30).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(tx);
    let out = out.await.unwrap().unwrap();
    assert_eq!(out, [(Fired::Closed, 0, 3), (Fired::Closed, 10_000, 30)]);
}

/// Counts live accumulators: made by `init`, gone when dropped.
struct Tracked(Arc<AtomicUsize>, u64);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_windowed_flow_keeps_only_open_windows_in_memory() {
    // 1,000,000 events over 1,000 one-second windows; at most a few windows per partition
    // are open at any time, so the state never holds more than a handful of accumulators.
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (l, p) = (live.clone(), peak.clone());
    let w = Window::fixed(Duration::from_secs(1))
        .event_time(|e: &(u64, i64)| e.1)
        .out_of_orderness(Duration::from_millis(100));
    let total: u64 = Flow::from_iterable((0..1_000_000u64).map(|i| (i % 7, (i / 100) as i64 * 1000 / 10)))
        .partition(Partition::by_key(|e: &(u64, i64)| e.0).stages(2).window(w))
        .reduce_with(
            move || {
                let n = l.fetch_add(1, Ordering::Relaxed) + 1;
                p.fetch_max(n, Ordering::Relaxed);
                Tracked(l.clone(), 0)
            },
            |t, _| t.1 += 1,
            |t, _| (vec![t.1], Accumulator::Keep),
        )
        .into_stream()
        .fold(0u64, |s, n| async move { s + n.unwrap() })
        .await;
    assert_eq!(total, 1_000_000);
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= 8, "at most a few open windows per partition, not {peak}");
    assert_eq!(live.load(Ordering::Relaxed), 0, "every window's state was dropped");
}

use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_the_sources_back() {
    let made = Arc::new(AtomicUsize::new(0));
    let m = made.clone();
    let mut s = std::pin::pin!(
        Flow::from_iterable((0..10_000_000u64).inspect(move |_| {
            m.fetch_add(1, Ordering::Relaxed);
        }))
        .max_demand(100)
        .map(|x| x + 1)
        .into_stream()
    );
    for _ in 0..10 {
        s.next().await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let made = made.load(Ordering::Relaxed);
    assert!(made <= 1_000, "the source made {made} events for a reader that took 10");
}

#[tokio::test]
async fn a_panicking_step_fails_the_flow_naming_the_stage() {
    let err = Flow::from_iterable(0..10u32)
        .name("boom")
        .map(|x| if x == 5 { panic!("five") } else { x })
        .collect()
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, FlowError::Stage(_)), "{err:?}");
    assert!(
        shown.contains("boom") && shown.contains("map") && shown.contains("five"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_missing_file_is_named() {
    let err = Flow::from_file_lines("/nonexistent/ferroway-flow.txt", 2)
        .collect()
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ferroway-flow.txt"), "{err}");
}

#[tokio::test]
async fn an_event_time_window_without_a_time_is_refused() {
    let err = Flow::from_iterable(0..3u32)
        .partition(Partition::hashed().window(Window::fixed(Duration::from_secs(1))))
        .reduce(|| 0u32, |s, x| *s += x)
        .collect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FlowError::Invalid {
                option: "event_time",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_read_by_several_lanes_gives_every_line_once() {
    let path = std::env::temp_dir().join(format!("ferroway-flow-lines-{}.txt", std::process::id()));
    let text: String = (0..10_000)
        .map(|i| format!("line {i} {}\n", "x".repeat(i % 17)))
        .collect();
    std::fs::write(&path, &text).unwrap();
    for lanes in [1, 2, 3, 7] {
        let mut lines = Flow::from_file_lines(&path, lanes).collect().await.unwrap();
        lines.sort();
        let mut expected: Vec<String> = text.lines().map(str::to_string).collect();
        expected.sort();
        assert_eq!(lines, expected, "{lanes} lanes");
    }
    std::fs::remove_file(&path).unwrap();
}

/// Down for its first `outages` writes, then keeps what it is given; refuses "bad".
struct Flaky {
    outages: AtomicUsize,
    kept: std::sync::Mutex<Vec<String>>,
}

impl ferroway::connector::Sink<String> for Flaky {
    fn write<'a>(
        &'a self,
        batch: &'a mut [ferroway::pipeline::Message<String>],
    ) -> ferroway::pipeline::BoxFuture<'a, Result<(), ferroway::BoxError>> {
        Box::pin(async move {
            if self.outages.load(Ordering::Relaxed) > 0 {
                self.outages.fetch_sub(1, Ordering::Relaxed);
                return Err(ferroway::Unavailable::new("flaky", "connection refused").into());
            }
            for m in batch.iter_mut() {
                if m.data() == "bad" {
                    m.fail("bad result");
                } else {
                    self.kept.lock().unwrap().push(m.data().clone());
                }
            }
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_sink_outage_is_waited_out_and_nothing_is_lost() {
    let sink = Arc::new(Flaky {
        outages: AtomicUsize::new(3),
        kept: Default::default(),
    });
    let n = Flow::from_iterable(0..1000)
        .map(|i: u32| i.to_string())
        .into_sink(sink.clone(), 64)
        .await
        .unwrap();
    assert_eq!(n, 1000);
    let kept = sink.kept.lock().unwrap().clone();
    assert_eq!(kept, (0..1000).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_result_the_sink_refuses_fails_the_flow() {
    let sink = Flaky {
        outages: AtomicUsize::new(0),
        kept: Default::default(),
    };
    let err = Flow::from_iterable(["ok", "bad", "ok"])
        .map(str::to_string)
        .into_sink(sink, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::Sink(_)), "{err:?}");
    assert!(err.to_string().contains("bad result"), "{err}");
}

#[tokio::test]
async fn a_flow_without_sources_ends_at_once_with_nothing() {
    let none: Vec<u32> = tokio::time::timeout(
        Duration::from_secs(10),
        Flow::from_iterables(Vec::<Vec<u32>>::new())
            .partition(Partition::hashed())
            .reduce(|| 0u32, |s, x| *s += x)
            .collect(),
    )
    .await
    .expect("no hang")
    .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_flat_map_that_multiplies_events_loses_none() {
    let all = Flow::from_iterable(0..5000u32)
        .flat_map(|x| [x; 4])
        .collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 20_000);
}

/// Each window's first firing and its final count, for events `ts` on one lane.
async fn firings(ts: Vec<i64>, lateness: u64, max_demand: usize) -> BTreeMap<i64, (Fired, u64)> {
    let w = Window::fixed(Duration::from_millis(10))
        .event_time(|t: &i64| *t)
        .allowed_lateness(Duration::from_millis(lateness));
    let fired = Flow::from_iterable(ts)
        .max_demand(max_demand)
        .partition(Partition::by_key(|_: &i64| 0).stages(1).window(w))
        .reduce_with(
            || 0u64,
            |n, _| *n += 1,
            |n, t| (vec![(t.window.start, t.fired, *n)], Accumulator::Keep),
        )
        .collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for (start, kind, n) in fired {
        out.entry(start)
            .and_modify(|e: &mut (Fired, u64)| e.1 = n)
            .or_insert((kind, n));
    }
    out
}

#[tokio::test]
async fn a_window_made_by_an_allowed_late_event_fires_late_once_and_never_closed() {
    let w = Window::fixed(Duration::from_millis(10))
        .event_time(|t: &i64| *t)
        .allowed_lateness(Duration::from_millis(10));
    let mut fired: Vec<(i64, Fired, u64)> = Flow::from_iterable([5i64, 35, 25, 45])
        .partition(Partition::by_key(|_: &i64| 0).stages(1).window(w))
        .reduce_with(
            || 0u64,
            |n, _| *n += 1,
            |n, t| (vec![(t.window.start, t.fired, *n)], Accumulator::Reset),
        )
        .collect()
        .await
        .unwrap();
    fired.sort_by_key(|f| f.0);
    assert_eq!(
        fired,
        [
            (0, Fired::Closed, 1),
            (20, Fired::Late, 1),
            (30, Fired::Closed, 1),
            (40, Fired::Closed, 1)
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn how_batches_are_cut_changes_no_window_result(
        ts in prop::collection::vec(0i64..200, 0..80),
        lateness in 0u64..30,
    ) {
        let rt = rt();
        let small = rt.block_on(firings(ts.clone(), lateness, 2));
        let large = rt.block_on(firings(ts, lateness, 64));
        prop_assert_eq!(small, large);
    }
}

#[tokio::test]
async fn extreme_timestamps_neither_panic_nor_hang() {
    for w in [
        Window::fixed(Duration::from_secs(60)),
        Window::sliding(Duration::from_secs(60), Duration::from_secs(20)),
    ] {
        let w = w.event_time(|t: &i64| *t).trigger(Trigger::periodically(Duration::MAX));
        let counts: Vec<u64> = tokio::time::timeout(
            Duration::from_secs(10),
            Flow::from_iterable([i64::MIN, 0, i64::MAX])
                .partition(Partition::by_key(|_: &i64| 0).stages(1).window(w))
                .reduce(|| 0u64, |n, _| *n += 1)
                .collect(),
        )
        .await
        .expect("no hang")
        .unwrap();
        assert!(counts.iter().sum::<u64>() >= 2, "{counts:?}");
    }
}

#[tokio::test]
async fn options_that_cannot_work_are_refused_by_name() {
    let cases: Vec<(Window<i64>, &str)> = vec![
        (
            Window::sliding(Duration::from_secs(1), Duration::from_secs(2)).event_time(|t: &i64| *t),
            "window size",
        ),
        (
            Window::fixed(Duration::from_secs(1))
                .event_time(|t: &i64| *t)
                .idle_timeout(Duration::ZERO),
            "idle_timeout",
        ),
        (Window::session(Duration::from_millis(5)), "event_time"),
        (
            Window::session(Duration::from_millis(5))
                .event_time(|t: &i64| *t)
                .allowed_lateness(Duration::from_millis(1)),
            "allowed_lateness",
        ),
    ];
    for (w, option) in cases {
        let err = Flow::from_iterable([1i64])
            .partition(Partition::hashed().window(w))
            .reduce(|| 0u64, |n, _| *n += 1)
            .collect()
            .await
            .unwrap_err();
        assert!(
            matches!(err, FlowError::Invalid { option: o, .. } if o == option),
            "{err:?}"
        );
    }
    let late_join = Window::fixed(Duration::from_secs(1))
        .event_time(|_: &Side<i64, i64>| 0)
        .allowed_lateness(Duration::from_secs(1));
    let err = Flow::from_iterable([1i64])
        .join_in(Flow::from_iterable([1i64]), |l| *l, |r| *r, Join::Inner, late_join)
        .collect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FlowError::Invalid {
                option: "allowed_lateness",
                ..
            }
        ),
        "{err:?}"
    );
}

/// Sessions per key, sequentially: `(key, start) -> (end, events)`.
fn reference_sessions(events: &[(u8, i64)], gap: i64) -> BTreeMap<(u8, i64), (i64, u64)> {
    let mut by_key: BTreeMap<u8, Vec<i64>> = BTreeMap::new();
    for (k, ts) in events {
        by_key.entry(*k).or_default().push(*ts);
    }
    let mut out = BTreeMap::new();
    for (k, mut ts) in by_key {
        ts.sort_unstable();
        let mut current: Option<(i64, i64, u64)> = None;
        for t in ts {
            current = match current {
                Some((start, end, n)) if t < end => Some((start, end.max(t + gap), n + 1)),
                Some((start, end, n)) => {
                    out.insert((k, start), (end, n));
                    Some((t, t + gap, 1))
                }
                None => Some((t, t + gap, 1)),
            };
        }
        if let Some((start, end, n)) = current {
            out.insert((k, start), (end, n));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn sessions_equal_the_sequential_reference_late_events_judged_by_their_own_lane(
        evs in events(),
        lanes in 1usize..4,
        partitions in 1usize..4,
        gap in 1i64..60,
        // Beyond the whole input (nothing late) or within the jitter (some late).
        ooo in prop_oneof![Just(3_600_000i64), 0i64..40],
        max_demand in 2usize..9,
    ) {
        let per_lane = deal(&evs, lanes);
        // Reference: an event is late when it is before its lane's latest time less `ooo`.
        let mut kept = Vec::new();
        let mut late = 0u64;
        for lane in &per_lane {
            let mut max = i64::MIN;
            for e in lane {
                if e.1 < max.saturating_sub(ooo) { late += 1 } else { kept.push(*e) }
                max = max.max(e.1);
            }
        }
        let counted = Arc::new(AtomicUsize::new(0));
        let c = counted.clone();
        let w = Window::session(Duration::from_millis(gap as u64))
            .event_time(|e: &(u8, i64)| e.1)
            .out_of_orderness(Duration::from_millis(ooo as u64))
            .on_late(move |_| { c.fetch_add(1, Ordering::Relaxed); });
        let got: Vec<(u8, i64, i64, u64)> = rt().block_on(
            Flow::from_iterables(per_lane)
                .max_demand(max_demand)
                .partition(Partition::by_key(|e: &(u8, i64)| e.0).stages(partitions).window(w))
                .reduce_with(
                    || (0u8, 0u64),
                    |acc, e| *acc = (e.0, acc.1 + 1),
                    |acc, t| (vec![(acc.0, t.window.start, t.window.end, acc.1)], Accumulator::Reset),
                )
                .collect(),
        ).unwrap();
        let mut sessions = BTreeMap::new();
        for (k, start, end, n) in got {
            prop_assert!(sessions.insert((k, start), (end, n)).is_none(), "session ({k}, {start}) emitted twice");
        }
        prop_assert_eq!(counted.load(Ordering::Relaxed) as u64, late);
        prop_assert_eq!(sessions, reference_sessions(&kept, gap));
    }
}

#[tokio::test]
async fn a_session_event_behind_the_watermark_is_late_and_triggers_fire_inside_a_session() {
    let late = Arc::new(AtomicUsize::new(0));
    let l = late.clone();
    let w = Window::session(Duration::from_millis(10))
        .event_time(|e: &(u8, i64)| e.1)
        .trigger(Trigger::every(2))
        .on_late(move |_| {
            l.fetch_add(1, Ordering::Relaxed);
        });
    // In order (no out-of-orderness): the event at 3 comes after the watermark passed 40.
    let events = [(1u8, 0i64), (1, 5), (1, 8), (1, 40), (1, 3), (1, 45)];
    let fired: Vec<(Fired, i64, u64)> = Flow::from_iterable(events)
        .partition(Partition::by_key(|e: &(u8, i64)| e.0).stages(1).window(w))
        .reduce_with(
            || 0u64,
            |n, _| *n += 1,
            |n, t| (vec![(t.fired, t.window.start, *n)], Accumulator::Keep),
        )
        .collect()
        .await
        .unwrap();
    assert_eq!(
        fired,
        [
            (Fired::Every, 0, 2),
            (Fired::Closed, 0, 3),
            (Fired::Every, 40, 2),
            (Fired::Closed, 40, 2),
        ]
    );
    assert_eq!(late.load(Ordering::Relaxed), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn group_by_key_and_departition_equal_the_sequential_reference(
        pairs in prop::collection::vec((0u8..8, 0u32..100), 0..200),
        lanes in 1usize..4,
        partitions in 1usize..5,
    ) {
        let per_lane = deal(&pairs, lanes);
        let mut groups: Vec<(u8, Vec<u32>)> = rt().block_on(
            Flow::from_iterables(per_lane.clone())
                .partition(Partition::by_key(|p: &(u8, u32)| p.0).stages(partitions))
                .group_by_key()
                .collect(),
        ).unwrap();
        for g in &mut groups {
            g.1.sort_unstable();
        }
        groups.sort();
        let mut reference: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
        for (k, v) in &pairs {
            reference.entry(*k).or_default().push(*v);
        }
        for v in reference.values_mut() {
            v.sort_unstable();
        }
        prop_assert_eq!(groups, reference.into_iter().collect::<Vec<_>>());

        // Sum per partition, then one total over every partition.
        let total: Vec<u64> = rt().block_on(
            Flow::from_iterables(per_lane)
                .partition(Partition::by_key(|p: &(u8, u32)| p.0).stages(partitions))
                .reduce(|| 0u64, |s, p| *s += u64::from(p.1))
                .departition(|| 0u64, |t, s| *t += s, |t| [t])
                .collect(),
        ).unwrap();
        prop_assert_eq!(total, vec![pairs.iter().map(|p| u64::from(p.1)).sum::<u64>()]);
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_input_stops_holding_the_watermark_back_after_its_idle_timeout() {
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u8, i64)>();
    let busy = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) }).boxed();
    // One event, then silence without end.
    let quiet = futures_util::stream::iter([(0u8, 10i64)])
        .chain(futures_util::stream::pending())
        .boxed();
    let w = Window::fixed(Duration::from_secs(1))
        .event_time(|e: &(u8, i64)| e.1)
        .idle_timeout(Duration::from_secs(2));
    let flow = Flow::merge([Flow::from_stream(busy), Flow::from_stream(quiet)])
        .partition(Partition::by_key(|_: &(u8, i64)| 0).stages(1).window(w))
        .reduce_with(
            || 0u64,
            |n, _| *n += 1,
            |n, t| (vec![(t.window.start, *n)], Accumulator::Reset),
        );
    let mut out = std::pin::pin!(flow.into_stream());
    tx.send((0, 100)).unwrap();
    tx.send((0, 1_500)).unwrap();
    // The quiet input's watermark (10) holds window [0, 1000) open...
    assert!(
        tokio::time::timeout(Duration::from_millis(1_500), out.next())
            .await
            .is_err()
    );
    // ...until it has been silent for longer than the idle timeout.
    tokio::time::advance(Duration::from_secs(1)).await;
    tx.send((0, 1_600)).unwrap();
    let closed = tokio::time::timeout(Duration::from_millis(100), out.next()).await;
    assert_eq!(closed.ok().flatten().map(Result::unwrap), Some((0, 2)));
}

#[tokio::test]
async fn a_flow_as_a_stage_hands_its_results_on_and_its_failure_too() {
    use ferroway::stage::{self, Consumer, ConsumerOptions, SubscribeOptions};
    struct Keep(Arc<std::sync::Mutex<Vec<u32>>>);
    impl Consumer for Keep {
        type Input = u32;
        async fn handle_events(&mut self, events: Vec<u32>) -> Result<(), ferroway::BoxError> {
            self.0.lock().unwrap().extend(events);
            Ok(())
        }
    }
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let results = Flow::from_iterable(0..1_000u32).max_demand(10).into_stage();
    let keep = stage::start_consumer(Keep(kept.clone()), ConsumerOptions::new().stop_when_unsubscribed(true));
    keep.subscribe_to(&results.producer_ref(), SubscribeOptions::new().max_demand(7))
        .await
        .unwrap();
    keep.join().await.unwrap();
    assert_eq!(*kept.lock().unwrap(), (0..1_000).collect::<Vec<_>>());

    let failing = Flow::from_iterable(0..10u32)
        .map(|x| if x == 5 { panic!("five") } else { x })
        .into_stage();
    let keep = stage::start_consumer(
        Keep(Arc::default()),
        ConsumerOptions::new().stop_when_unsubscribed(true),
    );
    keep.subscribe_to(&failing.producer_ref(), SubscribeOptions::new())
        .await
        .unwrap();
    let e = failing.join().await.unwrap_err().to_string();
    assert!(e.contains("five"), "{e}");
}
