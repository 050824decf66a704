//! Routing and fairness of each dispatcher, and the producer buffer.

mod common;

use std::time::Duration;

use common::{Collect, Range, Silent, settle};
use ferroway::StageError;
use ferroway::stage::{self, BufferKeep, ConsumerOptions, Dispatcher, ProducerOptions, SubscribeOptions};

#[tokio::test(start_paused = true)]
async fn demand_dispatcher_splits_events_between_consumers_fairly() {
    let p = stage::start_producer(Range::new(0, 10_000), ProducerOptions::new());
    let (a, b) = (
        Collect {
            delay: Duration::from_millis(1),
            ..Default::default()
        },
        Collect {
            delay: Duration::from_millis(1),
            ..Default::default()
        },
    );
    let ca = stage::start_consumer(a.clone(), ConsumerOptions::new());
    let cb = stage::start_consumer(b.clone(), ConsumerOptions::new());
    ca.subscribe_to(&p, SubscribeOptions::new().max_demand(50))
        .await
        .unwrap();
    cb.subscribe_to(&p, SubscribeOptions::new().max_demand(50))
        .await
        .unwrap();
    ca.join().await.unwrap();
    cb.join().await.unwrap();
    let (sa, sb) = (a.seen(), b.seen());
    // Each event went to exactly one consumer, in order within each.
    let mut all: Vec<u64> = sa.iter().chain(&sb).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..10_000).collect::<Vec<_>>());
    assert!(sa.windows(2).all(|w| w[0] < w[1]) && sb.windows(2).all(|w| w[0] < w[1]));
    // Equal speed and demand: neither gets more than 60% of the events.
    assert!(sa.len() > 4_000 && sb.len() > 4_000, "a={} b={}", sa.len(), sb.len());
}

#[tokio::test(start_paused = true)]
async fn demand_dispatcher_favours_the_consumer_with_most_pending_demand() {
    let p = stage::start_producer(Silent, ProducerOptions::new());
    let (a, b) = (Collect::default(), Collect::default());
    let ca = stage::start_consumer(a.clone(), ConsumerOptions::new());
    let cb = stage::start_consumer(b.clone(), ConsumerOptions::new());
    ca.subscribe_to(&p, SubscribeOptions::new().max_demand(5))
        .await
        .unwrap();
    cb.subscribe_to(&p, SubscribeOptions::new().max_demand(20))
        .await
        .unwrap();
    p.emitter().emit((0..20).collect()).unwrap();
    settle().await;
    // b asked for 20, a for 5: the first batch goes to b whole.
    assert_eq!(b.seen(), (0..20).collect::<Vec<_>>());
    assert!(a.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn broadcast_sends_every_event_to_every_consumer_at_the_pace_of_the_slowest() {
    let (range, go) = Range::gated(0, 500);
    let p = stage::start_producer(range, ProducerOptions::new().dispatcher(Dispatcher::broadcast()));
    let fast = Collect::default();
    let slow = Collect {
        delay: Duration::from_millis(10),
        ..Default::default()
    };
    let evens = Collect::default();
    let cf = stage::start_consumer(fast.clone(), ConsumerOptions::new());
    let cs = stage::start_consumer(slow.clone(), ConsumerOptions::new());
    let ce = stage::start_consumer(evens.clone(), ConsumerOptions::new());
    cf.subscribe_to(&p, SubscribeOptions::new().max_demand(20))
        .await
        .unwrap();
    cs.subscribe_to(&p, SubscribeOptions::new().max_demand(20))
        .await
        .unwrap();
    ce.subscribe_to(
        &p,
        SubscribeOptions::new()
            .max_demand(20)
            .selector(|e: &u64| e.is_multiple_of(2)),
    )
    .await
    .unwrap();
    go.send(()).unwrap();
    // The fast consumer cannot run ahead of the slow one by more than its demand window.
    tokio::time::sleep(Duration::from_millis(55)).await;
    let ahead = fast.seen().len() as i64 - slow.seen().len() as i64;
    assert!(ahead <= 40, "fast is {ahead} events ahead of slow");
    cf.join().await.unwrap();
    cs.join().await.unwrap();
    ce.join().await.unwrap();
    assert_eq!(fast.seen(), (0..500).collect::<Vec<_>>());
    assert_eq!(slow.seen(), (0..500).collect::<Vec<_>>());
    assert_eq!(evens.seen(), (0..500).filter(|e| e % 2 == 0).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn partition_dispatcher_routes_each_key_to_one_consumer_in_order() {
    // Key = event % 4; multiples of 10 are discarded.
    let d = Dispatcher::partition(4, |e: &u64| (!e.is_multiple_of(10)).then_some((e % 4) as usize));
    let (range, go) = Range::gated(0, 2_000);
    let p = stage::start_producer(range, ProducerOptions::new().dispatcher(d));
    let parts: Vec<Collect> = (0..4)
        .map(|i| Collect {
            delay: Duration::from_micros(100 * i),
            ..Default::default()
        })
        .collect();
    let mut stages = Vec::new();
    for (i, c) in parts.iter().enumerate() {
        let s = stage::start_consumer(c.clone(), ConsumerOptions::new());
        s.subscribe_to(&p, SubscribeOptions::new().partition(i).max_demand(30))
            .await
            .unwrap();
        stages.push(s);
    }
    go.send(()).unwrap();
    for s in stages {
        s.join().await.unwrap();
    }
    for (i, c) in parts.iter().enumerate() {
        let expected: Vec<u64> = (0..2_000).filter(|e| e % 10 != 0 && (e % 4) as usize == i).collect();
        assert_eq!(c.seen(), expected, "partition {i}");
    }
}

#[tokio::test(start_paused = true)]
async fn partition_subscriptions_are_validated() {
    let p = stage::start_producer(
        Silent,
        ProducerOptions::new().dispatcher(Dispatcher::partition(2, |e: &u64| Some(*e as usize))),
    );
    let c = stage::start_consumer(Collect::default(), ConsumerOptions::new());
    let missing = c.subscribe_to(&p, SubscribeOptions::new()).await.unwrap_err();
    assert!(
        missing.to_string().contains("set SubscribeOptions::partition"),
        "{missing}"
    );
    let out = c
        .subscribe_to(&p, SubscribeOptions::new().partition(2))
        .await
        .unwrap_err();
    assert!(out.to_string().contains("out of range"), "{out}");
    c.subscribe_to(&p, SubscribeOptions::new().partition(0)).await.unwrap();
    let c2 = stage::start_consumer(Collect::default(), ConsumerOptions::new());
    let taken = c2
        .subscribe_to(&p, SubscribeOptions::new().partition(0))
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("already has a subscriber"), "{taken}");
    // A rejected subscription does not stop the consumer.
    assert!(!c.task().is_finished());
}

#[tokio::test(start_paused = true)]
async fn partition_index_out_of_range_stops_the_producer_with_a_typed_error() {
    let p = stage::start_producer(
        Range::new(0, 10),
        ProducerOptions::new()
            .name("bad")
            .dispatcher(Dispatcher::partition(2, |_: &u64| Some(7))),
    );
    let c = stage::start_consumer(Collect::default(), ConsumerOptions::new());
    c.subscribe_to(&p, SubscribeOptions::new().partition(0)).await.unwrap();
    match p.join().await {
        Err(StageError::PartitionOutOfRange {
            partition: 7,
            partitions: 2,
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(c.join().await, Err(StageError::Upstream { .. })));
}

async fn overflow(keep: BufferKeep) -> Vec<u64> {
    let p = stage::start_producer(Silent, ProducerOptions::new().buffer_size(10).buffer_keep(keep));
    // No consumer yet: everything goes to the buffer.
    p.emitter().emit((0..60).collect()).unwrap();
    p.emitter().emit((60..100).collect()).unwrap();
    settle().await;
    let c = Collect::default();
    let s = stage::start_consumer(c.clone(), ConsumerOptions::new());
    s.subscribe_to(&p, SubscribeOptions::new().max_demand(100))
        .await
        .unwrap();
    settle().await;
    c.seen()
}

#[tokio::test(start_paused = true)]
async fn full_buffer_keeps_first_events() {
    assert_eq!(overflow(BufferKeep::First).await, (0..10).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn full_buffer_keeps_last_events() {
    assert_eq!(overflow(BufferKeep::Last).await, (90..100).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn emitted_events_never_exceed_demand() {
    let p = stage::start_producer(Silent, ProducerOptions::new());
    let c = Collect {
        delay: Duration::from_secs(3600),
        ..Default::default()
    };
    let s = stage::start_consumer(c.clone(), ConsumerOptions::new());
    s.subscribe_to(&p, SubscribeOptions::new().max_demand(7)).await.unwrap();
    p.emitter().emit((0..100).collect()).unwrap();
    settle().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The consumer is still busy with its first batch: exactly its demand, no more.
    assert_eq!(c.batches.lock().unwrap().clone(), vec![7]);
    assert_eq!(c.seen(), (0..7).collect::<Vec<_>>());
    drop(s);
}
