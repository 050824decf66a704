//! The source against the real RabbitMQ: round trip, prefetch, outcomes, stop, server-side
//! close, RPC, refusals.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqprs::channel::{BasicConsumeArguments, QueueDeclareArguments};
use amqprs::{BasicProperties, FieldTable, FieldValue};
use ferroway::BoxError;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Handler, Message, OnFailure, Pipeline, Processors};
use ferroway_amqp::{
    AmqpMetadata, AmqpSink, AmqpSource, Delivery, OnFailed, QueueDeclare, SinkOptions, SourceError, SourceOptions,
};
use support::{Rabbit, numbers, unique, uri};
use tokio::sync::{Semaphore, mpsc};

/// What a handler saw: payload, redelivered.
type Seen = Vec<(Vec<u8>, bool)>;

/// Records what it handles; fails payloads starting with `bad` (with `on_failure`), once or
/// always.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    fail_bad: Option<(OnFailure, bool)>,
    gate: Option<Arc<Semaphore>>,
    delay: Duration,
}

impl Recorder {
    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

impl Handler for Recorder {
    type Data = Delivery;
    async fn handle_message(&self, m: &mut Message<Delivery>) -> Result<(), BoxError> {
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let meta = m
            .metadata::<AmqpMetadata>()
            .expect("every delivery has its envelope")
            .clone();
        self.seen
            .lock()
            .unwrap()
            .push((m.data().payload.to_vec(), meta.redelivered));
        if let Some((on_failure, only_first)) = self.fail_bad
            && m.data().payload.starts_with(b"bad")
            && !(only_first && meta.redelivered)
        {
            m.configure_ack(on_failure);
            m.fail("bad message");
        }
        Ok(())
    }
}

async fn start(handler: Recorder, opts: SourceOptions) -> ferroway::pipeline::Pipeline<Delivery> {
    Pipeline::builder("amqp-test", handler)
        .source(AmqpSource::factory(opts).unwrap())
        .processors(Processors::new().concurrency(2).max_demand(10))
        .start()
        .await
        .unwrap()
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_payload_headers_and_properties_with_default_options() {
    let rabbit = Rabbit::new().await;
    let (from, to) = (unique("rt-in"), unique("rt-out"));
    rabbit.queue(&from).await;
    rabbit.queue(&to).await;
    for i in 0..300u64 {
        let mut headers = FieldTable::new();
        headers.insert("tenant".try_into().unwrap(), FieldValue::from(format!("t{}", i % 3)));
        headers.insert("attempt".try_into().unwrap(), FieldValue::l(i as i64));
        let mut props = BasicProperties::default();
        props
            .with_headers(headers)
            .with_content_type("application/json")
            .with_correlation_id(&format!("c{i}"))
            .with_message_id(&format!("m{i}"))
            .with_timestamp(1_700_000_000 + i);
        rabbit.publish(&from, format!("{{\"n\":{i}}}").as_bytes(), props).await;
    }
    let seen: Arc<Mutex<HashMap<u64, Delivery>>> = Arc::default();
    struct Check(Arc<Mutex<HashMap<u64, Delivery>>>);
    impl Handler for Check {
        type Data = Delivery;
        async fn handle_message(&self, m: &mut Message<Delivery>) -> Result<(), BoxError> {
            let meta = m.metadata::<AmqpMetadata>().unwrap();
            assert_eq!(meta.exchange, "");
            assert_eq!(meta.routing_key, m.data().routing_key);
            assert!(meta.delivery_tag > 0 && !meta.redelivered);
            let v: serde_json::Value = serde_json::from_slice(&m.data().payload)?;
            self.0
                .lock()
                .unwrap()
                .insert(v["n"].as_u64().unwrap(), m.data().clone());
            Ok(())
        }
        async fn handle_batch(
            &self,
            _: &mut [Message<Delivery>],
            _: &ferroway::pipeline::BatchInfo,
        ) -> Result<(), BoxError> {
            Ok(())
        }
    }
    // Default source options; the sink forwards each delivery (AsRecord) to the other queue.
    let sink = AmqpSink::new(SinkOptions::new(uri(), "").routing_key(to.as_str())).unwrap();
    let pipeline = Pipeline::builder("rt", Check(seen.clone()))
        .source(AmqpSource::factory(SourceOptions::new(uri(), &from)).unwrap())
        .sink(sink, Batcher::new("out").batch_size(50))
        .start()
        .await
        .unwrap();
    rabbit.wait_ready(&to, 300, 30).await;
    pipeline.stop().await.unwrap();
    assert_eq!(rabbit.ready(&from).await, 0, "every delivery was acked");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.len(), 300);
    let d = &seen[&7];
    assert_eq!(d.header_value("tenant"), Some(&b"t1"[..]));
    assert_eq!(d.header_value("attempt"), Some(&b"7"[..]));
    assert_eq!(d.properties.content_type.as_deref(), Some("application/json"));
    assert_eq!(d.properties.correlation_id.as_deref(), Some("c7"));
    assert_eq!(d.properties.message_id.as_deref(), Some("m7"));
    assert_eq!(d.properties.timestamp, Some(1_700_000_007));
    assert_eq!(d.properties.delivery_mode, Some(2));
    assert_eq!(d.routing_key, from);
    let out = rabbit.take_all(&to).await;
    assert_eq!(out.len(), 300);
    let mut ns = BTreeSet::new();
    for (body, props) in &out {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let n = v["n"].as_u64().unwrap();
        ns.insert(n);
        let h = props.headers().expect("headers forwarded");
        let tenant: &str = h.get(&"tenant".try_into().unwrap()).unwrap().try_into().unwrap();
        assert_eq!(tenant, format!("t{}", n % 3));
        assert_eq!(
            props.timestamp(),
            Some(1_700_000_000 + n),
            "timestamp kept to the second"
        );
        assert_eq!(props.delivery_mode(), Some(2), "persistent by default");
    }
    assert_eq!(ns, (0..300).collect());
    rabbit.delete(&from).await;
    rabbit.delete(&to).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_bounds_the_unacknowledged_deliveries() {
    let rabbit = Rabbit::new().await;
    let q = unique("prefetch");
    rabbit.queue(&q).await;
    rabbit.publish_range(&q, 0, 1000).await;
    let gate = Arc::new(Semaphore::new(0));
    let handler = Recorder {
        gate: Some(gate.clone()),
        ..Recorder::default()
    };
    let pipeline = start(handler.clone(), SourceOptions::new(uri(), &q).prefetch_count(20)).await;
    // The processors hold what they took; the broker has sent exactly the prefetch.
    rabbit.wait_ready(&q, 980, 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rabbit.ready(&q).await,
        980,
        "no more than prefetch_count deliveries unacknowledged"
    );
    gate.add_permits(1_000_000);
    until("every message", 30, || handler.seen().len() == 1000).await;
    pipeline.stop().await.unwrap();
    assert_eq!(rabbit.ready(&q).await, 0);
    let ns: BTreeSet<u64> = numbers(handler.seen().iter().map(|s| &s.0[..])).into_iter().collect();
    assert_eq!(ns, (0..1000).collect());
    rabbit.delete(&q).await;
}

/// A queue whose rejected messages go to `dlq` through the default exchange.
async fn with_dead_letter_queue(rabbit: &Rabbit, q: &str, dlq: &str) {
    rabbit.queue(dlq).await;
    let mut args = FieldTable::new();
    args.insert("x-dead-letter-exchange".try_into().unwrap(), FieldValue::from(""));
    args.insert("x-dead-letter-routing-key".try_into().unwrap(), FieldValue::from(dlq));
    rabbit.queue_with(q, args).await;
}

async fn publish_mixed(rabbit: &Rabbit, q: &str) {
    for i in 0..100 {
        let body = if i % 10 == 0 { format!("bad{i}") } else { i.to_string() };
        rabbit.publish(q, body.as_bytes(), BasicProperties::default()).await;
    }
    rabbit.ready(q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_messages_are_rejected_to_the_dead_letter_exchange_by_default() {
    let rabbit = Rabbit::new().await;
    let (q, dlq) = (unique("reject"), unique("reject-dlq"));
    with_dead_letter_queue(&rabbit, &q, &dlq).await;
    publish_mixed(&rabbit, &q).await;
    let handler = Recorder {
        fail_bad: Some((OnFailure::Default, false)),
        ..Recorder::default()
    };
    let pipeline = start(handler.clone(), SourceOptions::new(uri(), &q)).await;
    rabbit.wait_ready(&dlq, 10, 20).await;
    until("every message", 20, || handler.seen().len() == 100).await;
    pipeline.stop().await.unwrap();
    assert_eq!(rabbit.ready(&q).await, 0);
    let dead: BTreeSet<Vec<u8>> = rabbit.take_all(&dlq).await.into_iter().map(|m| m.0).collect();
    let expected: BTreeSet<Vec<u8>> = (0..10).map(|i| format!("bad{}", i * 10).into_bytes()).collect();
    assert_eq!(dead, expected);
    assert_eq!(handler.seen().len(), 100, "rejected, not requeued: each seen once");
    rabbit.delete(&q).await;
    rabbit.delete(&dlq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_once_tries_again_then_rejects() {
    let rabbit = Rabbit::new().await;
    let (q, dlq) = (unique("requeue-once"), unique("requeue-once-dlq"));
    with_dead_letter_queue(&rabbit, &q, &dlq).await;
    publish_mixed(&rabbit, &q).await;
    let handler = Recorder {
        fail_bad: Some((OnFailure::Default, false)),
        ..Recorder::default()
    };
    let pipeline = start(
        handler.clone(),
        SourceOptions::new(uri(), &q).on_failed(OnFailed::RequeueOnce),
    )
    .await;
    rabbit.wait_ready(&dlq, 10, 20).await;
    pipeline.stop().await.unwrap();
    let seen = handler.seen();
    for i in (0..100).step_by(10) {
        let bad = format!("bad{i}").into_bytes();
        let deliveries: Vec<bool> = seen.iter().filter(|s| s.0 == bad).map(|s| s.1).collect();
        assert_eq!(deliveries, vec![false, true], "{i}: delivered, then redelivered once");
    }
    assert_eq!(seen.len(), 110);
    assert_eq!(rabbit.take_all(&dlq).await.len(), 10);
    assert_eq!(rabbit.ready(&q).await, 0);
    rabbit.delete(&q).await;
    rabbit.delete(&dlq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_asking_for_requeue_comes_back_and_a_dead_letter_route_acks() {
    let rabbit = Rabbit::new().await;
    let (q, dlq) = (unique("requeue"), unique("requeue-dlq"));
    with_dead_letter_queue(&rabbit, &q, &dlq).await;
    publish_mixed(&rabbit, &q).await;
    // Bad messages ask to be requeued on their first delivery and succeed on the second.
    let handler = Recorder {
        fail_bad: Some((OnFailure::Requeue, true)),
        ..Recorder::default()
    };
    let pipeline = start(handler.clone(), SourceOptions::new(uri(), &q)).await;
    until("every message and the redeliveries", 20, || handler.seen().len() == 110).await;
    pipeline.stop().await.unwrap();
    assert_eq!(rabbit.ready(&q).await, 0);
    assert_eq!(rabbit.ready(&dlq).await, 0, "nothing rejected");

    // With a dead-letter route, a failure goes there and the delivery is acked.
    publish_mixed(&rabbit, &q).await;
    let (tx, mut rx) = mpsc::channel(1000);
    let handler = Recorder {
        fail_bad: Some((OnFailure::Default, false)),
        ..Recorder::default()
    };
    let pipeline = Pipeline::builder("dl", handler.clone())
        .source(AmqpSource::factory(SourceOptions::new(uri(), &q)).unwrap())
        .dead_letter(tx)
        .start()
        .await
        .unwrap();
    let mut dead = Vec::new();
    while dead.len() < 10 {
        dead.push(
            tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    until("every message", 20, || handler.seen().len() == 100).await;
    pipeline.stop().await.unwrap();
    assert_eq!(rabbit.ready(&q).await, 0);
    assert_eq!(
        rabbit.ready(&dlq).await,
        0,
        "dead-lettered by the pipeline, so acked, not rejected"
    );
    rabbit.delete(&q).await;
    rabbit.delete(&dlq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_acks_everything_it_processed() {
    let rabbit = Rabbit::new().await;
    let q = unique("stop");
    rabbit.queue(&q).await;
    rabbit.publish_range(&q, 0, 5000).await;
    let handler = Recorder {
        delay: Duration::from_millis(1),
        ..Recorder::default()
    };
    let pipeline = start(handler.clone(), SourceOptions::new(uri(), &q).prefetch_count(200)).await;
    until("some progress", 20, || handler.seen().len() >= 500).await;
    pipeline.stop().await.unwrap();
    let seen = numbers(handler.seen().iter().map(|s| &s.0[..]));
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    // Connections are closed: anything unacked would be ready again.
    assert_eq!(
        rabbit.ready(&q).await as usize,
        5000 - seen.len(),
        "everything processed was acked, nothing else"
    );
    let rest = numbers(rabbit.take_all(&q).await.iter().map(|m| &m.0[..]));
    let all: BTreeSet<u64> = unique.into_iter().chain(rest).collect();
    assert_eq!(all, (0..5000).collect());
    rabbit.delete(&q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_server_is_reopened_and_nothing_is_lost() {
    let rabbit = Rabbit::new().await;
    let q = unique("server-close");
    rabbit.queue(&q).await;
    rabbit.publish_range(&q, 0, 3000).await;
    // Slow enough that the stream outlasts finding the connection with rabbitmqctl (an
    // Erlang VM per call: seconds on a loaded machine): about 7 s after the first 300.
    let handler = Recorder {
        delay: Duration::from_millis(5),
        ..Recorder::default()
    };
    let name = unique("conn");
    let opts = SourceOptions::new(uri(), &q).connection_name(&name).prefetch_count(50);
    let pipeline = start(handler.clone(), opts).await;
    until("some progress", 20, || handler.seen().len() >= 300).await;
    // rabbitmqctl sees a new connection a moment after it opened.
    let mut closed = 0;
    for _ in 0..50 {
        closed = support::close_connections_named(&name);
        if closed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closed, 1, "the source's connection was found and closed");
    let before = handler.seen().len();
    until("every message after the reconnection", 60, || {
        let ns: BTreeSet<u64> = numbers(handler.seen().iter().map(|s| &s.0[..])).into_iter().collect();
        ns.len() == 3000
    })
    .await;
    assert!(before < 3000, "the close came mid-stream");
    pipeline.stop().await.unwrap();
    assert_eq!(rabbit.ready(&q).await, 0);
    let redelivered = handler.seen().iter().filter(|s| s.1).count();
    eprintln!("redelivered after the server-side close: {redelivered}");
    rabbit.delete(&q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_requests_are_answered_on_reply_to_with_the_correlation_id() {
    let rabbit = Rabbit::new().await;
    let q = unique("rpc");
    rabbit.queue(&q).await;
    // The client's exclusive reply queue.
    let (replies, _, _) = rabbit
        .channel
        .queue_declare(QueueDeclareArguments::exclusive_server_named())
        .await
        .unwrap()
        .unwrap();
    struct Upper(AmqpSink);
    impl Handler for Upper {
        type Data = Delivery;
        async fn handle_message(&self, m: &mut Message<Delivery>) -> Result<(), BoxError> {
            let reply = m.data().payload.to_ascii_uppercase();
            self.0.reply(m.data(), &reply).await?;
            Ok(())
        }
    }
    let pipeline = Pipeline::builder("rpc", Upper(AmqpSink::new(SinkOptions::new(uri(), "")).unwrap()))
        .source(AmqpSource::factory(SourceOptions::new(uri(), &q)).unwrap())
        .start()
        .await
        .unwrap();
    for i in 0..20 {
        let mut props = BasicProperties::default();
        props.with_reply_to(&replies).with_correlation_id(&format!("req-{i}"));
        rabbit.publish(&q, format!("hello {i}").as_bytes(), props).await;
    }
    let reply_rx = rabbit.conn.open_channel(None).await.unwrap();
    let mut args = BasicConsumeArguments::new(&replies, "");
    args.manual_ack(false);
    let (_, mut rx) = reply_rx.basic_consume_rx(args).await.unwrap();
    let mut got = HashMap::new();
    while got.len() < 20 {
        let m = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let props = m.basic_properties.unwrap();
        got.insert(
            props.correlation_id().unwrap().clone(),
            String::from_utf8(m.content.unwrap()).unwrap(),
        );
    }
    pipeline.stop().await.unwrap();
    for i in 0..20 {
        assert_eq!(got[&format!("req-{i}")], format!("HELLO {i}"));
    }
    rabbit.delete(&q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_declares_and_binds_its_queue() {
    let rabbit = Rabbit::new().await;
    let q = unique("declared");
    rabbit.delete(&q).await;
    let opts = SourceOptions::new(uri(), &q)
        .declare(QueueDeclare::durable().argument("x-max-length", 10_000))
        .bind(ferroway_amqp::Binding::new("amq.topic", "orders.*"));
    let handler = Recorder::default();
    let pipeline = start(handler.clone(), opts).await;
    until("the source to connect", 20, || pipeline_connected(&q)).await;
    // Published to the topic exchange, routed by the binding the source made.
    let sink = AmqpSink::new(
        SinkOptions::new(uri(), "amq.topic")
            .routing_key("orders.created")
            .mandatory(true),
    )
    .unwrap();
    let mut batch: Vec<Message<Record>> = (0..10).map(|i| Message::new(Record::new(i.to_string()))).collect();
    ferroway::connector::Sink::write(&sink, &mut batch).await.unwrap();
    assert!(batch.iter().all(|m| !m.is_failed()));
    until("the routed messages", 20, || handler.seen().len() == 10).await;
    pipeline.stop().await.unwrap();
    rabbit.delete(&q).await;
}

/// Whether the queue has a consumer (the source's).
fn pipeline_connected(q: &str) -> bool {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "--no-table-headers", "--silent", "name", "consumers"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == [q, "1"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_fail_the_pipeline_with_the_reason_and_no_password() {
    // A queue that does not exist, not declared.
    let q = unique("missing");
    let pipeline = Pipeline::builder("missing", Recorder::default())
        .source(AmqpSource::factory(SourceOptions::new(uri(), &q)).unwrap())
        .start()
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), pipeline.join())
        .await
        .expect("the pipeline fails instead of retrying a missing queue")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("basic.consume of queue `{q}` refused: 404 NOT_FOUND")),
        "{e}"
    );

    // Wrong credentials.
    let bad = uri().replace("guest:guest", "guest:wrong-secret-pw");
    let opts = SourceOptions::new(bad.as_str(), "q").connect_timeout(Duration::from_secs(3));
    let mut source = AmqpSource::new(opts).unwrap();
    let e = ferroway::stage::Producer::handle_demand(&mut source, 1)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(!text.contains("wrong-secret-pw"), "{text}");
    assert!(
        text.contains("could not reach amqp://guest:***@127.0.0.1:5672"),
        "{text}"
    );
    assert!(text.contains("when the user name or password is wrong"), "{text}");
    assert!(matches!(
        *e.downcast::<SourceError>().unwrap(),
        SourceError::Unreachable { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_routing_key_as_key() {
    let rabbit = Rabbit::new().await;
    let q = unique("records");
    rabbit.queue(&q).await;
    rabbit.publish_range(&q, 0, 5).await;
    let (tx, mut rx) = mpsc::channel(10);
    let pipeline = Pipeline::builder("records", ferroway::pipeline::Forward::<Record>::new())
        .source(
            AmqpSource::factory(SourceOptions::new(uri(), &q))
                .unwrap()
                .map(Record::from),
        )
        .sink(tx, Batcher::new("out"))
        .start()
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.data().key.as_deref(), Some(q.as_bytes()));
    pipeline.stop().await.unwrap();
    rabbit.delete(&q).await;
}
