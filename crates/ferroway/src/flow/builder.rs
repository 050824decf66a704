//! [`Flow`]: a lazily built graph of stages, wired and started when it runs.

use std::hash::Hash;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::Stream;
use futures_util::future::BoxFuture;

use super::FlowError;
use super::acks::{AckPlan, Acked};
use super::lane::{self, Apply};
use super::partition::Partition;
use super::reduce::{Reducer, Reduction, Stamped};
use super::source::{FileLines, FromIter, FromStream};
use super::trigger::{Accumulator, TriggerInfo};
use crate::stage::{self, CancelMode, Dispatcher, Producer, ProducerOptions, ProducerRef, StageTask, SubscribeOptions};

/// Lanes of a flow over a connector source are numbered in 16 bits (see `Stamped::at`).
const MAX_LANES: usize = u16::MAX as usize;

/// What every stage of one run shares: its name, its settings, and the tasks to join.
pub(crate) struct Ctx {
    pub(crate) name: Arc<str>,
    pub(crate) max_demand: usize,
    pub(crate) tasks: std::sync::Mutex<Vec<StageTask>>,
    next: AtomicUsize,
    /// Set once every stage is wired: sources wait for it.
    pub(crate) go: tokio::sync::watch::Sender<bool>,
}

impl Ctx {
    pub(crate) fn new(name: Arc<str>, max_demand: usize) -> Arc<Self> {
        Arc::new(Ctx {
            name,
            max_demand,
            tasks: std::sync::Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            go: tokio::sync::watch::channel(false).0,
        })
    }

    fn stage_name(&self, what: &str, lane: usize) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}.{what}.{lane}", self.name)
    }

    fn keep(&self, task: StageTask) {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task);
    }

    fn subscription<T>(&self) -> SubscribeOptions<T> {
        SubscribeOptions::new()
            .max_demand(self.max_demand)
            .min_demand(self.max_demand / 2)
            .cancel(CancelMode::Transient)
    }
}

/// How a flow's lanes hand their events on: to whoever asks, or by partition.
pub(crate) enum Out<T> {
    Demand,
    Partition(usize, Arc<dyn Fn(&T) -> usize + Send + Sync>),
}

impl<T> Clone for Out<T> {
    fn clone(&self) -> Self {
        match self {
            Out::Demand => Out::Demand,
            Out::Partition(n, f) => Out::Partition(*n, f.clone()),
        }
    }
}

impl<T: Send + 'static> Out<T> {
    fn dispatcher(&self) -> Dispatcher<T> {
        match self {
            Out::Demand => Dispatcher::demand(),
            Out::Partition(n, f) => {
                let f = f.clone();
                Dispatcher::partition(*n, move |e| Some(f(e)))
            }
        }
    }
}

type MakeLanes<T> = Box<dyn FnOnce() -> Result<Vec<Box<dyn lane::LaneSource<T>>>, FlowError> + Send>;

/// Source lanes to start, with a label naming what runs in their stages.
struct Sources<T> {
    label: String,
    make: MakeLanes<T>,
}

type Build<T> = Box<dyn FnOnce(Arc<Ctx>, Out<T>) -> BoxFuture<'static, Result<Vec<ProducerRef<T>>, FlowError>> + Send>;

/// A flow: events from one or more sources through per-event operations, partitions and
/// windowed reductions, to a stream, a collection or a sink. Nothing runs until it is
/// consumed ([`collect`](Flow::collect), [`run`](Flow::run), [`into_stream`](Flow::into_stream)).
///
/// Events travel in batches between stages (one Tokio task per lane or partition), with
/// demand-driven back-pressure: memory is bounded by `max_demand` per subscription plus the
/// reducers' accumulators, however large the input.
///
/// ```
/// use ferroway::flow::{Flow, Partition};
/// use std::collections::HashMap;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ferroway::flow::FlowError> {
/// let lines = ["the quick fox", "the lazy dog"];
/// let mut counts: Vec<(String, u64)> = Flow::from_iterable(lines)
///     .flat_map(|line| line.split_whitespace().map(str::to_string).collect::<Vec<_>>())
///     .partition(Partition::hashed().stages(2))
///     .reduce(HashMap::new, |counts: &mut HashMap<String, u64>, word: &String| {
///         *counts.entry(word.clone()).or_default() += 1;
///     })
///     .flat_map(|counts| counts)
///     .collect()
///     .await?;
/// counts.sort();
/// assert_eq!(counts[4], ("the".to_string(), 2));
/// # Ok(()) }
/// ```
pub struct Flow<T> {
    build: Build<T>,
    /// Sources not started yet: per-event operations right after them run in their stages
    /// (no hop between tasks); started when the flow is wired.
    sources: Option<Sources<T>>,
    /// Set by [`partition`](Flow::partition): the next operation runs once per partition.
    partition: Option<Partition<T>>,
    pub(crate) name: Arc<str>,
    pub(crate) max_demand: usize,
    /// Set for a flow over a connector source: its acknowledgements follow its events.
    pub(crate) acked: Option<Acked>,
}

impl<T> std::fmt::Debug for Flow<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("name", &self.name)
            .field("max_demand", &self.max_demand)
            .field("partition", &self.partition)
            .finish()
    }
}

impl<T: Send + 'static> Flow<T> {
    fn from_build(build: Build<T>) -> Self {
        Flow {
            build,
            sources: None,
            partition: None,
            name: "flow".into(),
            max_demand: 4096,
            acked: None,
        }
    }

    /// A flow over producers, one lane each.
    fn from_producers<P: Producer<Output = T>>(
        producers: impl FnOnce() -> Result<Vec<P>, FlowError> + Send + 'static,
    ) -> Self {
        Flow::from_sources(
            "source".into(),
            Box::new(move || {
                Ok(producers()?
                    .into_iter()
                    .map(|p| Box::new(p) as Box<dyn lane::LaneSource<T>>)
                    .collect())
            }),
        )
    }

    /// A flow of source lanes not started yet (see [`materialized`](Self::materialized)).
    fn from_sources(label: String, make: MakeLanes<T>) -> Self {
        let mut f = Flow::from_build(Box::new(|_, _| {
            Box::pin(async { unreachable!("sources are started by `materialized`") })
        }));
        f.sources = Some(Sources { label, make });
        f
    }

    /// Sets the partition the next stage is per (see [`partition`](Self::partition)).
    pub(crate) fn set_partition(&mut self, p: Partition<T>) {
        self.partition = Some(p);
    }

    /// This flow with a pending partition turned into stages (which pass events on), for
    /// whatever cannot take a partition as its input.
    pub(crate) fn settled(self) -> Self {
        if self.partition.is_some() {
            self.map(|e| e)
        } else {
            self
        }
    }

    /// Turns sources not started yet into a build that starts them.
    fn materialized(mut self) -> Self {
        let Some(Sources { label, make }) = self.sources.take() else {
            return self;
        };
        self.build = Box::new(move |ctx, out| {
            Box::pin(async move {
                let mut refs = Vec::new();
                for (i, source) in make()?.into_iter().enumerate() {
                    // No cap on what waits for demand: a fused `flat_map` may answer a
                    // demand with more events, which must wait, not be dropped.
                    let opts = ProducerOptions::new()
                        .name(ctx.stage_name(&label, i))
                        .dispatcher(out.dispatcher())
                        .buffer_size(usize::MAX);
                    let gated = lane::Gated {
                        inner: lane::LaneProducer(source),
                        go: Some(ctx.go.subscribe()),
                    };
                    let stage = stage::start_producer(gated, opts);
                    refs.push(stage.producer_ref());
                    ctx.keep(stage_task(stage));
                }
                Ok(refs)
            })
        });
        self
    }

    /// A flow over the items of one iterator (one lane).
    pub fn from_iterable<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        let it = items.into_iter();
        Flow::from_producers(move || Ok(vec![FromIter(it)]))
    }

    /// A flow over several iterators, one lane each, read concurrently.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let mut all: Vec<u32> = ferroway::flow::Flow::from_iterables([0..3, 10..13]).collect().await?;
    /// all.sort();
    /// assert_eq!(all, [0, 1, 2, 10, 11, 12]);
    /// # Ok(()) }
    /// ```
    pub fn from_iterables<I>(lanes: impl IntoIterator<Item = I>) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        let its: Vec<_> = lanes.into_iter().map(|i| FromIter(i.into_iter())).collect();
        Flow::from_producers(move || Ok(its))
    }

    /// A flow over a stream (one lane), e.g. a channel's receiver.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let s = futures_util::stream::iter(1..=3u64);
    /// let v: Vec<u64> = ferroway::flow::Flow::from_stream(s).map(|x| x * 10).collect().await?;
    /// assert_eq!(v, [10, 20, 30]);
    /// # Ok(()) }
    /// ```
    pub fn from_stream<S>(stream: S) -> Self
    where
        S: Stream<Item = T> + Unpin + Send + 'static,
    {
        Flow::from_producers(move || Ok(vec![FromStream(stream)]))
    }

    /// A flow over running stages (GenStage producers), one lane each.
    ///
    /// ```
    /// use ferroway::stage::{self, Emit, Producer, ProducerOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// struct Three(u8);
    /// impl Producer for Three {
    ///     type Output = u8;
    ///     async fn handle_demand(&mut self, _: usize) -> Result<Emit<u8>, ferroway::BoxError> {
    ///         self.0 += 1;
    ///         Ok(if self.0 == 3 { Emit::Done(vec![self.0]) } else { Emit::Events(vec![self.0]) })
    ///     }
    /// }
    /// let p = stage::start_producer(Three(0), ProducerOptions::new());
    /// let v: Vec<u8> = ferroway::flow::Flow::from_stages([p.producer_ref()]).collect().await?;
    /// assert_eq!(v, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn from_stages(producers: impl IntoIterator<Item = ProducerRef<T>>) -> Self {
        let producers: Vec<_> = producers.into_iter().collect();
        // A running stage keeps its own dispatcher: one pass-through stage per producer
        // applies the flow's. It subscribes once the flow is wired, as sources start then.
        Flow::from_build(Box::new(move |ctx, out| {
            Box::pin(async move {
                let mut refs = Vec::new();
                for (i, producer) in producers.into_iter().enumerate() {
                    let name = ctx.stage_name("stage", i);
                    let pass: lane::LaneFn<T, T> = Box::new(|events, out| out.extend(events));
                    let started = lane::start(
                        name.clone(),
                        Apply {
                            name: name.into(),
                            f: pass,
                        },
                        out.dispatcher(),
                    );
                    let (input, opts, abort) = (started.input.clone(), ctx.subscription(), started.task.abort_handle());
                    let mut go = ctx.go.subscribe();
                    tokio::spawn(async move {
                        if go.wait_for(|v| *v).await.is_ok()
                            && let Err(error) = input.subscribe_to(&producer, opts).await
                        {
                            tracing::warn!(%error, "a flow could not subscribe to its stage");
                            abort.abort();
                        }
                    });
                    refs.push(started.output);
                    ctx.keep(started.task);
                }
                Ok(refs)
            })
        }))
    }

    /// A flow over a connector [`Source`](crate::connector::Source) (Kafka, Redis, files,
    /// ...), read by `lanes` producers at once (`0`: the machine's cores), with its
    /// acknowledgements: a message is acknowledged only once every window it went into has
    /// been emitted and its results written (by [`into_sink`](Flow::into_sink), or handed to
    /// the stream). Then the source's close runs, so its last commits are made.
    ///
    /// After a crash the source redelivers what it had not acknowledged and the flow computes
    /// those windows again: results are at least once — a sink keyed by window and key makes
    /// them idempotent. The `checkpoint` file keeps, per partition, the watermark up to which
    /// every window was written, so that a window finished before the crash is not emitted
    /// again from a partial replay. Keep the number of partitions across restarts. That
    /// holds for event-time windows (fixed, sliding) and the global window; count and periodic
    /// windows depend on arrival and processing time, so after a restart they group the
    /// replayed messages anew (each still counted, at least once).
    ///
    /// Per-event operations (`map`, `filter`, ...) may follow, then a partition and one
    /// reduction whose results go to the output; do per-result work in `on_trigger`. The
    /// acknowledgement state is the tokens of the messages not yet acknowledged (consecutive
    /// tokens, like a Kafka partition's offsets, as one run; others 16 bytes each) and a few
    /// numbers per partition and lane — never the payloads. A source that limits its unacknowledged messages (e.g. the file source's
    /// `max_pending_lines`) must allow a window's worth.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferroway::connector::generator::Generator;
    /// use ferroway::flow::{Accumulator, Flow, Partition, Window};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let source = Generator::new(1_000); // {"seq":1,...} .. {"seq":1000,...}
    /// let checkpoint = std::env::temp_dir().join(format!("ferroway-doc-flow-{}.ckpt", std::process::id()));
    /// // Message n happened at n ms: count the messages of each 100 ms window.
    /// let w = Window::fixed(Duration::from_millis(100)).event_time(|seq: &i64| *seq);
    /// let counts: Vec<(i64, u64)> = Flow::from_source(source.clone(), 1, &checkpoint)
    ///     .filter_map(|json: String| json[7..].split(',').next()?.parse::<i64>().ok())
    ///     .partition(Partition::by_key(|_: &i64| 0).stages(1).window(w))
    ///     .reduce_with(|| 0u64, |n, _| *n += 1, |n, t| (vec![(t.window.start, *n)], Accumulator::Reset))
    ///     .collect()
    ///     .await?;
    /// assert_eq!(counts[..2], [(0, 99), (100, 100)]);
    /// assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 1_000);
    /// assert_eq!(source.stats().acked, 1_000); // every message, once its window was out
    /// # std::fs::remove_file(&checkpoint).ok();
    /// # Ok(()) }
    /// ```
    pub fn from_source<S>(source: S, lanes: usize, checkpoint: impl AsRef<Path>) -> Self
    where
        S: crate::connector::Source<Data = T>,
    {
        let lanes = if lanes == 0 { super::partition::cores() } else { lanes };
        if lanes > MAX_LANES {
            return Flow::from_iterable(std::iter::empty()).failing(FlowError::Invalid {
                option: "lanes",
                reason: "at most 65,535 lanes",
            });
        }
        let source = Arc::new(source);
        let plan = Arc::new(AckPlan::new(source.clone(), lanes, checkpoint.as_ref().to_path_buf()));
        let opened = plan.clone();
        let mut f = Flow::from_sources(
            "source".into(),
            Box::new(move || {
                let tracker = opened.tracker()?;
                (0..lanes)
                    .map(|lane| {
                        let producer = source.producer(lane).map_err(FlowError::Source)?;
                        Ok(Box::new(super::source::Acked {
                            producer,
                            lane,
                            tracker: tracker.clone(),
                        }) as Box<dyn lane::LaneSource<T>>)
                    })
                    .collect()
            }),
        );
        f.acked = Some(Acked::Lanes(plan));
        f
    }

    /// One flow with the lanes of all of `flows`, read concurrently.
    ///
    /// ```
    /// use ferroway::flow::Flow;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let mut all: Vec<u8> = Flow::merge([Flow::from_iterable([1, 2]), Flow::from_iterable([3])]).collect().await?;
    /// all.sort();
    /// assert_eq!(all, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn merge(flows: impl IntoIterator<Item = Flow<T>>) -> Self {
        let flows: Vec<Flow<T>> = flows.into_iter().map(|f| f.settled().materialized()).collect();
        let acked = flows.iter().any(|f| f.acked.is_some()).then_some(Acked::Broken);
        let (name, max_demand) = flows
            .first()
            .map_or(("flow".into(), 4096), |f| (f.name.clone(), f.max_demand));
        let mut merged = Flow::from_build(Box::new(move |ctx, out| {
            Box::pin(async move {
                let mut lanes = Vec::new();
                for f in flows {
                    lanes.extend((f.build)(ctx.clone(), out.clone()).await?);
                }
                Ok(lanes)
            })
        }));
        merged.name = name;
        merged.max_demand = max_demand;
        merged.acked = acked;
        merged
    }

    /// Names the flow's stages (`NAME.N.kind.lane`), for logs and metrics. Default: `flow`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// How many events a stage asks its input for at a time (default 4096): larger batches
    /// cost less per event, smaller ones bound memory closer.
    pub fn max_demand(mut self, n: usize) -> Self {
        self.max_demand = n.max(2);
        self
    }

    /// Adds a stage per lane (or per partition, after [`partition`](Flow::partition)) running
    /// `f` on each batch.
    fn apply<U: Send + 'static>(
        self,
        what: &'static str,
        f: impl Fn() -> lane::LaneFn<T, U> + Send + Sync + 'static,
    ) -> Flow<U> {
        match self.sources {
            // Right after the sources: run in their stages.
            Some(Sources { label, make }) if self.partition.is_none() => {
                let mut fused = Flow::from_sources(
                    format!("{label}+{what}"),
                    Box::new(move || {
                        Ok(make()?
                            .into_iter()
                            .map(|inner| Box::new(lane::Fused { inner, f: f() }) as Box<dyn lane::LaneSource<U>>)
                            .collect())
                    }),
                );
                fused.name = self.name;
                fused.max_demand = self.max_demand;
                fused.acked = self.acked;
                fused
            }
            sources => {
                let this = Flow { sources, ..self };
                this.then(what, move |name, _, _| Apply { name, f: f() })
            }
        }
    }

    /// Adds a stage per lane (or partition) built by `make(name, lane, inputs)`.
    pub(crate) fn then<U, X>(
        self,
        what: &'static str,
        make: impl Fn(Arc<str>, usize, usize) -> X + Send + Sync + 'static,
    ) -> Flow<U>
    where
        U: Send + 'static,
        X: crate::stage::transform::Transform<T, U> + 'static,
    {
        let Flow {
            build,
            partition,
            name,
            max_demand,
            acked,
            ..
        } = self.materialized();
        let wired: Build<U> = Box::new(move |ctx, out| {
            Box::pin(async move {
                let (ups, lanes, by_partition) = match &partition {
                    Some(p) => {
                        let route = p.clone();
                        let ups =
                            build(ctx.clone(), Out::Partition(p.stages, Arc::new(move |e| route.index(e)))).await?;
                        (ups, p.stages, true)
                    }
                    None => {
                        let ups = build(ctx.clone(), Out::Demand).await?;
                        let n = ups.len();
                        (ups, n, false)
                    }
                };
                if ups.is_empty() {
                    // Nothing upstream (no sources): nothing to wait for either.
                    return Ok(Vec::new());
                }
                let inputs = if by_partition { ups.len() } else { 1 };
                let mut refs = Vec::with_capacity(lanes);
                for lane in 0..lanes {
                    let stage_name = ctx.stage_name(what, lane);
                    let t = make(stage_name.clone().into(), lane, inputs);
                    let started = lane::start(stage_name, t, out.dispatcher());
                    if by_partition {
                        for up in &ups {
                            started
                                .input
                                .subscribe_to(up, ctx.subscription().partition(lane))
                                .await?;
                        }
                    } else {
                        started.input.subscribe_to(&ups[lane], ctx.subscription()).await?;
                    }
                    refs.push(started.output);
                    ctx.keep(started.task);
                }
                Ok(refs)
            })
        });
        Flow {
            build: wired,
            sources: None,
            partition: None,
            name,
            max_demand,
            // Acknowledgements follow events only from fused source lanes into a reduction
            // (which sets its own).
            acked: acked.map(|_| Acked::Broken),
        }
    }

    /// Applies `f` to every event.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let v: Vec<i32> = ferroway::flow::Flow::from_iterable([1, 2]).map(|x| x + 1).collect().await?;
    /// assert_eq!(v, [2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn map<U: Send + 'static>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Flow<U> {
        let f = Arc::new(f);
        self.apply("map", move || {
            let f = f.clone();
            Box::new(move |events, out| out.extend(events.into_iter().map(&*f)))
        })
    }

    /// Keeps the events for which `f` holds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let v: Vec<i32> = ferroway::flow::Flow::from_iterable(1..=4).filter(|x| x % 2 == 0).collect().await?;
    /// assert_eq!(v, [2, 4]);
    /// # Ok(()) }
    /// ```
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Flow<T> {
        let f = Arc::new(f);
        self.apply("filter", move || {
            let f = f.clone();
            Box::new(move |events, out| out.extend(events.into_iter().filter(|e| f(e))))
        })
    }

    /// Drops the events for which `f` holds.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let v: Vec<i32> = ferroway::flow::Flow::from_iterable(1..=4).reject(|x| x % 2 == 0).collect().await?;
    /// assert_eq!(v, [1, 3]);
    /// # Ok(()) }
    /// ```
    pub fn reject(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Flow<T> {
        self.filter(move |e| !f(e))
    }

    /// Maps and keeps the `Some`s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let v: Vec<u8> = ferroway::flow::Flow::from_iterable(["1", "x", "3"]).filter_map(|s| s.parse().ok()).collect().await?;
    /// assert_eq!(v, [1, 3]);
    /// # Ok(()) }
    /// ```
    pub fn filter_map<U: Send + 'static>(self, f: impl Fn(T) -> Option<U> + Send + Sync + 'static) -> Flow<U> {
        let f = Arc::new(f);
        self.apply("filter_map", move || {
            let f = f.clone();
            Box::new(move |events, out| out.extend(events.into_iter().filter_map(&*f)))
        })
    }

    /// Replaces every event with the items of `f(event)`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let v: Vec<char> = ferroway::flow::Flow::from_iterable(["ab", "c"]).flat_map(|s| s.chars().collect::<Vec<_>>()).collect().await?;
    /// assert_eq!(v, ['a', 'b', 'c']);
    /// # Ok(()) }
    /// ```
    pub fn flat_map<U, I>(self, f: impl Fn(T) -> I + Send + Sync + 'static) -> Flow<U>
    where
        U: Send + 'static,
        I: IntoIterator<Item = U>,
    {
        let f = Arc::new(f);
        self.apply("flat_map", move || {
            let f = f.clone();
            Box::new(move |events, out| out.extend(events.into_iter().flat_map(&*f)))
        })
    }

    /// Calls `f` on every event and passes the event on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let v: Vec<i32> = ferroway::flow::Flow::from_iterable([1]).each(|x| println!("saw {x}")).collect().await?;
    /// assert_eq!(v, [1]);
    /// # Ok(()) }
    /// ```
    pub fn each(self, f: impl Fn(&T) + Send + Sync + 'static) -> Flow<T> {
        self.map(move |e| {
            f(&e);
            e
        })
    }

    /// Keeps the first event of each key, per lane or partition (partition by the same key
    /// first for a flow-wide result). Remembers every key seen: for bounded key sets.
    ///
    /// ```
    /// use ferroway::flow::{Flow, Partition};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let mut v: Vec<u32> = Flow::from_iterables([vec![1, 2, 2], vec![3, 1]])
    ///     .partition(Partition::hashed())
    ///     .uniq_by(|x| *x)
    ///     .collect()
    ///     .await?;
    /// v.sort();
    /// assert_eq!(v, [1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub fn uniq_by<K>(self, key: impl Fn(&T) -> K + Send + Sync + 'static) -> Flow<T>
    where
        K: Hash + Eq + Send + 'static,
    {
        let key = Arc::new(key);
        self.apply("uniq_by", move || {
            let key = key.clone();
            let mut seen = std::collections::HashSet::new();
            Box::new(move |events, out| out.extend(events.into_iter().filter(|e| seen.insert(key(e)))))
        })
    }

    /// Routes events to partitions: the next operation (usually a reduction) runs once per
    /// partition, each with the partition's window. Events of one key stay in one partition,
    /// in the order each input delivered them.
    pub fn partition(self, p: Partition<T>) -> Flow<T> {
        // Two partitions in a row: the first one's stages pass events on.
        let mut this = self.settled();
        this.partition = Some(p);
        if let Some(Acked::Reduced(_)) = this.acked {
            this.acked = Some(Acked::Broken);
        }
        this
    }

    /// Folds each window's events into an accumulator (per partition, or per lane without a
    /// partition), and emits the accumulator when the window closes (and on its triggers),
    /// keeping it for later firings of the same window. The accumulator must be `Clone` for
    /// that; [`reduce_with`](Flow::reduce_with) gives full control.
    pub fn reduce<A, I, F>(self, init: I, fold: F) -> Flow<A>
    where
        A: Clone + Send + 'static,
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&mut A, &T) + Send + Sync + 'static,
    {
        self.reduce_with(init, fold, |acc: &mut A, _: &TriggerInfo| {
            (vec![acc.clone()], Accumulator::Keep)
        })
    }

    /// Like [`reduce`](Flow::reduce), with `on_trigger` deciding what each firing emits and
    /// whether the accumulator is kept or reset ([`TriggerInfo`] says why it fired and for
    /// which window). A window's state is dropped once it closed (and its lateness passed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ferroway::flow::{Accumulator, Flow, Partition, Window};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// // (ts_ms, value): sum per 10 ms window, emitted as (window start, sum).
    /// let events = [(1, 1), (4, 2), (12, 3), (15, 4), (31, 5)];
    /// let w = Window::fixed(Duration::from_millis(10)).event_time(|e: &(i64, u64)| e.0);
    /// let sums: Vec<(i64, u64)> = Flow::from_iterable(events)
    ///     .partition(Partition::by_key(|_: &(i64, u64)| 0).stages(1).window(w))
    ///     .reduce_with(|| 0u64, |sum, e| *sum += e.1, |sum, t| (vec![(t.window.start, *sum)], Accumulator::Reset))
    ///     .collect()
    ///     .await?;
    /// assert_eq!(sums, [(0, 3), (10, 7), (30, 5)]);
    /// # Ok(()) }
    /// ```
    pub fn reduce_with<A, O, I, F, G>(self, init: I, fold: F, on_trigger: G) -> Flow<O>
    where
        A: Send + 'static,
        O: Send + 'static,
        I: Fn() -> A + Send + Sync + 'static,
        F: Fn(&mut A, &T) + Send + Sync + 'static,
        G: Fn(&mut A, &TriggerInfo) -> (Vec<O>, Accumulator) + Send + Sync + 'static,
    {
        let Flow {
            build,
            sources,
            partition,
            name,
            max_demand,
            acked,
        } = self;
        let window = partition
            .as_ref()
            .map_or_else(super::Window::global, |p| p.window.clone());
        let r = Reduction {
            init: Arc::new(init),
            fold: Arc::new(fold),
            on_trigger: Arc::new(on_trigger),
        };
        let invalid = window.validate().err();
        // Over a connector source, acknowledgements follow the events only straight from the
        // source lanes (where each batch is known) into the reduction.
        let plan = match &acked {
            Some(Acked::Lanes(plan)) if sources.is_some() => Some(plan.clone()),
            _ => None,
        };
        if let Some(plan) = &plan {
            let _ = plan.partitions.set(partition.as_ref().map_or(plan.lanes, |p| p.stages));
        }
        let invalid = match window.kind {
            // A restart could not tell a finished session's stragglers from an open one's.
            super::window::Kind::Session { .. } if plan.is_some() => Some(FlowError::Invalid {
                option: "window",
                reason: "session windows over a connector source are not supported yet",
            }),
            // Per lane, which reducer sees a message depends on which lane read it, which a
            // restart changes: the checkpoint would speak for the wrong windows.
            _ if plan.is_some() && partition.is_none() => Some(FlowError::Invalid {
                option: "partition",
                reason: "a flow over a connector source reduces per partition: call `partition` before `reduce`",
            }),
            _ => invalid,
        };
        let session_key = partition.as_ref().map(|p| p.key.clone());
        // Each lane stamps its events with its watermark before they are partitioned.
        let (time, ooo) = (window.time.clone(), window.out_of_orderness);
        let (stamp_plan, route) = (plan.clone(), partition.clone());
        let next_lane = Arc::new(AtomicUsize::new(0));
        let lanes = Flow {
            build,
            sources,
            partition: None,
            name,
            max_demand,
            acked: None,
        };
        let mut stamped = lanes.apply("watermark", move || {
            let time = time.clone();
            let mut max = i64::MIN;
            if stamp_plan.is_none() {
                // The hot path of every windowed flow: the choice made once, not per event.
                return match time {
                    Some(time) => Box::new(move |events: Vec<T>, out: &mut Vec<Stamped<T>>| {
                        out.extend(events.into_iter().map(|e| {
                            let wm = max.saturating_sub(ooo);
                            max = max.max(time(&e));
                            Stamped { e, wm, at: 0 }
                        }))
                    }) as lane::LaneFn<T, Stamped<T>>,
                    None => Box::new(|events: Vec<T>, out: &mut Vec<Stamped<T>>| {
                        out.extend(events.into_iter().map(|e| Stamped { e, wm: i64::MIN, at: 0 }))
                    }),
                };
            }
            let mut stamp = move |e: T| {
                let wm = match &time {
                    Some(time) => {
                        let wm = max.saturating_sub(ooo);
                        max = max.max(time(&e));
                        wm
                    }
                    None => i64::MIN,
                };
                Stamped { e, wm, at: 0 }
            };
            let Some(tracker) = stamp_plan.as_ref().and_then(|p| p.started()) else {
                return Box::new(move |events: Vec<T>, out: &mut Vec<Stamped<T>>| {
                    out.extend(events.into_iter().map(&mut stamp))
                });
            };
            let lane = next_lane.fetch_add(1, Ordering::Relaxed);
            let route = route.clone();
            let mut counts = vec![0u64; *stamp_plan.as_ref().and_then(|p| p.partitions.get()).unwrap_or(&1)];
            Box::new(move |events: Vec<T>, out: &mut Vec<Stamped<T>>| {
                let at = Stamped::<T>::at(lane, tracker.current(lane));
                counts.fill(0);
                out.extend(events.into_iter().map(|e| {
                    counts[route.as_ref().map_or(lane, |r| r.index(&e))] += 1;
                    Stamped { at, ..stamp(e) }
                }));
                tracker.stamped(lane, &counts);
            })
        });
        stamped.partition = partition.map(|p| Partition {
            stages: p.stages,
            key: {
                let key = p.key.clone();
                Arc::new(move |s: &Stamped<T>| key(&s.e))
            },
            window: super::Window::global(),
        });
        let reduce_plan = plan.clone();
        let mut next = stamped.then("reduce", move |name, lane, inputs| {
            let mut reducer = Reducer::new(name, lane, window.clone(), r.clone(), inputs);
            if let Some(key) = &session_key {
                reducer = reducer.keyed(key.clone());
            }
            match reduce_plan.as_ref().and_then(|p| p.started()) {
                Some(tracker) => reducer.tracked(tracker),
                None => reducer,
            }
        });
        next.acked = match (acked, plan) {
            (_, Some(plan)) => Some(Acked::Reduced(plan)),
            (Some(_), None) => Some(Acked::Broken),
            (None, None) => None,
        };
        match invalid {
            Some(e) => next.failing(e),
            None => next,
        }
    }

    /// This flow, made to fail with `e` when it runs (options are checked when the flow is
    /// built; the error comes out where every other error does).
    pub(crate) fn failing(mut self, e: FlowError) -> Self {
        self.sources = None;
        self.build = Box::new(move |_, _| Box::pin(async move { Err(e) }));
        self
    }

    /// Runs the flow and collects every event (for bounded inputs).
    pub async fn collect(self) -> Result<Vec<T>, FlowError> {
        use futures_util::StreamExt;
        let mut out = Vec::new();
        let mut s = std::pin::pin!(self.into_stream());
        while let Some(e) = s.next().await {
            out.push(e?);
        }
        Ok(out)
    }

    /// Runs the flow to its end, dropping its output (for flows that act in `each`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// ferroway::flow::Flow::from_iterable(1..=3).each(|x| println!("{x}")).run().await?;
    /// # Ok(()) }
    /// ```
    pub async fn run(self) -> Result<(), FlowError> {
        use futures_util::StreamExt;
        let mut s = std::pin::pin!(self.into_stream());
        while let Some(e) = s.next().await {
            e?;
        }
        Ok(())
    }

    /// Starts the flow and returns its events as a stream, back-pressured: the flow runs as
    /// fast as the stream is read. The stream ends with the flow; an error ends it too, as its
    /// last item.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut s = std::pin::pin!(ferroway::flow::Flow::from_iterable(1..=3).into_stream());
    /// assert_eq!(s.next().await.unwrap().unwrap(), 1);
    /// # }
    /// ```
    pub fn into_stream(self) -> impl Stream<Item = Result<T, FlowError>> + Send + 'static {
        super::output::stream(self, None)
    }

    /// Starts the flow with its results as a running stage (a GenStage producer) that any
    /// consumer can subscribe to — back-pressured end to end: the flow runs as fast as its
    /// consumers ask. A failure of the flow fails the stage (its consumers see it as their
    /// producer's failure); the stage ends when the flow does.
    ///
    /// ```
    /// use ferroway::stage::{self, Consumer, ConsumerOptions, SubscribeOptions};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// struct Sum(std::sync::Arc<std::sync::atomic::AtomicU64>);
    /// impl Consumer for Sum {
    ///     type Input = u64;
    ///     async fn handle_events(&mut self, events: Vec<u64>) -> Result<(), ferroway::BoxError> {
    ///         self.0.fetch_add(events.iter().sum(), std::sync::atomic::Ordering::Relaxed);
    ///         Ok(())
    ///     }
    /// }
    /// let results = ferroway::flow::Flow::from_iterable(1..=100u64).map(|x| x * 2).into_stage();
    /// let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    /// let sum = stage::start_consumer(Sum(total.clone()), ConsumerOptions::new().stop_when_unsubscribed(true));
    /// sum.subscribe_to(&results.producer_ref(), SubscribeOptions::new()).await?;
    /// sum.join().await?;
    /// assert_eq!(total.load(std::sync::atomic::Ordering::Relaxed), 10_100);
    /// # Ok(()) }
    /// ```
    pub fn into_stage(self) -> stage::ProducerStage<T> {
        let name = format!("{}.stage", self.name);
        // A result taken by the stage is not yet handled by its consumer: acknowledgements
        // could not wait for that.
        let this = match self.acked {
            Some(_) => self.failing(FlowError::Invalid {
                option: "into_stage",
                reason: "a flow over a connector source ends in into_sink, collect or into_stream",
            }),
            None => self,
        };
        let results = Box::pin(this.into_stream());
        let producer = super::output::FlowProducer { results, failed: None };
        stage::start_producer(producer, ProducerOptions::new().name(name))
    }

    /// Stops a flow over a connector source gracefully when `signal` resolves (a SIGTERM,
    /// say): its lanes pull no more; what is on its way is reduced and every result emitted
    /// is written; the messages of every written window are acknowledged and the source's
    /// last commits made; windows still open are dropped, not emitted — their messages were
    /// not acknowledged, so the next run reads them again and emits those windows whole. The
    /// flow then ends as if its input had (`into_sink` returns `Ok`).
    ///
    /// With event-time windows (fixed, sliding), no allowed lateness, and triggers (if any)
    /// that reset the accumulator, every window is written exactly once across the stop.
    /// Otherwise results are at least once: a window that fired but was still open (its
    /// lateness not passed, an `Every` firing kept) fires again in the next run, and count
    /// and periodic windows group the replayed messages anew.
    ///
    /// Other flows stop when their stream is dropped; this refuses them.
    ///
    /// ```no_run
    /// # async fn run(source: ferroway::connector::generator::Generator) -> Result<(), ferroway::flow::FlowError> {
    /// use ferroway::flow::{Flow, Partition, Window};
    /// let term = async {
    ///     let _ = tokio::signal::ctrl_c().await;
    /// };
    /// // Messages `{"seq":N,...}`, message N at N ms: counts per second.
    /// let w = Window::fixed(std::time::Duration::from_secs(1)).event_time(|seq: &i64| *seq);
    /// let counts = Flow::from_source(source, 1, "flow.ckpt")
    ///     .filter_map(|json: String| json[7..].split(',').next()?.parse::<i64>().ok())
    ///     .partition(Partition::hashed().stages(2).window(w))
    ///     .reduce(|| 0u64, |n, _| *n += 1)
    ///     .stop_when(term)
    ///     .collect()
    ///     .await?;
    /// # let _ = counts; Ok(()) }
    /// ```
    pub fn stop_when(self, signal: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        match &self.acked {
            Some(Acked::Lanes(plan) | Acked::Reduced(plan)) => {
                *plan.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::pin(signal));
                self
            }
            _ => self.failing(FlowError::Invalid {
                option: "stop_when",
                reason: "only a flow over a connector source stops gracefully; drop the stream of another to stop it",
            }),
        }
    }

    /// The flow ready to run: a pending partition settled, sources to start.
    pub(crate) fn into_parts(self) -> (Build<T>, Option<Partition<T>>, Arc<str>, usize) {
        let this = self.settled().materialized();
        (this.build, this.partition, this.name, this.max_demand)
    }
}

impl Flow<String> {
    /// A flow over the lines of a file (without their line ends), read by `lanes` stages at
    /// once, each from its own part of the file (default for `0`: the machine's cores). Lines
    /// must be UTF-8.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ferroway::flow::FlowError> {
    /// let path = std::env::temp_dir().join("ferroway-flow-doc-lines.txt");
    /// std::fs::write(&path, "a\nb\nc\n").unwrap();
    /// let mut lines: Vec<String> = ferroway::flow::Flow::from_file_lines(&path, 2).collect().await?;
    /// lines.sort();
    /// assert_eq!(lines, ["a", "b", "c"]);
    /// # Ok(()) }
    /// ```
    pub fn from_file_lines(path: impl AsRef<Path>, lanes: usize) -> Self {
        let path = path.as_ref().to_path_buf();
        let lanes = if lanes == 0 { super::partition::cores() } else { lanes };
        Flow::from_producers(move || FileLines::split(&path, lanes))
    }
}

fn stage_task<T>(stage: stage::ProducerStage<T>) -> StageTask {
    stage.into_task()
}
