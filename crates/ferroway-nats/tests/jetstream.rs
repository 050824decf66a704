//! The JetStream source and sink against the real nats-server: round trip, nak and term,
//! the last delivery to the dead-letter route, ack-wait expiry and work-in-progress
//! heartbeats, graceful stop, server restart.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use ferroway::BoxError;
use ferroway::pipeline::{Batcher, Handler, Message, Pipeline, Processors};
use ferroway_nats::jetstream::ConsumerConfig;
use ferroway_nats::{
    JetStreamMetadata, JetStreamOptions, JetStreamSource, NatsMessage, NatsSink, OnFailed, SinkOptions,
};
use support::{client, consumer_state, numbers, publish_range, stream, unique, url};
use tokio::sync::mpsc;

/// What a handler saw: payload, delivery count.
type Seen = Vec<(Vec<u8>, i64)>;

/// Records what it handles; fails payloads starting with `bad`; sleeps `delay` on `slow`.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    delay: Duration,
    slow: Duration,
}

impl Recorder {
    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

impl Handler for Recorder {
    type Data = NatsMessage;
    async fn handle_message(&self, m: &mut Message<NatsMessage>) -> Result<(), BoxError> {
        let meta = m
            .metadata::<JetStreamMetadata>()
            .expect("every message has its origin")
            .clone();
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if m.data().payload.starts_with(b"slow") {
            tokio::time::sleep(self.slow).await;
        }
        self.seen
            .lock()
            .unwrap()
            .push((m.data().payload.to_vec(), meta.delivered));
        if m.data().payload.starts_with(b"bad") {
            m.fail("bad message");
        }
        Ok(())
    }
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(handler: Recorder, opts: JetStreamOptions) -> Pipeline<NatsMessage> {
    Pipeline::builder("nats-test", handler)
        .source(JetStreamSource::factory(opts).unwrap())
        .processors(Processors::new().concurrency(2).max_demand(10))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_two_streams_with_headers_and_default_options() {
    let c = client().await;
    let (from, to) = (unique("rt-in"), unique("rt-out"));
    stream(&c, &from).await;
    stream(&c, &to).await;
    let js = jetstream::new(c.clone());
    for i in 0..300u64 {
        let mut h = HeaderMap::new();
        h.insert("tenant", format!("t{}", i % 3).as_str());
        js.publish_with_headers(format!("{from}.orders"), h, Bytes::from(i.to_string()))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let sink = NatsSink::new(SinkOptions::new(url(), format!("{to}.copy")).jetstream(true)).unwrap();
    let pipeline = Pipeline::builder("rt", ferroway::pipeline::Forward::<NatsMessage>::new())
        .source(JetStreamSource::factory(JetStreamOptions::new(url(), &from, "copier")).unwrap())
        .sink(sink, Batcher::new("out").batch_size(50))
        .start()
        .await
        .unwrap();
    let copies = support::read_all(&c, &to, 300).await;
    pipeline.stop().await.unwrap();
    assert_eq!(copies.len(), 300);
    let mut ns = BTreeSet::new();
    for m in &copies {
        let n: u64 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        ns.insert(n);
        let tenant = m.headers.as_ref().unwrap().get("tenant").unwrap().as_str();
        assert_eq!(tenant, format!("t{}", n % 3));
        assert_eq!(m.subject.as_str(), format!("{to}.copy"));
    }
    assert_eq!(ns, (0..300).collect());
    assert_eq!(
        consumer_state(&c, &from, "copier").await,
        (0, 0),
        "everything delivered and acked"
    );
    support::delete_stream(&c, &from).await;
    support::delete_stream(&c, &to).await;
}

async fn publish_mixed(c: &async_nats::Client, subject: &str) {
    let js = jetstream::new(c.clone());
    for i in 0..50 {
        let body = if i % 10 == 0 { format!("bad{i}") } else { i.to_string() };
        js.publish(subject.to_owned(), Bytes::from(body))
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

fn deliveries(seen: &Seen, payload: &str) -> Vec<i64> {
    seen.iter().filter(|s| s.0 == payload.as_bytes()).map(|s| s.1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nak_redelivers_up_to_max_deliver_and_term_stops_at_once() {
    let c = client().await;
    let s = unique("nak");
    stream(&c, &s).await;
    publish_mixed(&c, &format!("{s}.x")).await;
    let consumer = ConsumerConfig {
        max_deliver: 3,
        ..JetStreamOptions::default_consumer()
    };
    let handler = Recorder::default();
    let p = start(
        handler.clone(),
        JetStreamOptions::new(url(), &s, "nak").consumer(consumer.clone()),
    )
    .await;
    until("three deliveries of each bad message", 30, || {
        handler.seen().len() == 45 + 5 * 3
    })
    .await;
    p.stop().await.unwrap();
    for i in (0..50).step_by(10) {
        assert_eq!(deliveries(&handler.seen(), &format!("bad{i}")), vec![1, 2, 3], "bad{i}");
    }
    assert_eq!(
        consumer_state(&c, &s, "nak").await,
        (0, 0),
        "the last failures were terminated"
    );

    let handler = Recorder::default();
    let opts = JetStreamOptions::new(url(), &s, "term")
        .consumer(consumer)
        .on_failed(OnFailed::Term);
    let p = start(handler.clone(), opts).await;
    until("every message", 30, || handler.seen().len() == 50).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.stop().await.unwrap();
    assert_eq!(handler.seen().len(), 50, "terminated: none came back");
    assert_eq!(consumer_state(&c, &s, "term").await, (0, 0));
    support::delete_stream(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_the_last_delivery_goes_to_the_dead_letter_route() {
    let c = client().await;
    let s = unique("dlq");
    stream(&c, &s).await;
    publish_mixed(&c, &format!("{s}.x")).await;
    let consumer = ConsumerConfig {
        max_deliver: 2,
        ..JetStreamOptions::default_consumer()
    };
    let handler = Recorder::default();
    let (tx, mut rx) = mpsc::channel(100);
    let p = Pipeline::builder("dl", handler.clone())
        .source(JetStreamSource::factory(JetStreamOptions::new(url(), &s, "dl").consumer(consumer)).unwrap())
        .dead_letter(tx)
        .start()
        .await
        .unwrap();
    let mut dead = Vec::new();
    while dead.len() < 5 {
        let m: Message<NatsMessage> = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap()
            .unwrap();
        dead.push(String::from_utf8(m.data().payload.to_vec()).unwrap());
    }
    p.stop().await.unwrap();
    dead.sort();
    assert_eq!(dead, ["bad0", "bad10", "bad20", "bad30", "bad40"]);
    for i in (0..50).step_by(10) {
        assert_eq!(
            deliveries(&handler.seen(), &format!("bad{i}")),
            vec![1, 2],
            "nak'ed once, dead-lettered on the 2nd"
        );
    }
    assert_eq!(consumer_state(&c, &s, "dl").await, (0, 0), "dead letters are acked");
    assert!(rx.try_recv().is_err(), "nothing dead-lettered before its last delivery");
    support::delete_stream(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacked_message_comes_back_after_the_ack_wait_and_slow_work_is_not_redelivered() {
    let c = client().await;
    let s = unique("ackwait");
    stream(&c, &s).await;
    let consumer = ConsumerConfig {
        ack_wait: Duration::from_secs(1),
        ..JetStreamOptions::default_consumer()
    };
    // A consumer that took a message and died: it is delivered again after the ack wait.
    let js = jetstream::new(c.clone());
    js.publish(format!("{s}.x"), "taken".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let st = js.get_stream(&s).await.unwrap();
    let raw = ferroway_nats::jetstream::ensure_consumer(&st, "w", consumer.clone())
        .await
        .unwrap();
    {
        use futures_util::StreamExt;
        let mut b = raw.fetch().max_messages(1).messages().await.unwrap();
        let m = b.next().await.unwrap().unwrap();
        assert_eq!(&m.payload[..], b"taken");
    }
    // A message whose handling takes 4 ack waits: kept alive by +WPI, delivered once.
    js.publish(format!("{s}.x"), "slow".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let handler = Recorder {
        slow: Duration::from_secs(4),
        ..Recorder::default()
    };
    let started = tokio::time::Instant::now();
    let p = start(
        handler.clone(),
        JetStreamOptions::new(url(), &s, "w").consumer(consumer),
    )
    .await;
    until("both messages", 30, || handler.seen().len() >= 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.stop().await.unwrap();
    let seen = handler.seen();
    assert_eq!(
        deliveries(&seen, "taken"),
        vec![2],
        "redelivered once its ack wait ran out"
    );
    assert_eq!(deliveries(&seen, "slow"), vec![1], "in progress: not redelivered");
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(consumer_state(&c, &s, "w").await, (0, 0));
    support::delete_stream(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_acks_everything_it_processed() {
    let c = client().await;
    let s = unique("stop");
    stream(&c, &s).await;
    publish_range(&c, &format!("{s}.x"), 0, 5000).await;
    let handler = Recorder {
        delay: Duration::from_millis(1),
        ..Recorder::default()
    };
    let p = start(handler.clone(), JetStreamOptions::new(url(), &s, "stop").max_batch(100)).await;
    until("some progress", 30, || handler.seen().len() >= 500).await;
    p.stop().await.unwrap();
    let seen = numbers(handler.seen().iter().map(|s| &s.0[..]));
    let unique_seen: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique_seen.len(), seen.len(), "no duplicates");
    // The acks are flushed when the stop returns, but the server applies them to the
    // consumer on its own schedule: wait for them a little (an unacked delivery would stay
    // ack-pending for the whole 30 s ack wait).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let (mut pending, mut ack_pending) = consumer_state(&c, &s, "stop").await;
    while ack_pending > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        (pending, ack_pending) = consumer_state(&c, &s, "stop").await;
    }
    assert_eq!(ack_pending, 0, "everything delivered was acked");
    assert_eq!(pending as usize, 5000 - seen.len(), "and nothing else was taken");
    support::delete_stream(&c, &s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_stream_loses_nothing() {
    let mut server = support::OwnServer::start(14_222);
    let c = support::client_at(&server.url()).await;
    let s = unique("restart");
    stream(&c, &s).await;
    publish_range(&c, &format!("{s}.x"), 0, 3000).await;
    drop(c);
    let handler = Recorder {
        delay: Duration::from_millis(2),
        ..Recorder::default()
    };
    let consumer = ConsumerConfig {
        ack_wait: Duration::from_secs(2),
        ..JetStreamOptions::default_consumer()
    };
    let p = start(
        handler.clone(),
        JetStreamOptions::new(server.url(), &s, "r").consumer(consumer),
    )
    .await;
    until("some progress", 30, || handler.seen().len() >= 500).await;
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = handler.seen().len();
    server.restart();
    until("every message after the restart", 90, || {
        let ns: BTreeSet<u64> = numbers(handler.seen().iter().map(|s| &s.0[..])).into_iter().collect();
        ns.len() == 3000
    })
    .await;
    assert!(during < 3000, "the restart came mid-stream");
    p.stop().await.unwrap();
    let c = support::client_at(&server.url()).await;
    assert_eq!(consumer_state(&c, &s, "r").await, (0, 0));
    let counts = handler.seen().iter().fold(HashMap::<Vec<u8>, u32>::new(), |mut m, s| {
        *m.entry(s.0.clone()).or_default() += 1;
        m
    });
    eprintln!(
        "server restart: {} messages seen twice or more",
        counts.values().filter(|&&n| n > 1).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_the_pipeline_with_its_url_and_a_missing_stream_is_refused() {
    let started = tokio::time::Instant::now();
    let opts = JetStreamOptions::new("nats://app:s3cret@127.0.0.1:1", "S", "d").connect_timeout(Duration::from_secs(2));
    let p = start(Recorder::default(), opts).await;
    let e = tokio::time::timeout(Duration::from_secs(60), p.join())
        .await
        .expect("the pipeline fails instead of retrying forever")
        .unwrap_err()
        .to_string();
    assert!(e.contains("could not reach nats://app:***@127.0.0.1:1 within"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());

    let missing = unique("missing");
    let p = start(Recorder::default(), JetStreamOptions::new(url(), &missing, "d")).await;
    let e = tokio::time::timeout(Duration::from_secs(60), p.join())
        .await
        .expect("a missing stream fails the pipeline")
        .unwrap_err()
        .to_string();
    assert!(e.contains("getting the stream refused"), "{e}");
    assert!(e.contains("stream not found"), "{e}");
}
