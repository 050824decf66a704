//! A request/reply service (the `Gnat.Server` pattern): a handler answers each request, with
//! a concurrency limit, in a queue group, resubscribing if its subscription ends.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::message::NatsMessage;
use crate::options::NatsUrl;

/// Serves requests on a subject: each request is given to a handler, which returns the reply
/// body or an error; an error is answered with an empty body and the headers
/// `Nats-Service-Error` (the message) and `Nats-Service-Error-Code: 500` (as NATS services
/// do). Runs in a queue group (several instances share the requests), at most `concurrency`
/// requests at once; if the subscription ends, it subscribes again after a pause.
///
/// ```no_run
/// use ferroway_nats::Service;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let service = Service::new("nats://127.0.0.1:4222", "greet", "greeters")
///     .concurrency(32)
///     .serve(|req| async move { Ok::<_, String>(format!("hello {}", String::from_utf8_lossy(&req.payload)).into()) })
///     .await?;
/// # service.stop();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Service {
    url: NatsUrl,
    subject: String,
    queue_group: String,
    concurrency: usize,
}

/// A running [`Service`]; [`stop`](Self::stop) ends it.
#[derive(Debug)]
pub struct ServiceHandle {
    task: JoinHandle<()>,
}

impl ServiceHandle {
    /// Stops serving (requests in progress are dropped; their requesters time out).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Service {
    /// A service answering `subject` in `queue_group`, 16 requests at once.
    pub fn new(url: impl Into<NatsUrl>, subject: impl Into<String>, queue_group: impl Into<String>) -> Self {
        Service {
            url: url.into(),
            subject: subject.into(),
            queue_group: queue_group.into(),
            concurrency: 16,
        }
    }

    /// At most `n` requests handled at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Connects, subscribes and serves until stopped.
    ///
    /// # Errors
    /// The server could not be reached or refused the subscription (the URL redacted).
    pub async fn serve<F, Fut, E>(self, handler: F) -> Result<ServiceHandle, String>
    where
        F: Fn(NatsMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let client = crate::connection::connect(&self.url, "ferroway-service", 1024).await?;
        let subscribe = {
            let client = client.clone();
            let (subject, group) = (self.subject.clone(), self.queue_group.clone());
            move || {
                let (client, subject, group) = (client.clone(), subject.clone(), group.clone());
                async move { client.queue_subscribe(subject, group).await }
            }
        };
        let mut sub = subscribe().await.map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())?;
        let handler = Arc::new(handler);
        let limit = Arc::new(Semaphore::new(self.concurrency));
        let subject = self.subject.clone();
        let task = tokio::spawn(async move {
            loop {
                while let Some(req) = sub.next().await {
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        return;
                    };
                    let (client, handler) = (client.clone(), handler.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        let Some(reply) = req.reply.clone() else {
                            debug!("a request without a reply subject: nothing to answer");
                            return;
                        };
                        let sent = match handler(NatsMessage::from_client(req)).await {
                            Ok(body) => client.publish(reply, body).await,
                            Err(e) => {
                                let mut h = HeaderMap::new();
                                h.insert("Nats-Service-Error", e.to_string().as_str());
                                h.insert("Nats-Service-Error-Code", "500");
                                client.publish_with_headers(reply, h, Bytes::new()).await
                            }
                        };
                        if let Err(e) = sent {
                            warn!(error = %e, "a reply could not be sent");
                        }
                    });
                }
                warn!(subject = %subject, "the service's subscription ended; subscribing again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                match subscribe().await {
                    Ok(s) => sub = s,
                    Err(e) => warn!(subject = %subject, error = %e, "subscribing again failed"),
                }
            }
        });
        Ok(ServiceHandle { task })
    }
}
