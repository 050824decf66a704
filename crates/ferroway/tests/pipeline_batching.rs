//! Batching by size and time, grouping by batcher and key, and per-key ordering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::testing::{Outcome, TestProducer};
use ferroway::pipeline::{BatchInfo, BatchKey, BatchTrigger, Batcher, Handler, Message, Pipeline, Processors};

type Task = Option<tokio::task::Id>;
type Batches = Vec<(BatchInfo, Vec<u64>, Task)>;

#[derive(Clone, Default)]
struct Recorder {
    batches: Arc<Mutex<Batches>>,
    processed: Arc<Mutex<Vec<(u64, Task)>>>,
}

impl Handler for Recorder {
    type Data = u64;

    async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
        let v = *m.data();
        self.processed.lock().unwrap().push((v, tokio::task::try_id()));
        if v >= 1_000 {
            m.put_batcher("big");
        }
        m.put_batch_key(if v.is_multiple_of(2) { "even" } else { "odd" });
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<u64>], info: &BatchInfo) -> Result<(), BoxError> {
        self.batches.lock().unwrap().push((
            info.clone(),
            batch.iter().map(|m| *m.data()).collect(),
            tokio::task::try_id(),
        ));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn batches_close_at_size_or_timeout_grouped_by_batcher_and_key() {
    let rec = Recorder::default();
    let p = Pipeline::builder("batching", rec.clone())
        .producer(TestProducer::new)
        .processors(Processors::new().concurrency(1))
        .batcher(
            Batcher::new("small")
                .batch_size(3)
                .batch_timeout(Duration::from_millis(100)),
        )
        .batcher(
            Batcher::new("big")
                .batch_size(2)
                .batch_timeout(Duration::from_millis(500)),
        )
        .start()
        .await
        .unwrap();
    // 7 odd and 1 even small messages, one big one.
    let pushed = p.push_messages([1, 3, 5, 7, 9, 11, 13, 2, 1_001]);
    let t0 = tokio::time::Instant::now();
    let outcomes = pushed.outcomes().await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Successful));
    // The lone big message waited for its batcher's timeout, not the small one's.
    assert!(t0.elapsed() >= Duration::from_millis(500));
    let batches = rec.batches.lock().unwrap().clone();
    let mut seen: Vec<(&str, BatchKey, Vec<u64>, BatchTrigger)> = batches
        .iter()
        .map(|(i, v, _)| (i.batcher, i.batch_key.clone(), v.clone(), i.trigger))
        .collect();
    seen.sort_by_key(|b| b.2[0]);
    let odd = BatchKey::from("odd");
    let even = BatchKey::from("even");
    assert_eq!(
        seen,
        vec![
            ("small", odd.clone(), vec![1, 3, 5], BatchTrigger::Size),
            ("small", even, vec![2], BatchTrigger::Timeout),
            ("small", odd.clone(), vec![7, 9, 11], BatchTrigger::Size),
            ("small", odd.clone(), vec![13], BatchTrigger::Timeout),
            ("big", odd, vec![1_001], BatchTrigger::Timeout),
        ]
    );
    for (info, v, _) in &batches {
        assert_eq!(info.size, v.len());
        if info.trigger == BatchTrigger::Timeout {
            assert!(info.age >= Duration::from_millis(100), "{info:?}");
        }
    }
    p.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn batch_size_can_be_measured_by_a_function() {
    #[derive(Clone, Default)]
    struct Sizes(Arc<Mutex<Vec<Vec<u64>>>>);
    impl Handler for Sizes {
        type Data = u64;
        async fn handle_message(&self, _: &mut Message<u64>) -> Result<(), BoxError> {
            Ok(())
        }
        async fn handle_batch(&self, b: &mut [Message<u64>], _: &BatchInfo) -> Result<(), BoxError> {
            self.0.lock().unwrap().push(b.iter().map(|m| *m.data()).collect());
            Ok(())
        }
    }
    let h = Sizes::default();
    let p = Pipeline::builder("weighted", h.clone())
        .producer(TestProducer::new)
        .processors(Processors::new().concurrency(1))
        .batcher(Batcher::new("bytes").batch_size_by(10, |m: &Message<u64>| *m.data() as usize))
        .start()
        .await
        .unwrap();
    p.push_messages([4, 4, 4, 12, 1, 9]).outcomes().await;
    let got = h.0.lock().unwrap().clone();
    // 4+4 fits in 10, the next 4 would not; 12 alone is over; 4+1 then 9 would overflow; 1+9 = 10 closes.
    assert_eq!(got, vec![vec![4, 4], vec![4], vec![12], vec![1, 9]]);
    p.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_by_keeps_each_key_in_order_on_one_processor_and_one_batch_processor() {
    let rec = Recorder::default();
    let p = Pipeline::builder("ordered", rec.clone())
        .producer(TestProducer::new)
        .processors(Processors::new().concurrency(4).max_demand(8))
        .batcher(
            Batcher::new("small")
                .batch_size(5)
                .batch_timeout(Duration::from_millis(5))
                .concurrency(3),
        )
        .batcher(
            Batcher::new("big")
                .batch_size(7)
                .batch_timeout(Duration::from_millis(5))
                .concurrency(2),
        )
        .partition_by(|m: &Message<u64>| m.data() % 6)
        .start()
        .await
        .unwrap();
    let n = 3_000u64;
    let outcomes = p.push_messages(0..n).outcomes().await;
    let bad: Vec<_> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| **o != Outcome::Successful)
        .take(3)
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    p.stop().await.unwrap();

    let processed = rec.processed.lock().unwrap().clone();
    let mut per_key: HashMap<u64, (Vec<u64>, Vec<_>)> = HashMap::new();
    for (v, task) in processed {
        let e = per_key.entry(v % 6).or_default();
        e.0.push(v);
        e.1.push(task);
    }
    for (k, (vs, tasks)) in &per_key {
        assert!(vs.windows(2).all(|w| w[0] < w[1]), "key {k} processed out of order");
        assert!(
            tasks.windows(2).all(|w| w[0] == w[1]),
            "key {k} moved between processors"
        );
    }
    let batches = rec.batches.lock().unwrap().clone();
    // Within each batcher (messages of one key may go to different batchers).
    let mut per_key: HashMap<(&str, u64), (Vec<u64>, Vec<_>)> = HashMap::new();
    for (info, vs, task) in batches {
        for v in vs {
            let e = per_key.entry((info.batcher, v % 6)).or_default();
            e.0.push(v);
            e.1.push(task);
        }
    }
    assert_eq!(per_key.values().map(|e| e.0.len() as u64).sum::<u64>(), n);
    for (k, (vs, tasks)) in &per_key {
        assert!(vs.windows(2).all(|w| w[0] < w[1]), "key {k:?} batched out of order");
        assert!(
            tasks.windows(2).all(|w| w[0] == w[1]),
            "key {k:?} moved between batch processors"
        );
    }
}
