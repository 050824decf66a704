//! Core NATS against the real nats-server: queue groups, request/reply, the bounded buffer,
//! publishing.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferroway::BoxError;
use ferroway::connector::{Record, Sink};
use ferroway::error::is_unavailable;
use ferroway::pipeline::{Handler, Message, Pipeline, Processors};
use ferroway_nats::{NatsMessage, NatsSink, Service, SinkOptions, SubscribeOptions, SubscriptionSource};
use futures_util::StreamExt;
use support::{client, unique, url};

#[derive(Clone, Default)]
struct Count(Arc<AtomicU64>, Duration);

impl Handler for Count {
    type Data = NatsMessage;
    async fn handle_message(&self, _: &mut Message<NatsMessage>) -> Result<(), BoxError> {
        if !self.1.is_zero() {
            tokio::time::sleep(self.1).await;
        }
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn subscriber(count: Count, opts: SubscribeOptions) -> Pipeline<NatsMessage> {
    let source = SubscriptionSource::factory(opts).unwrap();
    Pipeline::builder("core", count)
        .source(source)
        .processors(Processors::new().concurrency(1).max_demand(10))
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_splits_the_messages_between_its_members() {
    let c = client().await;
    let subject = format!("{}.jobs", unique("queue"));
    let (a, b) = (Count::default(), Count::default());
    let opts =
        SubscribeOptions::new(url(), [format!("{}.*", subject.trim_end_matches(".jobs"))]).queue_group("workers");
    let pa = subscriber(a.clone(), opts.clone()).await;
    let pb = subscriber(b.clone(), opts).await;
    // Each member subscribes on its first demand: warm up until both receive. Warm-up messages
    // published before any member subscribed are lost (core NATS keeps nothing): they are
    // not counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.0.load(Ordering::Relaxed) == 0 || b.0.load(Ordering::Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "both members should receive");
        c.publish(subject.clone(), "warm-up".into()).await.unwrap();
        c.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let total = || a.0.load(Ordering::Relaxed) + b.0.load(Ordering::Relaxed);
    let (a0, b0) = (a.0.load(Ordering::Relaxed), b.0.load(Ordering::Relaxed));
    for i in 0..1000 {
        c.publish(subject.clone(), Bytes::from(i.to_string())).await.unwrap();
    }
    c.flush().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while total() < a0 + b0 + 1000 {
        assert!(tokio::time::Instant::now() < deadline, "{} of 1000", total() - a0 - b0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(total(), a0 + b0 + 1000, "each message to one member only");
    let (na, nb) = (a.0.load(Ordering::Relaxed) - a0, b.0.load(Ordering::Relaxed) - b0);
    assert!(na > 100 && nb > 100, "both members took a share: {na} / {nb}");
    pa.stop().await.unwrap();
    pb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_pipeline_drops_beyond_its_buffer_instead_of_growing() {
    let c = client().await;
    let subject = format!("{}.flood", unique("slow"));
    let count = Count(Arc::new(AtomicU64::new(0)), Duration::from_millis(5));
    let opts = SubscribeOptions::new(url(), [subject.clone()]).buffer(100);
    let p = subscriber(count.clone(), opts).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count.0.load(Ordering::Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the subscriber should receive");
        c.publish(subject.clone(), "warm-up".into()).await.unwrap();
        c.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..20_000 {
        c.publish(subject.clone(), Bytes::from(i.to_string())).await.unwrap();
    }
    c.flush().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.stop().await.unwrap();
    let got = count.0.load(Ordering::Relaxed);
    // 5 ms each: about 600 in 3 s. Everything else was dropped, not queued in memory.
    assert!(got < 2_000, "handled {got}: the buffer bounded what waited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_answers_requests_and_reports_handler_errors() {
    let subject = format!("{}.greet", unique("svc"));
    let service = Service::new(url(), &subject, "greeters")
        .concurrency(4)
        .serve(|req: NatsMessage| async move {
            match &req.payload[..] {
                b"" => Err("empty name".to_owned()),
                name => Ok(Bytes::from(format!("hello {}", String::from_utf8_lossy(name)))),
            }
        })
        .await
        .unwrap();
    let sink = NatsSink::new(SinkOptions::new(url(), "unused")).unwrap();
    for i in 0..20 {
        let reply = sink
            .request(&subject, format!("n{i}").as_bytes(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(&reply.payload[..], format!("hello n{i}").as_bytes());
    }
    let failed = sink.request(&subject, b"", Duration::from_secs(5)).await.unwrap();
    assert_eq!(failed.header_value("Nats-Service-Error"), Some(&b"empty name"[..]));
    assert_eq!(failed.header_value("Nats-Service-Error-Code"), Some(&b"500"[..]));
    service.stop();
    let e = sink
        .request(&format!("{subject}.nobody"), b"x", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(is_unavailable(&e), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_sink_publishes_with_headers_and_key_suffix() {
    let c = client().await;
    let base = unique("pub");
    let mut sub = c.subscribe(format!("{base}.>")).await.unwrap();
    c.flush().await.unwrap();
    let sink = NatsSink::new(SinkOptions::new(url(), &base).key_as_subject_suffix(true)).unwrap();
    let mut batch: Vec<Message<Record>> = (0..10)
        .map(|i| {
            Message::new(
                Record::new(i.to_string())
                    .key(format!("k{}", i % 2))
                    .header("n", i.to_string()),
            )
        })
        .collect();
    sink.write(&mut batch).await.unwrap();
    for i in 0..10 {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.subject.as_str(), format!("{base}.k{}", i % 2));
        assert_eq!(m.headers.unwrap().get("n").unwrap().as_str(), i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_publishing_deduplicates_by_message_id_and_an_unknown_subject_is_an_outage() {
    let c = client().await;
    let s = unique("dedup");
    support::stream(&c, &s).await;
    let sink = NatsSink::new(
        SinkOptions::new(url(), format!("{s}.x"))
            .jetstream(true)
            .key_as_message_id(true),
    )
    .unwrap();
    for _ in 0..2 {
        // The same batch twice, as a retry after a lost ack would send it.
        let mut batch: Vec<Message<Record>> = (0..10)
            .map(|i| Message::new(Record::new("v").key(format!("id-{i}"))))
            .collect();
        sink.write(&mut batch).await.unwrap();
        assert!(batch.iter().all(|m| !m.is_failed()));
    }
    let mut st = async_nats::jetstream::new(c.clone()).get_stream(&s).await.unwrap();
    assert_eq!(
        st.info().await.unwrap().state.messages,
        10,
        "the stream dropped the duplicates"
    );
    let nowhere = NatsSink::new(
        SinkOptions::new(url(), format!("{}.x", unique("nostream")))
            .jetstream(true)
            .ack_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let mut batch = vec![Message::new(Record::new("x"))];
    let e = nowhere.write(&mut batch).await.unwrap_err();
    assert!(is_unavailable(&*e), "{e}");
    assert!(!batch[0].is_failed());
    support::delete_stream(&c, &s).await;
}
