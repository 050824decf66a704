//! What a polling source asks for, how it pages, how it resumes.

use std::path::PathBuf;
use std::time::Duration;

use crate::client::{redacted, validate_endpoint};
use crate::error::OptionsError;

/// How the pages of one poll follow each other.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pagination {
    /// One page per poll (the default).
    #[default]
    None,
    /// The `Link: <…>; rel="next"` header (RFC 8288), as GitHub and many REST APIs send.
    LinkHeader,
    /// A top-level JSON field holding the next page's URL (absolute or relative).
    NextField(String),
    /// A top-level JSON field holding a token, sent back as query parameter `param`.
    Token {
        /// The field of the page holding the token.
        field: String,
        /// The query parameter carrying it.
        param: String,
    },
}

/// Options of a [`PollSource`](super::PollSource).
///
/// ```
/// use std::time::Duration;
/// use ferroway_http::poll::{Pagination, PollOptions};
///
/// // `GET /v1/orders?updated_after=<cursor>` every 30 s, the records under `"data"`, pages
/// // chained by `"next_page_token"` sent back as `?page_token=`.
/// let opts = PollOptions::new("https://api.example.com/v1/orders")
///     .bearer("s3cr3t")
///     .interval(Duration::from_secs(30))
///     .records_field("data")
///     .pagination(Pagination::Token { field: "next_page_token".into(), param: "page_token".into() })
///     .cursor("updated_at", "updated_after")
///     .cursor_file("orders.cursor");
/// assert!(!format!("{opts:?}").contains("s3cr3t"));
/// ```
#[derive(Clone)]
pub struct PollOptions {
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    /// The wait between the last page of one poll and the next poll (default 10 s).
    pub interval: Duration,
    /// How long a connection attempt may take (default 10 s).
    pub connect_timeout: Duration,
    /// How long a request may take, body included (default 30 s).
    pub request_timeout: Duration,
    /// A source whose server never answered fails after this long (default 60 s).
    pub reach_timeout: Duration,
    /// The wait after a failed poll (default 1 s), doubled per failure up to `max_retry`.
    pub retry: Duration,
    /// The most a wait after failures lasts (default 60 s).
    pub max_retry: Duration,
    /// The largest page accepted (default 16 MiB).
    pub max_page_bytes: usize,
    pub(crate) records_field: Option<String>,
    pub(crate) pagination: Pagination,
    pub(crate) cursor: Option<(String, String)>,
    pub(crate) cursor_file: Option<PathBuf>,
    pub(crate) start_after: Option<String>,
}

impl std::fmt::Debug for PollOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("PollOptions")
            .field("url", &redacted(&self.url))
            .field("headers", &headers)
            .field("interval", &self.interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("reach_timeout", &self.reach_timeout)
            .field("retry", &self.retry)
            .field("max_retry", &self.max_retry)
            .field("max_page_bytes", &self.max_page_bytes)
            .field("records_field", &self.records_field)
            .field("pagination", &self.pagination)
            .field("cursor", &self.cursor)
            .field("cursor_file", &self.cursor_file)
            .field("start_after", &self.start_after)
            .finish()
    }
}

impl PollOptions {
    /// Defaults for polling `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PollOptions {
            url: url.into(),
            headers: Vec::new(),
            interval: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            reach_timeout: Duration::from_secs(60),
            retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            max_page_bytes: 16 << 20,
            records_field: None,
            pagination: Pagination::None,
            cursor: None,
            cursor_file: None,
            start_after: None,
        }
    }

    crate::client::endpoint_builders!();

    /// The top-level JSON field holding the page's array of records (default: the page is
    /// the array, or NDJSON).
    pub fn records_field(mut self, field: impl Into<String>) -> Self {
        self.records_field = Some(field.into());
        self
    }

    /// See [`Pagination`].
    pub fn pagination(mut self, p: Pagination) -> Self {
        self.pagination = p;
        self
    }

    crate::cursor::cursor_builders!();

    /// See [`interval`](Self::interval).
    pub fn interval(mut self, t: Duration) -> Self {
        self.interval = t;
        self
    }

    /// See [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// See [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// See [`reach_timeout`](Self::reach_timeout).
    pub fn reach_timeout(mut self, t: Duration) -> Self {
        self.reach_timeout = t;
        self
    }

    /// See [`retry`](Self::retry).
    pub fn retry(mut self, t: Duration) -> Self {
        self.retry = t;
        self
    }

    /// See [`max_retry`](Self::max_retry).
    pub fn max_retry(mut self, t: Duration) -> Self {
        self.max_retry = t;
        self
    }

    /// See [`max_page_bytes`](Self::max_page_bytes).
    pub fn max_page_bytes(mut self, n: usize) -> Self {
        self.max_page_bytes = n;
        self
    }

    /// The first option that cannot work.
    pub(crate) fn validate(&self) -> Result<(), OptionsError> {
        validate_endpoint(&self.url, &self.headers)?;
        for (option, value) in [
            ("interval", self.interval),
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("max_retry", self.max_retry),
        ] {
            if value.is_zero() {
                return Err(OptionsError::new(option, "must be more than zero"));
            }
        }
        if self.max_page_bytes == 0 {
            return Err(OptionsError::new("max_page_bytes", "must be at least 1"));
        }
        if matches!(self.pagination, Pagination::NextField(_) | Pagination::Token { .. })
            && self.records_field.is_none()
        {
            return Err(OptionsError::new(
                "pagination",
                "a next-page field needs `records_field` (the page is an object)",
            ));
        }
        crate::cursor::validate(
            self.cursor.as_ref(),
            self.cursor_file.as_deref(),
            self.start_after.as_deref(),
        )?;
        Ok(())
    }
}
