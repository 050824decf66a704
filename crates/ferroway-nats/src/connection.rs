//! Connecting: one client per source or sink, its events logged and counted.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tracing::{info, warn};

use crate::options::NatsUrl;

/// Connects to `url` (failing at once when no server answers: the caller retries, bounded by
/// its connect timeout). Once connected the client reconnects by itself, forever.
pub(crate) async fn connect(url: &NatsUrl, name: &str, subscription_capacity: usize) -> Result<Client, String> {
    let shown = url.redacted();
    let events = move |e: Event| {
        let shown = shown.clone();
        async move {
            match e {
                Event::Disconnected => warn!(url = %shown, "NATS connection lost; reconnecting"),
                Event::Connected => info!(url = %shown, "NATS connected"),
                Event::SlowConsumer(sid) => {
                    metrics::counter!(crate::metrics::DROPPED).increment(1);
                    warn!(url = %shown, subscription = sid, "NATS subscription buffer full: messages dropped (slow consumer)");
                }
                Event::ServerError(e) => warn!(url = %shown, error = %e, "NATS server error"),
                Event::ClientError(e) => warn!(url = %shown, error = %e, "NATS client error"),
                _ => {}
            }
        }
    };
    ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .subscription_capacity(subscription_capacity)
        .max_reconnects(None)
        .event_callback(events)
        .connect(url.expose())
        .await
        .map_err(|e| url.redact_in(&e.to_string()))
}
