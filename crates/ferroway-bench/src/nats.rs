//! `nats` and `nats-sink`: a pipeline against a bare async-nats loop, same server, same run.
//!
//! Source: 1,000,000 100-byte messages pre-published to a JetStream stream; a pipeline (2
//! processors) consumes and acks all of them through a durable pull consumer with pulls of
//! up to 1000, against a bare loop pulling batches of 1000 and acking each message. Sink: a
//! pipeline publishing 1,000,000 messages through JetStream in batches of 1000 (2 batchers),
//! every publish ack awaited, against a bare publisher keeping 1000 publish acks outstanding.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::generator::Generator;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Handler, Message, Pipeline, Processors};
use ferroway_nats::{JetStreamOptions, JetStreamSource, NatsMessage, NatsSink, SinkOptions};
use futures_util::StreamExt;

use crate::report::Report;

const N: u64 = 1_000_000;
const BATCH: usize = 1000;
const URL: &str = "nats://127.0.0.1:4222";

async fn connect() -> async_nats::Client {
    match async_nats::connect(URL).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nats-server is not reachable at {URL} ({e}); start it with `bash scripts/services/nats.sh`");
            std::process::exit(2);
        }
    }
}

fn body(i: u64) -> Bytes {
    let mut b = format!("{i:020}").into_bytes();
    b.resize(100, b'x');
    Bytes::from(b)
}

async fn fresh_stream(js: &jetstream::Context, name: &str) {
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// Publishes N messages with 1000 publish acks outstanding; the rate.
async fn publish(js: &jetstream::Context, subject: &str) -> f64 {
    let started = Instant::now();
    let mut acks = VecDeque::with_capacity(1000);
    for i in 0..N {
        acks.push_back(js.publish(subject.to_owned(), body(i)).await.expect("publish"));
        if acks.len() >= 1000
            && let Some(a) = acks.pop_front()
        {
            a.await.expect("publish ack");
        }
    }
    for a in acks {
        a.await.expect("publish ack");
    }
    N as f64 / started.elapsed().as_secs_f64()
}

async fn stored(js: &jetstream::Context, name: &str) -> u64 {
    js.get_stream(name)
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .messages
}

async fn bare_source(js: &jetstream::Context, name: &str) -> f64 {
    let c: consumer::PullConsumer = js
        .get_stream(name)
        .await
        .expect("stream")
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bare".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let started = Instant::now();
    let mut seen = 0u64;
    while seen < N {
        let mut batch = c
            .batch()
            .max_messages(BATCH)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("pull");
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            m.ack().await.expect("ack");
            seen += 1;
        }
    }
    N as f64 / started.elapsed().as_secs_f64()
}

struct Count(Arc<AtomicU64>);

impl Handler for Count {
    type Data = NatsMessage;
    async fn handle_message(&self, m: &mut Message<NatsMessage>) -> Result<(), BoxError> {
        if m.data().payload.len() != 100 {
            return Err("wrong payload".into());
        }
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn pipeline_source(js: &jetstream::Context, name: &str) -> (f64, bool, f64) {
    let count = Arc::new(AtomicU64::new(0));
    let source =
        JetStreamSource::factory(JetStreamOptions::new(URL, name, "pipeline").max_batch(BATCH)).expect("options");
    let started = Instant::now();
    let p = Pipeline::builder("nats-bench", Count(count.clone()))
        .source(source)
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .expect("pipeline");
    while count.load(Ordering::Relaxed) < N {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The clock stops where the bare loop's does: every message handled. The stop is not
    // throughput: it waits for the pulls still open to expire (up to `fetch_wait`), since
    // JetStream cannot cancel a pull. It returns once every ack is flushed; the checksum
    // below checks that none is missing.
    let per_sec = N as f64 / started.elapsed().as_secs_f64();
    let stopping = Instant::now();
    p.stop().await.expect("stop");
    let stop_seconds = stopping.elapsed().as_secs_f64();
    let mut c: consumer::PullConsumer = js
        .get_stream(name)
        .await
        .expect("stream")
        .get_consumer("pipeline")
        .await
        .expect("consumer");
    let info = c.info().await.expect("consumer info");
    let ok = count.load(Ordering::Relaxed) == N && info.num_pending == 0 && info.num_ack_pending == 0;
    (per_sec, ok, stop_seconds)
}

async fn pipeline_sink(subject: &str) -> f64 {
    let sink = NatsSink::new(SinkOptions::new(URL, subject).jetstream(true)).expect("options");
    let started = Instant::now();
    Pipeline::builder("nats-sink-bench", Forward::<Record>::new())
        .source(Generator::new(N).map(|n| {
            let mut b = format!("{n:0>20}").into_bytes();
            b.resize(100, b'x');
            Record::new(b)
        }))
        .processors(Processors::new().concurrency(2))
        .sink(
            sink,
            Batcher::new("publish")
                .batch_size(BATCH)
                .batch_timeout(Duration::from_millis(50))
                .concurrency(2),
        )
        .start()
        .await
        .expect("pipeline")
        .join()
        .await
        .expect("pipeline");
    N as f64 / started.elapsed().as_secs_f64()
}

pub async fn run(sink: bool) -> Report {
    let client = connect().await;
    let js = jetstream::new(client.clone());
    let tag = std::process::id();
    let (a, b) = (
        format!("ferroway-bench-bare-{tag}"),
        format!("ferroway-bench-pipe-{tag}"),
    );
    fresh_stream(&js, &a).await;
    fresh_stream(&js, &b).await;
    let report = if !sink {
        eprintln!("publishing {N} messages to {a} and {b} ...");
        publish(&js, &format!("{a}.n")).await;
        publish(&js, &format!("{b}.n")).await;
        let baseline = bare_source(&js, &a).await;
        let (per_sec, ok, stop_seconds) = pipeline_source(&js, &b).await;
        let mut r = Report::new("nats", "messages", N, N as f64 / per_sec);
        r.baseline_per_sec = Some(baseline);
        r.checksum_ok = Some(ok);
        r.extra
            .insert("stop_seconds".into(), ((stop_seconds * 1000.0).round() / 1000.0).into());
        r.extra.insert("batch".into(), BATCH.into());
        r.extra.insert(
            "baseline".into(),
            "bare async-nats pull loop, batches of 1000, ack per message".into(),
        );
        r
    } else {
        let baseline = publish(&js, &format!("{a}.n")).await;
        let per_sec = pipeline_sink(&format!("{b}.n")).await;
        let mut r = Report::new("nats-sink", "messages", N, N as f64 / per_sec);
        r.baseline_per_sec = Some(baseline);
        r.checksum_ok = Some(stored(&js, &b).await == N);
        r.extra.insert(
            "baseline".into(),
            "bare async-nats JetStream publisher, 1000 publish acks outstanding".into(),
        );
        r
    };
    for s in [a, b] {
        let _ = js.delete_stream(&s).await;
    }
    report
}
