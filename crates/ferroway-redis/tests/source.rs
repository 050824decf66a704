//! The Redis Streams source against a real Redis server.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway::stage::{Emit, Producer};
use ferroway_redis::{ClaimOptions, Entry, OnFailed, RedisSource, SourceOptions, StartId};
use support::{Recorder, delete, group_read_as, pending_count, redis, unique, url, xadd_n};
use tokio::sync::mpsc;

fn opts(group: &str, stream: &str, consumer: &str) -> SourceOptions {
    SourceOptions::new(url(), group, [stream])
        .consumer(consumer)
        .block(Duration::from_millis(100))
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached in 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_reads_every_entry_with_metadata_and_acks_all_on_stop() {
    let mut c = redis().await;
    let stream = unique("roundtrip");
    xadd_n(&mut c, &stream, 0, 500).await;
    let rec = Recorder::default();
    let o = opts("g", &stream, "c1");
    let p = Pipeline::builder("redis-roundtrip", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .unwrap();
    wait_for(|| rec.numbers().len() >= 500).await;
    p.stop().await.unwrap();
    let mut got = rec.numbers();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    let seen = rec.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|(_, md)| &*md.stream == stream.as_str() && md.delivery_count == 1)
    );
    // Graceful shutdown acknowledged everything: nothing pending.
    assert_eq!(pending_count(&mut c, &stream, "g").await, 0);
    delete(&mut c, &[&stream]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_group_share_the_work_without_overlap() {
    let mut c = redis().await;
    let stream = unique("share");
    let (a, b) = (Recorder::default(), Recorder::default());
    let start = |name: &'static str, rec: Recorder| {
        let o = opts("g", &stream, name).create_group(StartId::Beginning);
        Pipeline::builder(name, rec)
            .source(RedisSource::factory(o).unwrap())
            .start()
    };
    let pa = start("a", a.clone()).await.unwrap();
    let pb = start("b", b.clone()).await.unwrap();
    for k in 0..10 {
        xadd_n(&mut c, &stream, k * 200, (k + 1) * 200).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(|| a.numbers().len() + b.numbers().len() >= 2_000).await;
    pa.stop().await.unwrap();
    pb.stop().await.unwrap();
    let (sa, sb): (HashSet<u64>, HashSet<u64>) = (a.numbers().into_iter().collect(), b.numbers().into_iter().collect());
    assert!(sa.is_disjoint(&sb), "an entry was handled by both consumers");
    assert_eq!(sa.len() + sb.len(), 2_000);
    assert!(
        !sa.is_empty() && !sb.is_empty(),
        "both consumers worked: a={} b={}",
        sa.len(),
        sb.len()
    );
    assert_eq!(pending_count(&mut c, &stream, "g").await, 0);
    delete(&mut c, &[&stream]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reprocesses_own_pending_entries_first() {
    let mut c = redis().await;
    let stream = unique("pel");
    xadd_n(&mut c, &stream, 0, 50).await;
    // A consumer that read entries and died before acknowledging them.
    group_read_as(&mut c, &stream, "g", "worker", Some(20)).await;
    assert_eq!(pending_count(&mut c, &stream, "g").await, 20);
    let rec = Recorder::default();
    let o = opts("g", &stream, "worker");
    let p = Pipeline::builder("pel", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .processors(Processors::new().concurrency(1))
        .start()
        .await
        .unwrap();
    wait_for(|| rec.numbers().len() >= 50).await;
    p.stop().await.unwrap();
    let seen = rec.seen.lock().unwrap().clone();
    // The 20 pending entries come first, marked as redelivered.
    let first: Vec<u64> = seen.iter().take(20).map(|(n, _)| *n).collect();
    assert_eq!(first, (0..20).collect::<Vec<_>>());
    assert!(
        seen.iter().take(20).all(|(_, md)| md.delivery_count >= 2),
        "{:?}",
        seen[0].1
    );
    assert_eq!(seen.len(), 50);
    assert_eq!(pending_count(&mut c, &stream, "g").await, 0);
    delete(&mut c, &[&stream]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_entries_of_a_dead_consumer_are_claimed_and_a_delivery_limit_dead_letters_them() {
    let mut c = redis().await;
    let stream = unique("claim");
    xadd_n(&mut c, &stream, 0, 10).await;
    // "dead" read all ten and vanished; entry 3 had already been delivered 3 times.
    group_read_as(&mut c, &stream, "g", "dead", None).await;
    let ids: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    let id3 = ids[3].0.clone();
    for _ in 0..2 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(&stream)
            .arg("g")
            .arg("dead")
            .arg(0)
            .arg(&id3)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let rec = Recorder::default();
    let (dlq_tx, mut dlq_rx) = mpsc::channel::<Message<Entry>>(16);
    let o = opts("g", &stream, "alive").claim(ClaimOptions {
        min_idle: Duration::from_millis(200),
        interval: Duration::from_millis(100),
        max_deliveries: 3,
    });
    let p = Pipeline::builder("claim", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .dead_letter(dlq_tx)
        .start()
        .await
        .unwrap();
    let dead = tokio::time::timeout(Duration::from_secs(10), dlq_rx.recv())
        .await
        .unwrap()
        .unwrap();
    wait_for(|| rec.numbers().len() >= 9).await;
    p.stop().await.unwrap();
    assert_eq!(support::n_of(dead.data()), 3);
    assert!(
        dead.failure().unwrap().contains("delivered 4 times (limit 3)"),
        "{:?}",
        dead.failure()
    );
    let mut got = rec.numbers();
    got.sort_unstable();
    assert_eq!(
        got,
        vec![0, 1, 2, 4, 5, 6, 7, 8, 9],
        "claimed and handled, the poison entry excepted"
    );
    assert!(rec.seen.lock().unwrap().iter().all(|(_, md)| md.delivery_count == 2));
    assert_eq!(
        pending_count(&mut c, &stream, "g").await,
        0,
        "the dead-lettered entry was acknowledged too"
    );
    delete(&mut c, &[&stream]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_entries_stay_pending_by_default_or_are_acked_when_configured() {
    let mut c = redis().await;
    for (on_failed, expect_pending) in [(OnFailed::LeavePending, 5), (OnFailed::Ack, 0)] {
        let stream = unique("failed");
        xadd_n(&mut c, &stream, 0, 50).await;
        let rec = Recorder::failing(|n| n % 10 == 0);
        let o = opts("g", &stream, "c").on_failed(on_failed).claim(None);
        let p = Pipeline::builder("failed", rec.clone())
            .source(RedisSource::factory(o).unwrap())
            .start()
            .await
            .unwrap();
        wait_for(|| rec.numbers().len() >= 50).await;
        p.stop().await.unwrap();
        assert_eq!(
            pending_count(&mut c, &stream, "g").await,
            expect_pending,
            "{on_failed:?}"
        );
        delete(&mut c, &[&stream]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_reestablished_and_nothing_is_lost() {
    let mut c = redis().await;
    let stream = unique("kill");
    let consumer = format!("killed-{:x}", fastrand::u32(..));
    let rec = Recorder::default();
    let o = opts("g", &stream, &consumer);
    let p = Pipeline::builder("kill", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .unwrap();
    let mut killed = 0;
    for k in 0..20u64 {
        xadd_n(&mut c, &stream, k * 100, (k + 1) * 100).await;
        if k % 5 == 2 {
            // Kill the source's connections (reads and acks) mid-stream, once they are back
            // from the last kill (on a loaded machine that can take a while).
            let mut ids = Vec::new();
            for _ in 0..500 {
                ids = support::client_ids(&mut c, &consumer).await;
                ids.extend(support::client_ids(&mut c, &format!("{consumer}-ack")).await);
                if !ids.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for id in ids {
                let _: redis::Value = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(id)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                killed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(killed >= 4, "killed {killed} connections");
    wait_for(|| rec.numbers().iter().collect::<HashSet<_>>().len() >= 2_000).await;
    p.stop().await.unwrap();
    let got: HashSet<u64> = rec.numbers().into_iter().collect();
    assert_eq!(got, (0..2_000).collect::<HashSet<_>>());
    assert_eq!(
        pending_count(&mut c, &stream, "g").await,
        0,
        "acknowledgements were retried after reconnecting"
    );
    delete(&mut c, &[&stream]).await;
}

#[tokio::test]
async fn options_are_validated_and_secrets_never_shown() {
    let o = SourceOptions::new("redis://app:hunter2@127.0.0.1:6379/0", "g", ["s"]);
    let shown = format!("{o:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("app:***@127.0.0.1"),
        "{shown}"
    );
    let e = SourceOptions::new("redis://127.0.0.1", "g", Vec::<String>::new())
        .validate()
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid option `streams`: name at least one stream");
    let e = SourceOptions::new("redis://127.0.0.1", "g", ["s"])
        .max_count(0)
        .validate()
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid option `max_count`: must be at least 1");
    let e = SourceOptions::new("nope://x:pw@h", "g", ["s"]).validate().unwrap_err();
    assert!(!e.to_string().contains("pw@"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_entries_of_a_dead_consumer_are_each_processed_exactly_once() {
    let mut c = redis().await;
    let stream = unique("claim-once");
    xadd_n(&mut c, &stream, 0, 200).await;
    group_read_as(&mut c, &stream, "g", "dead", None).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    let rec = Recorder::default();
    let o = opts("g", &stream, "alive").claim(ClaimOptions {
        min_idle: Duration::from_millis(200),
        interval: Duration::from_millis(100),
        max_deliveries: 5,
    });
    // Slow enough that claimed entries are still in flight when the source reads again.
    let slow = Slow(rec.clone(), Duration::from_millis(2));
    let p = Pipeline::builder("claim-once", slow)
        .source(RedisSource::factory(o).unwrap())
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .unwrap();
    wait_for(|| rec.numbers().len() >= 200).await;
    // Several more claim rounds and reads: an entry emitted twice would show now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.stop().await.unwrap();
    let mut got = rec.numbers();
    got.sort_unstable();
    let twice = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(twice, 0, "{twice} claimed entries were processed twice");
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    assert!(rec.seen.lock().unwrap().iter().all(|(_, md)| md.delivery_count == 2));
    assert_eq!(pending_count(&mut c, &stream, "g").await, 0);
    delete(&mut c, &[&stream]).await;
}

/// Records, then takes its time.
struct Slow(Recorder, Duration);

impl Handler for Slow {
    type Data = Entry;
    async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), BoxError> {
        self.0.handle_message(m).await?;
        tokio::time::sleep(self.1).await;
        Ok(())
    }
}

/// Holds every message until released.
#[derive(Clone, Default)]
struct Held {
    rec: Recorder,
    released: Arc<AtomicBool>,
}

impl Handler for Held {
    type Data = Entry;
    async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), BoxError> {
        self.rec.handle_message(m).await?;
        while !self.released.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_in_flight_is_not_read_again_by_a_source_with_the_same_consumer_name() {
    // What a producer restarted by its pipeline sees: the entries of the source it replaces
    // are still in flight, in the pending list of the same consumer.
    let mut c = redis().await;
    let stream = unique("same-name");
    xadd_n(&mut c, &stream, 0, 20).await;
    let held = Held::default();
    let o = opts("g", &stream, "same");
    let first = o.clone();
    let p = Pipeline::builder("same-name", held.clone())
        .source(RedisSource::factory(first).unwrap())
        .processors(Processors::new().concurrency(2).max_demand(10))
        .start()
        .await
        .unwrap();
    wait_for(|| held.rec.numbers().len() >= 2).await;
    let mut second = RedisSource::new(o).unwrap();
    let read = tokio::time::timeout(Duration::from_secs(1), second.handle_demand(100)).await;
    if let Ok(emitted) = read {
        let (Emit::Events(events) | Emit::Done(events)) = emitted.unwrap();
        let ns: Vec<u64> = events.iter().map(|m| support::n_of(m.data())).collect();
        panic!("entries in flight were read again: {ns:?}");
    }
    held.released.store(true, Ordering::Release);
    wait_for(|| held.rec.numbers().len() >= 20).await;
    for _ in 0..200 {
        if pending_count(&mut c, &stream, "g").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = tokio::time::timeout(Duration::from_secs(1), second.handle_demand(100)).await;
    assert!(read.is_err(), "nothing new was added, so nothing is read");
    drop(second);
    p.stop().await.unwrap();
    let mut got = held.rec.numbers();
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    delete(&mut c, &[&stream]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_source_with_default_options_keeps_its_connection() {
    let mut c = redis().await;
    let stream = unique("idle");
    let consumer = format!("idle-{:08x}", fastrand::u32(..));
    let o = SourceOptions::new(url(), "g", [&stream]).consumer(&consumer);
    let rec = Recorder::default();
    let p = Pipeline::builder("idle", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .start()
        .await
        .unwrap();
    let mut first = Vec::new();
    for _ in 0..200 {
        first = support::client_ids(&mut c, &consumer).await;
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(first.len(), 1, "one read connection: {first:?}");
    // Ten idle reads of the default BLOCK (1 s): none may take the connection down.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let now = support::client_ids(&mut c, &consumer).await;
    assert_eq!(now, first, "the read connection was replaced: reconnections while idle");
    // And it still reads.
    xadd_n(&mut c, &stream, 0, 10).await;
    wait_for(|| rec.numbers().len() >= 10).await;
    p.stop().await.unwrap();
    delete(&mut c, &[&stream]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_with_default_options_leaves_nothing_pending_while_entries_keep_coming() {
    let mut c = redis().await;
    let stream = unique("stop");
    let consumer = format!("stopper-{:08x}", fastrand::u32(..));
    let rec = Recorder::default();
    let writing = Arc::new(AtomicBool::new(true));
    let added = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (stream, writing, added) = (stream.clone(), writing.clone(), added.clone());
        async move {
            let mut c = redis().await;
            let mut n = 0;
            while writing.load(Ordering::Acquire) {
                xadd_n(&mut c, &stream, n, n + 20).await;
                n += 20;
                added.store(n, Ordering::Release);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    for round in 0..5 {
        let o = SourceOptions::new(url(), "g", [&stream]).consumer(&consumer);
        let p = Pipeline::builder("stop", rec.clone())
            .source(RedisSource::factory(o).unwrap())
            .processors(Processors::new().concurrency(2))
            .start()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(fastrand::u64(300..1_500))).await;
        p.stop().await.unwrap();
        let left = support::consumer_pending(&mut c, &stream, "g", &consumer).await;
        assert_eq!(
            left, 0,
            "round {round}: {left} entries left pending after stop() returned"
        );
        assert_eq!(pending_count(&mut c, &stream, "g").await, 0, "round {round}");
    }
    writing.store(false, Ordering::Release);
    writer.await.unwrap();
    let total = added.load(Ordering::Acquire);
    // The rest, by a last run.
    let o = SourceOptions::new(url(), "g", [&stream]).consumer(&consumer);
    let p = Pipeline::builder("stop", rec.clone())
        .source(RedisSource::factory(o).unwrap())
        .start()
        .await
        .unwrap();
    wait_for(|| rec.numbers().len() as u64 >= total).await;
    p.stop().await.unwrap();
    let mut got = rec.numbers();
    got.sort_unstable();
    let twice = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(twice, 0, "{twice} entries processed twice");
    assert_eq!(got, (0..total).collect::<Vec<_>>());
    delete(&mut c, &[&stream]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_consumer_name_is_stable_so_a_restart_finds_its_own_pending_entries() {
    let mut c = redis().await;
    let stream = unique("default-name");
    xadd_n(&mut c, &stream, 0, 10).await;
    // Built anew for each run, as a restarted process would. No claiming: only this consumer
    // can get its pending entry back.
    let opts = |stream: &str| {
        SourceOptions::new(url(), "g", [stream])
            .block(Duration::from_millis(100))
            .claim(None)
    };
    let first = Recorder::failing(|n| n == 3);
    let o = opts(&stream);
    let p = Pipeline::builder("default-name-1", first.clone())
        .source(RedisSource::factory(o).unwrap())
        .start()
        .await
        .unwrap();
    wait_for(|| first.numbers().len() >= 10).await;
    p.stop().await.unwrap();
    assert_eq!(
        pending_count(&mut c, &stream, "g").await,
        1,
        "entry 3 failed and stays pending"
    );

    let second = Recorder::default();
    let o = opts(&stream);
    let p = Pipeline::builder("default-name-2", second.clone())
        .source(RedisSource::factory(o).unwrap())
        .start()
        .await
        .unwrap();
    wait_for(|| !second.numbers().is_empty()).await;
    p.stop().await.unwrap();
    let seen = second.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].0, seen[0].1.delivery_count), (3, 2));
    assert_eq!(pending_count(&mut c, &stream, "g").await, 0);
    delete(&mut c, &[&stream]).await;
}

#[test]
fn the_default_consumer_name_is_the_host_name() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let opts = SourceOptions::new(url(), "g", ["s"]);
    assert_eq!(opts.consumer_name(), host.trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_the_group_unless_entries_stay_pending() {
    let mut c = redis().await;
    let stream = unique("leave");
    let run = |rec: Recorder| {
        let o = opts("g", &stream, "leaver").claim(None);
        Pipeline::builder("leave", rec)
            .source(RedisSource::factory(o).unwrap())
            .start()
    };
    // Everything processed: the consumer leaves.
    xadd_n(&mut c, &stream, 0, 50).await;
    let rec = Recorder::default();
    let p = run(rec.clone()).await.unwrap();
    wait_for(|| rec.numbers().len() >= 50).await;
    assert_eq!(support::consumers(&mut c, &stream, "g").await, ["leaver"]);
    p.stop().await.unwrap();
    assert!(support::consumers(&mut c, &stream, "g").await.is_empty());

    // A consumer left in the group by an earlier run, with nothing to read now: a run that
    // acknowledges nothing leaves too.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(&stream)
        .arg("g")
        .arg("leaver")
        .query_async(&mut c)
        .await
        .unwrap();
    let p = run(Recorder::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.stop().await.unwrap();
    assert!(support::consumers(&mut c, &stream, "g").await.is_empty());

    // A failed entry stays pending: the consumer stays, to find it on restart.
    xadd_n(&mut c, &stream, 50, 60).await;
    let rec = Recorder::failing(|n| n == 55);
    let p = run(rec.clone()).await.unwrap();
    wait_for(|| rec.numbers().len() >= 10).await;
    p.stop().await.unwrap();
    assert_eq!(support::consumers(&mut c, &stream, "g").await, ["leaver"]);
    assert_eq!(support::consumer_pending(&mut c, &stream, "g", "leaver").await, 1);
    delete(&mut c, &[&stream]).await;
}
