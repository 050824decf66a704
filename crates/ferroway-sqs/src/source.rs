//! The source: long-poll receives sized by the pipeline's demand, as pipeline producers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::receive_message::{ReceiveMessageError, ReceiveMessageOutput};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use ferroway::BoxError;
use ferroway::connector::leases::{Arrival, Leases};
use ferroway::connector::settle::{self, Acker, Job};
use ferroway::connector::{Producers, Source};
use ferroway::pipeline::{Acknowledger, BoxFuture, Message, OnFailure};
use ferroway::resilience::{Backoff, Reach, StatefulBackoff};
use ferroway::stage::{Emit, Producer};
use ferroway::telemetry::LogThrottle;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::ack::{self, Settings, SqsCalls};
use crate::client::{self, Fault};
use crate::error::{OptionsError, SourceError};
use crate::message::{SqsMessage, SqsMetadata, split};
use crate::options::{OnFailed, SqsOptions};

/// Consumes an SQS queue: one pipeline producer. A pipeline gets them from
/// [`SqsSource::factory`].
///
/// - **Demand-driven:** each `ReceiveMessage` long poll asks for at most what the pipeline
///   demanded and the receives in flight do not already cover (at most
///   [`max_messages`](SqsOptions::max_messages) each, [`max_receives`](SqsOptions::max_receives)
///   at once), so no message sits in memory with its visibility timeout running out.
/// - **Acknowledged after the pipeline:** deleted (`DeleteMessageBatch`, grouped by ten,
///   SQS-side failures retried) once the pipeline finished with it. A failure is left to
///   reappear after the visibility timeout, or made visible after a delay ([`OnFailed`](crate::OnFailed)).
/// - **Dead letters:** a message received [`max_receive_count`](SqsOptions::max_receive_count)
///   times or more that fails goes to the pipeline's dead-letter route, then is deleted.
///   Set it at or below the queue's own redrive `maxReceiveCount`: the queue moves a message
///   to its dead-letter queue only on the receive after that count, so ours gets it first;
///   without a dead-letter route in the pipeline, a failure is left to the queue's redrive.
/// - **Slow work:** a message still in the pipeline [`extend_before`](SqsOptions::extend_before)
///   the end of its visibility timeout gets it extended (`ChangeMessageVisibilityBatch`), up
///   to [`max_extension`](SqsOptions::max_extension) in all.
/// - **Copies:** SQS may hand a message out twice (a standard queue's occasional second
///   copy, or a visibility timeout that ran out). A copy of a message still in the pipeline
///   (for less than `max_extension` plus the visibility timeout) is not emitted (its newer
///   receipt handle is the one deleted); a copy of one of the last 4096 messages handled is
///   deleted, not handled again. `ferroway_sqs_copies_total` counts them. Copies are
///   recognised within a producer (one by default); older ones are handled again: SQS is
///   at-least-once.
/// - **FIFO:** the group id is the message's key (`partition_by` on it keeps each group's
///   order); every receive carries a receive-request-attempt id, reused when it is retried.
/// - **Outages, throttling, 5xx:** waited out with backoff, a warning every 10 s. No such
///   queue, rejected credentials: the source fails with [`SourceError::Refused`].
/// - **Stop:** receives still open get up to two seconds to return (their messages are
///   processed); one still open then is abandoned — whatever SQS handed it reappears after
///   its visibility timeout. The pipeline's stop returns once every delete is made.
///
/// ```no_run
/// use ferroway::pipeline::{Handler, Message, Pipeline};
/// use ferroway_sqs::{SqsMessage, SqsOptions, SqsSource};
///
/// struct Print;
/// impl Handler for Print {
///     type Data = SqsMessage;
///     async fn handle_message(&self, m: &mut Message<SqsMessage>) -> Result<(), ferroway::BoxError> {
///         println!("{}", m.data().body);
///         Ok(())
///     }
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let opts = SqsOptions::new("https://sqs.eu-west-1.amazonaws.com/123456789012/orders");
/// let pipeline = Pipeline::builder("print", Print)
///     .source(SqsSource::factory(opts)?)
///     .start()
///     .await?;
/// pipeline.run_until(ferroway::shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct SqsSource {
    opts: Arc<SqsOptions>,
    client: Option<Client>,
    /// Hands the acknowledgement task the client once SQS answered.
    to_acks: Option<(oneshot::Sender<SqsCalls>, Arc<Settings>)>,
    leases: Arc<Leases>,
    acker: Arc<dyn Acknowledger>,
    ack_tx: mpsc::UnboundedSender<Job>,
    receives: FuturesUnordered<BoxFuture<'static, Received>>,
    /// Messages the receives in flight may still bring.
    owed: usize,
    /// Received and not yet emitted: a demand gets no more than it asked for, and nothing
    /// received is dropped when a later receive fails.
    ready: VecDeque<Message<SqsMessage>>,
    /// A refusal met while messages were ready: returned once they are emitted.
    refused: Option<SourceError>,
    /// Why SQS failed a receive, to wait out (with backoff) before the next ones; and the
    /// FIFO receives to make again with the same attempt ids.
    outage: Option<String>,
    again: Vec<(usize, String)>,
    /// The visibility timeout received messages get, in seconds.
    visibility: Arc<AtomicU64>,
    system_attributes: Vec<MessageSystemAttributeName>,
    reach: Arc<Reach>,
    retry: StatefulBackoff,
    outage_log: LogThrottle,
    queue_url: Arc<str>,
    queue: String,
    attempts: u64,
    received: metrics::Counter,
    /// Copies received of messages still in the pipeline.
    copies: metrics::Counter,
}

struct Received {
    asked: usize,
    attempt_id: Option<String>,
    result: Result<ReceiveMessageOutput, SdkError<ReceiveMessageError, HttpResponse>>,
}

/// How long a stop waits for the receives still open.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

impl std::fmt::Debug for SqsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsSource")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl SqsSource {
    /// A source for `opts`; reaches SQS on the first demand. In a pipeline prefer
    /// [`SqsSource::factory`]: the pipeline then also waits for the last deletes when it
    /// stops.
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn new(opts: SqsOptions) -> Result<Self, OptionsError> {
        opts.validate()?;
        Ok(Self::start(Arc::new(opts)))
    }

    /// Validates `opts` and returns the [`Source`] a pipeline takes.
    ///
    /// ```
    /// use ferroway_sqs::{SqsOptions, SqsSource};
    /// let e = SqsSource::factory(SqsOptions::new("http://h:1/1/q").max_messages(50)).unwrap_err();
    /// assert!(e.to_string().starts_with("invalid option `max_messages`"));
    /// ```
    ///
    /// # Errors
    /// [`OptionsError`] naming the first invalid option.
    pub fn factory(opts: SqsOptions) -> Result<SqsSourceFactory, OptionsError> {
        opts.validate()?;
        Ok(SqsSourceFactory {
            opts: Arc::new(opts),
            producers: Producers::new(Job::Flush),
        })
    }

    fn start(opts: Arc<SqsOptions>) -> Self {
        let leases = Arc::new(Leases::default());
        let (ack_tx, jobs) = mpsc::unbounded_channel();
        let (calls_tx, calls_rx) = oneshot::channel();
        let queue_url: Arc<str> = opts.queue.queue_url.as_str().into();
        let queue = opts.queue.queue_name().to_owned();
        let visibility = Arc::new(AtomicU64::new(opts.visibility_timeout.map_or(30, |v| v.as_secs())));
        tokio::spawn(settle::run::<SqsCalls>(calls_rx, leases.clone(), jobs, ack::CALLS));
        let settings = Arc::new(Settings {
            queue_url: queue_url.clone(),
            queue: queue.clone(),
            visibility: visibility.clone(),
            extend_before: opts.extend_before,
            max_extension: opts.max_extension,
        });
        let mut system_attributes: Vec<MessageSystemAttributeName> = opts
            .attribute_names
            .iter()
            .map(|a| MessageSystemAttributeName::from(a.as_str()))
            .collect();
        if opts.max_receive_count.is_some()
            && !system_attributes.contains(&MessageSystemAttributeName::ApproximateReceiveCount)
        {
            system_attributes.push(MessageSystemAttributeName::ApproximateReceiveCount);
        }
        SqsSource {
            acker: Arc::new(Acker::new(
                leases.clone(),
                ack_tx.clone(),
                match opts.on_failed {
                    OnFailed::Leave => None,
                    OnFailed::Retry { delay } => Some(delay),
                },
                metrics::counter!(crate::metrics::ACKS, "queue" => queue.clone(), "kind" => "leave"),
            )),
            received: metrics::counter!(crate::metrics::RECEIVED, "queue" => queue.clone()),
            copies: metrics::counter!(crate::metrics::COPIES, "queue" => queue.clone()),
            reach: Reach::of(&format!("sqs\n{queue_url}")),
            retry: Backoff::exponential(Duration::from_millis(100))
                .cap(Duration::from_secs(5))
                .stateful(),
            outage_log: LogThrottle::new(Duration::from_secs(10)),
            client: None,
            to_acks: Some((calls_tx, settings)),
            receives: FuturesUnordered::new(),
            owed: 0,
            ready: VecDeque::new(),
            refused: None,
            outage: None,
            again: Vec::new(),
            attempts: 0,
            leases,
            ack_tx,
            visibility,
            system_attributes,
            queue_url,
            queue,
            opts,
        }
    }

    fn refused(&self, step: &'static str, reason: String) -> SourceError {
        SourceError::Refused {
            queue: self.queue.clone(),
            step,
            reason,
        }
    }

    async fn pause(&mut self, why: &str, wait: Duration) {
        if let Some(suppressed) = self.outage_log.allow() {
            warn!(queue = %self.queue, error = why, suppressed, "waiting for SQS");
        }
        let pause = self.retry.fail().unwrap_or(Duration::from_secs(5)).min(wait);
        tokio::time::sleep(pause).await;
    }

    /// The client, once SQS answered for the queue (its visibility timeout read).
    async fn live(&mut self) -> Result<Client, SourceError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        // A receive stays open for the long poll: its timeout must outlast it.
        let attempt_timeout = self.opts.wait_time + Duration::from_secs(15);
        let client = client::build(&self.opts.queue, attempt_timeout)
            .await
            .map_err(|f| self.refused("configuring the client", f.text().to_owned()))?;
        loop {
            let Some(wait) = self.reach.wait(self.opts.queue.reach_timeout, Duration::MAX) else {
                return Err(SourceError::Unreachable {
                    queue: self.queue.clone(),
                    endpoint: client::endpoint_shown(&self.opts.queue),
                    waited: self.reach.waited(),
                    last_error: self.reach.last_error(),
                });
            };
            let asked = client
                .get_queue_attributes()
                .queue_url(&*self.queue_url)
                .attribute_names(QueueAttributeName::VisibilityTimeout)
                .send()
                .await;
            match asked {
                Ok(out) => {
                    let queue_default = out.attributes.and_then(|a| {
                        a.get(&QueueAttributeName::VisibilityTimeout)
                            .and_then(|v| v.parse::<u64>().ok())
                            .map(|v| v.min(crate::options::MAX_VISIBILITY.as_secs()))
                    });
                    if let (None, Some(v)) = (self.opts.visibility_timeout, queue_default) {
                        self.visibility.store(v, Ordering::Relaxed);
                    }
                    break;
                }
                Err(e) => match client::fault(&e) {
                    Fault::Refused(why) => return Err(self.refused("reading the queue's attributes", why)),
                    Fault::Transient(why) => {
                        self.reach.failed(Some(why.clone()));
                        self.pause(&why, wait).await;
                    }
                },
            }
        }
        self.reach.mark_reached();
        self.retry.succeed();
        if let Some((tx, settings)) = self.to_acks.take() {
            let _ = tx.send(SqsCalls {
                client: client.clone(),
                settings,
            });
        }
        info!(
            queue = %self.queue,
            visibility_timeout_s = self.visibility.load(Ordering::Relaxed),
            "consuming"
        );
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Starts a receive of at most `asked` messages (`attempt_id`: FIFO, reused on retry).
    fn receive(&mut self, client: &Client, asked: usize, attempt_id: Option<String>) {
        let o = &self.opts;
        let mut req = client
            .receive_message()
            .queue_url(&*self.queue_url)
            .max_number_of_messages(asked as i32)
            .wait_time_seconds(o.wait_time.as_secs() as i32)
            .set_message_system_attribute_names(Some(self.system_attributes.clone()))
            .set_message_attribute_names(Some(o.message_attribute_names.clone()));
        if let Some(v) = o.visibility_timeout {
            req = req.visibility_timeout(v.as_secs() as i32);
        }
        if let Some(id) = &attempt_id {
            req = req.receive_request_attempt_id(id);
        }
        self.owed += asked;
        self.receives.push(Box::pin(async move {
            Received {
                asked,
                attempt_id,
                result: req.send().await,
            }
        }));
    }

    fn attempt_id(&mut self) -> Option<String> {
        if !self.opts.queue.is_fifo() {
            return None;
        }
        self.attempts += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Some(format!("ferroway-{}-{nanos:x}-{}", std::process::id(), self.attempts))
    }

    /// What a finished receive brings: its messages into `ready`; a failure noted, to wait
    /// out (a FIFO receive is made again with the same attempt id) or to return when refused.
    fn settle(&mut self, r: Received) {
        self.owed = self.owed.saturating_sub(r.asked);
        match r.result {
            Ok(o) => {
                self.retry.succeed();
                for m in o.messages.unwrap_or_default() {
                    if let Some(m) = self.message(m) {
                        self.ready.push_back(m);
                    }
                }
            }
            Err(e) => match client::fault(&e) {
                Fault::Refused(why) => {
                    let e = self.refused("receiving", why);
                    self.refused.get_or_insert(e);
                }
                Fault::Transient(why) => {
                    self.outage = Some(why);
                    if let Some(id) = r.attempt_id {
                        self.again.push((r.asked, id));
                    }
                }
            },
        }
    }

    fn message(&self, m: aws_sdk_sqs::types::Message) -> Option<Message<SqsMessage>> {
        let (data, meta) = split(&self.queue_url, m)?;
        let visibility = Duration::from_secs(self.visibility.load(Ordering::Relaxed));
        let token = match self.leases.add(
            &meta.message_id,
            meta.receipt_handle.clone(),
            0,
            visibility,
            self.opts.max_extension + visibility,
        ) {
            Arrival::New(token) => token,
            Arrival::InPipeline => {
                self.copies.increment(1);
                debug!(queue = %self.queue, message_id = %meta.message_id, "received again while in the pipeline: handled once");
                return None;
            }
            Arrival::Handled(receipt) => {
                self.copies.increment(1);
                debug!(queue = %self.queue, message_id = %meta.message_id, "received again after it was handled: deleted");
                let _ = self.ack_tx.send(Job::Settle(vec![receipt]));
                return None;
            }
        };
        let last = self
            .opts
            .max_receive_count
            .is_some_and(|n| meta.receive_count.unwrap_or(1) >= n);
        let mut message = Message::with_acker(data, self.acker.clone(), token);
        if !last {
            // Left for SQS to deliver again: the dead-letter route is for the last receive.
            message.configure_ack(OnFailure::Requeue);
        }
        message.put_origin::<SqsMetadata>(meta);
        self.received.increment(1);
        Some(message)
    }
}

impl Producer for SqsSource {
    type Output = Message<SqsMessage>;

    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<SqsMessage>>, BoxError> {
        // Cancel-safe: what is received waits in `self.ready`, receives not yet finished
        // in `self.receives`.
        loop {
            if !self.ready.is_empty() {
                let n = demand.min(self.ready.len());
                return Ok(Emit::Events(self.ready.drain(..n).collect()));
            }
            if let Some(e) = self.refused.take() {
                return Err(e.into());
            }
            if let Some(why) = self.outage.take() {
                self.pause(&why, Duration::MAX).await;
            }
            let client = self.live().await?;
            for (asked, id) in std::mem::take(&mut self.again) {
                self.receive(&client, asked, Some(id));
            }
            while self.receives.len() < self.opts.max_receives && self.owed < demand {
                let asked = (demand - self.owed).min(self.opts.max_messages);
                let id = self.attempt_id();
                self.receive(&client, asked, id);
            }
            let Some(r) = self.receives.next().await else { continue };
            self.settle(r);
            while let Some(Some(r)) = self.receives.next().now_or_never() {
                self.settle(r);
            }
        }
    }

    async fn prepare_for_draining(&mut self) -> Vec<Message<SqsMessage>> {
        let mut last: Vec<_> = self.ready.drain(..).collect();
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        while !self.receives.is_empty() {
            match tokio::time::timeout_at(deadline, self.receives.next()).await {
                Ok(Some(r)) => {
                    self.owed = self.owed.saturating_sub(r.asked);
                    if let Ok(o) = r.result {
                        for m in o.messages.unwrap_or_default() {
                            last.extend(self.message(m));
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    info!(queue = %self.queue, open = self.receives.len(), "stopping: long polls still open are abandoned");
                    break;
                }
            }
        }
        self.receives = FuturesUnordered::new();
        self.owed = 0;
        last
    }
}

/// A [`Source`] of SQS messages: what
/// [`PipelineBuilder::source`](ferroway::pipeline::PipelineBuilder::source) takes. Made by
/// [`SqsSource::factory`]. Every producer receives from the same queue; when
/// [`Pipeline::stop`](ferroway::pipeline::Pipeline::stop) returns, every delete is made.
pub struct SqsSourceFactory {
    opts: Arc<SqsOptions>,
    producers: Producers<Job>,
}

impl std::fmt::Debug for SqsSourceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsSourceFactory")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Source for SqsSourceFactory {
    type Data = SqsMessage;
    type Producer = SqsSource;

    fn producer(&self, _index: usize) -> Result<SqsSource, BoxError> {
        let source = SqsSource::start(self.opts.clone());
        self.producers.add(source.ack_tx.clone(), source.reach.clone());
        Ok(source)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.producers.finish()
    }

    fn connected(&self) -> bool {
        self.producers.connected()
    }
}
