//! Backoff policies: exact sequences, modifiers and jitter bounds.

use std::time::Duration;

use ferroway::resilience::{Backoff, Jitter};
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn millis(policy: &Backoff) -> Vec<u128> {
    policy.delays().map(|d| d.as_millis()).collect()
}

#[test]
fn constant_repeats_the_same_delay() {
    assert_eq!(millis(&Backoff::constant(ms(250)).take(4)), [250, 250, 250, 250]);
}

#[test]
fn linear_grows_by_its_initial_delay_or_an_explicit_step() {
    assert_eq!(millis(&Backoff::linear(ms(100)).take(4)), [100, 200, 300, 400]);
    assert_eq!(
        millis(&Backoff::linear(ms(100)).step(ms(50)).take(4)),
        [100, 150, 200, 250]
    );
}

#[test]
fn exponential_multiplies_by_its_factor() {
    assert_eq!(
        millis(&Backoff::exponential(ms(100)).take(5)),
        [100, 200, 400, 800, 1600]
    );
    let nanos: Vec<u128> = Backoff::exponential(ms(100))
        .factor(1.5)
        .take(4)
        .delays()
        .map(|d| d.as_nanos())
        .collect();
    assert_eq!(nanos, [100_000_000, 150_000_000, 225_000_000, 337_500_000]);
    assert_eq!(
        millis(&Backoff::exponential(ms(10)).factor(3.0).take(4)),
        [10, 30, 90, 270]
    );
}

#[test]
fn fibonacci_follows_the_sequence() {
    assert_eq!(
        millis(&Backoff::fibonacci(ms(10)).take(8)),
        [10, 10, 20, 30, 50, 80, 130, 210]
    );
}

#[test]
fn cap_limits_every_delay_and_order_of_modifiers_does_not_matter() {
    let a = Backoff::exponential(ms(100)).cap(ms(500)).take(6);
    let b = Backoff::exponential(ms(100)).take(6).cap(ms(500));
    assert_eq!(millis(&a), [100, 200, 400, 500, 500, 500]);
    assert_eq!(millis(&a), millis(&b));
    assert_eq!(
        millis(&Backoff::fibonacci(ms(100)).cap(ms(250)).take(6)),
        [100, 100, 200, 250, 250, 250]
    );
}

#[test]
fn take_limits_the_number_of_delays() {
    assert_eq!(Backoff::constant(ms(1)).take(0).delays().count(), 0);
    assert_eq!(Backoff::constant(ms(1)).take(7).delays().count(), 7);
    let mut delays = Backoff::constant(ms(1)).take(1).delays();
    assert_eq!(delays.next(), Some(ms(1)));
    assert_eq!(delays.next(), None);
    assert_eq!(delays.next(), None, "fused");
}

#[test]
fn max_elapsed_trims_the_last_delay_to_the_budget() {
    assert_eq!(
        millis(&Backoff::exponential(ms(100)).max_elapsed(Duration::from_secs(1))),
        [100, 200, 400, 300]
    );
    // A budget that the delays hit exactly ends there, without a zero delay.
    assert_eq!(
        millis(&Backoff::constant(ms(250)).max_elapsed(Duration::from_secs(1))),
        [250, 250, 250, 250]
    );
    // Combined with take: whichever ends first wins.
    assert_eq!(
        millis(&Backoff::constant(ms(250)).max_elapsed(Duration::from_secs(1)).take(2)),
        [250, 250]
    );
}

#[test]
fn growth_saturates_instead_of_overflowing() {
    let last = Backoff::exponential(Duration::from_secs(1))
        .factor(1000.0)
        .take(200)
        .delays()
        .last()
        .unwrap();
    assert_eq!(last, Duration::MAX);
    let capped = Backoff::exponential(Duration::from_secs(1))
        .factor(1000.0)
        .cap(Duration::from_secs(60))
        .take(200)
        .delays()
        .last()
        .unwrap();
    assert_eq!(capped, Duration::from_secs(60));
    assert_eq!(
        Backoff::fibonacci(Duration::from_secs(u64::MAX / 2))
            .take(10)
            .delays()
            .last(),
        Some(Duration::MAX)
    );
}

#[test]
#[should_panic(expected = "factor")]
fn a_shrinking_factor_is_rejected() {
    let _ = Backoff::exponential(ms(100)).factor(0.5);
}

#[test]
fn policies_are_reusable_templates() {
    let policy = Backoff::exponential(ms(10)).take(3);
    let mut running = policy.delays();
    running.next();
    running.next();
    // Consuming one sequence does not advance the template or other sequences.
    assert_eq!(millis(&policy), [10, 20, 40]);
    assert_eq!(running.yielded(), 2);
    assert_eq!(running.next(), Some(ms(40)));
    // IntoIterator, both by value and by reference.
    let by_ref: Vec<_> = (&policy).into_iter().collect();
    let by_value: Vec<_> = policy.clone().into_iter().collect();
    assert_eq!(by_ref, by_value);
}

#[test]
fn policies_are_clone_send_sync() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Backoff>();
    assert_traits::<ferroway::resilience::Delays>();
    assert_traits::<ferroway::resilience::StatefulBackoff>();
}

#[test]
fn seeded_jitter_is_reproducible_and_seed_dependent() {
    let policy = Backoff::exponential(ms(100)).jitter(Jitter::Full).take(20);
    let a: Vec<_> = policy.clone().seed(42).delays().collect();
    let b: Vec<_> = policy.clone().seed(42).delays().collect();
    let c: Vec<_> = policy.seed(43).delays().collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

const SAMPLES: u64 = 500;

#[test]
fn full_jitter_stays_within_zero_and_the_computed_delay() {
    let plain = Backoff::exponential(ms(10)).cap(Duration::from_secs(1)).take(12);
    let mut below_half = 0;
    for seed in 0..SAMPLES {
        let jittered = plain.clone().jitter(Jitter::Full).seed(seed);
        for (d, j) in plain.delays().zip(jittered.delays()) {
            assert!(j <= d, "seed {seed}: {j:?} > {d:?}");
            if j < d / 2 {
                below_half += 1;
            }
        }
    }
    // Uniform over [0, d]: about half the samples fall below d/2.
    let total = SAMPLES * 12;
    assert!(
        below_half > total / 3 && below_half < total * 2 / 3,
        "{below_half}/{total}"
    );
}

#[test]
fn equal_jitter_keeps_at_least_half_of_the_delay() {
    let plain = Backoff::exponential(ms(10)).cap(Duration::from_secs(1)).take(12);
    let mut below_three_quarters = 0;
    for seed in 0..SAMPLES {
        let jittered = plain.clone().jitter(Jitter::Equal).seed(seed);
        for (d, j) in plain.delays().zip(jittered.delays()) {
            assert!(j >= d / 2 && j <= d, "seed {seed}: {j:?} outside [{:?}, {d:?}]", d / 2);
            if j < d * 3 / 4 {
                below_three_quarters += 1;
            }
        }
    }
    let total = SAMPLES * 12;
    assert!(
        below_three_quarters > total / 3 && below_three_quarters < total * 2 / 3,
        "{below_three_quarters}/{total}"
    );
}

#[test]
fn decorrelated_jitter_stays_between_base_and_three_times_the_previous_delay() {
    let base = ms(10);
    let cap = ms(2_000);
    let mut reached_cap_region = false;
    for seed in 0..SAMPLES {
        let policy = Backoff::exponential(base)
            .cap(cap)
            .jitter(Jitter::Decorrelated)
            .seed(seed)
            .take(30);
        let mut prev = base;
        for d in policy.delays() {
            let upper = cap.min(prev * 3);
            assert!(
                d >= base && d <= upper,
                "seed {seed}: {d:?} outside [{base:?}, {upper:?}]"
            );
            if d > cap / 2 {
                reached_cap_region = true;
            }
            prev = d;
        }
    }
    assert!(reached_cap_region, "decorrelated jitter never grew");
}

#[test]
fn jitter_is_applied_after_the_cap() {
    for seed in 0..SAMPLES {
        let policy = Backoff::constant(Duration::from_secs(10))
            .cap(ms(100))
            .jitter(Jitter::Full)
            .seed(seed)
            .take(5);
        assert!(policy.delays().all(|d| d <= ms(100)));
    }
}

#[test]
fn stateful_backoff_tracks_failures_and_resets_on_success() {
    let mut backoff = Backoff::fibonacci(ms(100)).take(4).stateful();
    assert_eq!(backoff.attempts(), 0);
    let delays: Vec<_> = std::iter::from_fn(|| backoff.fail()).collect();
    assert_eq!(delays, [ms(100), ms(100), ms(200), ms(300)]);
    assert_eq!(backoff.attempts(), 5, "the exhausting failure counts too");
    assert_eq!(backoff.fail(), None);

    backoff.succeed();
    assert_eq!(backoff.attempts(), 0);
    assert_eq!(backoff.fail(), Some(ms(100)));
    assert_eq!(backoff.fail(), Some(ms(100)));
    assert_eq!(backoff.fail(), Some(ms(200)));
    backoff.succeed();
    assert_eq!(backoff.fail(), Some(ms(100)));
    assert_eq!(backoff.policy(), &Backoff::fibonacci(ms(100)).take(4));
}

fn any_policy() -> impl Strategy<Value = Backoff> {
    let base = (1u64..1_000).prop_map(ms);
    let kind = prop_oneof![
        base.clone().prop_map(Backoff::constant),
        base.clone().prop_map(Backoff::linear),
        (base.clone(), 1.0f64..4.0).prop_map(|(b, f)| Backoff::exponential(b).factor(f)),
        base.prop_map(Backoff::fibonacci),
    ];
    let jitter = prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ];
    (
        kind,
        proptest::option::of((1u64..5_000).prop_map(ms)),
        proptest::option::of(0usize..40),
        proptest::option::of((1u64..20_000).prop_map(ms)),
        jitter,
        any::<u64>(),
    )
        .prop_map(|(policy, cap, take, budget, jitter, seed)| {
            let mut policy = policy.jitter(jitter).seed(seed);
            if let Some(cap) = cap {
                policy = policy.cap(cap);
            }
            if let Some(n) = take {
                policy = policy.take(n);
            }
            if let Some(budget) = budget {
                policy = policy.max_elapsed(budget);
            }
            policy
        })
}

proptest! {
    #[test]
    fn every_policy_respects_cap_take_and_budget(
        policy in any_policy(),
        cap in proptest::option::of((1u64..5_000).prop_map(ms)),
        take in 0usize..40,
        budget in (1u64..20_000).prop_map(ms),
    ) {
        let mut policy = policy.take(take).max_elapsed(budget);
        if let Some(cap) = cap {
            policy = policy.cap(cap);
        }
        let delays: Vec<Duration> = policy.delays().collect();
        prop_assert!(delays.len() <= take);
        prop_assert!(delays.iter().sum::<Duration>() <= budget);
        if let Some(cap) = cap {
            prop_assert!(delays.iter().all(|d| *d <= cap));
        }
        // Deterministic for a seeded policy.
        prop_assert_eq!(delays, policy.delays().collect::<Vec<_>>());
    }
}
