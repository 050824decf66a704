//! The Pub/Sub sink against the real emulator: a round trip with attributes and ordering
//! keys, a message Pub/Sub cannot take failing alone, ordering keys in order, a missing
//! topic refused.

mod support;

use std::time::Duration;

use ferroway::connector::generator::Generator;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Message, Pipeline};
use ferroway_pubsub::{OrderingKey, PubSubSink};
use gcloud_pubsub::subscription::SubscriptionConfig;
use support::{client, delete, topic_and_subscription, unique};
use tokio::sync::mpsc;

/// Every message waiting on `sub` as (data, attributes, ordering key), acknowledged.
async fn pull_all(
    c: &gcloud_pubsub::client::Client,
    sub: &str,
    n: usize,
) -> Vec<(String, Vec<(String, String)>, String)> {
    let sub = c.subscription(sub);
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while all.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} arrived",
            all.len()
        );
        let Ok(got) = tokio::time::timeout(Duration::from_secs(2), sub.pull(1000, None)).await else {
            continue;
        };
        let got = got.unwrap();
        if got.is_empty() {
            continue;
        }
        sub.ack(got.iter().map(|m| m.ack_id().to_owned()).collect())
            .await
            .unwrap();
        for m in got {
            let mut attributes: Vec<(String, String)> = m.message.attributes.clone().into_iter().collect();
            attributes.sort();
            all.push((
                String::from_utf8_lossy(&m.message.data).into_owned(),
                attributes,
                m.message.ordering_key.clone(),
            ));
        }
    }
    all
}

async fn send<S: Source<Data = Record>>(sink: PubSubSink, records: S, dead: Option<mpsc::Sender<Message<Record>>>) {
    let mut b = Pipeline::builder("publish", Forward::new()).source(records).sink(
        sink,
        Batcher::new("pubsub")
            .batch_size(50)
            .batch_timeout(Duration::from_millis(20)),
    );
    if let Some(tx) = dead {
        b = b.dead_letter(tx);
    }
    b.start().await.unwrap().join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_published_with_attributes_and_ordering_keys() {
    support::logs();
    let c = client().await;
    let config = SubscriptionConfig {
        enable_message_ordering: true,
        ..SubscriptionConfig::default()
    };
    let (topic, sub) = topic_and_subscription(&c, &unique("sink-round-trip"), config).await;
    let records = Generator::new(200).payload(|s| s.to_string()).map(|n| {
        let i: u64 = n.parse().unwrap();
        Record::new(format!("m-{i}"))
            .key(["a", "b"][i as usize % 2])
            .header("trace", format!("t-{i}"))
    });
    let sink = PubSubSink::new(support::sink(&topic).ordering_key(OrderingKey::FromKey).max_messages(7)).unwrap();
    send(sink, records, None).await;
    let got = pull_all(&c, &sub, 200).await;
    assert_eq!(got.len(), 200);
    for (data, attributes, key) in &got {
        let i: u64 = data.strip_prefix("m-").unwrap().parse().unwrap();
        assert_eq!(attributes, &vec![("trace".to_owned(), format!("t-{i}"))]);
        assert_eq!(key, ["a", "b"][i as usize % 2]);
    }
    for k in ["a", "b"] {
        let order: Vec<u64> = got
            .iter()
            .filter(|(_, _, key)| key == k)
            .map(|(d, _, _)| d.strip_prefix("m-").unwrap().parse().unwrap())
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "key {k} delivered in publish order");
    }
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_pubsub_cannot_take_fails_alone() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("sink-invalid"), SubscriptionConfig::default()).await;
    let records = Generator::new(20).payload(|s| s.to_string()).map(|n| match n.as_str() {
        // Attribute values are text of at most 1,024 bytes, and a message needs content.
        "5" => Record::new("too-long").header("big", "x".repeat(2000)),
        "9" => Record::new(""),
        "13" => Record::new("binary").header("h", vec![0xff, 0xfe]),
        _ => Record::new(format!("ok-{n}")),
    });
    let (tx, mut dead) = mpsc::channel(10);
    send(PubSubSink::new(support::sink(&topic)).unwrap(), records, Some(tx)).await;
    let mut reasons = Vec::new();
    while let Ok(m) = dead.try_recv() {
        reasons.push(m.failure().unwrap().to_owned());
    }
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("header `big` is 2000 bytes")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("Pub/Sub needs data or at least one attribute")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("header `h` is not UTF-8")),
        "{reasons:?}"
    );
    let got = pull_all(&c, &sub, 17).await;
    assert!(got.iter().all(|(d, _, _)| d.starts_with("ok-")), "{got:?}");
    assert_eq!(got.len(), 17);
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_fails_the_batch_with_pubsubs_answer() {
    support::logs();
    let _ = client().await;
    let sink = PubSubSink::new(support::sink(&unique("no-topic"))).unwrap();
    let (tx, mut dead) = mpsc::channel(10);
    let run = send(sink, Generator::new(3).map(Record::from), Some(tx));
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("refused at once, not retried as an outage");
    let mut reasons = Vec::new();
    while let Ok(m) = dead.try_recv() {
        reasons.push(m.failure().unwrap().to_owned());
    }
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].contains("opening the topic refused: NotFound"),
        "{}",
        reasons[0]
    );
}

/// A topic whose Avro schema (JSON encoding) makes Pub/Sub itself refuse messages that are
/// not `{"n": <int>}`; and a subscription to it with message ordering.
async fn schema_topic(c: &gcloud_pubsub::client::Client, name: &str) -> (String, String) {
    use gcloud_gax::conn::{ConnectionOptions, Environment};
    use gcloud_googleapis::pubsub::v1::{CreateSchemaRequest, Encoding, Schema, SchemaSettings, schema};
    use gcloud_pubsub::apiv1::conn_pool::ConnectionManager;
    use gcloud_pubsub::apiv1::schema_client::SchemaClient;
    use gcloud_pubsub::topic::TopicConfig;
    let env = Environment::Emulator(support::emulator());
    let cm = ConnectionManager::new(1, "pubsub.googleapis.com", &env, &ConnectionOptions::default())
        .await
        .unwrap();
    let schema_id = format!("{name}-schema");
    let request = CreateSchemaRequest {
        parent: format!("projects/{}", support::PROJECT),
        schema: Some(Schema {
            r#type: schema::Type::Avro as i32,
            definition: r#"{"type":"record","name":"R","fields":[{"name":"n","type":"int"}]}"#.into(),
            ..Schema::default()
        }),
        schema_id: schema_id.clone(),
    };
    SchemaClient::new(cm).create_schema(request, None).await.unwrap();
    let (topic, subscription) = (format!("{name}-t"), format!("{name}-s"));
    let config = TopicConfig {
        schema_settings: Some(SchemaSettings {
            schema: format!("projects/{}/schemas/{schema_id}", support::PROJECT),
            encoding: Encoding::Json as i32,
            ..SchemaSettings::default()
        }),
        ..TopicConfig::default()
    };
    c.create_topic(&topic, Some(config), None).await.unwrap();
    let sub = SubscriptionConfig {
        enable_message_ordering: true,
        ack_deadline_seconds: 10,
        ..SubscriptionConfig::default()
    };
    c.create_subscription(&subscription, &topic, sub, None).await.unwrap();
    (topic, subscription)
}

fn record(payload: &str, key: Option<&str>) -> Message<Record> {
    let r = Record::new(payload.to_owned());
    Message::new(match key {
        Some(k) => r.key(k.to_owned()),
        None => r,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_pauses_its_ordering_key_until_resumed() {
    use ferroway::connector::Sink;
    support::logs();
    let c = client().await;
    let (topic, sub) = schema_topic(&c, &unique("paused-key")).await;
    // Two messages a request: Pub/Sub refuses a request as a whole, the sink finds which.
    let sink = PubSubSink::new(support::sink(&topic).ordering_key(OrderingKey::FromKey).max_messages(2)).unwrap();
    let n = |i: u32| format!(r#"{{"n":{i}}}"#);
    let mut batch = vec![
        record(&n(0), Some("a")),
        record(&n(1), Some("a")),
        record("not json", Some("a")),
        record(&n(3), Some("a")),
        record(&n(4), Some("a")),
        record(&n(10), Some("b")),
        record(&n(11), Some("b")),
        record(&n(20), None),
        record("not json either", None),
        record(&n(22), None),
    ];
    sink.write(&mut batch).await.unwrap();
    let failures: Vec<Option<&str>> = batch.iter().map(|m| m.failure()).collect();
    assert!(failures[..2].iter().all(Option::is_none), "{failures:?}");
    assert!(
        failures[2].unwrap().contains("Pub/Sub refused the message"),
        "{failures:?}"
    );
    for later in [3, 4] {
        assert!(
            failures[later]
                .unwrap()
                .contains("an earlier message of ordering key `a` was refused"),
            "{failures:?}"
        );
    }
    assert!(
        failures[5..8].iter().all(Option::is_none),
        "other keys go on: {failures:?}"
    );
    assert!(
        failures[8].unwrap().contains("Pub/Sub refused the message"),
        "{failures:?}"
    );
    assert!(failures[9].is_none(), "{failures:?}");
    assert_eq!(sink.paused_keys(), vec!["a".to_owned()]);

    let mut paused = vec![record(&n(5), Some("a")), record(&n(12), Some("b"))];
    sink.write(&mut paused).await.unwrap();
    assert!(paused[0].failure().unwrap().contains("ordering key `a` is paused"));
    assert!(paused[1].failure().is_none());
    assert!(sink.resume_publish("a"));
    let mut resumed = vec![record(&n(6), Some("a"))];
    sink.write(&mut resumed).await.unwrap();
    assert!(resumed[0].failure().is_none());

    let got = pull_all(&c, &sub, 8).await;
    let of = |k: &str| -> Vec<String> {
        got.iter()
            .filter(|(_, _, key)| key == k)
            .map(|(d, _, _)| d.clone())
            .collect()
    };
    assert_eq!(of("a"), vec![n(0), n(1), n(6)]);
    assert_eq!(of("b"), vec![n(10), n(11), n(12)]);
    let mut none = of("");
    none.sort();
    assert_eq!(none, vec![n(20), n(22)]);
    delete(&c, &topic, &sub).await;
}
