//! The demand protocol: a producer never gets more demand than its consumers asked for.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::stage::{self, Consumer, ConsumerOptions, Emit, Producer, ProducerOptions, SubscribeOptions};
use proptest::prelude::*;

/// Checks, at every call, that the demand it was given is covered by what consumers asked.
struct Audited {
    next: u64,
    end: u64,
    demanded: u64,
    /// Upper bound of what consumers may have asked so far: sum over consumers of
    /// (events handled + max_demand).
    allowed: Arc<dyn Fn() -> u64 + Send + Sync>,
    violations: Arc<AtomicUsize>,
    /// Holds the first emission until every consumer has subscribed.
    gate: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Producer for Audited {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<u64>, BoxError> {
        if let Some(gate) = self.gate.take() {
            let _ = gate.await;
        }
        self.demanded += demand as u64;
        // Events emitted so far plus the new demand must fit in what consumers asked.
        if self.next - 1 + demand as u64 > (self.allowed)() {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        let stop = (self.next + demand as u64).min(self.end);
        let events: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        Ok(if stop == self.end {
            Emit::Done(events)
        } else {
            Emit::Events(events)
        })
    }
}

struct Slow {
    max_demand: usize,
    delays: Vec<u64>,
    i: usize,
    received: u64,
    handled: Arc<AtomicU64>,
    sum: Arc<AtomicU64>,
    violations: Arc<AtomicUsize>,
}

impl Consumer for Slow {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> Result<(), BoxError> {
        self.received += events.len() as u64;
        // In flight (received, not yet handled) never exceeds max_demand.
        if self.received - self.handled.load(Ordering::SeqCst) > self.max_demand as u64 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        let d = self.delays[self.i % self.delays.len()];
        self.i += 1;
        tokio::time::sleep(Duration::from_micros(d)).await;
        self.sum.fetch_add(events.iter().sum(), Ordering::SeqCst);
        self.handled.fetch_add(events.len() as u64, Ordering::SeqCst);
        Ok(())
    }
}

fn run_case(n: u64, consumers: Vec<(usize, usize, Vec<u64>)>) -> (usize, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let violations = Arc::new(AtomicUsize::new(0));
        let sum = Arc::new(AtomicU64::new(0));
        let handled: Vec<Arc<AtomicU64>> = consumers.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
        let maxes: u64 = consumers.iter().map(|c| c.0 as u64).sum();
        let h2 = handled.clone();
        let allowed = Arc::new(move || h2.iter().map(|h| h.load(Ordering::SeqCst)).sum::<u64>() + maxes);
        let (open, gate) = tokio::sync::oneshot::channel();
        let producer = stage::start_producer(
            Audited {
                next: 1,
                end: n + 1,
                demanded: 0,
                allowed,
                violations: violations.clone(),
                gate: Some(gate),
            },
            ProducerOptions::new(),
        );
        let mut stages = Vec::new();
        for (i, (max, min, delays)) in consumers.into_iter().enumerate() {
            let c = stage::start_consumer(
                Slow {
                    max_demand: max,
                    delays,
                    i: 0,
                    received: 0,
                    handled: handled[i].clone(),
                    sum: sum.clone(),
                    violations: violations.clone(),
                },
                ConsumerOptions::new(),
            );
            c.subscribe_to(&producer, SubscribeOptions::new().max_demand(max).min_demand(min))
                .await
                .unwrap();
            stages.push(c);
        }
        open.send(()).unwrap();
        for c in stages {
            c.join().await.unwrap();
        }
        producer.join().await.unwrap();
        (violations.load(Ordering::SeqCst), sum.load(Ordering::SeqCst))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn producer_demand_never_exceeds_what_consumers_asked(
        n in 1u64..3_000,
        consumers in prop::collection::vec(
            (1usize..200).prop_flat_map(|max| (Just(max), 0..max, prop::collection::vec(0u64..500, 1..8))),
            1..4,
        ),
    ) {
        let (violations, sum) = run_case(n, consumers);
        prop_assert_eq!(violations, 0);
        // Every event reached exactly one consumer.
        prop_assert_eq!(sum, n * (n + 1) / 2);
    }
}

#[tokio::test(start_paused = true)]
async fn asks_again_after_max_minus_min_events() {
    // max 10, min 6: the consumer first asks 10, then 4 at a time.
    let demands = Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Record(Arc<std::sync::Mutex<Vec<usize>>>, u64);
    impl Producer for Record {
        type Output = u64;
        async fn handle_demand(&mut self, demand: usize) -> Result<Emit<u64>, BoxError> {
            self.0.lock().unwrap().push(demand);
            let events: Vec<u64> = (0..demand as u64).map(|i| self.1 + i).collect();
            self.1 += demand as u64;
            Ok(if self.1 >= 30 {
                Emit::Done(events)
            } else {
                Emit::Events(events)
            })
        }
    }
    struct OneByOne;
    impl Consumer for OneByOne {
        type Input = u64;
        async fn handle_events(&mut self, _events: Vec<u64>) -> Result<(), BoxError> {
            Ok(())
        }
    }
    let p = stage::start_producer(Record(demands.clone(), 0), ProducerOptions::new());
    let c = stage::start_consumer(OneByOne, ConsumerOptions::new());
    c.subscribe_to(&p, SubscribeOptions::new().max_demand(10).min_demand(6))
        .await
        .unwrap();
    c.join().await.unwrap();
    let d = demands.lock().unwrap().clone();
    assert_eq!(d[0], 10, "first ask is max_demand: {d:?}");
    assert!(d.len() > 1, "asked again: {d:?}");
    assert!(
        d[1..].iter().all(|&x| (4..=10).contains(&x)),
        "later asks are at least max - min, at most max: {d:?}"
    );
}
