//! `amqp` and `amqp-sink`: a pipeline against a bare amqprs loop, same broker, same run.
//!
//! Source: 500,000 persistent 100-byte messages pre-published to a durable queue; a pipeline
//! (2 processors) consumes and acks all of them with prefetch 1000, against a bare loop with
//! the same prefetch that acks (`multiple`) whatever has arrived each time it wakes. Sink: a
//! pipeline publishing 500,000 messages in batches of 1000 (2 batchers) and waiting for the
//! confirms, against a bare publisher keeping 1000 confirms outstanding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use ferroway::BoxError;
use ferroway::connector::generator::Generator;
use ferroway::connector::{Record, Source};
use ferroway::pipeline::{Batcher, Forward, Handler, Message, Pipeline, Processors};
use ferroway_amqp::{AmqpSink, AmqpSource, Delivery, SinkOptions, SourceOptions};
use tokio::sync::Notify;

use crate::report::Report;

const N: u64 = 500_000;
const PREFETCH: u16 = 1000;
const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn connect() -> Connection {
    let mut args = OpenConnectionArguments::try_from(URI).expect("uri");
    args.virtual_host("/");
    match Connection::open(&args).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("RabbitMQ is not reachable at {URI} ({e}); start it with `bash scripts/services/rabbitmq.sh`");
            std::process::exit(2);
        }
    }
}

async fn fresh_queue(ch: &Channel, q: &str) {
    let _ = ch.queue_delete(QueueDeleteArguments::new(q)).await;
    ch.queue_declare(QueueDeclareArguments::durable_client_named(q))
        .await
        .expect("queue.declare");
}

async fn ready(ch: &Channel, q: &str) -> u64 {
    let mut a = QueueDeclareArguments::new(q);
    a.passive(true);
    ch.queue_declare(a)
        .await
        .expect("passive declare")
        .map_or(0, |(_, n, _)| n.into())
}

fn persistent() -> BasicProperties {
    let mut p = BasicProperties::default();
    p.with_delivery_mode(2);
    p
}

/// Publishes N messages without confirms, then waits until the queue holds them.
async fn fill(ch: &Channel, q: &str) {
    for i in 0..N {
        let mut body = format!("{i:020}").into_bytes();
        body.resize(100, b'x');
        ch.basic_publish(persistent(), body, BasicPublishArguments::new("", q))
            .await
            .expect("publish");
    }
    while ready(ch, q).await < N {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn bare_source(conn: &Connection, q: &str) -> f64 {
    let ch = conn.open_channel(None).await.expect("channel");
    ch.basic_qos(BasicQosArguments::new(0, PREFETCH, false))
        .await
        .expect("qos");
    let mut args = BasicConsumeArguments::new(q, "bare");
    args.manual_ack(true);
    let (_, mut rx) = ch.basic_consume_rx(args).await.expect("consume");
    let started = Instant::now();
    let mut seen = 0u64;
    while seen < N {
        let Some(first) = rx.recv().await else { break };
        let mut last = first.deliver.map_or(0, |d| d.delivery_tag());
        seen += 1;
        while let Ok(m) = rx.try_recv() {
            last = m.deliver.map_or(last, |d| d.delivery_tag());
            seen += 1;
        }
        ch.basic_ack(BasicAckArguments::new(last, true)).await.expect("ack");
    }
    let per_sec = N as f64 / started.elapsed().as_secs_f64();
    let _ = ch.close().await;
    per_sec
}

struct Count(Arc<AtomicU64>);

impl Handler for Count {
    type Data = Delivery;
    async fn handle_message(&self, m: &mut Message<Delivery>) -> Result<(), BoxError> {
        if m.data().payload.len() != 100 {
            return Err("wrong payload".into());
        }
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn pipeline_source(q: &str) -> (f64, bool) {
    let count = Arc::new(AtomicU64::new(0));
    let source = AmqpSource::factory(SourceOptions::new(URI, q).prefetch_count(PREFETCH)).expect("options");
    let started = Instant::now();
    let p = Pipeline::builder("amqp-bench", Count(count.clone()))
        .source(source)
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .expect("pipeline");
    while count.load(Ordering::Relaxed) < N {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Stop returns once the last acks are sent and the connection closed.
    p.stop().await.expect("stop");
    let per_sec = N as f64 / started.elapsed().as_secs_f64();
    (per_sec, count.load(Ordering::Relaxed) == N)
}

/// Confirms counted through the channel callback: delivery tags are sequential from 1.
struct Confirms(Arc<(AtomicU64, Notify)>);

#[async_trait::async_trait]
impl ChannelCallback for Confirms {
    async fn close(&mut self, _: &Channel, _: CloseChannel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.0.0.fetch_max(ack.delivery_tag(), Ordering::SeqCst);
        self.0.1.notify_waiters();
    }
    async fn publish_nack(&mut self, _: &Channel, _: Nack) {
        panic!("the broker nacked a bench message");
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

async fn bare_sink(conn: &Connection, q: &str) -> f64 {
    let ch = conn.open_channel(None).await.expect("channel");
    let state = Arc::new((AtomicU64::new(0), Notify::new()));
    ch.register_callback(Confirms(state.clone())).await.expect("callback");
    ch.confirm_select(ConfirmSelectArguments::default())
        .await
        .expect("confirm");
    let confirmed = || state.0.load(Ordering::SeqCst);
    let started = Instant::now();
    for i in 1..=N {
        while i > confirmed() + 1000 {
            let woken = state.1.notified();
            if i <= confirmed() + 1000 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), woken).await;
        }
        let mut body = format!("{i:020}").into_bytes();
        body.resize(100, b'x');
        ch.basic_publish(persistent(), body, BasicPublishArguments::new("", q))
            .await
            .expect("publish");
    }
    while confirmed() < N {
        let woken = state.1.notified();
        if confirmed() >= N {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), woken).await;
    }
    let per_sec = N as f64 / started.elapsed().as_secs_f64();
    let _ = ch.close().await;
    per_sec
}

async fn pipeline_sink(q: &str) -> f64 {
    let sink = AmqpSink::new(SinkOptions::new(URI, "").routing_key(q)).expect("options");
    let started = Instant::now();
    let p = Pipeline::builder("amqp-sink-bench", Forward::<Record>::new())
        .source(Generator::new(N).map(|n| {
            let mut body = format!("{n:020}").into_bytes();
            body.resize(100, b'x');
            Record::new(body)
        }))
        .processors(Processors::new().concurrency(2))
        .sink(
            sink,
            Batcher::new("publish")
                .batch_size(1000)
                .batch_timeout(Duration::from_millis(50))
                .concurrency(2),
        )
        .start()
        .await
        .expect("pipeline");
    p.join().await.expect("pipeline");
    N as f64 / started.elapsed().as_secs_f64()
}

pub async fn run(sink: bool) -> Report {
    let conn = connect().await;
    let ch = conn.open_channel(None).await.expect("channel");
    let tag = std::process::id();
    let report = if !sink {
        let (a, b) = (
            format!("ferroway-bench-bare-{tag}"),
            format!("ferroway-bench-src-{tag}"),
        );
        fresh_queue(&ch, &a).await;
        fresh_queue(&ch, &b).await;
        eprintln!("publishing {N} messages to {a} and {b} ...");
        fill(&ch, &a).await;
        fill(&ch, &b).await;
        let baseline = bare_source(&conn, &a).await;
        let (per_sec, ok) = pipeline_source(&b).await;
        let left = ready(&ch, &b).await;
        let mut r = Report::new("amqp", "messages", N, N as f64 / per_sec);
        r.baseline_per_sec = Some(baseline);
        r.checksum_ok = Some(ok && left == 0);
        r.extra.insert("prefetch_count".into(), PREFETCH.into());
        r.extra.insert(
            "baseline".into(),
            "bare amqprs consume loop, same prefetch, multiple ack per wake-up".into(),
        );
        for q in [a, b] {
            let _ = ch.queue_delete(QueueDeleteArguments::new(&q)).await;
        }
        r
    } else {
        let (a, b) = (
            format!("ferroway-bench-sink-bare-{tag}"),
            format!("ferroway-bench-sink-{tag}"),
        );
        fresh_queue(&ch, &a).await;
        fresh_queue(&ch, &b).await;
        let baseline = bare_sink(&conn, &a).await;
        let per_sec = pipeline_sink(&b).await;
        let len = ready(&ch, &b).await;
        let mut r = Report::new("amqp-sink", "messages", N, N as f64 / per_sec);
        r.baseline_per_sec = Some(baseline);
        r.checksum_ok = Some(len == N);
        r.extra.insert(
            "baseline".into(),
            "bare amqprs publisher, 1000 confirms outstanding".into(),
        );
        for q in [a, b] {
            let _ = ch.queue_delete(QueueDeleteArguments::new(&q)).await;
        }
        r
    };
    let _ = ch.close().await;
    let _ = conn.close().await;
    report
}
