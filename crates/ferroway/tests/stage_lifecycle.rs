//! Lifecycle: cancel modes, failures and panics, misuse, run-time subscriptions, draining,
//! the consumer supervisor.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Collect, Endless, Range, Silent, settle};
use ferroway::stage::{
    self, CancelMode, Consumer, ConsumerOptions, Emit, Producer, ProducerConsumer, ProducerOptions, SubscribeOptions,
};
use ferroway::{BoxError, StageError, SubscribeError};

struct Explode {
    after: u64,
    panic: bool,
    next: u64,
}

impl Producer for Explode {
    type Output = u64;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<u64>, BoxError> {
        if self.next >= self.after {
            if self.panic {
                panic!("boom at {}", self.next);
            }
            return Err("source broke".into());
        }
        let end = (self.next + demand as u64).min(self.after);
        let events = (self.next..end).collect();
        self.next = end;
        Ok(Emit::Events(events))
    }
}

#[tokio::test(start_paused = true)]
async fn permanent_consumer_stops_when_its_producer_finishes() {
    let p = stage::start_producer(Range::new(0, 100), ProducerOptions::new());
    let c = Collect::default();
    let s = stage::start_consumer(c.clone(), ConsumerOptions::new());
    s.subscribe_to(&p, SubscribeOptions::new().max_demand(10))
        .await
        .unwrap();
    s.join().await.unwrap();
    p.join().await.unwrap();
    // A stage that ends lets its consumers finish what they received.
    assert_eq!(c.seen(), (0..100).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn transient_consumer_survives_a_normal_end_but_not_a_failure() {
    let done = stage::start_producer(Range::new(0, 10), ProducerOptions::new());
    let s = stage::start_consumer(Collect::default(), ConsumerOptions::new());
    s.subscribe_to(&done, SubscribeOptions::new().cancel(CancelMode::Transient))
        .await
        .unwrap();
    done.join().await.unwrap();
    settle().await;
    assert!(!s.task().is_finished(), "transient consumer must survive a normal end");

    let failing = stage::start_producer(
        Explode {
            after: 5,
            panic: false,
            next: 0,
        },
        ProducerOptions::new().name("flaky"),
    );
    s.subscribe_to(&failing, SubscribeOptions::new().cancel(CancelMode::Transient))
        .await
        .unwrap();
    match s.join().await {
        Err(StageError::Upstream { source, .. }) => {
            assert!(
                matches!(*source, StageError::Failed { ref stage, .. } if &**stage == "flaky"),
                "{source}"
            );
            assert!(source.to_string().contains("source broke"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn temporary_consumer_survives_a_failing_producer() {
    let failing = stage::start_producer(
        Explode {
            after: 5,
            panic: true,
            next: 0,
        },
        ProducerOptions::new(),
    );
    let c = Collect::default();
    let s = stage::start_consumer(c.clone(), ConsumerOptions::new());
    s.subscribe_to(&failing, SubscribeOptions::new().cancel(CancelMode::Temporary))
        .await
        .unwrap();
    assert!(
        matches!(failing.join().await, Err(StageError::Panicked { ref message, .. }) if message.contains("boom at 5"))
    );
    settle().await;
    assert!(!s.task().is_finished());
    assert_eq!(c.seen(), vec![0, 1, 2, 3, 4]);
    // It can subscribe elsewhere and carry on.
    let more = stage::start_producer(Range::new(100, 103), ProducerOptions::new());
    s.subscribe_to(&more, SubscribeOptions::new()).await.unwrap();
    s.join().await.unwrap();
    assert_eq!(c.seen(), vec![0, 1, 2, 3, 4, 100, 101, 102]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_producer_surfaces_downstream_as_a_typed_error() {
    struct Double;
    impl ProducerConsumer for Double {
        type Input = u64;
        type Output = u64;
        async fn handle_events(&mut self, events: Vec<u64>) -> Result<Vec<u64>, BoxError> {
            Ok(events.into_iter().map(|x| x * 2).collect())
        }
    }
    let p = stage::start_producer(
        Explode {
            after: 50,
            panic: true,
            next: 0,
        },
        ProducerOptions::new().name("src"),
    );
    let d = stage::start_producer_consumer(Double, ProducerOptions::new().name("double"));
    let c = stage::start_consumer(Collect::default(), ConsumerOptions::new().name("sink"));
    c.subscribe_to(&d, SubscribeOptions::new()).await.unwrap();
    d.subscribe_to(&p, SubscribeOptions::new()).await.unwrap();
    let err = c.join().await.unwrap_err();
    // sink <- double <- src panicked
    let text = err.to_string();
    assert!(text.contains("sink"), "{text}");
    match err {
        StageError::Upstream { source, .. } => match *source {
            StageError::Upstream { source, .. } => assert!(matches!(*source, StageError::Panicked { .. })),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_consumer_reports_its_error_and_the_producer_carries_on() {
    struct Picky;
    impl Consumer for Picky {
        type Input = u64;
        async fn handle_events(&mut self, _: Vec<u64>) -> Result<(), BoxError> {
            Err("cannot take these".into())
        }
    }
    let p = stage::start_producer(Endless(0), ProducerOptions::new());
    let bad = stage::start_consumer(Picky, ConsumerOptions::new().name("picky"));
    bad.subscribe_to(&p, SubscribeOptions::new()).await.unwrap();
    let err = bad.join().await.unwrap_err();
    assert!(
        err.to_string().contains("picky") && err.to_string().contains("cannot take these"),
        "{err}"
    );
    let good = Collect::default();
    let s = stage::start_consumer(good.clone(), ConsumerOptions::new());
    s.subscribe_to(&p, SubscribeOptions::new().max_demand(5)).await.unwrap();
    settle().await;
    assert!(!good.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn misuse_is_a_clear_typed_error() {
    let p = stage::start_producer(Silent, ProducerOptions::new().name("src"));
    let s = stage::start_consumer(Collect::default(), ConsumerOptions::new());
    assert_eq!(
        s.subscribe_to(&p, SubscribeOptions::new().max_demand(0)).await,
        Err(SubscribeError::ZeroMaxDemand { producer: "src".into() })
    );
    let e = s
        .subscribe_to(&p, SubscribeOptions::new().max_demand(10).min_demand(10))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid subscription to `src`: min_demand (10) must be below max_demand (10)"
    );

    let finished = stage::start_producer(Silent, ProducerOptions::new().name("gone"));
    let r = finished.producer_ref();
    assert!(finished.drain());
    finished.join().await.unwrap();
    assert_eq!(
        s.subscribe_to(&r, SubscribeOptions::new()).await,
        Err(SubscribeError::ProducerStopped {
            producer: "gone".into()
        })
    );
}

#[tokio::test(start_paused = true)]
async fn consumer_subscribes_to_several_producers_and_cancels_at_run_time() {
    let a = stage::start_producer(Endless(0), ProducerOptions::new());
    let b = stage::start_producer(Endless(1_000_000), ProducerOptions::new());
    let c = Collect {
        delay: Duration::from_millis(1),
        ..Default::default()
    };
    let s = stage::start_consumer(c.clone(), ConsumerOptions::new());
    let ida = s
        .subscribe_to(&a, SubscribeOptions::new().max_demand(10).cancel(CancelMode::Temporary))
        .await
        .unwrap();
    s.subscribe_to(&b, SubscribeOptions::new().max_demand(10).cancel(CancelMode::Temporary))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let seen = c.seen();
    assert!(seen.iter().any(|&e| e < 1_000_000) && seen.iter().any(|&e| e >= 1_000_000));
    assert!(s.cancel(ida).await);
    assert!(!s.cancel(ida).await, "already cancelled");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before = c.seen().iter().filter(|&&e| e < 1_000_000).count();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = c.seen().iter().filter(|&&e| e < 1_000_000).count();
    assert_eq!(before, after, "no events from a cancelled subscription");
    assert!(
        !s.task().is_finished(),
        "temporary: cancelling does not stop the consumer"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_permanent_subscription_stops_the_consumer() {
    let p = stage::start_producer(Endless(0), ProducerOptions::new());
    let s = stage::start_consumer(Collect::default(), ConsumerOptions::new());
    let id = s.subscribe_to(&p, SubscribeOptions::new()).await.unwrap();
    assert!(s.cancel(id).await);
    s.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn draining_a_producer_delivers_its_buffer_then_ends_subscriptions() {
    struct Hook(Arc<AtomicUsize>);
    impl Producer for Hook {
        type Output = u64;
        async fn handle_demand(&mut self, _: usize) -> Result<Emit<u64>, BoxError> {
            // A long poll: never returns by itself.
            std::future::pending().await
        }
        async fn prepare_for_draining(&mut self) -> Vec<u64> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Vec::new()
        }
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let p = stage::start_producer(Hook(calls.clone()), ProducerOptions::new());
    let c = Collect {
        delay: Duration::from_millis(5),
        ..Default::default()
    };
    let s = stage::start_consumer(c.clone(), ConsumerOptions::new());
    s.subscribe_to(&p, SubscribeOptions::new().max_demand(4).min_demand(0))
        .await
        .unwrap();
    p.emitter().emit((0..20).collect()).unwrap();
    assert!(p.drain());
    s.join().await.unwrap();
    p.join().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.seen(), (0..20).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn consumer_supervisor_never_runs_more_than_max_demand_tasks() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (r, pk, d) = (running.clone(), peak.clone(), done.clone());
    let p = stage::start_producer(Range::new(0, 200), ProducerOptions::new());
    let sup = stage::start_consumer_supervisor(
        move |e: u64| {
            let (r, pk, d) = (r.clone(), pk.clone(), d.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                pk.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1 + e % 7)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                d.fetch_add(1, Ordering::SeqCst);
                if e.is_multiple_of(50) {
                    panic!("task {e} panics; the others carry on");
                }
                Ok(())
            }
        },
        ConsumerOptions::new(),
    );
    sup.subscribe_to(&p, SubscribeOptions::new().max_demand(8).min_demand(4))
        .await
        .unwrap();
    sup.join().await.unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 200);
    let peak = peak.load(Ordering::SeqCst);
    assert!((4..=8).contains(&peak), "peak concurrency {peak}");
}

#[tokio::test(start_paused = true)]
async fn subscribing_to_a_draining_producer_is_refused_and_leaves_no_trace() {
    let p = stage::start_producer(Silent, ProducerOptions::new().name("draining"));
    let slow = stage::start_consumer(
        Collect {
            delay: Duration::from_secs(1),
            ..Default::default()
        },
        ConsumerOptions::new(),
    );
    slow.subscribe_to(&p, SubscribeOptions::new().max_demand(2).min_demand(0))
        .await
        .unwrap();
    p.emitter().emit((0..10).collect()).unwrap();
    assert!(p.drain());
    settle().await;
    // Still handing out its buffer, but no longer taking subscribers.
    let late = stage::start_consumer(Collect::default(), ConsumerOptions::new().stop_when_unsubscribed(true));
    assert_eq!(
        late.subscribe_to(&p, SubscribeOptions::new()).await,
        Err(SubscribeError::ProducerStopped {
            producer: "draining".into()
        })
    );
    // The refused subscription left nothing behind: once its only real one ends, it stops.
    let other = stage::start_producer(Range::new(0, 5), ProducerOptions::new());
    late.subscribe_to(&other, SubscribeOptions::new().cancel(CancelMode::Transient))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), late.join())
        .await
        .expect("a refused subscription kept the consumer alive")
        .unwrap();
    slow.join().await.unwrap();
}
