//! Retrying async operations according to a [`Backoff`] policy.

use std::borrow::Cow;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use super::backoff::{Backoff, Delays};

/// Why [`retry`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The policy ran out of delays; `last` is the error from the final attempt.
    #[error("gave up after {attempts} attempts")]
    Exhausted {
        /// How many times the operation was called.
        attempts: u32,
        /// The error returned by the last attempt.
        #[source]
        last: E,
    },
    /// The `when` predicate rejected the error, so it was not retried.
    #[error("error is not retryable")]
    NotRetryable(#[source] E),
}

impl<E> RetryError<E> {
    /// The error from the last attempt, whatever the reason for giving up.
    pub fn into_inner(self) -> E {
        match self {
            Self::Exhausted { last, .. } | Self::NotRetryable(last) => last,
        }
    }

    /// The error from the last attempt, by reference.
    pub fn inner(&self) -> &E {
        match self {
            Self::Exhausted { last, .. } | Self::NotRetryable(last) => last,
        }
    }
}

type AlwaysRetry<E> = fn(&E) -> bool;
type NoNotify<E> = fn(&E, u32, Duration);

/// Starts building a retry loop around `operation`, paced by `policy`.
///
/// `operation` is called once, then again after each delay the policy yields, until it
/// succeeds, returns an error that the [`when`](Retry::when) predicate rejects, or the
/// policy is exhausted. A policy of [`take(n)`](Backoff::take) therefore allows at most
/// `n + 1` calls. Delays use [`tokio::time::sleep`], so tests with a paused clock run
/// instantly and deterministically.
///
/// The builder is awaited directly (it implements [`IntoFuture`]); the resulting
/// future is `Send` whenever the operation, its future and the hooks are.
///
/// # Example
///
/// ```rust
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use ferroway::resilience::{retry, Backoff, RetryError};
///
/// #[derive(Debug, thiserror::Error)]
/// enum FetchError {
///     #[error("temporarily unavailable")]
///     Unavailable,
///     #[error("forbidden")]
///     Forbidden,
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let calls = AtomicU32::new(0);
/// let result = retry(Backoff::constant(Duration::from_millis(10)).take(5), || async {
///     if calls.fetch_add(1, Ordering::SeqCst) < 2 {
///         Err(FetchError::Unavailable)
///     } else {
///         Ok("payload")
///     }
/// })
/// .name("fetch")
/// .when(|err| matches!(err, FetchError::Unavailable))
/// .notify(|err, attempt, delay| eprintln!("attempt {attempt} failed ({err}), waiting {delay:?}"))
/// .await;
///
/// assert_eq!(result.unwrap(), "payload");
/// assert_eq!(calls.load(Ordering::SeqCst), 3);
///
/// let denied = retry(Backoff::constant(Duration::from_millis(10)), || async {
///     Err::<(), _>(FetchError::Forbidden)
/// })
/// .when(|err| matches!(err, FetchError::Unavailable))
/// .await;
/// assert!(matches!(denied, Err(RetryError::NotRetryable(FetchError::Forbidden))));
/// # }
/// ```
pub fn retry<F, Fut, T, E>(policy: Backoff, operation: F) -> Retry<F, E, AlwaysRetry<E>, NoNotify<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    Retry {
        policy,
        operation,
        when: |_| true,
        notify: |_, _, _| {},
        name: None,
        error: PhantomData,
    }
}

/// A configured retry loop; see [`retry`].
#[must_use = "a retry does nothing until it is awaited"]
pub struct Retry<F, E, W, N> {
    policy: Backoff,
    operation: F,
    when: W,
    notify: N,
    name: Option<Arc<str>>,
    // Ties the hooks' argument type to the operation's error so closures infer it.
    error: PhantomData<fn(&E)>,
}

impl<F, E, W, N> fmt::Debug for Retry<F, E, W, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("policy", &self.policy)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<F, E, W, N> Retry<F, E, W, N> {
    /// Names the operation in logs and in the `operation` metric label.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(Arc::from(name.into().as_ref()));
        self
    }

    /// Retries only errors for which `predicate` returns `true`; any other error ends the
    /// loop at once with [`RetryError::NotRetryable`].
    pub fn when<W2>(self, predicate: W2) -> Retry<F, E, W2, N>
    where
        W2: FnMut(&E) -> bool,
    {
        Retry {
            policy: self.policy,
            operation: self.operation,
            when: predicate,
            notify: self.notify,
            name: self.name,
            error: PhantomData,
        }
    }

    /// Calls `hook(error, attempt, delay)` before each wait, where `attempt` is the
    /// 1-based number of the attempt that just failed and `delay` the wait before the
    /// next one.
    pub fn notify<N2>(self, hook: N2) -> Retry<F, E, W, N2>
    where
        N2: FnMut(&E, u32, Duration),
    {
        Retry {
            policy: self.policy,
            operation: self.operation,
            when: self.when,
            notify: hook,
            name: self.name,
            error: PhantomData,
        }
    }
}

impl<F, W, N, Fut, T, E> IntoFuture for Retry<F, E, W, N>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    W: FnMut(&E) -> bool,
    N: FnMut(&E, u32, Duration),
    E: fmt::Display,
{
    type Output = Result<T, RetryError<E>>;
    type IntoFuture = RetryFuture<F, W, N, Fut>;

    fn into_future(self) -> Self::IntoFuture {
        let name: Arc<str> = self.name.unwrap_or_else(|| Arc::from("unnamed"));
        RetryFuture {
            attempts_total: metrics::counter!(
                "ferroway_retry_attempts_total",
                "operation" => name.clone()
            ),
            delays: self.policy.delays(),
            operation: self.operation,
            when: self.when,
            notify: self.notify,
            name,
            attempt: 0,
            state: State::Idle,
        }
    }
}

enum State<Fut> {
    Idle,
    Running(Pin<Box<Fut>>),
    Sleeping(Pin<Box<tokio::time::Sleep>>),
    Done,
}

/// The future driving a [`Retry`]; obtained by awaiting the builder.
#[must_use = "futures do nothing unless polled"]
pub struct RetryFuture<F, W, N, Fut> {
    operation: F,
    when: W,
    notify: N,
    name: Arc<str>,
    delays: Delays,
    attempt: u32,
    attempts_total: metrics::Counter,
    state: State<Fut>,
}

// The closures are only ever used through `&mut`, never pinned, and the operation's
// future and the sleep are boxed, so nothing here relies on a stable address.
impl<F, W, N, Fut> Unpin for RetryFuture<F, W, N, Fut> {}

impl<F, W, N, Fut> fmt::Debug for RetryFuture<F, W, N, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFuture")
            .field("name", &self.name)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<F, W, N, Fut, T, E> Future for RetryFuture<F, W, N, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    W: FnMut(&E) -> bool,
    N: FnMut(&E, u32, Duration),
    E: fmt::Display,
{
    type Output = Result<T, RetryError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let name = &this.name;
        loop {
            match &mut this.state {
                State::Idle => {
                    this.attempt = this.attempt.saturating_add(1);
                    this.attempts_total.increment(1);
                    tracing::trace!(operation = %name, attempt = this.attempt, "attempting");
                    this.state = State::Running(Box::pin((this.operation)()));
                }
                State::Running(fut) => {
                    let err = match ready!(fut.as_mut().poll(cx)) {
                        Ok(value) => {
                            this.state = State::Done;
                            if this.attempt > 1 {
                                tracing::debug!(
                                    operation = %name,
                                    attempt = this.attempt,
                                    "succeeded after retrying"
                                );
                            }
                            return Poll::Ready(Ok(value));
                        }
                        Err(err) => err,
                    };
                    let attempt = this.attempt;
                    if !(this.when)(&err) {
                        this.state = State::Done;
                        tracing::debug!(operation = %name, attempt, error = %err, "error is not retryable");
                        return Poll::Ready(Err(RetryError::NotRetryable(err)));
                    }
                    let Some(delay) = this.delays.next() else {
                        this.state = State::Done;
                        metrics::counter!("ferroway_retry_exhausted_total", "operation" => name.clone()).increment(1);
                        tracing::warn!(operation = %name, attempts = attempt, error = %err, "retries exhausted");
                        return Poll::Ready(Err(RetryError::Exhausted {
                            attempts: attempt,
                            last: err,
                        }));
                    };
                    tracing::warn!(operation = %name, attempt, error = %err, ?delay, "attempt failed, retrying");
                    (this.notify)(&err, attempt, delay);
                    this.state = State::Sleeping(Box::pin(tokio::time::sleep(delay)));
                }
                State::Sleeping(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state = State::Idle;
                }
                State::Done => panic!("RetryFuture polled after completion"),
            }
        }
    }
}
