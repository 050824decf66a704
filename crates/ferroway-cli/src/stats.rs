//! What the pipelines count, for the progress display, the summary and `/metrics`.
//!
//! Ferroway records through the `metrics` facade. The CLI installs one recorder that keeps
//! the pipeline counters it shows (acknowledged, failed, dead-lettered, dropped by filters, in
//! flight, handled per processor) and hands every metric to the Prometheus recorder when `--metrics` asked
//! for one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ferroway::telemetry;
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// The counts of one pipeline.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Messages acknowledged as successful (written, dropped by a filter, or dead-lettered).
    pub acked: Arc<AtomicU64>,
    /// Messages acknowledged as failed (no dead-letter sink, or it refused them).
    pub failed: Arc<AtomicU64>,
    /// Messages the dead-letter sink took.
    pub dead_lettered: Arc<AtomicU64>,
    /// Attempts that found a destination unavailable (retried).
    pub unavailable: Arc<AtomicU64>,
    /// Emitted, not yet acknowledged (f64 bits of the gauge).
    in_flight: Arc<AtomicU64>,
    /// Messages handled, per processor stage.
    handled: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    /// Records written and refused, per sink (kept by the CLI's sink wrapper).
    sinks: Mutex<Vec<(String, Arc<SinkCounts>)>>,
    /// Dropped by filters.
    pub dropped: Arc<AtomicU64>,
}

/// Per-sink counts.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Records the sink wrote.
    pub written: AtomicU64,
    /// Records it refused (marked failed).
    pub refused: AtomicU64,
}

/// A moment's view of a pipeline's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Messages emitted by the sources so far (acknowledged + in flight).
    pub emitted: u64,
    /// Acknowledged as successful.
    pub acked: u64,
    /// Acknowledged as failed.
    pub failed: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Dropped by filters.
    pub dropped: u64,
    /// In flight.
    pub in_flight: u64,
    /// Outage retries.
    pub unavailable: u64,
    /// Handled per processor.
    pub processors: Vec<(String, u64)>,
    /// `(sink, written, refused)`.
    pub sinks: Vec<(String, u64, u64)>,
}

impl PipelineStats {
    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let in_flight = f64::from_bits(load(&self.in_flight)).max(0.0) as u64;
        let (acked, failed) = (load(&self.acked), load(&self.failed));
        Snapshot {
            emitted: acked + failed + in_flight,
            acked,
            failed,
            dead_lettered: load(&self.dead_lettered),
            dropped: load(&self.dropped),
            in_flight,
            unavailable: load(&self.unavailable),
            processors: lock(&self.handled).iter().map(|(k, v)| (k.clone(), load(v))).collect(),
            sinks: lock(&self.sinks)
                .iter()
                .map(|(n, c)| (n.clone(), load(&c.written), load(&c.refused)))
                .collect(),
        }
    }

    /// The counts of sink `name` (made on first use).
    pub fn sink(&self, name: &str) -> Arc<SinkCounts> {
        let mut sinks = lock(&self.sinks);
        if let Some((_, c)) = sinks.iter().find(|(n, _)| n == name) {
            return c.clone();
        }
        let c = Arc::new(SinkCounts::default());
        sinks.push((name.to_owned(), c.clone()));
        c
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every pipeline's counts, by name.
#[derive(Debug, Default)]
pub struct Stats {
    pipelines: Mutex<HashMap<String, Arc<PipelineStats>>>,
}

impl Stats {
    /// Fresh counts for pipeline `name`, from now on (before it starts: its metrics are
    /// registered when it starts).
    pub fn start(&self, name: &str) -> Arc<PipelineStats> {
        let s = Arc::new(PipelineStats::default());
        lock(&self.pipelines).insert(name.to_owned(), s.clone());
        s
    }

    fn get(&self, name: &str) -> Arc<PipelineStats> {
        lock(&self.pipelines).entry(name.to_owned()).or_default().clone()
    }
}

/// The process's recorder, installed once.
struct Installed {
    stats: Arc<Stats>,
    prometheus: Option<PrometheusHandle>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the CLI's metrics recorder (with Prometheus rendering if `prometheus`), once per
/// process; later calls return what the first one installed. Returns the counts, and the
/// Prometheus handle if there is one.
pub fn install(prometheus: bool) -> (Arc<Stats>, Option<PrometheusHandle>) {
    let installed = INSTALLED.get_or_init(|| {
        let stats = Arc::new(Stats::default());
        let prom = prometheus.then(|| PrometheusBuilder::new().build_recorder());
        let handle = prom.as_ref().map(PrometheusRecorder::handle);
        let recorder = Recorder {
            stats: stats.clone(),
            prometheus: prom,
        };
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; progress and /metrics will show nothing");
        }
        Installed {
            stats,
            prometheus: handle,
        }
    });
    (installed.stats.clone(), installed.prometheus.clone())
}

struct Recorder {
    stats: Arc<Stats>,
    prometheus: Option<PrometheusRecorder>,
}

fn label<'k>(key: &'k Key, name: &str) -> Option<&'k str> {
    key.labels().find(|l| l.key() == name).map(|l| l.value())
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(p) = &self.prometheus {
            p.describe_counter(key, unit, description);
        }
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(p) = &self.prometheus {
            p.describe_gauge(key, unit, description);
        }
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        if let Some(p) = &self.prometheus {
            p.describe_histogram(key, unit, description);
        }
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let prom = self.prometheus.as_ref().map(|p| p.register_counter(key, metadata));
        let ours = label(key, "pipeline").and_then(|p| {
            let s = self.stats.get(p);
            match key.name() {
                telemetry::PIPELINE_ACKED => match label(key, "outcome") {
                    Some("successful") => Some(s.acked.clone()),
                    Some("failed") => Some(s.failed.clone()),
                    _ => None,
                },
                telemetry::PIPELINE_DEAD_LETTERED => Some(s.dead_lettered.clone()),
                telemetry::PIPELINE_UNAVAILABLE => Some(s.unavailable.clone()),
                crate::steps::DROPPED => Some(s.dropped.clone()),
                telemetry::PIPELINE_HANDLED => {
                    let stage = label(key, "stage")?.to_owned();
                    Some(lock(&s.handled).entry(stage).or_default().clone())
                }
                _ => None,
            }
        });
        match (ours, prom) {
            (None, Some(p)) => p,
            (None, None) => Counter::noop(),
            (Some(ours), prom) => Counter::from_arc(Arc::new(TeeCounter { ours, prom })),
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let prom = self.prometheus.as_ref().map(|p| p.register_gauge(key, metadata));
        let ours = (key.name() == telemetry::PIPELINE_IN_FLIGHT)
            .then(|| label(key, "pipeline"))
            .flatten()
            .map(|p| self.stats.get(p).in_flight.clone());
        match (ours, prom) {
            (None, Some(p)) => p,
            (None, None) => Gauge::noop(),
            (Some(ours), prom) => Gauge::from_arc(Arc::new(TeeGauge { ours, prom })),
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match &self.prometheus {
            Some(p) => p.register_histogram(key, metadata),
            None => Histogram::noop(),
        }
    }
}

struct TeeCounter {
    ours: Arc<AtomicU64>,
    prom: Option<Counter>,
}

impl CounterFn for TeeCounter {
    fn increment(&self, value: u64) {
        self.ours.fetch_add(value, Ordering::Relaxed);
        if let Some(p) = &self.prom {
            p.increment(value);
        }
    }

    fn absolute(&self, value: u64) {
        self.ours.fetch_max(value, Ordering::Relaxed);
        if let Some(p) = &self.prom {
            p.absolute(value);
        }
    }
}

struct TeeGauge {
    ours: Arc<AtomicU64>,
    prom: Option<Gauge>,
}

impl TeeGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self.ours.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some(f(f64::from_bits(bits)).to_bits())
        });
    }
}

impl GaugeFn for TeeGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
        if let Some(p) = &self.prom {
            p.increment(value);
        }
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
        if let Some(p) = &self.prom {
            p.decrement(value);
        }
    }

    fn set(&self, value: f64) {
        self.ours.store(value.to_bits(), Ordering::Relaxed);
        if let Some(p) = &self.prom {
            p.set(value);
        }
    }
}
