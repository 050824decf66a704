//! Connecting: one client per source or sink, its events logged and counted.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use ferroway::resilience::{Backoff, Reach};
use ferroway::telemetry::LogThrottle;
use tracing::{info, warn};

use crate::error::SourceError;
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

/// Connects for a source, retrying with backoff, until `reach` says `timeout` has passed
/// without a server ever answering: then the source fails with an error naming the URL
/// (`what`: the stream and consumer, or the subjects).
pub(crate) async fn connect_within(
    url: &NatsUrl,
    name: &str,
    subscription_capacity: usize,
    reach: &Reach,
    timeout: Duration,
    what: &str,
) -> Result<Client, SourceError> {
    let mut retry = Backoff::exponential(Duration::from_millis(100))
        .cap(Duration::from_secs(5))
        .stateful();
    let outage = LogThrottle::new(Duration::from_secs(10));
    loop {
        let Some(wait) = reach.wait(timeout, Duration::MAX) else {
            return Err(SourceError::Unreachable {
                what: what.to_owned(),
                url: url.redacted(),
                waited: reach.waited(),
                last_error: reach.last_error(),
            });
        };
        match connect(url, name, subscription_capacity).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                reach.failed(Some(e.clone()));
                if let Some(suppressed) = outage.allow() {
                    warn!(source = what, url = %url, error = %e, suppressed, "waiting for NATS");
                }
                tokio::time::sleep(retry.fail().unwrap_or(Duration::from_secs(5)).min(wait)).await;
            }
        }
    }
}
