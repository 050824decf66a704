//! What every HTTP client of the crate shares: the TLS setup (rustls on ring, the webpki
//! roots), endpoint checks, and keeping secrets out of what is shown.

use std::sync::Arc;
use std::time::Duration;

use ferroway::resilience::Reach;
use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue, RETRY_AFTER};

use crate::error::OptionsError;

/// The builder methods of an options type with `url` and `headers` fields: one definition
/// for every client of the crate.
macro_rules! endpoint_builders {
    () => {
        /// The URL, without its password.
        pub fn url(&self) -> String {
            $crate::client::redacted(&self.url)
        }

        /// A header sent with every request (its value never shown).
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }

        /// `Authorization: Bearer <token>`.
        pub fn bearer(mut self, token: impl std::fmt::Display) -> Self {
            self.headers.push($crate::client::bearer(token));
            self
        }

        /// `Authorization: Basic <user:password in base64>`.
        pub fn basic(mut self, user: &str, password: &str) -> Self {
            self.headers.push($crate::client::basic(user, password));
            self
        }
    };
}
pub(crate) use endpoint_builders;

/// The `Authorization` header of a bearer token.
pub(crate) fn bearer(token: impl std::fmt::Display) -> (String, String) {
    ("authorization".to_owned(), format!("Bearer {token}"))
}

/// The `Authorization` header of a user and password (RFC 7617).
pub(crate) fn basic(user: &str, password: &str) -> (String, String) {
    (
        "authorization".to_owned(),
        format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
    )
}

/// A client on rustls with ring and the webpki roots (no aws-lc build, no process-wide
/// provider to install).
pub(crate) fn build(connect_timeout: Duration) -> Result<reqwest::Client, ferroway::BoxError> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(connect_timeout)
        // A redirected POST becomes a GET without its body (a batch "delivered" nowhere),
        // and custom headers (API keys) would follow to another host: a 3xx is an answer.
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// An http(s) URL and headers a request can carry, or the option that is wrong.
pub(crate) fn validate_endpoint(url: &str, headers: &[(String, String)]) -> Result<(), OptionsError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| OptionsError::new("url", format!("`{}`: {e}", redacted(url))))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(OptionsError::new(
            "url",
            format!("the scheme must be http or https, not `{}`", parsed.scheme()),
        ));
    }
    for (name, value) in headers {
        let option = format!("headers[{name}]");
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| OptionsError::new(&option, "not a valid header name"))?;
        HeaderValue::from_str(value)
            .map_err(|_| OptionsError::new(&option, "the value holds characters a header cannot carry"))?;
    }
    Ok(())
}

/// Whether an answer with this status is worth waiting out: the server is busy, down or
/// timed out, and the same request may succeed later.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

/// The record of whether a source of `kind` ever reached `url`'s server (the key shows no
/// secret).
pub(crate) fn reach(kind: &str, url: &str) -> Arc<Reach> {
    Reach::of(&format!("{kind}\n{}", redacted(url)))
}

/// A response's `Retry-After`, when given in seconds.
pub(crate) fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    r.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .map(Duration::from_secs)
}

/// `url` with its user, password and query values replaced by `***` (any may hold a key).
pub(crate) fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() {
                let _ = u.set_username("***");
            }
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query().is_some() {
                let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
                u.query_pairs_mut()
                    .clear()
                    .extend_pairs(names.iter().map(|k| (k.as_str(), "***")));
            }
            u.to_string()
        }
        // Not a URL: it may hold anything, so show none of what follows a `@`.
        Err(_) => url
            .rsplit_once('@')
            .map_or_else(|| url.to_owned(), |(_, host)| format!("***@{host}")),
    }
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What went wrong, without the URL reqwest puts in its `Display` (password included).
pub(crate) fn redact_error(e: &reqwest::Error) -> String {
    let mut text = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    }
    .to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn users_passwords_and_query_values_never_show() {
        assert_eq!(
            redacted("https://key:pw@h.example/x?api_key=s3cr3t&a=1"),
            "https://***:***@h.example/x?api_key=***&a=***"
        );
        assert_eq!(redacted("https://h.example/x"), "https://h.example/x");
    }
}
