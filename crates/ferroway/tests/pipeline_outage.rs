//! A destination that is down is not a bad message: the pipeline waits it out with backoff
//! and never fails, dead-letters or acknowledges because of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::Sink;
use ferroway::error::Unavailable;
use ferroway::pipeline::testing::{Outcome, TestProducer};
use ferroway::pipeline::{
    AckToken, Acknowledger, Acks, BatchInfo, Batcher, BoxFuture, Handler, Message, OnFailure, Pipeline,
};
use ferroway::resilience::Backoff;
use ferroway::stage::{Emit, Producer};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A destination that refuses connections until `up_at`.
#[derive(Clone)]
struct Destination {
    up_at: Instant,
    written: Arc<Mutex<HashMap<u64, u32>>>,
    attempts: Arc<Mutex<u32>>,
}

impl Destination {
    fn down_for(d: Duration) -> Self {
        Destination {
            up_at: Instant::now() + d,
            written: Arc::default(),
            attempts: Arc::default(),
        }
    }

    fn write(&self, values: impl IntoIterator<Item = u64>) -> Result<(), BoxError> {
        *self.attempts.lock().unwrap() += 1;
        if Instant::now() < self.up_at {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(Unavailable::new("db", refused).into());
        }
        let mut w = self.written.lock().unwrap();
        for v in values {
            *w.entry(v).or_default() += 1;
        }
        Ok(())
    }

    fn written_once(&self, n: u64) -> bool {
        let w = self.written.lock().unwrap();
        w.len() as u64 == n && w.values().all(|c| *c == 1)
    }
}

/// Writes batches to the destination; odd numbers over 1000 are bad messages.
struct ToDestination(Destination);

impl Handler for ToDestination {
    type Data = u64;
    async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
        if *m.data() > 1000 && m.data() % 2 == 1 {
            return Err(format!("{} is invalid", m.data()).into());
        }
        Ok(())
    }
    async fn handle_batch(&self, batch: &mut [Message<u64>], _: &BatchInfo) -> Result<(), BoxError> {
        self.0.write(batch.iter().map(|m| *m.data()))
    }
}

fn batcher() -> Batcher<u64> {
    Batcher::new("db")
        .batch_size(10)
        .batch_timeout(Duration::from_millis(5))
        .concurrency(2)
}

#[tokio::test(start_paused = true)]
async fn a_destination_down_30s_holds_the_messages_then_writes_each_once_and_dead_letters_none() {
    let db = Destination::down_for(Duration::from_secs(30));
    let (dlq, mut dead) = mpsc::channel::<Message<u64>>(100);
    let p = Pipeline::builder("outage", ToDestination(db.clone()))
        .producer(TestProducer::new)
        .batcher(batcher())
        .dead_letter(dlq)
        .start()
        .await
        .unwrap();
    let pushed = p.push_messages(1..=100);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(p.in_flight(), 100, "nothing acknowledged while the destination is down");
    assert!(db.written.lock().unwrap().is_empty());
    let outcomes = pushed.outcomes().await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Successful), "{outcomes:?}");
    assert!(
        db.written_once(100),
        "every message written exactly once after the outage"
    );
    let attempts = *db.attempts.lock().unwrap();
    // Two batch processors, each retrying its batch from 100 ms up to 10 s apart for 30 s,
    // then the other eight batches at once: tens of attempts, not thousands.
    assert!(
        (10..100).contains(&attempts),
        "retried with backoff: {attempts} attempts"
    );
    assert!(Instant::now() >= db.up_at);
    p.stop().await.unwrap();
    assert!(dead.try_recv().is_err(), "nothing dead-lettered");
}

#[tokio::test(start_paused = true)]
async fn an_outage_does_not_hide_bad_messages_which_still_fail_alone() {
    let db = Destination::down_for(Duration::from_secs(5));
    let (dlq, mut dead) = mpsc::channel::<Message<u64>>(100);
    let p = Pipeline::builder("mixed", ToDestination(db.clone()))
        .producer(TestProducer::new)
        .batcher(batcher())
        .dead_letter(dlq)
        .start()
        .await
        .unwrap();
    let outcomes = p.push_messages([1000, 1001, 1002]).outcomes().await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Successful));
    p.stop().await.unwrap();
    let letter = dead.try_recv().expect("the invalid message");
    assert_eq!((*letter.data(), letter.failure()), (1001, Some("1001 is invalid")));
    assert!(dead.try_recv().is_err());
    assert!(db.written_once(2));
}

/// Calls the destination per message, with a retry budget of one.
struct PerMessage(Destination);

impl Handler for PerMessage {
    type Data = u64;
    async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
        self.0.write([*m.data()])
    }
}

#[tokio::test(start_paused = true)]
async fn an_outage_in_handle_message_is_waited_out_without_using_the_retries() {
    let db = Destination::down_for(Duration::from_secs(10));
    let p = Pipeline::builder("per-message", PerMessage(db.clone()))
        .producer(TestProducer::new)
        .retry(Backoff::constant(Duration::from_millis(1)), 1)
        .start()
        .await
        .unwrap();
    let outcomes = p.push_messages(1..=20).outcomes().await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Successful), "{outcomes:?}");
    assert!(db.written_once(20));
    p.stop().await.unwrap();
}

/// A dead-letter store that is down until `up_at`.
struct DownStore {
    up_at: Instant,
    stored: Arc<Mutex<Vec<u64>>>,
}

impl Sink<u64> for DownStore {
    fn write<'a>(&'a self, messages: &'a mut [Message<u64>]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            if Instant::now() < self.up_at {
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
            }
            self.stored.lock().unwrap().extend(messages.iter().map(|m| *m.data()));
            Ok(())
        })
    }
}

/// Records every acknowledgement with its failure handling.
#[derive(Default)]
struct Record(Mutex<Vec<(u64, Option<OnFailure>)>>);

impl Acknowledger for Record {
    fn ack(&self, acks: Acks) {
        let mut r = self.0.lock().unwrap();
        r.extend(acks.successful.iter().map(|t| (t.0, None)));
        r.extend(acks.failed.iter().map(|f| (f.token.0, Some(f.on_failure))));
    }
}

/// Emits its messages on the first demand, then nothing (and is asked again now and then).
struct Once(Arc<Mutex<Option<Vec<Message<u64>>>>>);

impl Producer for Once {
    type Output = Message<u64>;
    async fn handle_demand(&mut self, _: usize) -> Result<Emit<Message<u64>>, BoxError> {
        Ok(Emit::Events(self.0.lock().unwrap().take().unwrap_or_default()))
    }
}

/// Fails every message; those over 100 ask to be requeued.
struct FailAll;

impl Handler for FailAll {
    type Data = u64;
    async fn handle_message(&self, m: &mut Message<u64>) -> Result<(), BoxError> {
        if *m.data() > 100 {
            m.configure_ack(OnFailure::Requeue);
        }
        Err("bad".into())
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_store_that_is_down_is_waited_for_and_requeued_messages_bypass_it() {
    let stored = Arc::new(Mutex::new(Vec::new()));
    let store = DownStore {
        up_at: Instant::now() + Duration::from_secs(15),
        stored: stored.clone(),
    };
    let record = Arc::new(Record::default());
    let acker: Arc<dyn Acknowledger> = record.clone();
    let messages: Vec<_> = [7u64, 200]
        .into_iter()
        .map(|v| Message::with_acker(v, acker.clone(), AckToken(v, 0)))
        .collect();
    let once = Arc::new(Mutex::new(Some(messages)));
    let p = Pipeline::builder("dlq-outage", FailAll)
        .producer(move || Once(once.clone()))
        .dead_letter(store)
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        *record.0.lock().unwrap(),
        [(200, Some(OnFailure::Requeue))],
        "the requeued message went back at once; the other waits for the store"
    );
    // The backoff reaches its 10 s cap; the store is back at 15 s.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        *stored.lock().unwrap(),
        [7],
        "stored once the store is back, requeued one never"
    );
    assert_eq!(record.0.lock().unwrap()[1], (7, None), "dead-lettered: done");
    p.stop().await.unwrap();
}

/// While the destination is down, marks the first message failed before finding out.
struct PartialThenDown(Destination);

impl Handler for PartialThenDown {
    type Data = u64;
    async fn handle_message(&self, _: &mut Message<u64>) -> Result<(), BoxError> {
        Ok(())
    }
    async fn handle_batch(&self, batch: &mut [Message<u64>], _: &BatchInfo) -> Result<(), BoxError> {
        if Instant::now() < self.0.up_at {
            batch[0].fail("refused by an attempt during the outage");
        }
        self.0.write(batch.iter().map(|m| *m.data()))
    }
}

#[tokio::test(start_paused = true)]
async fn marks_made_by_an_attempt_that_found_the_destination_down_are_forgotten() {
    let db = Destination::down_for(Duration::from_secs(3));
    let p = Pipeline::builder("void-attempt", PartialThenDown(db.clone()))
        .producer(TestProducer::new)
        .batcher(Batcher::new("db").batch_size(5).batch_timeout(Duration::from_millis(5)))
        .start()
        .await
        .unwrap();
    let outcomes = p.push_messages(1..=5).outcomes().await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Successful), "{outcomes:?}");
    assert!(db.written_once(5));
    p.stop().await.unwrap();
}
