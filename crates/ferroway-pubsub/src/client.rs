//! The gRPC clients, built from the options (no client-side retries: ours go through
//! `ferroway::resilience`), and their errors sorted into "try again" and "refused".

use std::sync::Arc;
use std::time::Duration;

use gcloud_gax::conn::Channel;
use gcloud_gax::conn::{ConnectionOptions, Environment};
use gcloud_gax::create_request;
use gcloud_gax::grpc::{Code, Status};
use gcloud_gax::grpc::{IntoStreamingRequest, Streaming};
use gcloud_googleapis::pubsub::v1::publisher_client::PublisherClient as Stub;
use gcloud_googleapis::pubsub::v1::subscriber_client::SubscriberClient as SubscriberStub;
use gcloud_googleapis::pubsub::v1::{
    AcknowledgeRequest, GetSubscriptionRequest, GetTopicRequest, ModifyAckDeadlineRequest, PublishRequest,
    PublishResponse, StreamingPullRequest, StreamingPullResponse, Subscription, Topic,
};
use gcloud_pubsub::apiv1::conn_pool::ConnectionManager;
use tokio::sync::oneshot;

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

/// A subscriber over two connections (one for the stream, one for acknowledgements).
pub(crate) async fn subscriber(o: &ClientOptions) -> Result<Subscriber, Fault> {
    let env = environment(o).await?;
    // The stream is long-lived: no per-request timeout on its connection.
    let stream = manager(o, &env, None).await?;
    let unary = manager(o, &env, Some(Duration::from_secs(60))).await?;
    Ok(Subscriber {
        unary: Arc::new(unary),
        stream: Arc::new(stream),
    })
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

/// The subscriber calls the source makes, on the generated stub: the client crate's own
/// streaming pull never ends its side of the stream, and a stream that is only dropped is
/// cancelled — which the emulator never notices (its server keeps pulling for the dead
/// stream, holding messages from the live ones).
#[derive(Clone)]
pub(crate) struct Subscriber {
    unary: Arc<ConnectionManager>,
    stream: Arc<ConnectionManager>,
}

impl Subscriber {
    fn stub(cm: &ConnectionManager) -> SubscriberStub<Channel> {
        SubscriberStub::new(cm.conn())
            .max_decoding_message_size(GRPC_LIMIT)
            .max_encoding_message_size(GRPC_LIMIT)
    }

    pub(crate) async fn get_subscription(&self, subscription: String) -> Result<Subscription, Status> {
        let routing = format!("subscription={subscription}");
        let request = GetSubscriptionRequest { subscription };
        Ok(Self::stub(&self.unary)
            .get_subscription(create_request(routing, request))
            .await?
            .into_inner())
    }

    pub(crate) async fn acknowledge(&self, request: AcknowledgeRequest) -> Result<(), Status> {
        let routing = format!("subscription={}", request.subscription);
        Self::stub(&self.unary)
            .acknowledge(create_request(routing, request))
            .await?;
        Ok(())
    }

    pub(crate) async fn modify_ack_deadline(&self, request: ModifyAckDeadlineRequest) -> Result<(), Status> {
        let routing = format!("subscription={}", request.subscription);
        Self::stub(&self.unary)
            .modify_ack_deadline(create_request(routing, request))
            .await?;
        Ok(())
    }

    /// Opens a stream: `first`, then an empty request every `ping` to keep it alive, until
    /// `close` is dropped — which ends the client's side (a half-close), and Pub/Sub then
    /// ends the stream.
    pub(crate) async fn streaming_pull(
        &self,
        first: StreamingPullRequest,
        ping: Duration,
        close: oneshot::Receiver<()>,
    ) -> Result<Streaming<StreamingPullResponse>, Status> {
        let routing = format!("subscription={}", first.subscription);
        let requests = futures_util::stream::unfold((Some(first), close), move |(first, mut close)| async move {
            if let Some(first) = first {
                return Some((first, (None, close)));
            }
            tokio::select! {
                _ = tokio::time::sleep(ping) => Some((StreamingPullRequest::default(), (None, close))),
                _ = &mut close => None,
            }
        });
        let mut request = requests.into_streaming_request();
        request.metadata_mut().insert(
            "x-goog-request-params",
            routing
                .parse()
                .map_err(|_| Status::invalid_argument("the subscription name is not valid in a header"))?,
        );
        Ok(Self::stub(&self.stream).streaming_pull(request).await?.into_inner())
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
