//! A connection owner: keeps one connection to a broker or server alive, reconnecting
//! with backoff, and hands clones of it to callers.
//!
//! One background task owns the connect loop; callers never connect themselves, so a
//! hundred tasks noticing the same outage cause one reconnect, not a hundred.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::backoff::Backoff;

/// Knows how to open a connection. Implement it for your client's configuration.
///
/// The connection type is cloned out to every caller, so it is usually a cheap handle
/// such as an `Arc` around the real client.
pub trait Connector: Send + Sync + 'static {
    /// The connection handed to callers.
    type Conn: Clone + Send + Sync + 'static;
    /// Why a connection attempt failed; logged on every failed attempt.
    type Error: fmt::Display + Send + 'static;

    /// Makes one connection attempt.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, Self::Error>> + Send;
}

/// Where a [`ConnectionManager`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// A connection attempt is in flight; `attempt` counts attempts since the last
    /// connection was lost (or since start).
    Connecting {
        /// 1-based attempt number.
        attempt: u32,
    },
    /// A connection is available.
    Connected,
    /// Attempt `attempt` failed; the next one starts in `retry_in`.
    BackingOff {
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// The manager stopped: closed by the user, dropped, or the backoff policy gave up.
    Closed,
}

impl ConnectionState {
    /// `true` for the states between losing a connection and getting a new one.
    pub fn is_reconnecting(&self) -> bool {
        matches!(self, Self::Connecting { .. } | Self::BackingOff { .. })
    }

    fn gauge_value(&self) -> f64 {
        match self {
            Self::Connecting { .. } => 0.0,
            Self::Connected => 1.0,
            Self::BackingOff { .. } => 2.0,
            Self::Closed => 3.0,
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connecting { attempt } => write!(f, "connecting (attempt {attempt})"),
            Self::Connected => f.write_str("connected"),
            Self::BackingOff { attempt, retry_in } => {
                write!(f, "backing off after attempt {attempt}, retry in {retry_in:?}")
            }
            Self::Closed => f.write_str("closed"),
        }
    }
}

/// Why no connection could be handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// [`ConnectionManager::get`] waited this long without a connection appearing.
    #[error("no connection within {waited:?}")]
    Timeout {
        /// How long the caller waited.
        waited: Duration,
    },
    /// [`ConnectionManager::try_get`] found no connection.
    #[error("not connected: {state}")]
    NotConnected {
        /// The manager's state at the time.
        state: ConnectionState,
    },
    /// The manager is closed and will not connect again.
    #[error("connection manager is closed")]
    Closed,
}

/// A connection handed out by a [`ConnectionManager`], tagged with its generation so
/// that reporting it broken cannot tear down a newer connection.
#[derive(Debug, Clone)]
pub struct Connection<T> {
    conn: T,
    generation: u64,
}

impl<T> Connection<T> {
    /// Which connection this is: increases by one with every successful connect.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Unwraps the connection (its generation is lost, so keep the wrapper if you may
    /// need [`ConnectionManager::report_broken`]).
    pub fn into_inner(self) -> T {
        self.conn
    }
}

impl<T> Deref for Connection<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.conn
    }
}

/// Configures a [`ConnectionManager`]; created by [`ConnectionManager::builder`].
#[derive(Debug)]
pub struct ConnectionManagerBuilder<C> {
    connector: C,
    name: Arc<str>,
    backoff: Backoff,
    get_timeout: Duration,
    connect_timeout: Option<Duration>,
}

impl<C: Connector> ConnectionManagerBuilder<C> {
    /// Names the connection in logs and metric labels (default `"connection"`).
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        self.name = Arc::from(name.as_ref());
        self
    }

    /// Paces reconnection attempts (default: exponential from 100 ms, capped at 30 s,
    /// full jitter, never giving up). A policy that runs out closes the manager.
    ///
    /// The first attempt after losing a connection is immediate; the policy applies to
    /// failed attempts, and a successful connect resets it.
    pub fn backoff(mut self, policy: Backoff) -> Self {
        self.backoff = policy;
        self
    }

    /// How long [`ConnectionManager::get`] waits for a connection (default 30 s).
    pub fn get_timeout(mut self, timeout: Duration) -> Self {
        self.get_timeout = timeout;
        self
    }

    /// Abandons a connection attempt that takes longer than `timeout` (counted as a
    /// failed attempt). Off by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Spawns the connection task and starts connecting.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(self) -> ConnectionManager<C> {
        let (current, _) = watch::channel(Current {
            conn: None,
            generation: 0,
            closed: false,
        });
        let (state, _) = watch::channel(ConnectionState::Connecting { attempt: 1 });
        let shared = Arc::new(Shared {
            name: self.name,
            get_timeout: self.get_timeout,
            current,
            state,
        });
        let driver = Driver {
            connector: self.connector,
            shared: shared.clone(),
            backoff: self.backoff,
            connect_timeout: self.connect_timeout,
        };
        tokio::spawn(driver.run());
        ConnectionManager {
            owner: Arc::new(Owner { shared }),
        }
    }
}

/// Owns one long-lived connection and reconnects it with backoff.
///
/// Clones share the same connection. When the last clone is dropped the manager closes.
///
/// # Example
///
/// ```rust
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use ferroway::resilience::{Backoff, ConnectionManager, ConnectionState, Connector};
///
/// /// Fails twice, then connects.
/// struct Flaky(AtomicU32);
///
/// impl Connector for Flaky {
///     type Conn = Arc<String>;
///     type Error = std::io::Error;
///
///     async fn connect(&self) -> Result<Arc<String>, std::io::Error> {
///         match self.0.fetch_add(1, Ordering::SeqCst) {
///             0 | 1 => Err(std::io::ErrorKind::ConnectionRefused.into()),
///             n => Ok(Arc::new(format!("session {n}"))),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let manager = ConnectionManager::builder(Flaky(AtomicU32::new(0)))
///     .name("broker")
///     .backoff(Backoff::exponential(Duration::from_millis(100)))
///     .get_timeout(Duration::from_secs(5))
///     .start();
///
/// let conn = manager.get().await.expect("connects on the third attempt");
/// assert_eq!(conn.as_str(), "session 2");
/// assert_eq!(manager.state(), ConnectionState::Connected);
///
/// // The caller saw the connection fail: ask for a new one.
/// assert!(manager.report_broken(&conn));
/// let fresh = manager.get().await.unwrap();
/// assert_eq!(fresh.generation(), conn.generation() + 1);
///
/// manager.close();
/// assert!(manager.try_get().is_err());
/// # }
/// ```
pub struct ConnectionManager<C: Connector> {
    owner: Arc<Owner<C::Conn>>,
}

impl<C: Connector> Clone for ConnectionManager<C> {
    fn clone(&self) -> Self {
        Self {
            owner: self.owner.clone(),
        }
    }
}

impl<C: Connector> fmt::Debug for ConnectionManager<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("name", &self.shared().name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<C: Connector> ConnectionManager<C> {
    /// Starts configuring a manager around `connector`.
    pub fn builder(connector: C) -> ConnectionManagerBuilder<C> {
        ConnectionManagerBuilder {
            connector,
            name: Arc::from("connection"),
            backoff: Backoff::exponential(Duration::from_millis(100))
                .cap(Duration::from_secs(30))
                .jitter(super::Jitter::Full),
            get_timeout: Duration::from_secs(30),
            connect_timeout: None,
        }
    }

    fn shared(&self) -> &Shared<C::Conn> {
        &self.owner.shared
    }

    /// Waits up to the configured timeout for a connection.
    pub async fn get(&self) -> Result<Connection<C::Conn>, ConnectionError> {
        self.get_within(self.shared().get_timeout).await
    }

    /// Waits up to `timeout` for a connection.
    pub async fn get_within(&self, timeout: Duration) -> Result<Connection<C::Conn>, ConnectionError> {
        let mut current = self.shared().current.subscribe();
        let ready = current.wait_for(|c| c.conn.is_some() || c.closed);
        match tokio::time::timeout(timeout, ready).await {
            Err(_) => Err(ConnectionError::Timeout { waited: timeout }),
            Ok(Err(_)) => Err(ConnectionError::Closed),
            Ok(Ok(current)) => current.connection().ok_or(ConnectionError::Closed),
        }
    }

    /// Returns the current connection without waiting.
    pub fn try_get(&self) -> Result<Connection<C::Conn>, ConnectionError> {
        let current = self.shared().current.borrow();
        if let Some(conn) = current.connection() {
            return Ok(conn);
        }
        if current.closed {
            return Err(ConnectionError::Closed);
        }
        Err(ConnectionError::NotConnected {
            state: *self.shared().state.borrow(),
        })
    }

    /// Reports that `conn` no longer works. If it is still the current connection it is
    /// dropped and a reconnect starts; returns whether that happened (`false` when some
    /// other caller already reported it and a newer connection exists or is coming).
    pub fn report_broken(&self, conn: &Connection<C::Conn>) -> bool {
        self.drop_current(|current| current.generation == conn.generation)
    }

    /// Drops the current connection, whatever it is, and reconnects. Returns whether
    /// there was one.
    pub fn invalidate(&self) -> bool {
        self.drop_current(|_| true)
    }

    fn drop_current(&self, matches: impl FnOnce(&Current<C::Conn>) -> bool) -> bool {
        let shared = self.shared();
        let dropped = shared.current.send_if_modified(|current| {
            if current.conn.is_some() && matches(current) {
                current.conn = None;
                true
            } else {
                false
            }
        });
        if dropped {
            tracing::info!(connection = %shared.name, "connection reported broken; reconnecting");
        }
        dropped
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        *self.shared().state.borrow()
    }

    /// Observes state changes. Like any watch channel it keeps only the latest value, so
    /// a slow observer may skip intermediate states.
    pub fn subscribe(&self) -> watch::Receiver<ConnectionState> {
        self.shared().state.subscribe()
    }

    /// Closes the manager: drops the connection, stops reconnecting, and makes pending
    /// and future `get` calls fail with [`ConnectionError::Closed`].
    pub fn close(&self) {
        self.shared().close();
    }
}

struct Current<T> {
    conn: Option<T>,
    generation: u64,
    closed: bool,
}

impl<T: Clone> Current<T> {
    fn connection(&self) -> Option<Connection<T>> {
        self.conn.as_ref().map(|conn| Connection {
            conn: conn.clone(),
            generation: self.generation,
        })
    }
}

struct Shared<T> {
    name: Arc<str>,
    get_timeout: Duration,
    current: watch::Sender<Current<T>>,
    state: watch::Sender<ConnectionState>,
}

impl<T> Shared<T> {
    fn set_state(&self, state: ConnectionState) {
        self.state.send_replace(state);
        metrics::gauge!("ferroway_connection_state", "connection" => self.name.clone()).set(state.gauge_value());
    }

    fn close(&self) {
        self.current.send_modify(|current| {
            current.closed = true;
            current.conn = None;
        });
        self.set_state(ConnectionState::Closed);
    }
}

/// The user-facing side; closing on drop stops the driver, which holds only `Shared`.
struct Owner<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Drop for Owner<T> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

struct Driver<C: Connector> {
    connector: C,
    shared: Arc<Shared<C::Conn>>,
    backoff: Backoff,
    connect_timeout: Option<Duration>,
}

impl<C: Connector> Driver<C> {
    async fn run(self) {
        let shared = &self.shared;
        let name = &shared.name;
        let mut current = shared.current.subscribe();
        let mut backoff = self.backoff.stateful();
        let mut attempt: u32 = 0;
        let failures_log = crate::telemetry::LogThrottle::new(Duration::from_secs(30));
        loop {
            if current.borrow().closed {
                break;
            }
            attempt = attempt.saturating_add(1);
            shared.set_state(ConnectionState::Connecting { attempt });
            let result = tokio::select! {
                biased;
                () = until_closed(&mut current) => break,
                result = self.attempt() => result,
            };
            match result {
                Ok(conn) => {
                    metrics::counter!(
                        "ferroway_connection_attempts_total",
                        "connection" => name.clone(),
                        "outcome" => "success"
                    )
                    .increment(1);
                    let mut generation = 0;
                    let accepted = shared.current.send_if_modified(|c| {
                        if c.closed {
                            return false;
                        }
                        c.generation += 1;
                        c.conn = Some(conn);
                        generation = c.generation;
                        true
                    });
                    if !accepted {
                        break;
                    }
                    backoff.succeed();
                    failures_log.reset();
                    tracing::info!(connection = %name, attempt, generation, "connected");
                    attempt = 0;
                    shared.set_state(ConnectionState::Connected);
                    let lost = current.wait_for(|c| c.conn.is_none() || c.closed).await;
                    if lost.map_or(true, |c| c.closed) {
                        break;
                    }
                }
                Err(reason) => {
                    metrics::counter!(
                        "ferroway_connection_attempts_total",
                        "connection" => name.clone(),
                        "outcome" => "failure"
                    )
                    .increment(1);
                    let Some(delay) = backoff.fail() else {
                        tracing::error!(connection = %name, attempt, %reason, "connect failed; backoff exhausted, giving up");
                        break;
                    };
                    // A long outage fails every few seconds: one line per 30 s, with a count.
                    if let Some(suppressed) = failures_log.allow() {
                        tracing::warn!(connection = %name, attempt, %reason, retry_in = ?delay, suppressed, "connect failed");
                    }
                    shared.set_state(ConnectionState::BackingOff {
                        attempt,
                        retry_in: delay,
                    });
                    tokio::select! {
                        biased;
                        () = until_closed(&mut current) => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        shared.close();
        tracing::info!(connection = %name, "connection manager closed");
    }

    async fn attempt(&self) -> Result<C::Conn, String> {
        let connect = self.connector.connect();
        match self.connect_timeout {
            None => connect.await.map_err(|e| e.to_string()),
            Some(limit) => match tokio::time::timeout(limit, connect).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("timed out after {limit:?}")),
            },
        }
    }
}

async fn until_closed<T>(current: &mut watch::Receiver<Current<T>>) {
    // The driver keeps the sender alive through `Shared`, so this only ends on close.
    let _ = current.wait_for(|c| c.closed).await;
}
