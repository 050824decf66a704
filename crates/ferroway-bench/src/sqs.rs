//! `sqs` and `sqs-sink`: a pipeline against a bare aws-sdk-sqs loop, same server (moto, from
//! `scripts/services/sqs.sh`), same run, same batch size (10) and calls in flight (4).
//!
//! moto scans a queue's every message on each call (it computes the queue's counts per
//! send), so a full queue makes every call slower: the workloads keep the queue shallow. The
//! source runs against a feeder that keeps at most 200 messages waiting; the sink against a
//! drainer that receives and deletes what arrives. Both sides of a comparison get the same
//! helper, and the runs alternate (bare, pipeline, pipeline, bare). Messages: `FERROWAY_BENCH_SQS_MESSAGES` (default 10,000) and
//! `FERROWAY_BENCH_SQS_SINK_MESSAGES` (default 1,000).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, SendMessageBatchRequestEntry};
use ferroway::BoxError;
use ferroway::connector::generator::Generator;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Handler, Message, Pipeline, Processors};
use ferroway_sqs::{Credentials, SinkOptions, SqsMessage, SqsOptions, SqsSink, SqsSource};

use crate::report::Report;

const ENDPOINT: &str = "http://127.0.0.1:4566";
const CALLS: usize = 4;
const DEPTH: u64 = 200;

fn messages() -> u64 {
    std::env::var("FERROWAY_BENCH_SQS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Messages for the sink workload: `FERROWAY_BENCH_SQS_SINK_MESSAGES` (default 1,000; moto
/// takes about 45 sends a second here).
fn sink_messages() -> u64 {
    std::env::var("FERROWAY_BENCH_SQS_SINK_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

async fn connect() -> Client {
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(ENDPOINT)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let c = Client::from_conf(conf);
    if let Err(e) = c.list_queues().send().await {
        eprintln!(
            "the SQS server is not reachable at {ENDPOINT} ({}); start it with `bash scripts/services/sqs.sh`",
            aws_sdk_sqs::error::DisplayErrorContext(e)
        );
        std::process::exit(2);
    }
    c
}

/// Message `i`: its number in 20 digits, padded to 100 bytes.
fn body(i: u64) -> String {
    format!("{i:020}{}", "x".repeat(80))
}

/// Which messages were seen, by number: duplicates count once.
struct Seen {
    bits: Vec<std::sync::atomic::AtomicBool>,
    distinct: AtomicU64,
    total: AtomicU64,
}

impl Seen {
    fn new(n: u64) -> Arc<Self> {
        Arc::new(Seen {
            bits: (0..n).map(|_| Default::default()).collect(),
            distinct: AtomicU64::new(0),
            total: AtomicU64::new(0),
        })
    }

    fn mark(&self, body: &str) {
        let i: usize = body.get(..20).and_then(|d| d.parse().ok()).expect("a bench body");
        self.total.fetch_add(1, Ordering::Relaxed);
        if !self.bits[i].swap(true, Ordering::Relaxed) {
            self.distinct.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn send_batch(c: &Client, url: &str, from: u64, n: u64) {
    let entries = (0..n)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body(from + i))
                .build()
                .expect("entry")
        })
        .collect();
    let out = c
        .send_message_batch()
        .queue_url(url)
        .set_entries(Some(entries))
        .send()
        .await
        .expect("send");
    assert!(out.failed.is_empty());
}

/// Keeps at most `DEPTH` messages waiting until `n` were sent.
fn feeder(c: Client, url: String, n: u64, seen: Arc<Seen>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut fed = 0;
        while fed < n {
            if fed - seen.distinct.load(Ordering::Relaxed).min(fed) >= DEPTH {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let k = (n - fed).min(10);
            send_batch(&c, &url, fed, k).await;
            fed += k;
        }
    })
}

/// Receives 10 and deletes them, `CALLS` at once; marks what it sees in `seen`; until `stop`.
async fn receive_delete(c: Client, url: String, seen: Arc<Seen>, stop: Arc<AtomicBool>, wait: i32) {
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| {
            let (c, url, seen, stop) = (c.clone(), url.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let out = c
                        .receive_message()
                        .queue_url(&url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(wait)
                        .send()
                        .await
                        .expect("receive");
                    let ms = out.messages.unwrap_or_default();
                    if ms.is_empty() {
                        if wait == 0 {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        continue;
                    }
                    let entries = ms
                        .iter()
                        .enumerate()
                        .map(|(i, m)| {
                            DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(m.receipt_handle.clone().expect("receipt"))
                                .build()
                                .expect("entry")
                        })
                        .collect();
                    c.delete_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(entries))
                        .send()
                        .await
                        .expect("delete");
                    for m in &ms {
                        seen.mark(m.body.as_deref().unwrap_or_default());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

async fn until(count: &AtomicU64, n: u64) {
    while count.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn queue(c: &Client, name: &str) -> String {
    c.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url")
}

struct Count(Arc<Seen>);

impl Handler for Count {
    type Data = SqsMessage;
    async fn handle_message(&self, m: &mut Message<SqsMessage>) -> Result<(), BoxError> {
        if m.data().body.len() != 100 {
            return Err("wrong body".into());
        }
        self.0.mark(&m.data().body);
        Ok(())
    }
}

/// Seconds until the bare loop handled `n`.
async fn bare_source(c: &Client, url: &str, n: u64) -> f64 {
    let done = Seen::new(n);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let feed = feeder(c.clone(), url.to_owned(), n, done.clone());
    let consumer = tokio::spawn(receive_delete(c.clone(), url.to_owned(), done.clone(), stop.clone(), 1));
    until(&done.distinct, n).await;
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    feed.await.expect("feeder");
    consumer.await.expect("consumer");
    seconds
}

/// Seconds until the pipeline handled `n`, whether it handled all and left none, duplicates.
async fn pipeline_source(c: &Client, url: &str, n: u64) -> (f64, bool, u64) {
    let done = Seen::new(n);
    let opts = SqsOptions::new(url)
        .region("us-east-1")
        .credentials(Credentials::new("test", "test"))
        .wait_time(Duration::from_secs(1))
        .max_receives(CALLS);
    let started = Instant::now();
    let feed = feeder(c.clone(), url.to_owned(), n, done.clone());
    let p = Pipeline::builder("sqs-bench", Count(done.clone()))
        .source(SqsSource::factory(opts).expect("options"))
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .expect("pipeline");
    until(&done.distinct, n).await;
    let seconds = started.elapsed().as_secs_f64();
    p.stop().await.expect("stop");
    feed.await.expect("feeder");
    let left = visible_and_hidden(c, url).await;
    let distinct = done.distinct.load(Ordering::Relaxed);
    let duplicates = done.total.load(Ordering::Relaxed) - distinct;
    if distinct != n || left != 0 {
        eprintln!("sqs: handled {distinct} of {n}; {left} left in the queue");
    }
    (seconds, distinct == n && left == 0, duplicates)
}

async fn visible_and_hidden(c: &Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let a = c
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::All)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    let n = |k: A| a.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible)
}

/// Runs `send` against a drainer; its seconds, and whether the drainer got all `n`.
async fn with_drainer<F: std::future::Future<Output = ()>>(c: &Client, url: &str, n: u64, send: F) -> (f64, bool) {
    let drained = Seen::new(n);
    let stop = Arc::new(AtomicBool::new(false));
    // Short polls: long polls waiting in moto rescan the queue on every send.
    let drainer = tokio::spawn(receive_delete(
        c.clone(),
        url.to_owned(),
        drained.clone(),
        stop.clone(),
        0,
    ));
    let started = Instant::now();
    send.await;
    let seconds = started.elapsed().as_secs_f64();
    let all = tokio::time::timeout(Duration::from_secs(120), until(&drained.distinct, n))
        .await
        .is_ok();
    stop.store(true, Ordering::Relaxed);
    drainer.await.expect("drainer");
    let got = drained.distinct.load(Ordering::Relaxed);
    if !all || got != n {
        eprintln!("sqs-sink: drained {got} of {n}");
    }
    (seconds, all && got == n)
}

async fn bare_sink(c: &Client, url: &str, n: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| {
            let (c, url, next) = (c.clone(), url.to_owned(), next.clone());
            tokio::spawn(async move {
                loop {
                    let from = next.fetch_add(10, Ordering::Relaxed);
                    if from >= n {
                        return;
                    }
                    send_batch(&c, &url, from, (n - from).min(10)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
}

async fn pipeline_sink(url: &str, n: u64) {
    let sink = SqsSink::new(
        SinkOptions::new(url)
            .region("us-east-1")
            .credentials(Credentials::new("test", "test"))
            .max_in_flight(CALLS),
    )
    .expect("options");
    Pipeline::builder("sqs-sink-bench", Forward::<Record>::new())
        .source(Generator::new(n).payload(|seq| body(seq - 1)).map(Record::from))
        .processors(Processors::new().concurrency(2))
        .sink(
            sink,
            Batcher::new("send")
                .batch_size(10 * CALLS)
                .batch_timeout(Duration::from_millis(20)),
        )
        .start()
        .await
        .expect("pipeline")
        .join()
        .await
        .expect("pipeline");
}

/// Runs bare, pipeline, pipeline, bare (half the messages each): moto slows as it runs, and
/// this order gives both sides the same drift.
pub async fn run(sink: bool) -> Report {
    let c = connect().await;
    let n = if sink { sink_messages() } else { messages() };
    let halves = [n / 2, n - n / 2];
    let tag = std::process::id();
    let (a, b) = (
        queue(&c, &format!("ferroway-bench-bare-{tag}")).await,
        queue(&c, &format!("ferroway-bench-pipe-{tag}")).await,
    );
    let (mut bare, mut pipe, mut ok, mut duplicates) = (0.0, 0.0, true, 0);
    for (i, half) in [halves[0], halves[0], halves[1], halves[1]].into_iter().enumerate() {
        let bare_turn = i == 0 || i == 3;
        match (sink, bare_turn) {
            (false, true) => bare += bare_source(&c, &a, half).await,
            (false, false) => {
                let (s, all, d) = pipeline_source(&c, &b, half).await;
                (pipe, ok, duplicates) = (pipe + s, ok && all, duplicates + d);
            }
            (true, true) => {
                let (s, all) = with_drainer(&c, &a, half, bare_sink(&c, &a, half)).await;
                (bare, ok) = (bare + s, ok && all);
            }
            (true, false) => {
                let (s, all) = with_drainer(&c, &b, half, pipeline_sink(&b, half)).await;
                (pipe, ok) = (pipe + s, ok && all);
            }
        }
    }
    let mut report = Report::new(if sink { "sqs-sink" } else { "sqs" }, "messages", n, pipe);
    report.baseline_per_sec = Some(n as f64 / bare);
    report.checksum_ok = Some(ok);
    if sink {
        report.extra.insert(
            "baseline".into(),
            "bare aws-sdk-sqs loop: 4 SendMessageBatch calls of 10 in flight; same drainer; runs bare, pipeline, pipeline, bare".into(),
        );
    } else {
        // moto's receive takes no lock: concurrent receives now and then hand out the same
        // message (the bare loop gets some too). Counted, not failed: at-least-once.
        report.extra.insert("duplicates".into(), duplicates.into());
        report.extra.insert(
            "baseline".into(),
            "bare aws-sdk-sqs loop: 4 receives of 10 in flight, each followed by a batch delete; same feeder (at most 200 waiting); runs bare, pipeline, pipeline, bare".into(),
        );
    }
    report.extra.insert("server".into(), "moto 5.2.5 (in memory)".into());
    for q in [a, b] {
        let _ = c.delete_queue().queue_url(q).send().await;
    }
    report
}
