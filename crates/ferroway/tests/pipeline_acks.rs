//! Acknowledgement semantics: exactly once, after the last stage, grouped; failures and panics
//! fail only the messages involved.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::pipeline::testing::{Outcome, TestProducer};
use ferroway::pipeline::{
    AckToken, Acknowledger, Acks, BatchInfo, Batcher, Handler, Message, OnFailure, Pipeline, Processors,
};
use ferroway::stage::{Emit, Producer};

type AckOutcome = Result<(), (String, OnFailure)>;

/// Records every acknowledgement call.
#[derive(Default)]
struct Ledger {
    calls: AtomicUsize,
    outcomes: Mutex<HashMap<u64, Vec<AckOutcome>>>,
}

impl Acknowledger for Ledger {
    fn ack(&self, acks: Acks) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut o = self.outcomes.lock().unwrap();
        for t in acks.successful {
            o.entry(t.0).or_default().push(Ok(()));
        }
        for f in acks.failed {
            o.entry(f.token.0)
                .or_default()
                .push(Err((f.reason.to_string(), f.on_failure)));
        }
    }
}

/// Emits `1..=n` acknowledged through a ledger, then finishes.
struct Numbers {
    next: u64,
    n: u64,
    ledger: Arc<Ledger>,
}

impl Producer for Numbers {
    type Output = Message<u64>;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<u64>>, BoxError> {
        let end = (self.next + demand as u64).min(self.n + 1);
        let acker: Arc<dyn Acknowledger> = self.ledger.clone();
        let batch = (self.next..end)
            .map(|i| Message::with_acker(i, acker.clone(), AckToken(i, 0)))
            .collect();
        self.next = end;
        Ok(if end > self.n {
            Emit::Done(batch)
        } else {
            Emit::Events(batch)
        })
    }
}

/// Fails multiples of 7, panics on multiples of 11, discards multiples of 13; batches fail
/// when they contain 500; records what reached handle_batch and handle_failed.
#[derive(Default, Clone)]
struct Picky {
    batched: Arc<Mutex<Vec<u64>>>,
    failed_seen: Arc<Mutex<Vec<u64>>>,
}

impl Handler for Picky {
    type Data = u64;

    async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
        let v = *m.data();
        if v.is_multiple_of(13) {
            m.discard();
        } else if v.is_multiple_of(11) {
            panic!("cannot handle {v}");
        } else if v.is_multiple_of(7) {
            return Err(format!("{v} is a multiple of 7").into());
        } else if v.is_multiple_of(5) {
            m.fail("five");
            m.configure_ack(OnFailure::Reject);
        }
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<u64>], _: &BatchInfo) -> Result<(), BoxError> {
        if batch.iter().any(|m| *m.data() == 502) {
            panic!("batch with 502");
        }
        if batch.iter().any(|m| *m.data() == 901) {
            return Err("batch with 901".into());
        }
        self.batched.lock().unwrap().extend(batch.iter().map(|m| *m.data()));
        Ok(())
    }

    async fn handle_failed(&self, failed: &mut [Message<u64>]) {
        self.failed_seen
            .lock()
            .unwrap()
            .extend(failed.iter().map(|m| *m.data()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_acknowledged_exactly_once_with_the_right_outcome() {
    let n = 2_000u64;
    let ledger = Arc::new(Ledger::default());
    let handler = Picky::default();
    let l = ledger.clone();
    let pipeline = Pipeline::builder("acks", handler.clone())
        .producer(move || Numbers {
            next: 1,
            n,
            ledger: l.clone(),
        })
        .processors(Processors::new().concurrency(3).max_demand(50))
        .batcher(
            Batcher::new("default")
                .batch_size(20)
                .batch_timeout(Duration::from_millis(50))
                .concurrency(2),
        )
        .start()
        .await
        .unwrap();
    pipeline.join().await.unwrap();

    let outcomes = ledger.outcomes.lock().unwrap();
    assert_eq!(outcomes.len() as u64, n, "every message acknowledged");
    let batch_of = |v: u64| handler.batched.lock().unwrap().contains(&v);
    for v in 1..=n {
        let o = &outcomes[&v];
        assert_eq!(o.len(), 1, "message {v} acknowledged {} times", o.len());
        match &o[0] {
            Ok(()) => {
                assert!(
                    v % 13 == 0 || batch_of(v),
                    "{v} acked as successful without being batched"
                );
                assert!(v % 7 != 0 || v % 13 == 0, "{v} should have failed");
            }
            Err((reason, on_failure)) => {
                if v % 13 == 0 {
                    panic!("discarded {v} must be successful");
                } else if v % 11 == 0 {
                    assert!(
                        reason.contains("panicked") && reason.contains(&format!("cannot handle {v}")),
                        "{reason}"
                    );
                } else if v % 7 == 0 {
                    assert!(reason.contains("multiple of 7"), "{reason}");
                } else if v % 5 == 0 {
                    assert_eq!((reason.as_str(), *on_failure), ("five", OnFailure::Reject));
                } else {
                    assert!(reason.contains("batch with"), "{v}: {reason}");
                }
            }
        }
    }
    // The batches containing 502 and 901 failed as a whole; nothing else did.
    let failed_batch: Vec<u64> = (1..=n)
        .filter(|v| matches!(&outcomes[v][0], Err((r, _)) if r.contains("batch with")))
        .collect();
    assert!(failed_batch.contains(&502) && failed_batch.contains(&901));
    assert!(failed_batch.len() <= 40, "only two batches of at most 20 failed");
    // handle_failed saw every failed message exactly once.
    let mut seen = handler.failed_seen.lock().unwrap().clone();
    seen.sort_unstable();
    let mut expected: Vec<u64> = (1..=n).filter(|v| outcomes[v][0].is_err()).collect();
    expected.sort_unstable();
    assert_eq!(seen, expected);
    // Grouped: far fewer acknowledgement calls than messages.
    let calls = ledger.calls.load(Ordering::SeqCst);
    assert!(calls < (n / 5) as usize, "{calls} ack calls for {n} messages");
}

#[tokio::test]
async fn without_batchers_messages_are_acknowledged_after_the_processor() {
    struct Echo;
    impl Handler for Echo {
        type Data = u64;
        async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
            if *m.data() == 3 {
                return Err("three".into());
            }
            Ok(())
        }
    }
    let p = Pipeline::builder("no-batchers", Echo)
        .producer(TestProducer::new)
        .start()
        .await
        .unwrap();
    let outcomes = p.push_messages([1, 2, 3, 4]).outcomes().await;
    assert_eq!(
        outcomes,
        vec![
            Outcome::Successful,
            Outcome::Successful,
            Outcome::Failed("three".into()),
            Outcome::Successful
        ]
    );
    assert_eq!(p.in_flight(), 0);
    p.stop().await.unwrap();
}

#[tokio::test]
async fn a_message_for_an_unknown_batcher_fails_with_a_clear_reason() {
    struct Misroute;
    impl Handler for Misroute {
        type Data = u64;
        async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
            if *m.data() == 2 {
                m.put_batcher("nowhere");
            }
            Ok(())
        }
    }
    let p = Pipeline::builder("misroute", Misroute)
        .producer(TestProducer::new)
        .batcher(Batcher::new("default").batch_size(1))
        .start()
        .await
        .unwrap();
    let o = p.push_messages([1, 2]).outcomes().await;
    assert_eq!(o[0], Outcome::Successful);
    assert_eq!(
        o[1],
        Outcome::Failed("unknown batcher `nowhere` (configured: default)".into())
    );
    p.stop().await.unwrap();
}

#[tokio::test]
async fn prepare_messages_sees_each_group_and_its_error_fails_the_group() {
    struct Prep(Arc<Mutex<Vec<usize>>>);
    impl Handler for Prep {
        type Data = u64;
        async fn prepare_messages(&self, ms: &mut [Message<u64>]) -> Result<(), BoxError> {
            self.0.lock().unwrap().push(ms.len());
            if ms.iter().any(|m| *m.data() == 99) {
                return Err("preload failed".into());
            }
            for m in ms.iter_mut() {
                m.update_data(|v| v * 10);
            }
            Ok(())
        }
        async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
            assert_eq!(*m.data() % 10, 0, "prepared before handled");
            Ok(())
        }
    }
    let groups = Arc::new(Mutex::new(Vec::new()));
    let p = Pipeline::builder("prep", Prep(groups.clone()))
        .producer(TestProducer::new)
        .processors(Processors::new().concurrency(1))
        .start()
        .await
        .unwrap();
    assert!(
        p.push_messages(1..=5)
            .outcomes()
            .await
            .iter()
            .all(|o| *o == Outcome::Successful)
    );
    let o = p.push_messages([98, 99]).outcomes().await;
    assert!(
        o.iter()
            .all(|o| matches!(o, Outcome::Failed(r) if r.contains("preload failed"))),
        "{o:?}"
    );
    assert!(groups.lock().unwrap().iter().sum::<usize>() == 7);
    p.stop().await.unwrap();
}
