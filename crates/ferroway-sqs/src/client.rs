//! The SDK client: built from the options (rustls on ring, no SDK retries — ours go through
//! `ferroway::resilience`), and its errors sorted into "try again" and "refused".

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::options::QueueOptions;

/// Builds the client for `q`; requests time out after `attempt_timeout`.
///
/// # Errors
/// A refusal when no region can be found.
pub(crate) async fn build(q: &QueueOptions, attempt_timeout: Duration) -> Result<Client, Fault> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(q.connect_timeout)
                .operation_attempt_timeout(attempt_timeout)
                .build(),
        );
    if let Some(region) = q.region_or_guess() {
        loader = loader.region(Region::new(region));
    }
    if let Some(endpoint) = q.endpoint_or_guess() {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(c) = &q.credentials {
        loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            None,
            "ferroway",
        ));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(Fault::Refused(
            "no AWS region: set the `region` option or AWS_REGION (it could not be read from the queue URL)".into(),
        ));
    }
    Ok(Client::new(&config))
}

/// The endpoint requests go to, for messages.
pub(crate) fn endpoint_shown(q: &QueueOptions) -> String {
    q.endpoint_or_guess().unwrap_or_else(|| {
        format!(
            "the SQS endpoint of region {}",
            q.region_or_guess().unwrap_or_else(|| "(from the environment)".into())
        )
    })
}

/// How a failed request should be treated.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Throttling, a server error, a timeout, no connection: try again later.
    Transient(String),
    /// Refused for good (no such queue, credentials, an invalid request).
    Refused(String),
}

impl Fault {
    pub(crate) fn text(&self) -> &str {
        match self {
            Fault::Transient(t) | Fault::Refused(t) => t,
        }
    }
}

/// Error codes that mean "slow down" or "not now", whatever their HTTP status.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "RequestThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
    "KmsThrottled",
    "KMS.ThrottlingException",
    "OverLimit",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "RequestTimeout",
];

/// Whether a batch entry failed with `code` for a reason worth another try: SQS' own fault,
/// or throttling (which some entries report as the sender's fault).
pub(crate) fn entry_retryable(code: &str, sender_fault: bool) -> bool {
    !sender_fault || TRANSIENT_CODES.contains(&code)
}

/// Sorts an SDK error.
pub(crate) fn fault<E>(e: &SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("unknown");
            let text = format!("{code}: {}", ctx.err().message().unwrap_or("no message"));
            let status = ctx.raw().status().as_u16();
            if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code) {
                Fault::Transient(text)
            } else {
                Fault::Refused(text)
            }
        }
        SdkError::ConstructionFailure(_) => Fault::Refused(DisplayErrorContext(e).to_string()),
        other => {
            let text = DisplayErrorContext(other).to_string();
            // No credentials anywhere in the chain: no retry finds them.
            if text.contains("no providers in chain provided credentials") {
                Fault::Refused(format!("no AWS credentials: {text}"))
            } else {
                Fault::Transient(text)
            }
        }
    }
}
