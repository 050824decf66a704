//! `pubsub` and `pubsub-sink`: a pipeline against a bare loop on the same gRPC stubs, same
//! emulator (`scripts/services/pubsub.sh`), same run, same settings.
//!
//! - `pubsub`: 4 streaming pulls, each response acknowledged in one call (at most 4 calls in
//!   flight), against the source with 4 producers (one stream each) and default flow
//!   control. Each turn (bare, pipeline, pipeline, bare; half the messages each) has a topic
//!   and subscription of its own, fed by the same feeder, which keeps at most 10,000
//!   messages waiting: the emulator's work per delivery grows with the backlog.
//! - `pubsub-sink`: `Publish` requests of 1,000 messages, 4 in flight, against the sink with
//!   the same request size and concurrency (batches of 1,000, 4 batches in flight), after
//!   the emulator was warmed up with as many messages; 5 rounds, each publishing the
//!   messages once a side, the order alternating (the report has each round's ratio); each
//!   side's topic is drained after every turn to check every message arrived.
//!
//! The emulator sends a stream 100 messages every 50 ms whatever its flow control: the
//! source side measures that pace as much as either client. Messages:
//! `FERROWAY_BENCH_PUBSUB_MESSAGES` (default 200,000), 100 bytes each.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::connector::generator::Generator;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Handler, Message, Pipeline, Processors};
use ferroway_pubsub::{ClientOptions, PubSubMessage, PubSubOptions, PubSubSink, PubSubSource, SinkOptions};
use gcloud_gax::conn::{ConnectionOptions, Environment};
use gcloud_gax::create_request;
use gcloud_googleapis::pubsub::v1::publisher_client::PublisherClient as Stub;
use gcloud_googleapis::pubsub::v1::{AcknowledgeRequest, PublishRequest, PubsubMessage, StreamingPullRequest};
use gcloud_pubsub::apiv1::conn_pool::ConnectionManager;
use gcloud_pubsub::apiv1::subscriber_client::SubscriberClient;
use gcloud_pubsub::client::{Client, ClientConfig};
use gcloud_pubsub::subscription::SubscriptionConfig;
use tokio::sync::Semaphore;

use crate::report::Report;

const EMULATOR: &str = "127.0.0.1:8085";
const PROJECT: &str = "ferroway-bench";
/// Streams (source) and requests in flight (sink, acknowledgements).
const LANES: usize = 4;
/// Messages per `Publish` request.
const REQUEST: usize = 1000;
/// Rounds of the sink workload, each publishing the messages once a side (the order
/// alternating): one side publishes 200,000 in under half a second, and one pause of the
/// emulator's JVM then decides a single turn.
const SINK_ROUNDS: u64 = 5;

fn messages() -> u64 {
    std::env::var("FERROWAY_BENCH_PUBSUB_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// Message `i`: its number in 20 digits, padded to 100 bytes.
fn body(i: u64) -> String {
    format!("{i:020}{}", "x".repeat(80))
}

async fn admin() -> Client {
    let config = ClientConfig {
        project_id: Some(PROJECT.to_owned()),
        environment: Environment::Emulator(EMULATOR.to_owned()),
        pool_size: 1,
        ..ClientConfig::default()
    };
    let reachable = match Client::new(config).await {
        Ok(c) => c.get_topics(None).await.map(|_| c).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    reachable.unwrap_or_else(|e| {
        eprintln!(
            "the Pub/Sub emulator is not reachable at {EMULATOR} ({e}); start it with `bash scripts/services/pubsub.sh`"
        );
        std::process::exit(2);
    })
}

async fn manager(pool: usize) -> ConnectionManager {
    let env = Environment::Emulator(EMULATOR.to_owned());
    ConnectionManager::new(pool, "pubsub.googleapis.com", &env, &ConnectionOptions::default())
        .await
        .expect("emulator connection")
}

/// Which messages were seen, by number: duplicates count once.
struct Seen {
    bits: Vec<AtomicBool>,
    distinct: AtomicU64,
    total: AtomicU64,
}

impl Seen {
    fn new(n: u64) -> Arc<Self> {
        Arc::new(Seen {
            bits: (0..n).map(|_| AtomicBool::new(false)).collect(),
            distinct: AtomicU64::new(0),
            total: AtomicU64::new(0),
        })
    }

    /// Marks message `offset + k`. One of another round (the emulator hands a message a
    /// closed stream had back a minute later) is not this round's: ignored.
    fn mark(&self, data: &[u8], offset: u64) {
        let i: u64 = std::str::from_utf8(&data[..20])
            .ok()
            .and_then(|d| d.parse().ok())
            .expect("a bench body");
        let Some(bit) = i.checked_sub(offset).and_then(|k| self.bits.get(k as usize)) else {
            return;
        };
        self.total.fetch_add(1, Ordering::Relaxed);
        if !bit.swap(true, Ordering::Relaxed) {
            self.distinct.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn until(&self, n: u64) {
        while self.distinct.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Publishes `from..to` with the bare loop: `REQUEST` a call, `LANES` calls in flight.
async fn bare_publish(topic: &str, from: u64, to: u64) {
    let cm = Arc::new(manager(LANES).await);
    let next = Arc::new(AtomicU64::new(from));
    let tasks: Vec<_> = (0..LANES)
        .map(|_| {
            let (cm, next, topic) = (cm.clone(), next.clone(), topic.to_owned());
            tokio::spawn(async move {
                loop {
                    let start = next.fetch_add(REQUEST as u64, Ordering::Relaxed);
                    if start >= to {
                        return;
                    }
                    let messages = (start..to.min(start + REQUEST as u64))
                        .map(|i| PubsubMessage {
                            data: body(i).into_bytes().into(),
                            ..PubsubMessage::default()
                        })
                        .collect();
                    let request = PublishRequest {
                        topic: topic.clone(),
                        messages,
                    };
                    let routing = format!("topic={topic}");
                    Stub::new(cm.conn())
                        .publish(create_request(routing, request))
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("publisher");
    }
}

/// Publishes `from..to` in requests of `REQUEST`, keeping at most `DEPTH` messages waiting
/// (the emulator's work per delivery grows with the backlog); `seen` says what was handled.
struct Feeder {
    seen: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

const DEPTH: u64 = 10_000;

fn feeder(topic: String, from: u64, to: u64) -> Feeder {
    let seen = Arc::new(AtomicU64::new(0));
    let handled = seen.clone();
    let handle = tokio::spawn(async move {
        let mut next = from;
        while next < to {
            if next - from >= handled.load(Ordering::Relaxed) + DEPTH {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let end = to.min(next + (REQUEST * LANES) as u64);
            bare_publish(&topic, next, end).await;
            next = end;
        }
    });
    Feeder { seen, handle }
}

/// Reads `LANES` streams of `subscription`, acknowledging each response in one call, until
/// `n` distinct messages were seen.
async fn bare_source(subscription: &str, n: u64, offset: u64, feed: &Feeder) -> (f64, u64) {
    let seen = Seen::new(n);
    let progress = watch(&seen, feed);
    let client = SubscriberClient::new(manager(1).await, manager(LANES).await);
    let acks = Arc::new(Semaphore::new(LANES));
    let started = Instant::now();
    let tasks: Vec<_> = (0..LANES)
        .map(|lane| {
            let (client, seen, acks, subscription) =
                (client.clone(), seen.clone(), acks.clone(), subscription.to_owned());
            tokio::spawn(async move {
                let request = StreamingPullRequest {
                    subscription: subscription.clone(),
                    stream_ack_deadline_seconds: 60,
                    client_id: format!("bare-{lane}"),
                    max_outstanding_messages: 1000,
                    max_outstanding_bytes: 100 << 20,
                    ..StreamingPullRequest::default()
                };
                let mut stream = client
                    .streaming_pull(request, Duration::from_secs(30), None)
                    .await
                    .expect("stream")
                    .into_inner();
                while seen.distinct.load(Ordering::Relaxed) < n {
                    let Ok(next) = tokio::time::timeout(Duration::from_millis(200), stream.message()).await else {
                        continue;
                    };
                    let Some(response) = next.expect("stream") else { return };
                    let mut ids = Vec::with_capacity(response.received_messages.len());
                    for m in response.received_messages {
                        seen.mark(&m.message.as_ref().expect("message").data, offset);
                        ids.push(m.ack_id);
                    }
                    let permit = acks.clone().acquire_owned().await.expect("permit");
                    let (client, subscription) = (client.clone(), subscription.clone());
                    tokio::spawn(async move {
                        let request = AcknowledgeRequest {
                            subscription,
                            ack_ids: ids,
                        };
                        client.acknowledge(request, None).await.expect("ack");
                        drop(permit);
                    });
                }
            })
        })
        .collect();
    seen.until(n).await;
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    for t in tasks {
        t.await.expect("reader");
    }
    // The last acknowledgements.
    let _ = acks.acquire_many(LANES as u32).await;
    (seconds, seen.total.load(Ordering::Relaxed) - n)
}

/// Tells the feeder what was handled.
fn watch(seen: &Arc<Seen>, feed: &Feeder) -> tokio::task::JoinHandle<()> {
    let (seen, handled) = (seen.clone(), feed.seen.clone());
    tokio::spawn(async move {
        loop {
            handled.store(seen.distinct.load(Ordering::Relaxed), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

struct Count(Arc<Seen>, u64);

impl Handler for Count {
    type Data = PubSubMessage;
    async fn handle_message(&self, m: &mut Message<PubSubMessage>) -> Result<(), BoxError> {
        if m.data().data.len() != 100 {
            return Err("wrong body".into());
        }
        self.0.mark(&m.data().data, self.1);
        Ok(())
    }
}

fn client_options() -> ClientOptions {
    ClientOptions::new(PROJECT).emulator_host(EMULATOR)
}

/// Seconds until the pipeline handled `n`, and its duplicates.
async fn pipeline_source(subscription: &str, n: u64, offset: u64, feed: &Feeder) -> (f64, u64) {
    let seen = Seen::new(n);
    let progress = watch(&seen, feed);
    let opts = PubSubOptions::new(client_options(), subscription);
    let started = Instant::now();
    let p = Pipeline::builder("pubsub-bench", Count(seen.clone(), offset))
        .source(PubSubSource::factory(opts).expect("options"))
        .producer_concurrency(LANES)
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .expect("pipeline");
    seen.until(n).await;
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    p.stop().await.expect("stop");
    (seconds, seen.total.load(Ordering::Relaxed) - n)
}

/// Messages left on `subscription` (pulled and acknowledged to count them).
async fn left(c: &Client, subscription: &str) -> usize {
    let sub = c.subscription(subscription);
    let mut n = 0;
    while let Ok(Ok(got)) = tokio::time::timeout(Duration::from_secs(2), sub.pull(1000, None)).await {
        if got.is_empty() {
            break;
        }
        n += got.len();
        let _ = sub.ack(got.iter().map(|m| m.ack_id().to_owned()).collect()).await;
    }
    n
}

/// Every message of `subscription` as seen numbers: whether all `from..to` arrived.
async fn drained(c: &Client, subscription: &str, from: u64, to: u64) -> bool {
    let seen = Seen::new(to - from);
    let sub = c.subscription(subscription);
    while seen.distinct.load(Ordering::Relaxed) < to - from {
        let Ok(got) = tokio::time::timeout(Duration::from_secs(5), sub.pull(1000, None)).await else {
            break;
        };
        let got = got.expect("pull");
        for m in &got {
            seen.mark(&m.message.data, from);
        }
        sub.ack(got.iter().map(|m| m.ack_id().to_owned()).collect())
            .await
            .expect("ack");
    }
    let got = seen.distinct.load(Ordering::Relaxed);
    if got != to - from {
        eprintln!("pubsub-sink: {got} of {} arrived", to - from);
    }
    got == to - from
}

async fn pipeline_sink(topic: &str, from: u64, to: u64) {
    let sink = PubSubSink::new(SinkOptions::new(client_options(), topic).max_in_flight(LANES)).expect("options");
    Pipeline::builder("pubsub-sink-bench", Forward::<Record>::new())
        .source(
            Generator::new(to - from)
                .payload(move |seq| body(from + seq - 1))
                .map(Record::from),
        )
        .processors(Processors::new().concurrency(2))
        .sink(
            sink,
            // A batch a request, LANES of them in flight: the bare loop's settings.
            Batcher::new("publish")
                .batch_size(REQUEST)
                .batch_timeout(Duration::from_millis(20))
                .concurrency(LANES),
        )
        .start()
        .await
        .expect("pipeline")
        .join()
        .await
        .expect("pipeline");
}

async fn topic_with(c: &Client, name: &str, subscriptions: &[&str]) -> String {
    c.create_topic(name, None, None).await.expect("topic");
    for s in subscriptions {
        c.create_subscription(s, name, SubscriptionConfig::default(), None)
            .await
            .expect("subscription");
    }
    c.fully_qualified_topic_name(name)
}

pub async fn run(sink: bool) -> Report {
    let c = admin().await;
    let n = messages();
    let tag = std::process::id();
    let halves = [(0, n / 2), (n / 2, n)];
    let (mut bare, mut pipe, mut ok, mut duplicates, mut bare_duplicates) = (0.0, 0.0, true, 0, 0);
    let mut round_ratios: Vec<f64> = Vec::new();
    if sink {
        let (bare_topic, pipe_topic) = (format!("bench-bare-{tag}"), format!("bench-pipe-{tag}"));
        let (bare_sub, pipe_sub) = (format!("{bare_topic}-s"), format!("{pipe_topic}-s"));
        let bare_full = topic_with(&c, &bare_topic, &[&bare_sub]).await;
        let pipe_full = topic_with(&c, &pipe_topic, &[&pipe_sub]).await;
        // The emulator (a JVM) publishes several times faster once warm: warm it first.
        let warm = format!("bench-warm-{tag}");
        let warm_full = topic_with(&c, &warm, &[]).await;
        bare_publish(&warm_full, 0, n).await;
        let _ = c.topic(&warm).delete(None).await;
        for round in 0..SINK_ROUNDS {
            let (from, to) = (round * n, (round + 1) * n);
            let (mut b, mut p) = (0.0, 0.0);
            for bare_turn in if round % 2 == 0 { [true, false] } else { [false, true] } {
                let started = Instant::now();
                if bare_turn {
                    bare_publish(&bare_full, from, to).await;
                    b = started.elapsed().as_secs_f64();
                    ok &= drained(&c, &bare_sub, from, to).await;
                } else {
                    pipeline_sink(&pipe_full, from, to).await;
                    p = started.elapsed().as_secs_f64();
                    ok &= drained(&c, &pipe_sub, from, to).await;
                }
            }
            (bare, pipe) = (bare + b, pipe + p);
            round_ratios.push((b / p * 1000.0).round() / 1000.0);
        }
        for (t, s) in [(&bare_topic, &bare_sub), (&pipe_topic, &pipe_sub)] {
            let _ = c.subscription(s).delete(None).await;
            let _ = c.topic(t).delete(None).await;
        }
    } else {
        // A topic and subscription per turn: a closed stream's messages are held by the
        // emulator for a minute, so no turn reads a subscription another turn used.
        for (turn, (from, to)) in [halves[0], halves[0], halves[1], halves[1]].into_iter().enumerate() {
            let bare_turn = turn == 0 || turn == 3;
            let topic = format!("bench-source-{tag}-{turn}");
            let sub = format!("{topic}-s");
            let topic_full = topic_with(&c, &topic, &[&sub]).await;
            let sub_full = c.fully_qualified_subscription_name(&sub);
            let feed = feeder(topic_full, from, to);
            if bare_turn {
                let (s, d) = bare_source(&sub_full, to - from, from, &feed).await;
                (bare, bare_duplicates) = (bare + s, bare_duplicates + d);
            } else {
                let (s, d) = pipeline_source(&sub_full, to - from, from, &feed).await;
                (pipe, duplicates) = (pipe + s, duplicates + d);
                let stranded = left(&c, &sub).await;
                if stranded != 0 {
                    eprintln!("pubsub: {stranded} messages left on the pipeline's subscription");
                }
                ok &= stranded == 0;
            }
            feed.handle.abort();
            let _ = c.subscription(&sub).delete(None).await;
            let _ = c.topic(&topic).delete(None).await;
        }
    }
    let total = if sink { n * SINK_ROUNDS } else { n };
    let mut report = Report::new(if sink { "pubsub-sink" } else { "pubsub" }, "messages", total, pipe);
    report.baseline_per_sec = Some(total as f64 / bare);
    report.checksum_ok = Some(ok);
    if sink {
        report.extra.insert(
            "baseline".into(),
            "bare loop on the same gRPC stub: Publish requests of 1,000, 4 in flight; emulator warmed up first; 5 rounds of the messages each side, the order alternating".into(),
        );
        report.extra.insert("round_ratios".into(), round_ratios.into());
    } else {
        report.extra.insert("duplicates".into(), duplicates.into());
        report
            .extra
            .insert("baseline_duplicates".into(), bare_duplicates.into());
        report.extra.insert(
            "baseline".into(),
            "bare loop on the same gRPC stubs: 4 streaming pulls, each response acknowledged in one call (4 in flight); same feeder (at most 10,000 waiting); runs bare, pipeline, pipeline, bare (halves), a topic each".into(),
        );
    }
    report.extra.insert(
        "server".into(),
        "Pub/Sub emulator (google-cloud-cli-pubsub-emulator)".into(),
    );
    report
}
