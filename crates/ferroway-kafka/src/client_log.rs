//! What librdkafka reports about a client — its log lines and client-wide errors — as
//! `tracing` events, warnings rate-limited.
//!
//! With every broker unreachable librdkafka reports each failed connection attempt (a log
//! line and an error event, for every broker, with backoff from 100 ms) and `rdkafka` hands
//! some error events to the context twice. One warning per kind every
//! [`INTERVAL`] says the same, with the count of what was held back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ferroway::telemetry::LogThrottle;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError as RdKafkaError;
use tracing::{debug, error, info, warn};

/// At most one warning of a kind this often.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// One client's log: `client` is `consumer` or `producer`, `name` its group or topic.
pub(crate) struct ClientLog {
    client: &'static str,
    name: String,
    /// By error code (client errors) or facility (librdkafka's warnings).
    throttles: Mutex<HashMap<String, LogThrottle>>,
}

impl ClientLog {
    pub(crate) fn new(client: &'static str, name: impl Into<String>) -> Self {
        ClientLog {
            client,
            name: name.into(),
            throttles: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(suppressed)` if a line of `kind` may be logged now.
    fn allow(&self, kind: String) -> Option<u64> {
        let mut t = self.throttles.lock().unwrap_or_else(|p| p.into_inner());
        t.entry(kind).or_insert_with(|| LogThrottle::new(INTERVAL)).allow()
    }

    /// A client-wide error librdkafka recovers from by itself (it keeps reconnecting).
    pub(crate) fn error(&self, e: &RdKafkaError, reason: &str) {
        let kind = format!("{:?}", e.rdkafka_error_code());
        if let Some(suppressed) = self.allow(kind) {
            warn!(client = self.client, name = %self.name, error = %e, reason, suppressed,
                "Kafka client error (librdkafka retries by itself)");
        }
    }

    /// A log line of librdkafka's.
    pub(crate) fn librdkafka(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        use RDKafkaLogLevel as L;
        let (client, name) = (self.client, &self.name);
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
                let Some(suppressed) = self.allow(format!("log:{fac}")) else {
                    return;
                };
                if matches!(level, L::Warning) {
                    warn!(target: "librdkafka", client, %name, fac, suppressed, "{msg}");
                } else {
                    error!(target: "librdkafka", client, %name, fac, suppressed, "{msg}");
                }
            }
            L::Notice | L::Info => info!(target: "librdkafka", client, %name, fac, "{msg}"),
            L::Debug => debug!(target: "librdkafka", client, %name, fac, "{msg}"),
        }
    }
}
