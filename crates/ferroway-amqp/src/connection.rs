//! Opening connections and channels, and telling an outage from a refusal.

use std::sync::{Arc, Mutex};

use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::Channel;
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, Close, CloseChannel, Nack, Return};

use crate::options::AmqpUri;

/// Reply codes after which retrying the same thing cannot succeed (AMQP 0.9.1 constants):
/// access refused, not found, resource locked, precondition failed, not allowed, command
/// invalid.
const REFUSALS: [u16; 6] = [403, 404, 405, 406, 530, 503];

/// Why a connection or a channel ended, as the broker said it (`None`: the network).
#[derive(Debug, Default)]
pub(crate) struct Closed(Mutex<Option<(u16, String)>>);

impl Closed {
    pub(crate) fn set(&self, code: u16, text: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((code, text));
    }

    pub(crate) fn get(&self) -> Option<(u16, String)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The broker closed it for a reason retrying will not change.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.get()
            .filter(|(code, _)| REFUSALS.contains(code))
            .map(|(code, text)| format!("{code} {text}"))
    }
}

struct OnConnection(Arc<Closed>);

#[async_trait::async_trait]
impl ConnectionCallback for OnConnection {
    async fn close(&mut self, _: &Connection, close: Close) -> Result<(), amqprs::error::Error> {
        self.0.set(close.reply_code(), close.reply_text().clone());
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, reason: String) {
        tracing::warn!(%reason, "RabbitMQ blocked this connection (a resource alarm): publishing waits");
    }
    async fn unblocked(&mut self, _: &Connection) {
        tracing::info!("RabbitMQ unblocked this connection");
    }
    async fn secret_updated(&mut self, _: &Connection) {}
}

/// A connection, and where the broker's reason for closing it lands.
pub(crate) struct Link {
    pub(crate) conn: Connection,
    pub(crate) closed: Arc<Closed>,
}

/// Opens a connection; the error is the reason, password redacted, the broker's refusal
/// (bad credentials, unknown vhost) told apart.
pub(crate) async fn open(uri: &AmqpUri, name: &str) -> Result<Link, Failure> {
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = OpenConnectionArguments::try_from(uri.expose()).map_err(|e| Failure::Refused {
        step: "connection.open".into(),
        reason: uri.redact_in(&e.to_string()),
    })?;
    // amqprs takes the path as it is; the URI spec percent-encodes the vhost (`%2f` is `/`).
    args.virtual_host(&uri.vhost());
    args.connection_name(name);
    let conn = Connection::open(&args).await.map_err(|e| {
        let text = uri.redact_in(&broker_reply(&e.to_string()));
        // Authentication failures and an unknown vhost are refusals; the rest is the network.
        if text.contains("ACCESS_REFUSED") || text.contains("access to vhost") || text.contains("NOT_ALLOWED") {
            Failure::Refused {
                step: "connection.open".into(),
                reason: text,
            }
        } else if text.contains("reset by peer") {
            // RabbitMQ drops a client that does not announce `authentication_failure_close`
            // (amqprs does not) without a reason when its credentials are wrong.
            Failure::Down(format!(
                "{text} (RabbitMQ resets the connection this way when the user name or password is wrong)"
            ))
        } else {
            Failure::Down(text)
        }
    })?;
    let closed = Arc::new(Closed::default());
    conn.register_callback(OnConnection(closed.clone()))
        .await
        .map_err(|e| Failure::Down(e.to_string()))?;
    Ok(Link { conn, closed })
}

/// Why opening failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The broker said no for good (credentials, vhost, a missing queue or exchange, …) to
    /// `step`.
    Refused { step: String, reason: String },
    /// Not reachable or gone: try again.
    Down(String),
}

/// What a channel callback sees: its close reason, and for publishers their confirms.
pub(crate) trait ChannelEvents: Send + Sync + 'static {
    fn closed(&self) -> &Closed;
    fn confirmed(&self, _tag: u64, _multiple: bool, _ack: bool) {}
    fn returned(&self, _reply: String, _props: &BasicProperties) {}
}

pub(crate) struct OnChannel<E: ChannelEvents>(pub(crate) Arc<E>);

#[async_trait::async_trait]
impl<E: ChannelEvents> ChannelCallback for OnChannel<E> {
    async fn close(&mut self, _: &Channel, close: CloseChannel) -> Result<(), amqprs::error::Error> {
        self.0.closed().set(close.reply_code(), close.reply_text().clone());
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, cancel: Cancel) -> Result<(), amqprs::error::Error> {
        tracing::warn!(consumer_tag = %cancel.consumer_tag(), "RabbitMQ cancelled the consumer (queue deleted or failed over)");
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.0.confirmed(ack.delivery_tag(), ack.mutiple(), true);
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.0.confirmed(nack.delivery_tag(), nack.multiple(), false);
    }
    async fn publish_return(&mut self, _: &Channel, ret: Return, props: BasicProperties, _: Vec<u8>) {
        self.0
            .returned(format!("{} {}", ret.reply_code(), ret.reply_text()), &props);
    }
}

/// An operation's failure: the channel's close reason when the broker gave one (why a
/// declare or consume failed), the client's error otherwise.
pub(crate) fn reason(e: &amqprs::error::Error, closed: &Closed) -> String {
    match closed.get() {
        Some((code, text)) => format!("{code} {text}"),
        None => e.to_string(),
    }
}

/// The broker's `reply_code` and `reply_text` where the client's error quotes a close frame
/// (`"... Close { reply_code: 530, reply_text: ShortStr(33, \"NOT_ALLOWED - ...\") ..."`),
/// the error as it is otherwise.
fn broker_reply(error: &str) -> String {
    let code = error
        .split("reply_code: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next());
    let text = error.split("reply_text: ").nth(1).and_then(|r| r.split('"').nth(1));
    match (code, text) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        _ => error.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn broker_replies_are_read_out_of_close_frames() {
        let e = r#"AMQP connection open error: failed to open connection, reason: Close(MethodHeader { class_id: 10, method_id: 50 }, Close { reply_code: 530, reply_text: ShortStr(33, "NOT_ALLOWED - vhost x not found"), class_id: 10, method_id: 40 })"#;
        assert_eq!(super::broker_reply(e), "530 NOT_ALLOWED - vhost x not found");
        assert_eq!(super::broker_reply("network error: refused"), "network error: refused");
    }
}
