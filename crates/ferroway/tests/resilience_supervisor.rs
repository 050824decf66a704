//! Supervisor: strategies, restart types, intensity, shutdown order and timeouts,
//! dynamic children and nesting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::resilience::{
    Backoff, BoxError, ChildSpec, ChildState, Restart, Strategy, Supervisor, SupervisorError, SupervisorHandle,
};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Records lifecycle events in order, and lets tests make a child exit on demand.
#[derive(Clone, Default)]
struct Lab {
    log: Arc<Mutex<Vec<String>>>,
    triggers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

#[derive(Clone, Copy, Debug)]
enum Exit {
    Normal,
    Error,
    Panic,
}

impl Lab {
    fn record(&self, event: impl Into<String>) {
        self.log.lock().unwrap().push(event.into());
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn trigger(&self, id: &str) -> Arc<Notify> {
        self.triggers.lock().unwrap().entry(id.to_owned()).or_default().clone()
    }

    /// A child that logs `start:id`, runs until cancelled (logging `stop:id`) or until
    /// triggered, then exits the given way.
    fn child(&self, id: &str, exit: Exit) -> ChildSpec {
        let lab = self.clone();
        let trigger = self.trigger(id);
        ChildSpec::new(id, move |ctx| {
            lab.record(format!("start:{}", ctx.id()));
            let lab = lab.clone();
            let trigger = trigger.clone();
            async move {
                tokio::select! {
                    () = ctx.cancelled() => {
                        lab.record(format!("stop:{}", ctx.id()));
                        Ok(())
                    }
                    () = trigger.notified() => match exit {
                        Exit::Normal => Ok(()),
                        Exit::Error => Err(format!("{} failed", ctx.id()).into()),
                        Exit::Panic => panic!("{} panicked", ctx.id()),
                    },
                }
            }
        })
    }

    async fn crash(&self, id: &str) {
        self.trigger(id).notify_one();
        settle().await;
    }
}

/// A supervisor that restarts at once, so the tests below see restarts without waiting.
fn sup(name: &str) -> Supervisor {
    Supervisor::new(name).restart_backoff(Backoff::constant(Duration::ZERO))
}

/// Lets the supervisor and its children run until they are all idle.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn restarts(handle: &SupervisorHandle) -> Vec<(String, u32)> {
    handle.children().into_iter().map(|c| (c.id, c.restarts)).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(start_paused = true)]
async fn children_start_in_order_and_stop_in_reverse() {
    let lab = Lab::default();
    let handle = sup("sup")
        .child(lab.child("a", Exit::Error))
        .child(lab.child("b", Exit::Error))
        .child(lab.child("c", Exit::Error))
        .start()
        .unwrap();
    settle().await;
    assert_eq!(lab.take_log(), strings(&["start:a", "start:b", "start:c"]));
    assert!(handle.children().iter().all(|c| c.state == ChildState::Running));

    handle.shutdown().await.unwrap();
    assert_eq!(lab.take_log(), strings(&["stop:c", "stop:b", "stop:a"]));
    assert!(handle.is_finished());
    assert!(handle.children().iter().all(|c| c.state == ChildState::Stopped));
    assert!(handle.wait().await.is_ok(), "wait after shutdown is Ok too");
}

#[tokio::test(start_paused = true)]
async fn one_for_one_restarts_only_the_failed_child() {
    let lab = Lab::default();
    let handle = sup("sup")
        .strategy(Strategy::OneForOne)
        .child(lab.child("a", Exit::Error))
        .child(lab.child("b", Exit::Error))
        .child(lab.child("c", Exit::Error))
        .start()
        .unwrap();
    settle().await;
    lab.take_log();

    lab.crash("b").await;
    assert_eq!(lab.take_log(), strings(&["start:b"]));
    assert_eq!(restarts(&handle), [("a".into(), 0), ("b".into(), 1), ("c".into(), 0)]);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_for_all_restarts_every_child() {
    let lab = Lab::default();
    let handle = sup("sup")
        .strategy(Strategy::OneForAll)
        .child(lab.child("a", Exit::Error))
        .child(lab.child("b", Exit::Error))
        .child(lab.child("c", Exit::Error))
        .start()
        .unwrap();
    settle().await;
    lab.take_log();

    lab.crash("b").await;
    assert_eq!(
        lab.take_log(),
        strings(&["stop:c", "stop:a", "start:a", "start:b", "start:c"])
    );
    assert_eq!(restarts(&handle), [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let lab = Lab::default();
    let handle = sup("sup")
        .strategy(Strategy::RestForOne)
        .child(lab.child("a", Exit::Error))
        .child(lab.child("b", Exit::Error))
        .child(lab.child("c", Exit::Error))
        .child(lab.child("d", Exit::Error))
        .start()
        .unwrap();
    settle().await;
    lab.take_log();

    lab.crash("b").await;
    assert_eq!(
        lab.take_log(),
        strings(&["stop:d", "stop:c", "start:b", "start:c", "start:d"])
    );
    assert_eq!(
        restarts(&handle),
        [("a".into(), 0), ("b".into(), 1), ("c".into(), 1), ("d".into(), 1)]
    );

    // The last child failing restarts only itself.
    lab.crash("d").await;
    assert_eq!(lab.take_log(), strings(&["start:d"]));
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn permanent_children_restart_after_any_exit() {
    let lab = Lab::default();
    let handle = sup("sup")
        .intensity(10, Duration::from_secs(1))
        .child(lab.child("normal", Exit::Normal))
        .child(lab.child("error", Exit::Error))
        .child(lab.child("panic", Exit::Panic))
        .start()
        .unwrap();
    settle().await;
    lab.take_log();
    for id in ["normal", "error", "panic"] {
        lab.crash(id).await;
    }
    assert_eq!(lab.take_log(), strings(&["start:normal", "start:error", "start:panic"]));
    assert!(
        handle
            .children()
            .iter()
            .all(|c| c.state == ChildState::Running && c.restarts == 1)
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn transient_children_restart_only_after_abnormal_exits() {
    let lab = Lab::default();
    let handle = sup("sup")
        .intensity(10, Duration::from_secs(1))
        .child(lab.child("normal", Exit::Normal).restart(Restart::Transient))
        .child(lab.child("error", Exit::Error).restart(Restart::Transient))
        .child(lab.child("panic", Exit::Panic).restart(Restart::Transient))
        .start()
        .unwrap();
    settle().await;
    lab.take_log();
    for id in ["normal", "error", "panic"] {
        lab.crash(id).await;
    }
    assert_eq!(lab.take_log(), strings(&["start:error", "start:panic"]));
    let children = handle.children();
    assert_eq!(children[0].id, "normal");
    assert_eq!(children[0].state, ChildState::Stopped);
    assert_eq!(children[0].restarts, 0);
    assert!(
        children[1..]
            .iter()
            .all(|c| c.state == ChildState::Running && c.restarts == 1)
    );

    // The stopped child is not "stopped" again on shutdown.
    handle.shutdown().await.unwrap();
    assert_eq!(lab.take_log(), strings(&["stop:panic", "stop:error"]));
}

#[tokio::test(start_paused = true)]
async fn temporary_children_are_never_restarted_and_are_removed() {
    let lab = Lab::default();
    let handle = sup("sup")
        .child(lab.child("keep", Exit::Error))
        .child(lab.child("once", Exit::Panic).restart(Restart::Temporary))
        .start()
        .unwrap();
    settle().await;
    lab.take_log();
    lab.crash("once").await;
    assert!(lab.take_log().is_empty());
    let ids: Vec<String> = handle.children().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["keep"]);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_for_all_drops_temporary_siblings_instead_of_restarting_them() {
    let lab = Lab::default();
    let handle = sup("sup")
        .strategy(Strategy::OneForAll)
        .child(lab.child("a", Exit::Error))
        .child(lab.child("temp", Exit::Error).restart(Restart::Temporary))
        .child(lab.child("c", Exit::Error))
        .start()
        .unwrap();
    settle().await;
    lab.take_log();
    lab.crash("c").await;
    assert_eq!(lab.take_log(), strings(&["stop:temp", "stop:a", "start:a", "start:c"]));
    let ids: Vec<String> = handle.children().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["a", "c"]);
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn exceeding_restart_intensity_stops_everything_and_fails() {
    let lab = Lab::default();
    let crashing = {
        let lab = lab.clone();
        ChildSpec::new("crasher", move |_ctx| {
            lab.record("start:crasher");
            async { Err::<(), BoxError>("always broken".into()) }
        })
    };
    let handle = sup("fragile")
        .intensity(2, Duration::from_secs(5))
        .child(lab.child("a", Exit::Error))
        .child(crashing)
        .child(lab.child("c", Exit::Error))
        .start()
        .unwrap();

    let err = handle.wait().await.unwrap_err();
    assert_eq!(
        err,
        SupervisorError::IntensityExceeded {
            supervisor: "fragile".into(),
            child: "crasher".into(),
            max_restarts: 2,
            period: Duration::from_secs(5),
            reason: "error: always broken".into(),
        }
    );
    let log = lab.take_log();
    // Started once plus two restarts, then everything stopped in reverse order.
    assert_eq!(log.iter().filter(|e| *e == "start:crasher").count(), 3);
    assert_eq!(log[log.len() - 2..], strings(&["stop:c", "stop:a"]));
    assert!(handle.is_finished());
    assert_eq!(handle.shutdown().await, Err(err), "shutdown reports the failure");
}

#[tokio::test(start_paused = true)]
async fn restarts_spread_over_more_than_the_period_are_tolerated() {
    let lab = Lab::default();
    // Fails every 6 s; at most 1 restart per 5 s is allowed, so it never trips.
    let slow_crasher = {
        let lab = lab.clone();
        ChildSpec::new("slow", move |_ctx| {
            lab.record("start:slow");
            async {
                tokio::time::sleep(Duration::from_secs(6)).await;
                Err::<(), BoxError>("tired".into())
            }
        })
    };
    let handle = sup("patient")
        .intensity(1, Duration::from_secs(5))
        .child(slow_crasher)
        .start()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(!handle.is_finished());
    assert_eq!(handle.children()[0].restarts, 10);
    handle.shutdown().await.unwrap();

    // The same child failing every 2 s breaks the limit on its second failure.
    let fast_crasher = ChildSpec::new("fast", |_ctx| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Err::<(), BoxError>("tired".into())
    });
    let start = Instant::now();
    let handle = sup("strict")
        .intensity(1, Duration::from_secs(5))
        .child(fast_crasher)
        .start()
        .unwrap();
    assert!(matches!(
        handle.wait().await,
        Err(SupervisorError::IntensityExceeded { .. })
    ));
    assert_eq!(start.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn a_child_that_ignores_shutdown_is_aborted_after_its_timeout() {
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = dropped.clone();
    let stubborn = ChildSpec::new("stubborn", move |_ctx| {
        let guard = SetOnDrop(flag.clone());
        async move {
            let _guard = guard;
            // Never looks at the shutdown signal.
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    })
    .shutdown_timeout(Duration::from_secs(3));
    let lab = Lab::default();
    let handle = sup("sup")
        .child(lab.child("polite", Exit::Error))
        .child(stubborn)
        .start()
        .unwrap();
    settle().await;

    let start = Instant::now();
    handle.shutdown().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert!(dropped.load(Ordering::SeqCst), "the stubborn child was aborted");
    assert!(lab.take_log().contains(&"stop:polite".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn dynamic_children_can_be_added_and_terminated() {
    let lab = Lab::default();
    let handle = sup("dyn").start().unwrap();
    assert!(handle.children().is_empty());

    handle.start_child(lab.child("w1", Exit::Error)).await.unwrap();
    handle.start_child(lab.child("w2", Exit::Error)).await.unwrap();
    settle().await;
    assert_eq!(lab.take_log(), strings(&["start:w1", "start:w2"]));
    let ids: Vec<String> = handle.children().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["w1", "w2"]);

    assert!(matches!(
        handle.start_child(lab.child("w1", Exit::Error)).await,
        Err(SupervisorError::DuplicateChild { .. })
    ));

    // Dynamic children are supervised like any other.
    lab.crash("w2").await;
    assert_eq!(lab.take_log(), strings(&["start:w2"]));

    handle.terminate_child("w1").await.unwrap();
    assert_eq!(lab.take_log(), strings(&["stop:w1"]));
    let ids: Vec<String> = handle.children().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["w2"]);
    assert!(matches!(
        handle.terminate_child("w1").await,
        Err(SupervisorError::ChildNotFound { .. })
    ));

    handle.shutdown().await.unwrap();
    assert_eq!(lab.take_log(), strings(&["stop:w2"]));
    assert!(matches!(
        handle.start_child(lab.child("late", Exit::Error)).await,
        Err(SupervisorError::NotRunning { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn dynamic_children_need_one_for_one() {
    let lab = Lab::default();
    let handle = sup("static").strategy(Strategy::RestForOne).start().unwrap();
    assert!(matches!(
        handle.start_child(lab.child("x", Exit::Error)).await,
        Err(SupervisorError::DynamicChildrenUnsupported {
            strategy: Strategy::RestForOne,
            ..
        })
    ));
    handle.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn duplicate_static_ids_are_rejected() {
    let lab = Lab::default();
    let result = sup("dup")
        .child(lab.child("same", Exit::Error))
        .child(lab.child("same", Exit::Error))
        .start();
    assert!(matches!(
        result,
        Err(SupervisorError::DuplicateChild { child, .. }) if child == "same"
    ));
}

#[tokio::test(start_paused = true)]
async fn nested_supervisors_form_a_tree() {
    let lab = Lab::default();
    let inner = sup("inner")
        .strategy(Strategy::OneForAll)
        .intensity(1, Duration::from_secs(60))
        .child(lab.child("x", Exit::Error))
        .child(lab.child("y", Exit::Error));
    let outer = sup("outer")
        .intensity(5, Duration::from_secs(60))
        .child(inner.into_child_spec())
        .child(lab.child("z", Exit::Error))
        .start()
        .unwrap();
    settle().await;
    assert_eq!(lab.take_log(), strings(&["start:x", "start:y", "start:z"]));

    // The inner supervisor handles its own child's failure.
    lab.crash("x").await;
    assert_eq!(lab.take_log(), strings(&["stop:y", "start:x", "start:y"]));
    assert_eq!(restarts(&outer), [("inner".into(), 0), ("z".into(), 0)]);

    // A second failure exceeds the inner intensity: it stops its children and fails
    // upward, and the outer supervisor restarts it with fresh children.
    lab.crash("x").await;
    assert_eq!(lab.take_log(), strings(&["stop:y", "start:x", "start:y"]));
    assert_eq!(restarts(&outer), [("inner".into(), 1), ("z".into(), 0)]);

    // Shutting the tree down stops z, then the inner supervisor's children in reverse.
    outer.shutdown().await.unwrap();
    assert_eq!(lab.take_log(), strings(&["stop:z", "stop:y", "stop:x"]));
}

#[tokio::test(start_paused = true)]
async fn a_child_that_fails_at_once_is_restarted_after_a_growing_backoff_then_given_up() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let failing = {
        let starts = starts.clone();
        ChildSpec::new("bad-config", move |_ctx| {
            starts.lock().unwrap().push(t0.elapsed());
            async { Err::<(), BoxError>("invalid property".into()) }
        })
    };
    // The default policy: 100 ms, doubling, within the default intensity (3 in 5 s).
    let handle = Supervisor::new("backoff").child(failing).start().unwrap();
    let err = handle.wait().await.unwrap_err();
    assert!(matches!(err, SupervisorError::IntensityExceeded { .. }), "{err}");
    let starts = starts.lock().unwrap().clone();
    let ms: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [0, 100, 300, 700], "started, then restarted after 100, 200, 400 ms");
    assert!(t0.elapsed() < Duration::from_secs(1), "gave up in {:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_a_restart_backoff_cancels_the_restart() {
    let lab = Lab::default();
    let handle = Supervisor::new("sup")
        .restart_backoff(Backoff::constant(Duration::from_secs(60)))
        .child(lab.child("a", Exit::Error))
        .start()
        .unwrap();
    lab.crash("a").await;
    let started = Instant::now();
    handle.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(lab.take_log(), strings(&["start:a"]), "never restarted");
}
