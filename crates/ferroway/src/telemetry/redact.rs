//! URLs with their passwords masked: what logs, errors and `Debug` show of a connection
//! string.

/// `url` with the password of its userinfo replaced by `***` (`scheme://user:***@host/…`); a
/// userinfo without a password is kept, and an `@` after the authority (in a path or a query)
/// is not userinfo.
///
/// ```
/// use ferroway::telemetry::redact_url;
/// assert_eq!(redact_url("amqp://app:hunter2@rabbit:5672/%2f"), "amqp://app:***@rabbit:5672/%2f");
/// assert_eq!(redact_url("redis://:hunter2@cache:6379"), "redis://:***@cache:6379");
/// assert_eq!(redact_url("nats://token@host:4222"), "nats://token@host:4222");
/// assert_eq!(redact_url("nats://host:4222/a@b"), "nats://host:4222/a@b");
/// ```
pub fn redact_url(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

/// The password in `url`'s userinfo, if any: what to mask wherever a client's error quotes it.
///
/// ```
/// use ferroway::telemetry::url_password;
/// assert_eq!(url_password("amqp://app:hunter2@rabbit"), Some("hunter2"));
/// assert_eq!(url_password("amqp://rabbit"), None);
/// ```
pub fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    rest[..at].split_once(':').map(|(_, p)| p).filter(|p| !p.is_empty())
}
