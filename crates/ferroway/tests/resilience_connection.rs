//! Connection manager: a real TCP server that goes away and comes back, plus scripted
//! connectors for timeouts, exhaustion and closing.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::resilience::{Backoff, Connection, ConnectionError, ConnectionManager, ConnectionState, Connector};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits in small virtual-time steps until `cond` holds.
///
/// Polling in 10 ms steps (rather than one long timeout) keeps a timer due soon at all
/// times, so when the paused clock auto-advances while real socket I/O is still in
/// flight, it only skips ahead by a harmless 10 ms.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(ms(10)).await;
    }
    panic!("gave up waiting for {what}");
}

struct Tcp {
    addr: std::net::SocketAddr,
    attempts: Arc<AtomicU32>,
}

impl Connector for Tcp {
    type Conn = Arc<TcpStream>;
    type Error = std::io::Error;

    async fn connect(&self) -> std::io::Result<Arc<TcpStream>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        TcpStream::connect(self.addr).await.map(Arc::new)
    }
}

/// Accepts connections and holds on to them; aborting the task drops the listener and
/// every accepted socket, which is what a crashing broker looks like to a client.
fn serve(listener: TcpListener, accepted: Arc<AtomicU32>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            sockets.push(socket);
        }
    })
}

/// Reads until the peer closes (or resets) the connection.
async fn wait_for_eof(conn: &Connection<Arc<TcpStream>>) {
    let mut buf = [0u8; 64];
    loop {
        conn.readable().await.unwrap();
        match conn.try_read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

fn record_states(manager: &ConnectionManager<Tcp>) -> Arc<Mutex<Vec<ConnectionState>>> {
    let seen = Arc::new(Mutex::new(vec![manager.state()]));
    let mut rx = manager.subscribe();
    let sink = seen.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let state = *rx.borrow_and_update();
            sink.lock().unwrap().push(state);
        }
    });
    seen
}

#[tokio::test(start_paused = true)]
async fn reconnects_to_a_real_tcp_server_that_goes_away_and_comes_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let server = serve(listener, accepted.clone());

    let policy = Backoff::exponential(ms(100)).cap(Duration::from_secs(2));
    let attempts = Arc::new(AtomicU32::new(0));
    let manager = ConnectionManager::builder(Tcp {
        addr,
        attempts: attempts.clone(),
    })
    .name("broker")
    .backoff(policy.clone())
    .get_timeout(Duration::from_secs(60))
    .start();
    let states = record_states(&manager);

    eventually("first connection", || manager.try_get().is_ok()).await;
    let first = manager.get().await.unwrap();
    assert_eq!(first.generation(), 1);
    assert_eq!(manager.state(), ConnectionState::Connected);
    eventually("server accepted", || accepted.load(Ordering::SeqCst) == 1).await;

    // The broker dies: listener and accepted sockets are dropped.
    server.abort();
    assert!(server.await.unwrap_err().is_cancelled());
    wait_for_eof(&first).await;
    assert!(manager.report_broken(&first));
    assert!(!manager.report_broken(&first), "only the first report counts");

    // While it is down: fast failure for try_get, waiting for get.
    eventually(
        "several failed attempts",
        || matches!(manager.state(), ConnectionState::BackingOff { attempt, .. } if attempt >= 3),
    )
    .await;
    assert!(matches!(
        manager.try_get(),
        Err(ConnectionError::NotConnected { state }) if state.is_reconnecting()
    ));
    let waiter = tokio::spawn({
        let manager = manager.clone();
        async move { manager.get_within(Duration::from_secs(3600)).await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiter.is_finished(), "get() waits while the server is down");
    let attempts_while_down = attempts.load(Ordering::SeqCst);
    assert!(attempts_while_down >= 5);

    // The broker comes back on the same port.
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = serve(listener, accepted.clone());
    eventually("reconnection", || waiter.is_finished()).await;
    let second = waiter.await.unwrap().unwrap();
    assert_eq!(second.generation(), 2);
    assert_eq!(manager.state(), ConnectionState::Connected);
    eventually("server accepted again", || accepted.load(Ordering::SeqCst) == 2).await;

    // A stale report about the old connection does not disturb the new one.
    assert!(!manager.report_broken(&first));
    assert_eq!(manager.try_get().unwrap().generation(), 2);

    // Every back-off state carried the policy's delay for that attempt, attempts were
    // numbered consecutively, and the story ends connected.
    let states = states.lock().unwrap().clone();
    let expected: Vec<Duration> = policy.delays().take(64).collect();
    let backoffs: Vec<(u32, Duration)> = states
        .iter()
        .filter_map(|s| match s {
            ConnectionState::BackingOff { attempt, retry_in } => Some((*attempt, *retry_in)),
            _ => None,
        })
        .collect();
    assert!(backoffs.len() >= 5, "{states:?}");
    for (i, (attempt, retry_in)) in backoffs.iter().enumerate() {
        assert_eq!(*attempt as usize, i + 1, "{states:?}");
        assert_eq!(*retry_in, expected[i], "{states:?}");
    }
    let connected_at: Vec<usize> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == ConnectionState::Connected)
        .map(|(i, _)| i)
        .collect();
    let first_backoff = states
        .iter()
        .position(|s| matches!(s, ConnectionState::BackingOff { .. }))
        .unwrap();
    assert_eq!(connected_at.len(), 2, "{states:?}");
    assert!(connected_at[0] < first_backoff, "{states:?}");
    assert_eq!(connected_at[1], states.len() - 1, "{states:?}");

    manager.close();
    server.abort();
}

/// Fails the first `failures` attempts, then hands out numbered connections.
struct Scripted {
    failures: u32,
    attempts: Arc<AtomicU32>,
    hang: bool,
    dropped: Arc<AtomicBool>,
}

impl Scripted {
    fn new(failures: u32) -> Self {
        Self {
            failures,
            attempts: Arc::default(),
            hang: false,
            dropped: Arc::default(),
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Connector for Scripted {
    type Conn = u32;
    type Error = String;

    async fn connect(&self) -> Result<u32, String> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.hang {
            std::future::pending::<()>().await;
        }
        if n <= self.failures {
            Err(format!("refused #{n}"))
        } else {
            Ok(n)
        }
    }
}

#[tokio::test(start_paused = true)]
async fn get_times_out_after_the_configured_wait() {
    let manager = ConnectionManager::builder(Scripted::new(u32::MAX))
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .get_timeout(Duration::from_secs(5))
        .start();
    let start = Instant::now();
    assert_eq!(
        manager.get().await.unwrap_err(),
        ConnectionError::Timeout {
            waited: Duration::from_secs(5)
        }
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn waits_follow_the_backoff_policy() {
    let connector = Scripted::new(3);
    let attempts = connector.attempts.clone();
    let manager = ConnectionManager::builder(connector)
        .backoff(Backoff::exponential(ms(100)))
        .start();
    let start = Instant::now();
    let conn = manager.get().await.unwrap();
    assert_eq!(*conn, 4);
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert_eq!(start.elapsed(), ms(100 + 200 + 400));

    // After a loss the first reconnect attempt does not wait.
    assert!(manager.invalidate());
    let again = manager.get().await.unwrap();
    assert_eq!(again.generation(), conn.generation() + 1);
    assert_eq!(start.elapsed(), ms(700), "reconnect after a loss is immediate");
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_policy_closes_the_manager() {
    let connector = Scripted::new(u32::MAX);
    let attempts = connector.attempts.clone();
    let manager = ConnectionManager::builder(connector)
        .backoff(Backoff::constant(ms(10)).take(3))
        .start();
    let mut states = manager.subscribe();
    states.wait_for(|s| *s == ConnectionState::Closed).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert_eq!(manager.get().await.unwrap_err(), ConnectionError::Closed);
    assert_eq!(manager.try_get().unwrap_err(), ConnectionError::Closed);
}

#[tokio::test(start_paused = true)]
async fn close_wakes_waiters_and_dropping_the_last_handle_stops_the_driver() {
    let connector = Scripted::new(u32::MAX);
    let dropped = connector.dropped.clone();
    let manager = ConnectionManager::builder(connector)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .get_timeout(Duration::from_secs(3600))
        .start();
    let waiter = tokio::spawn({
        let manager = manager.clone();
        async move { manager.get().await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    manager.close();
    assert_eq!(waiter.await.unwrap().unwrap_err(), ConnectionError::Closed);
    assert_eq!(manager.state(), ConnectionState::Closed);
    tokio::time::sleep(ms(1)).await;
    assert!(dropped.load(Ordering::SeqCst), "driver stopped after close");

    let connector = Scripted::new(0);
    let dropped = connector.dropped.clone();
    let manager = ConnectionManager::builder(connector).start();
    manager.get().await.unwrap();
    drop(manager);
    tokio::time::sleep(ms(1)).await;
    assert!(dropped.load(Ordering::SeqCst), "driver stopped after the last drop");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_connect_counts_as_a_failure_after_the_connect_timeout() {
    let mut connector = Scripted::new(0);
    connector.hang = true;
    let attempts = connector.attempts.clone();
    let manager = ConnectionManager::builder(connector)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .connect_timeout(Duration::from_secs(2))
        .start();
    let mut states = manager.subscribe();
    let backing_off = *states
        .wait_for(|s| matches!(s, ConnectionState::BackingOff { .. }))
        .await
        .unwrap();
    assert_eq!(
        backing_off,
        ConnectionState::BackingOff {
            attempt: 1,
            retry_in: Duration::from_secs(1)
        }
    );
    tokio::time::sleep(Duration::from_secs(7)).await;
    // Attempts start at t=0, 3 and 6: each is a 2 s timeout plus a 1 s wait.
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}
