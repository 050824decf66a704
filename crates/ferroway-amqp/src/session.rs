//! A session: the task that owns one producer's connection and channel. It (re)connects with
//! backoff, declares the topology, consumes with `basic.qos(prefetch_count)`, hands each
//! delivery to the producer, and settles the pipeline's outcomes on the channel they came
//! from. A lost connection is a new channel *generation*: the broker requeued everything the
//! old one had not settled, so outcomes for it are dropped and deliveries of it not yet
//! emitted are discarded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use amqprs::FieldTable;
use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicNackArguments, BasicQosArguments, Channel,
    ConsumerMessage, QueueBindArguments, QueueDeclareArguments,
};
use ferroway::pipeline::{Acknowledger, Message};
use ferroway::resilience::{Reach, StatefulBackoff};
use ferroway::telemetry::LogThrottle;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::ack::{Cmd, frames, token};
use crate::connection::{self, ChannelEvents, Closed, Failure, Link, OnChannel};
use crate::delivery::{AmqpMetadata, Delivery};
use crate::error::SourceError;
use crate::options::{Argument, QueueType, SourceOptions};

/// What a session hands its producer.
// Nearly every event is a delivery: boxing it would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Event {
    Delivery(Message<Delivery>),
    /// The source cannot go on (never reached the broker, refused topology, gave up).
    Failed(SourceError),
}

pub(crate) struct Session {
    pub(crate) opts: Arc<SourceOptions>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) generation: Arc<AtomicU64>,
    pub(crate) acker: Arc<dyn Acknowledger>,
    pub(crate) reach: Arc<Reach>,
    pub(crate) queue: Arc<str>,
}

/// A consuming channel.
struct Live {
    link: Link,
    channel: Channel,
    closed: Arc<Closed>,
    consumer_tag: String,
    rx: mpsc::UnboundedReceiver<ConsumerMessage>,
}

struct Events(Arc<Closed>);

impl ChannelEvents for Events {
    fn closed(&self) -> &Closed {
        &self.0
    }
}

/// How a consuming channel ended.
enum End {
    /// The pipeline is done with the source (closed, or every acknowledger gone).
    Closed,
    /// Connection or channel lost.
    Lost(String),
}

/// How long to wait for the broker's answer to `basic.cancel` and the deliveries before it.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

impl Session {
    pub(crate) async fn run(self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut retry: StatefulBackoff = self.opts.reconnect.stateful();
        let outage = LogThrottle::new(Duration::from_secs(10));
        let mut cancelled = false;
        loop {
            if cancelled {
                // Stopped consuming and then lost the channel: only the close is left.
                self.idle(&mut cmds).await;
                return;
            }
            let opened = tokio::select! {
                r = self.open() => r,
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => { cancelled |= self.offline(cmd); continue; }
                    None => return,
                },
            };
            let live = match opened {
                Ok(live) => live,
                Err(Failure::Refused { step, reason }) => {
                    self.reach.failed(Some(reason.clone()));
                    self.fail(SourceError::Refused {
                        queue: self.opts.queue.clone(),
                        uri: self.opts.uri.redacted(),
                        step,
                        reason,
                    });
                    self.idle(&mut cmds).await;
                    return;
                }
                Err(Failure::Down(why)) => {
                    self.reach.failed(Some(why.clone()));
                    let pause = retry.fail();
                    let wait = self.reach.wait(self.opts.connect_timeout, Duration::MAX);
                    let (Some(pause), Some(wait)) = (pause, wait) else {
                        self.fail(match wait {
                            None => SourceError::Unreachable {
                                queue: self.opts.queue.clone(),
                                uri: self.opts.uri.redacted(),
                                waited: self.reach.waited(),
                                last_error: self.reach.last_error(),
                            },
                            Some(_) => SourceError::GaveUp {
                                queue: self.opts.queue.clone(),
                                uri: self.opts.uri.redacted(),
                                last_error: why,
                            },
                        });
                        self.idle(&mut cmds).await;
                        return;
                    };
                    if let Some(suppressed) = outage.allow() {
                        warn!(uri = %self.opts.uri, queue = %self.opts.queue, error = %why, suppressed, "waiting for RabbitMQ");
                    }
                    let sleep = tokio::time::sleep(pause.min(wait));
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            _ = &mut sleep => break,
                            cmd = cmds.recv() => match cmd {
                                Some(cmd) => cancelled |= self.offline(cmd),
                                None => return,
                            },
                        }
                    }
                    continue;
                }
            };
            retry.succeed();
            if self.reach.reached() {
                info!(uri = %self.opts.uri, queue = %self.opts.queue, "consuming again after reconnecting");
            } else {
                info!(uri = %self.opts.uri, queue = %self.opts.queue, prefetch = self.opts.prefetch_count, "consuming");
            }
            self.reach.mark_reached();
            outage.reset();
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            match self.consume(live, generation, &mut cmds, &mut cancelled).await {
                End::Closed => return,
                End::Lost(why) => {
                    metrics::counter!(crate::metrics::RECONNECTS, "queue" => self.queue.to_string()).increment(1);
                    warn!(uri = %self.opts.uri, queue = %self.opts.queue, error = %why,
                        "RabbitMQ connection lost; reconnecting (unacknowledged deliveries are redelivered by the broker)");
                }
            }
        }
    }

    fn fail(&self, e: SourceError) {
        warn!(error = %e, "RabbitMQ source failed");
        let _ = self.events.send(Event::Failed(e));
    }

    /// A command while no channel is open: outcomes of the lost channel are dropped (the
    /// broker redelivers those messages). True when it was a cancel.
    fn offline(&self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Settle { acks, rejects, .. } => {
                self.stale(acks.len() + rejects.len());
                false
            }
            Cmd::Flush(reply) | Cmd::Close(reply) => {
                let _ = reply.send(());
                false
            }
            Cmd::Cancel(reply) => {
                let _ = reply.send(());
                true
            }
        }
    }

    fn stale(&self, n: usize) {
        if n > 0 {
            debug!(
                count = n,
                "outcomes for a lost channel dropped; the broker redelivers those messages"
            );
            metrics::counter!(crate::metrics::STALE, "queue" => self.queue.to_string()).increment(n as u64);
        }
    }

    /// Answers commands without a channel until closed.
    async fn idle(&self, cmds: &mut mpsc::UnboundedReceiver<Cmd>) {
        while let Some(cmd) = cmds.recv().await {
            let closing = matches!(cmd, Cmd::Close(_));
            self.offline(cmd);
            if closing {
                return;
            }
        }
    }

    async fn open(&self) -> Result<Live, Failure> {
        let link = connection::open(&self.opts.uri, &self.opts.connection_name).await?;
        let closed = Arc::new(Closed::default());
        let down = |e: amqprs::error::Error| Failure::Down(e.to_string());
        let channel = link.conn.open_channel(None).await.map_err(down)?;
        channel
            .register_callback(OnChannel(Arc::new(Events(closed.clone()))))
            .await
            .map_err(down)?;
        // A broker refusal closes the channel: its reason says what was wrong.
        let step = |step: String| {
            let closed = closed.clone();
            move |e: amqprs::error::Error| match closed.refusal() {
                Some(reason) => Failure::Refused {
                    step: step.clone(),
                    reason,
                },
                None => Failure::Down(connection::reason(&e, &closed)),
            }
        };
        channel
            .basic_qos(BasicQosArguments::new(0, self.opts.prefetch_count, false))
            .await
            .map_err(step("basic.qos".into()))?;
        let queue = match &self.opts.declare {
            Some(d) => {
                let mut args = QueueDeclareArguments::new(&self.opts.queue);
                args.durable(d.durable)
                    .exclusive(d.exclusive)
                    .auto_delete(d.auto_delete)
                    .arguments(arguments(d.queue_type, &d.arguments));
                let declared = channel
                    .queue_declare(args)
                    .await
                    .map_err(step(format!("queue.declare of `{}`", self.opts.queue)))?;
                declared.map_or_else(|| self.opts.queue.clone(), |(name, _, _)| name)
            }
            None => self.opts.queue.clone(),
        };
        for b in &self.opts.bindings {
            channel
                .queue_bind(QueueBindArguments::new(&queue, &b.exchange, &b.routing_key))
                .await
                .map_err(step(format!("queue.bind to exchange `{}`", b.exchange)))?;
        }
        let mut args = BasicConsumeArguments::new(&queue, self.opts.consumer_tag.as_deref().unwrap_or(""));
        args.manual_ack(true);
        let (consumer_tag, rx) = channel
            .basic_consume_rx(args)
            .await
            .map_err(step(format!("basic.consume of queue `{queue}`")))?;
        Ok(Live {
            link,
            channel,
            closed,
            consumer_tag,
            rx,
        })
    }

    async fn consume(
        &self,
        mut live: Live,
        generation: u64,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
        cancelled: &mut bool,
    ) -> End {
        let mut outstanding: BTreeSet<u64> = BTreeSet::new();
        let received = metrics::counter!(crate::metrics::RECEIVED, "queue" => self.queue.to_string());
        let conn = live.link.conn.clone();
        let io_failure = conn.listen_network_io_failure();
        tokio::pin!(io_failure);
        loop {
            tokio::select! {
                m = live.rx.recv(), if !*cancelled => match m {
                    Some(m) => {
                        if let Some(tag) = self.forward(m, generation) {
                            outstanding.insert(tag);
                            received.increment(1);
                        }
                    }
                    None => return End::Lost(self.why(&live, "the consumer's channel closed")),
                },
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Settle { generation: g, acks, rejects }) if g == generation => {
                        if let Err(e) = self.settle(&live.channel, &mut outstanding, acks, rejects).await {
                            return End::Lost(self.why(&live, &e.to_string()));
                        }
                    }
                    Some(Cmd::Settle { acks, rejects, .. }) => self.stale(acks.len() + rejects.len()),
                    Some(Cmd::Flush(reply)) => { let _ = reply.send(()); }
                    Some(Cmd::Cancel(reply)) => {
                        self.cancel(&mut live, generation, &mut outstanding).await;
                        *cancelled = true;
                        let _ = reply.send(());
                    }
                    Some(Cmd::Close(reply)) => {
                        self.close(live, &outstanding).await;
                        let _ = reply.send(());
                        return End::Closed;
                    }
                    None => {
                        self.close(live, &outstanding).await;
                        return End::Closed;
                    }
                },
                _ = &mut io_failure => return End::Lost(self.why(&live, "network I/O failure")),
            }
        }
    }

    fn why(&self, live: &Live, fallback: &str) -> String {
        live.closed
            .get()
            .or_else(|| live.link.closed.get())
            .map_or_else(|| fallback.to_owned(), |(code, text)| format!("{code} {text}"))
    }

    /// Hands a delivery to the producer; its tag, if it was one.
    fn forward(&self, m: ConsumerMessage, generation: u64) -> Option<u64> {
        let deliver = m.deliver?;
        let tag = deliver.delivery_tag();
        let data = Delivery::from_parts(
            m.content.unwrap_or_default(),
            deliver.routing_key().clone(),
            m.basic_properties,
        );
        let mut message = Message::with_acker(data, self.acker.clone(), token(generation, deliver.redelivered(), tag));
        message.put_origin(AmqpMetadata {
            queue: self.queue.clone(),
            delivery_tag: tag,
            redelivered: deliver.redelivered(),
            exchange: deliver.exchange().clone(),
            routing_key: deliver.routing_key().clone(),
        });
        let _ = self.events.send(Event::Delivery(message));
        Some(tag)
    }

    async fn settle(
        &self,
        channel: &Channel,
        outstanding: &mut BTreeSet<u64>,
        acks: Vec<u64>,
        rejects: Vec<(u64, bool)>,
    ) -> Result<(), amqprs::error::Error> {
        let (rejects, multiple, singles) = frames(outstanding, acks, rejects);
        let acked = multiple.map_or(0, |_| 1) + singles.len();
        for (tag, requeue) in &rejects {
            channel
                .basic_nack(BasicNackArguments::new(*tag, false, *requeue))
                .await?;
        }
        if let Some(tag) = multiple {
            channel.basic_ack(BasicAckArguments::new(tag, true)).await?;
        }
        for tag in singles {
            channel.basic_ack(BasicAckArguments::new(tag, false)).await?;
        }
        if !rejects.is_empty() {
            let requeued = rejects.iter().filter(|r| r.1).count() as u64;
            let q = self.queue.to_string();
            metrics::counter!(crate::metrics::REJECTED, "queue" => q.clone(), "requeue" => "true").increment(requeued);
            metrics::counter!(crate::metrics::REJECTED, "queue" => q, "requeue" => "false")
                .increment(rejects.len() as u64 - requeued);
        }
        if acked > 0 {
            metrics::counter!(crate::metrics::ACK_FRAMES, "queue" => self.queue.to_string()).increment(acked as u64);
        }
        Ok(())
    }

    /// `basic.cancel`, then everything the broker sent before it is handed over: those
    /// messages are processed and settled like the others.
    async fn cancel(&self, live: &mut Live, generation: u64, outstanding: &mut BTreeSet<u64>) {
        let cancelled = tokio::time::timeout(
            CANCEL_WAIT,
            live.channel.basic_cancel(BasicCancelArguments::new(&live.consumer_tag)),
        )
        .await;
        if !matches!(cancelled, Ok(Ok(_))) {
            warn!(queue = %self.opts.queue, "basic.cancel was not answered; closing as is");
        }
        // The consumer's deliveries end once the broker confirmed the cancel.
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, live.rx.recv()).await {
            if let Some(tag) = self.forward(m, generation) {
                outstanding.insert(tag);
            }
        }
        debug!(queue = %self.opts.queue, unsettled = outstanding.len(), "consumer cancelled");
    }

    async fn close(&self, live: Live, outstanding: &BTreeSet<u64>) {
        if !outstanding.is_empty() {
            debug!(queue = %self.opts.queue, count = outstanding.len(), "closing with deliveries unsettled: the broker redelivers them");
        }
        let _ = live.channel.close().await;
        let _ = live.link.conn.close().await;
        debug!(queue = %self.opts.queue, "RabbitMQ session closed");
    }
}

fn arguments(queue_type: QueueType, args: &[(String, Argument)]) -> FieldTable {
    let mut t = FieldTable::new();
    if queue_type == QueueType::Quorum
        && let Ok(k) = "x-queue-type".try_into()
    {
        t.insert(k, "quorum".into());
    }
    for (name, value) in args {
        let Ok(k) = name.as_str().try_into() else { continue };
        let v = match value {
            Argument::Bool(b) => (*b).into(),
            Argument::Int(i) => amqprs::FieldValue::l(*i),
            Argument::Str(s) => s.as_str().into(),
        };
        t.insert(k, v);
    }
    t
}
