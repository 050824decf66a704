//! One Redis connection owned by a `ConnectionManager`: reconnects with backoff, remembers why
//! the last attempt failed, and tells outages from refusals.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroway::BoxError;
use ferroway::error::Unavailable;
use ferroway::resilience::{Backoff, Connection, ConnectionError, ConnectionManager, Connector};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
use tracing::info;

use crate::options::RedisUrl;

/// The reply timeout of connections that never block: generous, because a timeout counts as
/// an outage and what was sent is sent again.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The last failed connection attempt's reason, shared with whoever reports errors.
type LastError = Arc<Mutex<Option<String>>>;

struct RedisConnector {
    url: RedisUrl,
    /// `CLIENT SETNAME`, so operators (and tests) can find the connection in `CLIENT LIST`.
    name: String,
    config: AsyncConnectionConfig,
    last_error: LastError,
}

impl RedisConnector {
    async fn try_connect(&self) -> Result<MultiplexedConnection, RedisError> {
        let client = redis::Client::open(self.url.expose())?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.name)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(conn)
    }
}

impl Connector for RedisConnector {
    type Conn = MultiplexedConnection;
    type Error = String;

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        self.try_connect().await.map_err(|e| {
            let reason = self.url.redact_in(&e.to_string());
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            reason
        })
    }
}

/// A managed connection to one Redis server.
pub(crate) struct Link {
    manager: ConnectionManager<RedisConnector>,
    url: RedisUrl,
    last_error: LastError,
}

impl Link {
    /// Starts connecting to `url` as client `name`; replies slower than `reply_timeout` count
    /// as a lost connection.
    pub(crate) fn new(url: &RedisUrl, name: &str, reply_timeout: Duration, backoff: Backoff) -> Link {
        info!(url = %url, connection = %name, "connecting to Redis");
        let last_error = LastError::default();
        let connector = RedisConnector {
            url: url.clone(),
            name: client_name(name),
            config: AsyncConnectionConfig::new().set_response_timeout(Some(reply_timeout)),
            last_error: last_error.clone(),
        };
        Link {
            manager: ConnectionManager::builder(connector)
                .name(name)
                .backoff(backoff)
                .start(),
            url: url.clone(),
            last_error,
        }
    }

    /// The current connection, waiting up to `wait` for one while reconnecting.
    pub(crate) async fn get(&self, wait: Duration) -> Result<Connection<MultiplexedConnection>, LinkError> {
        self.manager.get_within(wait).await.map_err(|e| match e {
            ConnectionError::Closed => LinkError::GaveUp {
                last_error: self.last_error(),
            },
            other => LinkError::Unavailable(
                self.unavailable(format!("{other}; last connection attempt: {}", self.last_error())),
            ),
        })
    }

    pub(crate) fn report_broken(&self, conn: &Connection<MultiplexedConnection>) {
        self.manager.report_broken(conn);
    }

    pub(crate) fn close(&self) {
        self.manager.close();
    }

    pub(crate) fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// `error` as an outage of this server.
    pub(crate) fn unavailable(&self, error: impl Into<BoxError>) -> Unavailable {
        Unavailable::new(self.url.redacted(), error)
    }

    fn last_error(&self) -> String {
        self.last_attempt().unwrap_or_else(|| "none failed yet".to_owned())
    }

    /// Why the last connection attempt failed, if one did.
    pub(crate) fn last_attempt(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Why [`Link::get`] has no connection.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// None within the manager's wait; it keeps trying.
    Unavailable(Unavailable),
    /// The reconnect backoff policy ran out: the link is closed for good.
    GaveUp { last_error: String },
}

/// Client names may not contain spaces or newlines (`CLIENT SETNAME` refuses them).
fn client_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

/// True for errors that say nothing about the command or the entry: the connection is gone
/// or the server cannot serve anyone right now (loading its data set after a restart, a
/// failover, out of memory). Wait and retry; never fail a message for these.
pub(crate) fn is_unavailable(e: &RedisError) -> bool {
    is_connection_error(e) || e.code().is_some_and(is_unavailable_code)
}

/// True for errors that mean the connection itself is gone: get a new one.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// Whether an error reply's code is an outage (also for the per-command replies of a pipeline
/// sent with `ignore_errors`).
pub(crate) fn is_unavailable_code(code: &str) -> bool {
    matches!(
        code,
        "LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY" | "BUSY" | "OOM" | "NOREPLICAS" | "MISCONF"
    )
}
