//! The gRPC clients, built from the options (no client-side retries: ours go through
//! `ferroway::resilience`), and their errors sorted into "try again" and "refused".

use std::sync::Arc;
use std::time::Duration;

use gcloud_gax::conn::Channel;
use gcloud_gax::conn::{ConnectionOptions, Environment};
use gcloud_gax::create_request;
use gcloud_gax::grpc::{Code, Status};
use gcloud_gax::retry::RetrySetting;
use gcloud_googleapis::pubsub::v1::publisher_client::PublisherClient as Stub;
use gcloud_googleapis::pubsub::v1::{GetTopicRequest, PublishRequest, PublishResponse, Topic};
use gcloud_pubsub::apiv1::conn_pool::ConnectionManager;
use gcloud_pubsub::apiv1::subscriber_client::SubscriberClient;

use crate::options::ClientOptions;

/// How a failed request should be treated.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Throttling, a server error, a timeout, no connection: try again later.
    Transient(String),
    /// Refused for good (no such subscription or topic, credentials, an invalid request).
    Refused(String),
}

/// Sorts a gRPC status.
pub(crate) fn fault(s: &Status) -> Fault {
    let text = describe(s);
    match s.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Internal
        | Code::Aborted
        | Code::Unknown
        | Code::Cancelled => Fault::Transient(text),
        _ => Fault::Refused(text),
    }
}

/// `Code: message`, the way Pub/Sub's documentation names codes.
pub(crate) fn describe(s: &Status) -> String {
    let message = if s.message().is_empty() {
        "no message"
    } else {
        s.message()
    };
    format!("{:?}: {message}", s.code())
}

/// No retries inside the client: a retry is ours to pace and to report.
pub(crate) fn no_retry() -> Option<RetrySetting> {
    Some(RetrySetting {
        take: 0,
        codes: Vec::new(),
        ..RetrySetting::default()
    })
}

/// A subscriber over two connections (one for the stream, one for acknowledgements).
pub(crate) async fn subscriber(o: &ClientOptions) -> Result<SubscriberClient, Fault> {
    let env = environment(o).await?;
    // The stream is long-lived: no per-request timeout on its connection.
    let stream = manager(o, &env, None).await?;
    let unary = manager(o, &env, Some(Duration::from_secs(60))).await?;
    Ok(SubscriberClient::new(unary, stream))
}

/// A publisher over `pool` connections (requests take turns).
pub(crate) async fn publisher(o: &ClientOptions, pool: usize) -> Result<Publisher, Fault> {
    let env = environment(o).await?;
    let options = connection_options(o, Some(Duration::from_secs(60)));
    let cm = ConnectionManager::new(pool, &o.endpoint, &env, &options)
        .await
        .map_err(|e| Fault::Transient(format!("connecting: {e}")))?;
    Ok(Publisher { cm: Arc::new(cm) })
}

/// The two publisher calls the sink makes, on the generated stub (the client crate keeps
/// its own wrapper private).
#[derive(Clone)]
pub(crate) struct Publisher {
    cm: Arc<ConnectionManager>,
}

/// The largest message gRPC carries either way: Pub/Sub's 10 MB request and some framing.
const GRPC_LIMIT: usize = 12 << 20;

impl Publisher {
    fn stub(&self) -> Stub<Channel> {
        Stub::new(self.cm.conn())
            .max_decoding_message_size(GRPC_LIMIT)
            .max_encoding_message_size(GRPC_LIMIT)
    }

    pub(crate) async fn publish(&self, request: PublishRequest) -> Result<PublishResponse, Status> {
        let routing = format!("topic={}", request.topic);
        Ok(self
            .stub()
            .publish(create_request(routing, request))
            .await?
            .into_inner())
    }

    pub(crate) async fn get_topic(&self, topic: String) -> Result<Topic, Status> {
        let routing = format!("topic={topic}");
        let request = GetTopicRequest { topic };
        Ok(self
            .stub()
            .get_topic(create_request(routing, request))
            .await?
            .into_inner())
    }
}

async fn manager(o: &ClientOptions, env: &Environment, timeout: Option<Duration>) -> Result<ConnectionManager, Fault> {
    ConnectionManager::new(1, &o.endpoint, env, &connection_options(o, timeout))
        .await
        .map_err(|e| Fault::Transient(format!("connecting: {e}")))
}

fn connection_options(o: &ClientOptions, timeout: Option<Duration>) -> ConnectionOptions {
    ConnectionOptions {
        timeout,
        connect_timeout: Some(o.connect_timeout),
        // A peer that vanished without closing (a killed emulator, a dropped NAT entry) is
        // found within a minute instead of never.
        http2_keep_alive_interval: Some(Duration::from_secs(30)),
        keep_alive_timeout: Some(Duration::from_secs(20)),
        keep_alive_while_idle: Some(true),
    }
}

/// The emulator, else Google Cloud with credentials.
async fn environment(o: &ClientOptions) -> Result<Environment, Fault> {
    if let Some(host) = o.emulator() {
        return Ok(Environment::Emulator(host));
    }
    google_cloud(o).await
}

#[cfg(feature = "auth")]
async fn google_cloud(o: &ClientOptions) -> Result<Environment, Fault> {
    use gcloud_pubsub::client::google_cloud_auth::credentials::CredentialsFile;
    use gcloud_pubsub::client::google_cloud_auth::project::Config;
    use gcloud_pubsub::client::google_cloud_auth::token::DefaultTokenSourceProvider;
    // The token requests go through reqwest on rustls without a provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::default()
        .with_audience(gcloud_pubsub::apiv1::conn_pool::AUDIENCE)
        .with_scopes(&gcloud_pubsub::apiv1::conn_pool::SCOPES);
    let provider = match &o.credentials_file {
        Some(path) => {
            let file = CredentialsFile::new_from_file(path.to_string_lossy().into_owned())
                .await
                .map_err(|e| Fault::Refused(format!("reading credentials file {}: {e}", path.display())))?;
            DefaultTokenSourceProvider::new_with_credentials(config, Box::new(file)).await
        }
        None => DefaultTokenSourceProvider::new(config).await,
    }
    .map_err(|e| Fault::Refused(format!("no Google Cloud credentials: {e}")))?;
    Ok(Environment::GoogleCloud(Box::new(provider)))
}

#[cfg(not(feature = "auth"))]
async fn google_cloud(_: &ClientOptions) -> Result<Environment, Fault> {
    Err(Fault::Refused(
        "no emulator is set (`emulator_host`, PUBSUB_EMULATOR_HOST) and ferroway-pubsub was built \
         without its `auth` feature, which Google Cloud needs"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_sorted() {
        assert!(matches!(fault(&Status::unavailable("down")), Fault::Transient(_)));
        assert!(matches!(
            fault(&Status::resource_exhausted("slow")),
            Fault::Transient(_)
        ));
        let Fault::Refused(t) = fault(&Status::not_found("Subscription does not exist")) else {
            panic!("not found is refused")
        };
        assert_eq!(t, "NotFound: Subscription does not exist");
        assert!(matches!(fault(&Status::permission_denied("")), Fault::Refused(_)));
    }
}
