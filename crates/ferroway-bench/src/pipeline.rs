//! `pipeline`, `pipeline-partitioned` and `pipeline-skewed`: an in-memory producer of N messages
//! carrying the decimal text of `i`; 2 processors parse it and add 1; one batcher (batch_size
//! 100, batch_timeout 200 ms, concurrency 2) sums. Every message is acknowledged and counted
//! before the clock stops. Expected sum: N(N+1)/2 + N.
//!
//! - `pipeline-partitioned`: `partition_by` key `i % 16`.
//! - `pipeline-skewed`: `partition_by` with 90% of messages on one key (`i % 10 != 0`; the rest
//!   spread over 15 more keys) and 1 KB payloads (the digits, then spaces). Its bar is memory:
//!   peak RSS stays bounded by configuration while one lane carries almost everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::pipeline::{AckToken, Acknowledger, Acks, BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway::stage::{Emit, Producer};

use crate::report::Report;

/// The decimal text of an integer, inline (no allocation per message).
#[derive(Clone, Copy)]
pub struct Payload {
    len: u8,
    buf: [u8; 20],
}

impl Payload {
    fn new(mut v: u64) -> Self {
        let mut buf = [0u8; 20];
        let mut i = 20;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let len = 20 - i;
        buf.copy_within(i.., 0);
        Payload { len: len as u8, buf }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

pub enum Data {
    Raw(Payload),
    /// A 1 KB payload: the digits, then padding.
    Kilobyte(Box<[u8]>),
    Parsed(u64),
}

/// Which variant of the workload runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Plain,
    Partitioned,
    Skewed,
}

impl Shape {
    fn workload(self) -> &'static str {
        match self {
            Shape::Plain => "pipeline",
            Shape::Partitioned => "pipeline-partitioned",
            Shape::Skewed => "pipeline-skewed",
        }
    }

    fn messages(self) -> u64 {
        match self {
            Shape::Skewed => 1_000_000,
            _ => 5_000_000,
        }
    }
}

/// The skewed key: 9 in 10 messages on key 0.
fn skewed_key(i: u64) -> u64 {
    if !i.is_multiple_of(10) { 0 } else { 1 + (i / 10) % 15 }
}

fn kilobyte(i: u64) -> Box<[u8]> {
    let mut v = vec![b' '; 1024];
    let p = Payload::new(i);
    v[..p.bytes().len()].copy_from_slice(p.bytes());
    v.into_boxed_slice()
}

/// Counts acknowledgements; the clock stops when all N are in.
struct Counter {
    n: u64,
    successful: AtomicU64,
    failed: AtomicU64,
    done: tokio::sync::Notify,
}

impl Acknowledger for Counter {
    fn ack(&self, acks: Acks) {
        self.failed.fetch_add(acks.failed.len() as u64, Ordering::Relaxed);
        let before = self
            .successful
            .fetch_add(acks.successful.len() as u64, Ordering::Relaxed);
        if before + acks.successful.len() as u64 + self.failed.load(Ordering::Relaxed) >= self.n {
            self.done.notify_one();
        }
    }
}

struct Generate {
    next: u64,
    n: u64,
    big: bool,
    acker: Arc<dyn Acknowledger>,
}

impl Producer for Generate {
    type Output = Message<Data>;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<Data>>, BoxError> {
        let end = (self.next + demand as u64).min(self.n + 1);
        let batch = (self.next..end)
            .map(|i| {
                let data = if self.big {
                    Data::Kilobyte(kilobyte(i))
                } else {
                    Data::Raw(Payload::new(i))
                };
                Message::with_acker(data, self.acker.clone(), AckToken(i, 0))
            })
            .collect();
        self.next = end;
        Ok(if end > self.n {
            Emit::Done(batch)
        } else {
            Emit::Events(batch)
        })
    }
}

struct Sum(Arc<AtomicU64>);

impl Handler for Sum {
    type Data = Data;

    async fn handle_message(&self, m: &mut Message<Data>) -> Result<(), BoxError> {
        let digits = match m.data() {
            Data::Raw(p) => p.bytes(),
            Data::Kilobyte(b) => &b[..b.iter().position(|c| *c == b' ').unwrap_or(b.len())],
            Data::Parsed(_) => return Err("already parsed".into()),
        };
        let mut v = 0u64;
        for &b in digits {
            if !b.is_ascii_digit() {
                return Err("not a number".into());
            }
            v = v * 10 + (b - b'0') as u64;
        }
        *m.data_mut() = Data::Parsed(v + 1);
        Ok(())
    }

    async fn handle_batch(&self, batch: &mut [Message<Data>], _: &BatchInfo) -> Result<(), BoxError> {
        let s: u64 = batch
            .iter()
            .map(|m| if let Data::Parsed(v) = m.data() { *v } else { 0 })
            .sum();
        self.0.fetch_add(s, Ordering::Relaxed);
        Ok(())
    }
}

pub async fn run(shape: Shape) -> Report {
    let n = shape.messages();
    let sum = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(Counter {
        n,
        successful: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        done: tokio::sync::Notify::new(),
    });
    let acker: Arc<dyn Acknowledger> = counter.clone();
    let started = Instant::now();
    let mut builder = Pipeline::builder("bench", Sum(sum.clone()))
        .producer(move || Generate {
            next: 1,
            n,
            big: shape == Shape::Skewed,
            acker: acker.clone(),
        })
        .processors(Processors::new().concurrency(2))
        .batcher(
            Batcher::new("sum")
                .batch_size(100)
                .batch_timeout(Duration::from_millis(200))
                .concurrency(2),
        );
    match shape {
        Shape::Plain => {}
        Shape::Partitioned => builder = builder.partition_by(|m: &Message<Data>| m.ack_token().0 % 16),
        Shape::Skewed => builder = builder.partition_by(|m: &Message<Data>| skewed_key(m.ack_token().0)),
    }
    let pipeline = builder.start().await.expect("valid pipeline");
    let done = counter.done.notified();
    if counter.successful.load(Ordering::Relaxed) + counter.failed.load(Ordering::Relaxed) < n {
        done.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    pipeline.join().await.expect("pipeline");
    let mut r = Report::new(shape.workload(), "messages", n, seconds);
    let acked = counter.successful.load(Ordering::Relaxed);
    r.checksum_ok = Some(sum.load(Ordering::Relaxed) == n * (n + 1) / 2 + n && acked == n);
    r.extra.insert("acked".into(), acked.into());
    r
}
