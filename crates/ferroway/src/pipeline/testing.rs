//! Test support: push messages into a running pipeline and await how each one ended
//! (Broadway's `test_message` / `test_batch`).
//!
//! ```
//! use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
//! use ferroway::pipeline::testing::{Outcome, TestProducer};
//! use ferroway::BoxError;
//!
//! struct Parse;
//! impl Handler for Parse {
//!     type Data = String;
//!     async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
//!         m.data().parse::<u32>()?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::builder("parse", Parse)
//!     .producer(TestProducer::new)
//!     .processors(Processors::new().concurrency(1))
//!     .start()
//!     .await?;
//! let outcomes = pipeline.push_messages(["1".to_string(), "x".to_string()]).outcomes().await;
//! assert_eq!(outcomes[0], Outcome::Successful);
//! assert!(matches!(&outcomes[1], Outcome::Failed(r) if r.contains("invalid digit")));
//! pipeline.stop().await?;
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::ack::{AckToken, Acknowledger, Acks};
use super::handle::Pipeline;
use super::message::Message;
use crate::error::BoxError;
use crate::stage::{Emit, Producer};

/// A producer that emits nothing by itself: the pipeline's messages come from
/// [`Pipeline::push_messages`].
#[derive(Debug)]
pub struct TestProducer<T>(PhantomData<fn() -> T>);

impl<T> TestProducer<T> {
    /// A new test producer (usable as a producer factory: `.producer(TestProducer::new)`).
    pub fn new() -> Self {
        TestProducer(PhantomData)
    }
}

impl<T> Default for TestProducer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> Producer for TestProducer<T> {
    type Output = Message<T>;
    async fn handle_demand(&mut self, _demand: usize) -> Result<Emit<Message<T>>, BoxError> {
        Ok(Emit::Events(Vec::new()))
    }
}

/// How a pushed message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged as successful (including discarded and dead-lettered messages).
    Successful,
    /// Acknowledged as failed, with the reason.
    Failed(String),
}

struct TestAcker(mpsc::UnboundedSender<(usize, Outcome)>);

impl Acknowledger for TestAcker {
    fn ack(&self, acks: Acks) {
        for t in acks.successful {
            let _ = self.0.send((t.0 as usize, Outcome::Successful));
        }
        for f in acks.failed {
            let _ = self.0.send((f.token.0 as usize, Outcome::Failed(f.reason.to_string())));
        }
    }
}

/// Messages pushed with [`Pipeline::push_messages`]; await their [`outcomes`](Self::outcomes).
#[derive(Debug)]
pub struct Pushed {
    rx: mpsc::UnboundedReceiver<(usize, Outcome)>,
    count: usize,
}

impl Pushed {
    /// Waits until every pushed message was acknowledged; outcomes in push order. Panics if a
    /// message is acknowledged twice (that would be a bug in the pipeline).
    pub async fn outcomes(mut self) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; self.count];
        let mut seen = 0;
        while seen < self.count {
            let Some((i, o)) = self.rx.recv().await else { break };
            assert!(out[i].is_none(), "message {i} was acknowledged twice");
            out[i] = Some(o);
            seen += 1;
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Failed("never acknowledged".into())))
            .collect()
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Pushes messages into the pipeline through its first producer (whatever its type), as
    /// if that producer had emitted them. Use it in your pipeline's tests, with
    /// [`TestProducer`] or a real producer.
    pub fn push_messages(&self, data: impl IntoIterator<Item = T>) -> Pushed {
        let (tx, rx) = mpsc::unbounded_channel();
        let acker: Arc<dyn Acknowledger> = Arc::new(TestAcker(tx));
        let messages: Vec<Message<T>> = data
            .into_iter()
            .enumerate()
            .map(|(i, d)| Message::with_acker(d, acker.clone(), AckToken(i as u64, 0)))
            .collect();
        let count = messages.len();
        let producer = self.registry.lock().unwrap_or_else(|e| e.into_inner())[0].clone();
        if let Some(p) = producer {
            self.in_flight_counter()
                .fetch_add(count as i64, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = p.emitter().emit(messages) {
                self.in_flight_counter()
                    .fetch_sub(count as i64, std::sync::atomic::Ordering::Relaxed);
                crate::pipeline::ack::ack_failed(e.0, "the pipeline's producer has stopped");
            }
        } else {
            crate::pipeline::ack::ack_failed(messages, "the pipeline's producer has stopped");
        }
        Pushed { rx, count }
    }
}
