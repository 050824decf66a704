//! The SQS source against a real SQS server (moto): round trip with attributes, the demand
//! bound, redelivery after the visibility timeout and at once, the receive-count limit to the
//! dead-letter route, visibility extension, copies handled once, FIFO group order, defaults,
//! refusals.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::generator::Generator;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Handler, Message, Pipeline, Processors};
use ferroway::stage::{Emit, Producer};
use ferroway_sqs::{OnFailed, SqsMessage, SqsMetadata, SqsOptions, SqsSink, SqsSource};
use support::{client, counts, delete_queue, queue, send, send_range, unique};
use tokio::sync::mpsc;

/// What a handler saw: body, receive count.
type Seen = Vec<(String, u32)>;

/// Records what it handles; fails bodies starting with `bad` (on every receive, or only the
/// first when `fail_once`); sleeps `delay` per message and `slow` on bodies starting with
/// `slow`.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    metas: Arc<Mutex<Vec<(SqsMessage, SqsMetadata)>>>,
    fail_once: bool,
    delay: Duration,
    slow: Duration,
}

impl Recorder {
    fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

impl Handler for Recorder {
    type Data = SqsMessage;
    async fn handle_message(&self, m: &mut Message<SqsMessage>) -> Result<(), BoxError> {
        let meta = m
            .metadata::<SqsMetadata>()
            .expect("every message has its origin")
            .clone();
        let count = meta
            .receive_count
            .expect("ApproximateReceiveCount is requested by default");
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if m.data().body.starts_with("slow") {
            tokio::time::sleep(self.slow).await;
        }
        self.seen.lock().unwrap().push((m.data().body.clone(), count));
        self.metas.lock().unwrap().push((m.data().clone(), meta));
        if m.data().body.starts_with("bad") && (!self.fail_once || count == 1) {
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

fn opts(url: &str) -> SqsOptions {
    support::source(url).wait_time(Duration::from_secs(1))
}

async fn start(handler: Recorder, opts: SqsOptions) -> Pipeline<SqsMessage> {
    Pipeline::builder("sqs-test", handler)
        .source(SqsSource::factory(opts).unwrap())
        .processors(Processors::new().concurrency(2).max_demand(10))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_attributes_through_the_sink_and_the_source() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &unique("round-trip"), &[]).await;
    // The sink: 30 records with a header each.
    let records = Generator::new(30)
        .payload(|s| s.to_string())
        .map(|n| Record::new(format!("m-{n}")).header("trace", format!("t-{n}")));
    let sink = SqsSink::new(support::sink(&url)).unwrap();
    Pipeline::builder("send", Forward::new())
        .source(records)
        .sink(sink, Batcher::new("sqs").batch_size(10))
        .start()
        .await
        .unwrap()
        .join()
        .await
        .unwrap();

    let r = Recorder::default();
    let p = start(r.clone(), opts(&url)).await;
    until("30 messages", 30, || r.seen().len() >= 30).await;
    p.stop().await.unwrap();

    let metas = r.metas.lock().unwrap().clone();
    assert_eq!(metas.len(), 30, "each message once");
    for (data, meta) in &metas {
        let n = data.body.strip_prefix("m-").unwrap();
        assert_eq!(data.attributes, vec![("trace".to_owned(), format!("t-{n}").into())]);
        assert_eq!(meta.receive_count, Some(1));
        assert!(!meta.message_id.is_empty() && !meta.receipt_handle.is_empty());
        assert!(meta.sent_timestamp.is_some_and(|t| t > 1_600_000_000_000), "{meta:?}");
        assert_eq!(data.to_record().timestamp, meta.sent_timestamp);
    }
    assert_eq!(counts(&c, &url).await, (0, 0), "every message deleted");
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_never_ask_for_more_than_the_demand() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &unique("demand"), &[]).await;
    send_range(&c, &url, 0, 200).await;
    let r = Recorder {
        delay: Duration::from_millis(100),
        ..Recorder::default()
    };
    // One processor asking for 4 at a time: a source receiving without regard to demand
    // would hide 40 (four receives of ten) at once.
    let p = Pipeline::builder("sqs-demand", r.clone())
        .source(SqsSource::factory(opts(&url)).unwrap())
        .processors(Processors::new().concurrency(1).max_demand(4))
        .start()
        .await
        .unwrap();
    let mut most = 0;
    while r.seen().len() < 60 {
        let (_, hidden) = counts(&c, &url).await;
        most = most.max(hidden);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.stop().await.unwrap();
    // The demand (4, and the stage's 4 of slack) plus one receive's worth of deletes not yet
    // made.
    assert!(
        most <= 4 + 4 + 10,
        "at most the demand plus one receive in flight: saw {most}"
    );
    assert!(most > 0);
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_gets_no_more_than_it_asked_for() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &unique("exact-demand"), &[]).await;
    send_range(&c, &url, 0, 25).await;
    // A rate-limited pipeline asks for a few at a time: receives still open from a larger
    // demand must not hand a smaller one more than it asked for.
    let mut source = SqsSource::new(opts(&url)).unwrap();
    // Four receives of ten open; the first to return answers this demand.
    let Emit::Events(first) = source.handle_demand(40).await.unwrap() else {
        panic!("an SQS source never ends")
    };
    let mut got = first.len();
    while got < 25 {
        let Emit::Events(ms) = source.handle_demand(3).await.unwrap() else {
            panic!("an SQS source never ends")
        };
        assert!(ms.len() <= 3, "asked for 3, got {}", ms.len());
        got += ms.len();
    }
    assert_eq!(got, 25);
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_reappears_after_the_visibility_timeout() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &unique("visibility"), &[("VisibilityTimeout", "2")]).await;
    send(&c, &url, "bad-1").await;
    send(&c, &url, "good-1").await;
    let r = Recorder {
        fail_once: true,
        ..Recorder::default()
    };
    let p = start(r.clone(), opts(&url)).await;
    until("the redelivery", 20, || {
        r.seen().iter().any(|(b, n)| b == "bad-1" && *n == 2)
    })
    .await;
    p.stop().await.unwrap();
    let mut seen = r.seen();
    seen.sort();
    assert_eq!(
        seen,
        vec![("bad-1".into(), 1), ("bad-1".into(), 2), ("good-1".into(), 1)],
        "left as it is, then received again"
    );
    assert_eq!(counts(&c, &url).await, (0, 0));
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_makes_a_failure_visible_again_at_once() {
    support::logs();
    let c = client().await;
    // A visibility timeout far longer than the test waits: only the retry brings it back.
    let url = queue(&c, &unique("retry"), &[("VisibilityTimeout", "300")]).await;
    send(&c, &url, "bad-1").await;
    let r = Recorder {
        fail_once: true,
        ..Recorder::default()
    };
    let p = start(
        r.clone(),
        opts(&url).on_failed(OnFailed::Retry { delay: Duration::ZERO }),
    )
    .await;
    until("the retry", 20, || r.seen().len() >= 2).await;
    p.stop().await.unwrap();
    assert_eq!(r.seen(), vec![("bad-1".into(), 1), ("bad-1".into(), 2)]);
    assert_eq!(counts(&c, &url).await, (0, 0));
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_count_limit_dead_letters_exactly_once() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &unique("dead-letter"), &[("VisibilityTimeout", "300")]).await;
    send(&c, &url, "bad-forever").await;
    send(&c, &url, "good").await;
    let r = Recorder::default();
    let (tx, mut dead) = mpsc::channel::<Message<SqsMessage>>(10);
    let p = Pipeline::builder("sqs-dl", r.clone())
        .source(
            SqsSource::factory(
                opts(&url)
                    .on_failed(OnFailed::Retry { delay: Duration::ZERO })
                    .max_receive_count(3),
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
    assert_eq!(letter.data().body, "bad-forever");
    // Deleted once dead-lettered: nothing comes back, no second letter.
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
    assert_eq!(
        counts(&c, &url).await,
        (0, 0),
        "the dead letter is deleted from the queue"
    );
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_extension_keeps_a_slow_message_from_redelivery() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &unique("extend"), &[("VisibilityTimeout", "2")]).await;
    send(&c, &url, "slow-1").await;
    let r = Recorder {
        slow: Duration::from_secs(7),
        ..Recorder::default()
    };
    let p = start(r.clone(), opts(&url).extend_before(Duration::from_secs(1))).await;
    // Once the pipeline has it, another consumer polls all along: without extension it would
    // get the message after 2 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while counts(&c, &url).await != (0, 1) {
        assert!(tokio::time::Instant::now() < deadline, "the pipeline never received it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let thief = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            let mut stolen = 0;
            let end = tokio::time::Instant::now() + Duration::from_secs(8);
            while tokio::time::Instant::now() < end {
                let out = c
                    .receive_message()
                    .queue_url(&url)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .unwrap();
                stolen += out.messages.unwrap_or_default().len();
            }
            stolen
        })
    };
    until("the slow message", 20, || !r.seen().is_empty()).await;
    assert_eq!(thief.await.unwrap(), 0, "no other consumer received it while it ran");
    p.stop().await.unwrap();
    assert_eq!(r.seen(), vec![("slow-1".into(), 1)]);
    assert_eq!(counts(&c, &url).await, (0, 0));
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_received_while_the_message_is_in_the_pipeline_is_handled_once() {
    support::logs();
    let c = client().await;
    // No extension: the message reappears every second while the handler holds it for 4 s,
    // and this source receives it again.
    let url = queue(&c, &unique("copies"), &[("VisibilityTimeout", "1")]).await;
    send(&c, &url, "slow-1").await;
    let r = Recorder {
        slow: Duration::from_secs(4),
        ..Recorder::default()
    };
    let p = start(r.clone(), opts(&url).extend_before(Duration::ZERO)).await;
    until("the slow message", 20, || !r.seen().is_empty()).await;
    // Its delete must carry the newest receipt handle: SQS (and moto) ignore older ones.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counts(&c, &url).await != (0, 0) {
        assert!(tokio::time::Instant::now() < deadline, "the message was never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.stop().await.unwrap();
    let seen = r.seen();
    assert_eq!(seen.len(), 1, "handled once: {seen:?}");
    assert_eq!(seen[0].0, "slow-1");
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_groups_keep_their_order_with_partition_by() {
    support::logs();
    let c = client().await;
    let url = queue(
        &c,
        &format!("{}.fifo", unique("fifo")),
        &[("ContentBasedDeduplication", "true")],
    )
    .await;
    for i in 0..30 {
        for g in ["a", "b", "c"] {
            c.send_message()
                .queue_url(&url)
                .message_body(format!("{g}-{i}"))
                .message_group_id(g)
                .send()
                .await
                .unwrap();
        }
    }
    let r = Recorder {
        delay: Duration::from_millis(5),
        ..Recorder::default()
    };
    // One receive at a time: moto's receive takes no lock, so two at once can both hand
    // out one group's messages (SQS never does) and the test would see moto's race.
    let p = Pipeline::builder("sqs-fifo", r.clone())
        .source(SqsSource::factory(opts(&url).max_receives(1)).unwrap())
        .processors(Processors::new().concurrency(3).max_demand(5))
        .partition_by(|m| m.data().group_id.as_deref().map_or(0, |g| g.as_bytes()[0] as u64))
        .start()
        .await
        .unwrap();
    until("90 messages", 60, || r.seen().len() >= 90).await;
    p.stop().await.unwrap();
    let mut per_group: HashMap<String, Vec<u32>> = HashMap::new();
    for (body, _) in r.seen() {
        let (g, i) = body.split_once('-').unwrap();
        per_group.entry(g.to_owned()).or_default().push(i.parse().unwrap());
    }
    for (g, order) in per_group {
        assert_eq!(order, (0..30).collect::<Vec<_>>(), "group {g} in order, each once");
    }
    let metas = r.metas.lock().unwrap().clone();
    assert!(
        metas
            .iter()
            .all(|(d, m)| d.group_id.is_some() && m.deduplication_id.is_some()),
        "{:?}",
        metas[0]
    );
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_options_consume_and_stop() {
    support::logs();
    let c = client().await;
    let url = queue(&c, &unique("defaults"), &[]).await;
    send_range(&c, &url, 0, 50).await;
    let r = Recorder::default();
    // Defaults: 20 s long polls, 4 receives in flight, the queue's visibility timeout.
    let p = start(r.clone(), support::source(&url)).await;
    until("50 messages", 30, || r.seen().len() >= 50).await;
    // A stop abandons the long polls still open after two seconds, and returns once every
    // delete is made.
    let stopped = tokio::time::timeout(Duration::from_secs(15), p.stop()).await;
    assert!(stopped.expect("the stop does not wait out 20 s long polls").is_ok());
    assert_eq!(r.seen().len(), 50);
    assert_eq!(counts(&c, &url).await, (0, 0));
    delete_queue(&c, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_refused_with_sqs_answer() {
    support::logs();
    let _ = client().await;
    let url = format!("{}/123456789012/{}", support::endpoint(), unique("missing"));
    let p = start(Recorder::default(), opts(&url)).await;
    let e = tokio::time::timeout(Duration::from_secs(20), p.join())
        .await
        .expect("fails at once")
        .unwrap_err()
        .to_string();
    assert!(e.contains("reading the queue's attributes refused"), "{e}");
    assert!(e.contains("NonExistentQueue") || e.contains("QueueDoesNotExist"), "{e}");
    assert!(!e.contains("test:test"), "{e}");
}
