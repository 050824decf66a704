//! `stage`: producer (integers on demand) -> producer-consumer (x * 2) -> consumer (sum).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferroway::BoxError;
use ferroway::stage::{
    self, Consumer, ConsumerOptions, Emit, Producer, ProducerConsumer, ProducerOptions, SubscribeOptions,
};

use crate::report::Report;

const N: u64 = 10_000_000;

struct Integers {
    next: u64,
}

impl Producer for Integers {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<u64>, BoxError> {
        let end = (self.next + demand as u64).min(N + 1);
        let events: Vec<u64> = (self.next..end).collect();
        self.next = end;
        Ok(if end > N {
            Emit::Done(events)
        } else {
            Emit::Events(events)
        })
    }
}

struct Double;

impl ProducerConsumer for Double {
    type Input = u64;
    type Output = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> Result<Vec<u64>, BoxError> {
        Ok(events.into_iter().map(|x| x * 2).collect())
    }
}

struct Sum {
    sum: u64,
    out: Arc<AtomicU64>,
}

impl Consumer for Sum {
    type Input = u64;
    async fn handle_events(&mut self, events: Vec<u64>) -> Result<(), BoxError> {
        self.sum = self.sum.wrapping_add(events.iter().sum::<u64>());
        self.out.store(self.sum, Ordering::Relaxed);
        Ok(())
    }
}

pub async fn run() -> Vec<Report> {
    let out = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let producer = stage::start_producer(Integers { next: 1 }, ProducerOptions::new());
    let double = stage::start_producer_consumer(Double, ProducerOptions::new());
    let sum = stage::start_consumer(
        Sum {
            sum: 0,
            out: out.clone(),
        },
        ConsumerOptions::new(),
    );
    let opts = || SubscribeOptions::new().max_demand(1000);
    double.subscribe_to(&producer, opts()).await.expect("subscribe");
    sum.subscribe_to(&double, opts()).await.expect("subscribe");
    sum.join().await.expect("consumer");
    let seconds = start.elapsed().as_secs_f64();
    let mut r = Report::new("stage", "events", N, seconds);
    r.checksum_ok = Some(out.load(Ordering::Relaxed) == N * (N + 1));
    vec![r]
}
