//! Resilience primitives for talking to unreliable things: backoff policies, retries,
//! circuit breakers, task supervision and a self-healing connection owner.
//!
//! | piece | for |
//! | --- | --- |
//! | [`Backoff`] | describing a delay sequence (constant, linear, exponential, Fibonacci; cap, take, budget, jitter) |
//! | [`retry()`] | re-running an async operation until it succeeds or the policy gives up |
//! | [`CircuitBreaker`] | failing fast while a dependency is down, probing it as it recovers |
//! | [`Supervisor`] | restarting crashed tasks, OTP style, in supervision trees |
//! | [`ConnectionManager`] | owning one broker connection and reconnecting it with backoff |
//! | [`Reach`] | whether a source ever reached its server, and the connect timeout until it does |
//!
//! Everything timed uses Tokio's clock (`tokio::time::{sleep, Instant}`), so tests run
//! under a paused clock deterministically and instantly.
//!
//! # Metrics
//!
//! Emitted through the [`metrics`] facade; they cost nothing unless a recorder is
//! installed.
//!
//! | name | kind | labels | meaning |
//! | --- | --- | --- | --- |
//! | `ferroway_retry_attempts_total` | counter | `operation` | every call of a retried operation, first attempt included |
//! | `ferroway_retry_exhausted_total` | counter | `operation` | retry loops that gave up because the policy ran out |
//! | `ferroway_circuit_breaker_state` | gauge | `breaker` | 0 = closed, 1 = open, 2 = half-open |
//! | `ferroway_circuit_breaker_transitions_total` | counter | `breaker`, `from`, `to` | state changes (`closed`, `open`, `half_open`) |
//! | `ferroway_circuit_breaker_rejected_total` | counter | `breaker` | calls refused while open or while half-open trials are taken |
//! | `ferroway_supervisor_restarts_total` | counter | `supervisor`, `child` | child restarts (each child restarted by a one-for-all or rest-for-one group counts) |
//! | `ferroway_connection_state` | gauge | `connection` | 0 = connecting, 1 = connected, 2 = backing off, 3 = closed |
//! | `ferroway_connection_attempts_total` | counter | `connection`, `outcome` | connection attempts; `outcome` is `success` or `failure` |
//!
//! # Example
//!
//! A retried call guarded by a circuit breaker:
//!
//! ```rust
//! use std::time::Duration;
//! use ferroway::resilience::{retry, Backoff, BreakerError, CircuitBreaker, Jitter};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = CircuitBreaker::builder("search").consecutive_failures(3).build();
//! let policy = Backoff::exponential(Duration::from_millis(50))
//!     .cap(Duration::from_secs(1))
//!     .jitter(Jitter::Equal)
//!     .take(4);
//!
//! let answer = retry(policy, || breaker.call(|| async { Ok::<_, std::io::Error>(42) }))
//!     // Retrying against an open breaker is pointless: give up at once.
//!     .when(|err| !matches!(err, BreakerError::Open { .. }))
//!     .name("search")
//!     .await
//!     .expect("healthy dependency");
//! assert_eq!(answer, 42);
//! # }
//! ```

pub mod backoff;
pub mod circuit_breaker;
pub mod connection;
mod reach;
pub mod retry;
pub mod supervisor;

pub use backoff::{Backoff, Delays, Jitter, StatefulBackoff};
pub use circuit_breaker::{
    BreakerError, CircuitBreaker, CircuitBreakerBuilder, CircuitOpen, CircuitState, FailureRate, Permit,
};
pub use connection::{
    Connection, ConnectionError, ConnectionManager, ConnectionManagerBuilder, ConnectionState, Connector,
};
pub use reach::Reach;
pub use retry::{Retry, RetryError, RetryFuture, retry};
pub use supervisor::{
    ChildContext, ChildInfo, ChildSpec, ChildState, Restart, ShutdownSignal, Strategy, Supervisor, SupervisorError,
    SupervisorHandle,
};

pub use crate::error::BoxError;
