//! Ready-made connections for Kafka-compatible services.
//!
//! Each returns a [`Connection`] to pass to [`KafkaSourceOptions::new`](crate::KafkaSourceOptions::new)
//! or [`KafkaSinkOptions::new`](crate::KafkaSinkOptions::new); adjust it further with its
//! builder methods.

use crate::error::ConfigError;
use crate::options::{Connection, SaslMechanism, SaslOptions, Secret, Security, TlsOptions};

/// Redpanda: it speaks the Kafka API, so this is a plain connection — consumer groups,
/// idempotent producers and transactions work as with Kafka.
///
/// ```
/// let c = ferroway_kafka::profile::redpanda("127.0.0.1:19092");
/// assert_eq!(c.bootstrap_servers(), "127.0.0.1:19092");
/// ```
pub fn redpanda(bootstrap_servers: impl Into<String>) -> Connection {
    Connection::new(bootstrap_servers)
}

/// Redpanda Cloud (or any Redpanda with SASL enabled): `SASL_SSL` with SCRAM-SHA-256, the
/// mechanism Redpanda uses. Needs the `ssl` (or `ssl-vendored`) feature, checked when options
/// are validated.
pub fn redpanda_scram(
    bootstrap_servers: impl Into<String>,
    username: impl Into<String>,
    password: impl Into<Secret>,
) -> Connection {
    Connection::new(bootstrap_servers).security(Security::SaslSsl(
        SaslOptions::new(SaslMechanism::ScramSha256, username, password),
        TlsOptions::default(),
    ))
}

/// Azure Event Hubs' Kafka endpoint, from a namespace (or event hub) connection string
/// (`Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...`).
///
/// Connects to `NAMESPACE.servicebus.windows.net:9093` with `SASL_SSL`, mechanism `PLAIN`,
/// username literally `$ConnectionString` and the connection string as the password (never
/// shown: it is a [`Secret`]). It also sets what Microsoft recommends for Kafka clients:
/// `request.timeout.ms=60000`, `metadata.max.age.ms=180000`, and
/// `connections.max.idle.ms=180000` (Event Hubs closes connections idle for 240 s). An event
/// hub is a topic; a consumer group must exist in the event hub first. Event Hubs has no Kafka
/// transactions on most tiers and supports gzip compression only. Needs the `ssl` (or
/// `ssl-vendored`) feature, checked when options are validated.
///
/// ```
/// let c = ferroway_kafka::profile::azure_event_hubs(
///     "Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abc=",
/// ).unwrap();
/// assert_eq!(c.bootstrap_servers(), "contoso.servicebus.windows.net:9093");
/// assert!(!format!("{c:?}").contains("abc="));
/// ```
///
/// # Errors
/// [`ConfigError`] (option `connection_string`, without its value) if the string has no
/// `Endpoint=sb://HOST/` part.
pub fn azure_event_hubs(connection_string: impl Into<Secret>) -> Result<Connection, ConfigError> {
    let secret: Secret = connection_string.into();
    let host = secret
        .expose()
        .split(';')
        .find_map(|part| {
            let (k, v) = part.split_once('=')?;
            k.trim().eq_ignore_ascii_case("endpoint").then_some(v.trim())
        })
        .and_then(|endpoint| endpoint.strip_prefix("sb://"))
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .ok_or_else(|| {
            ConfigError::new(
                "connection_string",
                "no `Endpoint=sb://NAMESPACE.servicebus.windows.net/` part",
            )
        })?
        .to_owned();
    Ok(Connection::new(format!("{host}:9093"))
        .security(Security::SaslSsl(
            SaslOptions::new(SaslMechanism::Plain, "$ConnectionString", secret),
            TlsOptions::default(),
        ))
        .property("request.timeout.ms", "60000")
        .property("metadata.max.age.ms", "180000")
        .property("connections.max.idle.ms", "180000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_hubs_profile() {
        let cs = "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=SECRETKEY";
        let c = azure_event_hubs(cs).unwrap();
        assert_eq!(c.bootstrap_servers(), "ns1.servicebus.windows.net:9093");
        match &c.security {
            Security::SaslSsl(s, _) => {
                assert_eq!(s.mechanism, SaslMechanism::Plain);
                assert_eq!(s.username, "$ConnectionString");
                assert_eq!(s.password.expose(), cs);
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("SECRETKEY"));
        let e = azure_event_hubs("SharedAccessKey=SECRETKEY").unwrap_err();
        assert_eq!(e.option, "connection_string");
        assert!(!e.to_string().contains("SECRETKEY"));
    }
}
