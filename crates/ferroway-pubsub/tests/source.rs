//! The Pub/Sub source against the real emulator: round trip with attributes, flow control
//! bounding what is outstanding, nack redelivery, redelivery after the ack deadline, lease
//! extension, the delivery-attempt limit to the dead-letter route, ordering keys in order,
//! defaults, stops that leave nothing held and no stream behind, refusals.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::AsRecord;
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_pubsub::{OnFailed, PubSubMessage, PubSubMetadata, PubSubOptions, PubSubSource};
use gcloud_pubsub::subscription::SubscriptionConfig;
use support::{client, delete, drain, publish, publish_range, topic_and_subscription, unique, with_attributes};
use tokio::sync::{Semaphore, mpsc};

/// What a handler saw: data, delivery attempt (1 where Pub/Sub does not count).
type Seen = Vec<(String, u32)>;

/// Records what it handles; fails data starting with `bad` (on every delivery, or only the
/// first when `fail_once`); sleeps `slow` on data starting with `slow`; holds every message
/// until `gate` has a permit, when set.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    metas: Arc<Mutex<Vec<(PubSubMessage, PubSubMetadata)>>>,
    fail_once: bool,
    slow: Duration,
    gate: Option<Arc<Semaphore>>,
    entered: Arc<AtomicUsize>,
}

impl Recorder {
    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

impl Handler for Recorder {
    type Data = PubSubMessage;
    async fn handle_message(&self, m: &mut Message<PubSubMessage>) -> Result<(), BoxError> {
        let meta = m
            .metadata::<PubSubMetadata>()
            .expect("every message has its origin")
            .clone();
        self.entered.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let data = String::from_utf8_lossy(&m.data().data).into_owned();
        if data.starts_with("slow") {
            tokio::time::sleep(self.slow).await;
        }
        let attempt = meta.delivery_attempt.unwrap_or(1);
        self.seen.lock().unwrap().push((data.clone(), attempt));
        self.metas.lock().unwrap().push((m.data().clone(), meta));
        if data.starts_with("bad") && (!self.fail_once || attempt == 1) {
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

fn opts(subscription: &str) -> PubSubOptions {
    support::source(subscription).ack_deadline(Duration::from_secs(10))
}

async fn start(handler: Recorder, opts: PubSubOptions) -> Pipeline<PubSubMessage> {
    Pipeline::builder("pubsub-test", handler)
        .source(PubSubSource::factory(opts).unwrap())
        .processors(Processors::new().concurrency(2).max_demand(10))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_attributes_and_metadata() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("round-trip"), SubscriptionConfig::default()).await;
    let sent: Vec<_> = (0..30)
        .map(|n| {
            with_attributes(
                &format!("m-{n}"),
                &[("trace", &format!("t-{n}")), ("n", &n.to_string())],
                "",
            )
        })
        .collect();
    let ids = publish(&c, &topic, sent).await;

    let r = Recorder::default();
    let p = start(r.clone(), opts(&sub)).await;
    until("30 messages", 30, || r.seen().len() >= 30).await;
    p.stop().await.unwrap();

    let metas = r.metas.lock().unwrap().clone();
    assert_eq!(metas.len(), 30, "each message once");
    for (data, meta) in &metas {
        let n = String::from_utf8_lossy(&data.data)
            .strip_prefix("m-")
            .unwrap()
            .to_owned();
        assert_eq!(
            data.attributes,
            vec![
                ("n".to_owned(), n.clone().into()),
                ("trace".to_owned(), format!("t-{n}").into())
            ],
            "attributes in name order"
        );
        assert!(ids.contains(&meta.message_id), "{meta:?}");
        assert!(!meta.ack_id.is_empty());
        assert_eq!(
            &*meta.subscription,
            format!("projects/{}/subscriptions/{sub}", support::PROJECT)
        );
        assert!(meta.publish_time.is_some_and(|t| t > 1_600_000_000_000), "{meta:?}");
        assert_eq!(data.timestamp(), meta.publish_time);
        assert_eq!(meta.delivery_attempt, None, "no dead-letter policy: not counted");
        assert_eq!(data.ordering_key, None);
    }
    assert!(drain(&c, &sub).await.is_empty(), "every message acknowledged");
    delete(&c, &topic, &sub).await;
}

/// The emulator ignores a stream's flow control and sends 100 messages a response every
/// 50 ms; Pub/Sub itself stops at the limit.
const EMULATOR_RESPONSE: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_bounds_the_messages_outstanding() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("flow"), SubscriptionConfig::default()).await;
    publish_range(&c, &topic, 0, 1000).await;
    let gate = Arc::new(Semaphore::new(0));
    let r = Recorder {
        gate: Some(gate.clone()),
        ..Recorder::default()
    };
    // The pipeline would hold 300 at once (300 processors, each stuck on one): the source
    // reads no more of the stream once 20 are outstanding.
    let p = Pipeline::builder("pubsub-flow", r.clone())
        .source(PubSubSource::factory(opts(&sub).max_outstanding_messages(20)).unwrap())
        .processors(Processors::new().concurrency(300).max_demand(1))
        .start()
        .await
        .unwrap();
    until("the first 20", 30, || r.entered.load(Ordering::SeqCst) >= 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = r.entered.load(Ordering::SeqCst);
    assert!(
        held <= 20 + EMULATOR_RESPONSE,
        "outstanding bounded by max_outstanding_messages (and the response that crossed it): {held}"
    );
    gate.add_permits(10_000);
    until("all 1000", 60, || r.seen().len() >= 1000).await;
    p.stop().await.unwrap();
    let mut got: Vec<u64> = r.seen().iter().map(|(d, _)| d.parse().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..1000).collect::<Vec<_>>(), "each once");
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_delivers_a_failure_again_at_once() {
    support::logs();
    let c = client().await;
    // An ack deadline far longer than the test waits: only the nack brings it back.
    let config = SubscriptionConfig {
        ack_deadline_seconds: 600,
        ..SubscriptionConfig::default()
    };
    let (topic, sub) = topic_and_subscription(&c, &unique("nack"), config).await;
    publish(&c, &topic, vec![support::message("bad-1")]).await;
    let r = Recorder {
        fail_once: false,
        ..Recorder::default()
    };
    let p = start(
        r.clone(),
        support::source(&sub)
            .ack_deadline(Duration::from_secs(600))
            .on_failed(OnFailed::Retry { delay: Duration::ZERO }),
    )
    .await;
    until("the redelivery", 30, || r.seen().len() >= 2).await;
    p.stop().await.unwrap();
    let data: Vec<String> = r.seen().into_iter().map(|(d, _)| d).collect();
    assert_eq!(&data[..2], ["bad-1", "bad-1"]);
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_left_comes_back_after_its_ack_deadline() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("leave"), SubscriptionConfig::default()).await;
    let policy = support::dead_letter_policy(&c, &unique("leave-dl"), 10).await;
    // Delivery attempts are counted with a dead-letter policy: the second one shows.
    let _ = c.subscription(&sub).delete(None).await;
    let config = SubscriptionConfig {
        ack_deadline_seconds: 10,
        dead_letter_policy: Some(policy),
        ..SubscriptionConfig::default()
    };
    c.create_subscription(&sub, &topic, config, None).await.unwrap();
    publish(&c, &topic, vec![support::message("bad-1"), support::message("good-1")]).await;
    let r = Recorder {
        fail_once: true,
        ..Recorder::default()
    };
    let p = start(r.clone(), opts(&sub)).await;
    until("the redelivery", 40, || {
        r.seen().iter().any(|(d, n)| d == "bad-1" && *n == 2)
    })
    .await;
    p.stop().await.unwrap();
    let mut seen = r.seen();
    seen.sort();
    assert_eq!(
        seen,
        vec![("bad-1".into(), 1), ("bad-1".into(), 2), ("good-1".into(), 1)],
        "left as it was, then delivered again"
    );
    assert!(drain(&c, &sub).await.is_empty());
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_attempt_limit_dead_letters_exactly_once() {
    support::logs();
    let c = client().await;
    let name = unique("dead-letter");
    let policy = support::dead_letter_policy(&c, &name, 10).await;
    let config = SubscriptionConfig {
        ack_deadline_seconds: 600,
        dead_letter_policy: Some(policy),
        ..SubscriptionConfig::default()
    };
    let (topic, sub) = topic_and_subscription(&c, &name, config).await;
    publish(
        &c,
        &topic,
        vec![support::message("bad-forever"), support::message("good")],
    )
    .await;
    let r = Recorder::default();
    let (tx, mut dead) = mpsc::channel::<Message<PubSubMessage>>(10);
    let p = Pipeline::builder("pubsub-dl", r.clone())
        .source(
            PubSubSource::factory(
                support::source(&sub)
                    .ack_deadline(Duration::from_secs(600))
                    .on_failed(OnFailed::Retry { delay: Duration::ZERO })
                    .max_delivery_attempts(3),
            )
            .unwrap(),
        )
        .dead_letter(tx)
        .start()
        .await
        .unwrap();
    let letter = tokio::time::timeout(Duration::from_secs(30), dead.recv())
        .await
        .expect("a dead letter within 30 s")
        .unwrap();
    assert_eq!(&letter.data().data[..], b"bad-forever");
    // Acknowledged once dead-lettered: nothing comes back, no second letter.
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.stop().await.unwrap();
    assert!(dead.try_recv().is_err(), "exactly one dead letter");
    let mut seen = r.seen();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("bad-forever".into(), 1),
            ("bad-forever".into(), 2),
            ("bad-forever".into(), 3),
            ("good".into(), 1)
        ]
    );
    assert!(drain(&c, &sub).await.is_empty(), "the dead letter is acknowledged");
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_extension_keeps_a_slow_message_from_redelivery() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("extend"), SubscriptionConfig::default()).await;
    publish(&c, &topic, vec![support::message("slow-1")]).await;
    let r = Recorder {
        slow: Duration::from_secs(16),
        ..Recorder::default()
    };
    let p = start(r.clone(), opts(&sub).extend_before(Duration::from_secs(4))).await;
    until("the pipeline to take it", 20, || r.entered.load(Ordering::SeqCst) == 1).await;
    // Another consumer pulls all along: without extension it gets the message after the
    // 10 s ack deadline.
    let thief = {
        let sub = c.subscription(&sub);
        tokio::spawn(async move {
            let mut stolen = 0;
            let end = tokio::time::Instant::now() + Duration::from_secs(14);
            while tokio::time::Instant::now() < end {
                if let Ok(Ok(got)) = tokio::time::timeout(Duration::from_secs(1), sub.pull(10, None)).await {
                    stolen += got.len();
                }
            }
            stolen
        })
    };
    assert_eq!(thief.await.unwrap(), 0, "no other consumer received it while it ran");
    until("the slow message", 20, || !r.seen().is_empty()).await;
    p.stop().await.unwrap();
    assert_eq!(r.seen(), vec![("slow-1".into(), 1)]);
    assert!(drain(&c, &sub).await.is_empty());
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_keys_keep_their_order_with_partition_by() {
    support::logs();
    let c = client().await;
    let config = SubscriptionConfig {
        enable_message_ordering: true,
        ..SubscriptionConfig::default()
    };
    let (topic, sub) = topic_and_subscription(&c, &unique("ordering"), config).await;
    let mut sent = Vec::new();
    for i in 0..100 {
        for k in ["a", "b", "c"] {
            sent.push(with_attributes(&format!("{k}-{i}"), &[], k));
        }
    }
    publish(&c, &topic, sent).await;
    let r = Recorder::default();
    let p = Pipeline::builder("pubsub-order", r.clone())
        .source(PubSubSource::factory(opts(&sub)).unwrap())
        .processors(Processors::new().concurrency(3).max_demand(5))
        .partition_by(|m| {
            m.data()
                .ordering_key
                .as_deref()
                .map_or(0, |k| u64::from(k.as_bytes()[0]))
        })
        .start()
        .await
        .unwrap();
    until("300 messages", 60, || r.seen().len() >= 300).await;
    p.stop().await.unwrap();
    let mut per_key: HashMap<String, Vec<u32>> = HashMap::new();
    for (data, _) in r.seen() {
        let (k, i) = data.split_once('-').unwrap();
        per_key.entry(k.to_owned()).or_default().push(i.parse().unwrap());
    }
    assert_eq!(per_key.len(), 3);
    for (k, order) in per_key {
        assert_eq!(order, (0..100).collect::<Vec<_>>(), "key {k} in order, each once");
    }
    let metas = r.metas.lock().unwrap().clone();
    assert!(
        metas
            .iter()
            .all(|(d, m)| d.ordering_key.is_some() && d.ordering_key == m.ordering_key)
    );
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_options_consume_and_stop() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("defaults"), SubscriptionConfig::default()).await;
    publish_range(&c, &topic, 0, 50).await;
    let r = Recorder::default();
    // Defaults: 60 s ack deadline, 1,000 outstanding, leave on failure.
    let p = start(r.clone(), support::source(&sub)).await;
    until("50 messages", 30, || r.seen().len() >= 50).await;
    let stopped = tokio::time::timeout(Duration::from_secs(15), p.stop()).await;
    assert!(stopped.expect("the stop does not wait on the open stream").is_ok());
    assert_eq!(r.seen().len(), 50);
    assert!(drain(&c, &sub).await.is_empty());
    delete(&c, &topic, &sub).await;
}

/// A graceful stop leaves no message held: what the pipeline had is handled, what Pub/Sub
/// sent meanwhile is given back, and the stream is ended rather than dropped (the emulator
/// goes on pulling for a dropped stream). The ack deadline is 600 s: only the source giving
/// messages back makes the rest available again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_source_leaves_no_message_held() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("stop-held"), SubscriptionConfig::default()).await;
    publish_range(&c, &topic, 1, 2001).await;
    let r = Recorder::default();
    let o = opts(&sub)
        .ack_deadline(Duration::from_secs(600))
        .max_outstanding_messages(50);
    let p = start(r.clone(), o).await;
    until("100 messages", 30, || r.seen().len() >= 100).await;
    p.stop().await.unwrap();
    // A stream still pulling would take the emulator's 100 messages every 50 ms meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = drain(&c, &sub).await;

    let handled: Vec<String> = r.seen().into_iter().map(|(d, _)| d).collect();
    let mut all: Vec<u64> = handled.iter().chain(&rest).map(|d| d.parse().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=2000).collect::<Vec<_>>(),
        "{} handled and {} pulled after the stop: each of the 2,000 exactly once",
        handled.len(),
        rest.len()
    );
    delete(&c, &topic, &sub).await;
}

/// A source stopped while its subscription is idle leaves no stream behind: the stream is
/// still being opened then (the emulator answers it with its first messages), and a stream
/// cancelled instead of half-closed would go on taking what is published next, for 600 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_stopped_while_idle_leaves_no_stream_behind() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("stop-idle"), SubscriptionConfig::default()).await;
    let r = Recorder::default();
    let p = start(r.clone(), opts(&sub).ack_deadline(Duration::from_secs(600))).await;
    // Time for the source to reach the subscription and ask for its stream.
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.stop().await.unwrap();
    publish_range(&c, &topic, 1, 501).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = drain(&c, &sub).await;
    assert!(r.seen().is_empty());
    assert_eq!(
        rest.len(),
        500,
        "every message published after the stop is there to pull"
    );
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_subscription_is_refused_with_pubsubs_answer() {
    support::logs();
    let _ = client().await;
    let p = start(Recorder::default(), opts(&unique("missing"))).await;
    let e = tokio::time::timeout(Duration::from_secs(20), p.join())
        .await
        .expect("fails at once")
        .unwrap_err()
        .to_string();
    assert!(e.contains("opening the subscription refused: NotFound"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_attempt_limit_without_a_dead_letter_policy_is_refused() {
    support::logs();
    let c = client().await;
    let (topic, sub) = topic_and_subscription(&c, &unique("no-policy"), SubscriptionConfig::default()).await;
    let p = start(Recorder::default(), opts(&sub).max_delivery_attempts(5)).await;
    let e = tokio::time::timeout(Duration::from_secs(20), p.join())
        .await
        .expect("fails at once")
        .unwrap_err()
        .to_string();
    assert!(e.contains("the subscription has no dead-letter policy"), "{e}");
    delete(&c, &topic, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exactly_once_subscription_gets_every_ack_confirmed() {
    support::logs();
    let c = client().await;
    let config = SubscriptionConfig {
        enable_exactly_once_delivery: true,
        ..SubscriptionConfig::default()
    };
    let (topic, sub) = topic_and_subscription(&c, &unique("exactly-once"), config).await;
    publish_range(&c, &topic, 0, 200).await;
    let r = Recorder::default();
    let p = start(r.clone(), opts(&sub)).await;
    until("200 messages", 30, || r.seen().len() >= 200).await;
    p.stop().await.unwrap();
    assert_eq!(r.seen().len(), 200, "each once");
    // The emulator refuses acknowledgements with a stale ack id on such subscriptions: a
    // message acknowledged with the wrong one would be delivered again here.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(drain(&c, &sub).await.is_empty(), "every acknowledgement took");
    delete(&c, &topic, &sub).await;
}
