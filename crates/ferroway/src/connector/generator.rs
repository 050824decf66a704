//! A source of numbered messages with deterministic payloads, for demos, tests and benchmarks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::BoxError;
use crate::pipeline::{AckToken, Acknowledger, Acks, Message};
use crate::stage::{Emit, Producer};

type Payload = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// Messages `1, 2, 3, …` — `count` of them or unbounded — optionally at a fixed rate. Each
/// carries a deterministic payload (by default `{"seq":17,"name":"user-17","value":...}`) and
/// the acknowledgement token `AckToken(seq, 0)`; the generator counts acknowledgements, so a
/// demo or benchmark can wait for them.
///
/// A cheap handle: clone it into the producer factory. A producer restarted after a crash
/// carries on after the last sequence number emitted.
///
/// ```
/// use ferroway::connector::generator::Generator;
/// use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
/// use ferroway::BoxError;
///
/// struct Check;
/// impl Handler for Check {
///     type Data = String;
///     async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
///         assert!(m.data().starts_with("{\"seq\":"));
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let generator = Generator::new(1_000);
/// let factory = generator.clone();
/// let pipeline = Pipeline::builder("demo", Check)
///     .producer(move || factory.producer())
///     .processors(Processors::new().concurrency(2))
///     .start()
///     .await?;
/// pipeline.join().await?;
/// assert_eq!(generator.stats().acked, 1_000);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Generator {
    count: Option<u64>,
    rate: Option<f64>,
    payload: Payload,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("count", &self.count)
            .field("rate", &self.rate)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What a [`Generator`] has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GeneratorStats {
    /// Messages emitted.
    pub emitted: u64,
    /// Messages acknowledged as successful.
    pub acked: u64,
    /// Messages acknowledged as failed.
    pub failed: u64,
}

struct Shared {
    /// The next sequence number.
    next: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    ack_notify: Notify,
    generated: metrics::Counter,
}

impl Acknowledger for Shared {
    fn ack(&self, acks: Acks) {
        self.acked.fetch_add(acks.successful.len() as u64, Ordering::Relaxed);
        self.failed.fetch_add(acks.failed.len() as u64, Ordering::Relaxed);
        self.ack_notify.notify_waiters();
    }
}

/// The default payload of message `seq`.
///
/// ```
/// assert_eq!(ferroway::connector::generator::default_payload(17), r#"{"seq":17,"name":"user-17","value":623}"#);
/// ```
pub fn default_payload(seq: u64) -> String {
    format!(
        "{{\"seq\":{seq},\"name\":\"user-{}\",\"value\":{}}}",
        seq % 1000,
        seq.wrapping_mul(7919) % 1000
    )
}

impl Generator {
    /// `count` messages, numbered from 1.
    pub fn new(count: u64) -> Self {
        Generator::with_count(Some(count))
    }

    /// Messages without end (stop the pipeline to end them).
    pub fn unbounded() -> Self {
        Generator::with_count(None)
    }

    fn with_count(count: Option<u64>) -> Self {
        Generator {
            count,
            rate: None,
            payload: Arc::new(default_payload),
            shared: Arc::new(Shared {
                next: AtomicU64::new(1),
                acked: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                ack_notify: Notify::new(),
                generated: metrics::counter!(super::GENERATED, "source" => "generator"),
            }),
        }
    }

    /// At most `per_sec` messages per second (evenly spaced, no bursts beyond one message).
    pub fn rate(mut self, per_sec: f64) -> Self {
        self.rate = (per_sec > 0.0).then_some(per_sec);
        self
    }

    /// The payload of message `seq` (default [`default_payload`]).
    pub fn payload(mut self, payload: impl Fn(u64) -> String + Send + Sync + 'static) -> Self {
        self.payload = Arc::new(payload);
        self
    }

    /// A producer for the pipeline (or hand the generator itself to `.source(..)`).
    pub fn producer(&self) -> GeneratorProducer {
        GeneratorProducer {
            generator: self.clone(),
            started: None,
        }
    }

    /// Emitted and acknowledged so far.
    pub fn stats(&self) -> GeneratorStats {
        GeneratorStats {
            emitted: self.shared.next.load(Ordering::Relaxed) - 1,
            acked: self.shared.acked.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Waits until at least `n` messages were acknowledged (successful or failed).
    pub async fn wait_acked(&self, n: u64) {
        loop {
            let notified = self.shared.ack_notify.notified();
            let s = self.stats();
            if s.acked + s.failed >= n {
                return;
            }
            notified.await;
        }
    }
}

/// A generator is a connector [`Source`](crate::connector::Source): its producers share one
/// sequence.
impl crate::connector::Source for Generator {
    type Data = String;
    type Producer = GeneratorProducer;

    fn producer(&self, _: usize) -> Result<GeneratorProducer, BoxError> {
        Ok(Generator::producer(self))
    }
}

/// The producer of a [`Generator`].
#[derive(Debug)]
pub struct GeneratorProducer {
    generator: Generator,
    /// When this producer started, and the sequence number it started at (for the rate).
    started: Option<(Instant, u64)>,
}

impl Producer for GeneratorProducer {
    type Output = Message<String>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<String>>, BoxError> {
        let g = &self.generator;
        let next = g.shared.next.load(Ordering::Relaxed);
        let (t0, seq0) = *self.started.get_or_insert((Instant::now(), next));
        let mut n = demand as u64;
        if let Some(count) = g.count {
            n = n.min((count + 1).saturating_sub(next));
        }
        if let Some(rate) = g.rate {
            // Message k (from seq0) is due at t0 + k / rate.
            let due = |k: u64| t0 + Duration::from_secs_f64(k as f64 / rate);
            let k = next - seq0;
            tokio::time::sleep_until(due(k)).await;
            let allowed = ((Instant::now() - t0).as_secs_f64() * rate) as u64 + 1;
            n = n.min(allowed.saturating_sub(k).max(1));
        }
        let acker: Arc<dyn Acknowledger> = g.shared.clone();
        let batch: Vec<_> = (next..next + n)
            .map(|seq| Message::with_acker((g.payload)(seq), acker.clone(), AckToken(seq, 0)))
            .collect();
        g.shared.next.store(next + n, Ordering::Relaxed);
        g.shared.generated.increment(n);
        Ok(match g.count {
            Some(count) if next + n > count => Emit::Done(batch),
            _ => Emit::Events(batch),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn emits_on_demand_then_finishes() {
        let g = Generator::new(5).payload(|s| s.to_string());
        let mut p = g.producer();
        let Emit::Events(a) = p.handle_demand(3).await.unwrap() else {
            panic!("not done yet")
        };
        assert_eq!(a.iter().map(|m| m.data().as_str()).collect::<Vec<_>>(), ["1", "2", "3"]);
        assert_eq!(a[2].ack_token(), AckToken(3, 0));
        let Emit::Done(b) = p.handle_demand(10).await.unwrap() else {
            panic!("done")
        };
        assert_eq!(b.len(), 2);
        assert_eq!(g.stats().emitted, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_to_the_rate() {
        let g = Generator::unbounded().rate(100.0);
        let mut p = g.producer();
        let start = Instant::now();
        let mut got = 0;
        while got < 250 {
            let Emit::Events(v) = p.handle_demand(1000).await.unwrap() else {
                panic!("unbounded")
            };
            got += v.len();
        }
        // 250 messages at 100/s: the 250th is due 2.49 s after the first (paused clock).
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(2490), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2600), "{elapsed:?}");
    }

    #[test]
    fn default_payload_is_deterministic_json() {
        assert_eq!(default_payload(1), r#"{"seq":1,"name":"user-1","value":919}"#);
    }
}
