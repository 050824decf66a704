//! The sink against the real RabbitMQ: confirms, mandatory returns, refusals, outages.

mod support;

use amqprs::channel::QueueBindArguments;
use ferroway::connector::{Record, Sink};
use ferroway::error::is_unavailable;
use ferroway::pipeline::Message;
use ferroway_amqp::{AmqpSink, RoutingKey, SinkError, SinkOptions};
use support::{Rabbit, unique, uri};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_succeed_and_unroutable_mandatory_ones_fail() {
    let rabbit = Rabbit::new().await;
    let q = unique("sink-routed");
    rabbit.queue(&q).await;
    rabbit
        .channel
        .queue_bind(QueueBindArguments::new(&q, "amq.direct", "routed"))
        .await
        .unwrap();
    let sink = AmqpSink::new(
        SinkOptions::new(uri(), "amq.direct")
            .routing_key(RoutingKey::FromKey {
                default: "routed".into(),
            })
            .mandatory(true)
            .content_type("text/plain"),
    )
    .unwrap();
    // Every third record has a key no queue is bound with.
    let mut batch: Vec<Message<Record>> = (0..300)
        .map(|i| {
            let r = Record::new(i.to_string()).header("n", i.to_string());
            Message::new(if i % 3 == 0 { r.key("nowhere") } else { r })
        })
        .collect();
    sink.write(&mut batch).await.unwrap();
    for (i, m) in batch.iter().enumerate() {
        assert_eq!(m.is_failed(), i % 3 == 0, "message {i}: {:?}", m.failure());
        if i % 3 == 0 {
            assert!(
                m.failure().unwrap().contains("returned unroutable: 312 NO_ROUTE"),
                "{:?}",
                m.failure()
            );
        }
    }
    let got = rabbit.take_all(&q).await;
    assert_eq!(got.len(), 200);
    let (body, props) = &got[0];
    assert_eq!(props.content_type().map(String::as_str), Some("text/plain"));
    let n: &str = props
        .headers()
        .unwrap()
        .get(&"n".try_into().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(n.as_bytes(), &body[..]);
    // The same channel serves the next batch (tags continue).
    let mut more: Vec<Message<Record>> = (0..10).map(|i| Message::new(Record::new(i.to_string()))).collect();
    sink.write(&mut more).await.unwrap();
    assert!(more.iter().all(|m| !m.is_failed()));
    assert_eq!(rabbit.take_all(&q).await.len(), 10);
    Sink::<Record>::close(&sink).await.unwrap();
    rabbit.delete(&q).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_exchange_is_a_refusal_not_an_outage() {
    let sink = AmqpSink::new(SinkOptions::new(uri(), unique("no-such-exchange"))).unwrap();
    let mut batch = vec![Message::new(Record::new("x"))];
    let e = sink.write(&mut batch).await.unwrap_err();
    assert!(!is_unavailable(&*e), "{e}");
    let e = e.downcast::<SinkError>().unwrap();
    match *e {
        SinkError::Refused { ref reason, .. } => assert!(reason.starts_with("404 NOT_FOUND - no exchange"), "{reason}"),
        ref other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_is_an_outage_and_names_the_uri_without_password() {
    let sink = AmqpSink::new(SinkOptions::new("amqp://app:s3cret@127.0.0.1:1/%2f", "x")).unwrap();
    let mut batch = vec![Message::new(Record::new("x"))];
    let e = sink.write(&mut batch).await.unwrap_err();
    assert!(is_unavailable(&*e), "{e}");
    let text = format!("{e} {e:?}");
    assert!(text.contains("amqp://app:***@127.0.0.1:1"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!batch[0].is_failed(), "an outage marks nothing failed");
}
