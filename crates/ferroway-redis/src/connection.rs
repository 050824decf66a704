//! One Redis connection owned by a `ConnectionManager`: reconnects with backoff.

use ferroway::resilience::{Backoff, ConnectionManager, Connector};
use redis::aio::MultiplexedConnection;

use crate::options::RedisUrl;

pub(crate) struct RedisConnector {
    url: RedisUrl,
    /// `CLIENT SETNAME`, so operators (and tests) can find the connection in `CLIENT LIST`.
    name: String,
}

impl Connector for RedisConnector {
    type Conn = MultiplexedConnection;
    type Error = String;

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let redact = |e: redis::RedisError| e.to_string().replace(self.url.expose(), &self.url.redacted());
        let client = redis::Client::open(self.url.expose()).map_err(redact)?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(redact)?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.name)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redact)?;
        Ok(conn)
    }
}

pub(crate) fn manager(url: &RedisUrl, name: String, backoff: Backoff) -> ConnectionManager<RedisConnector> {
    ConnectionManager::builder(RedisConnector {
        url: url.clone(),
        name: name.clone(),
    })
    .name(name)
    .backoff(backoff)
    .start()
}

/// True for errors that mean the connection is gone (reconnect and retry), as opposed to
/// Redis refusing a command.
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}
