//! The embedded connectors as configuration-file components: `file`, `stdin`, `stdout`,
//! `generator`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{BuildContext, SinkConfig, SourceConfig};
use crate::connector::file::{FileSink, FileSinkOptions, FileSource, OnFailed, Rotation, SyncPolicy};
use crate::connector::generator::Generator;
use crate::connector::stdio::{ReaderSource, WriterSink};
use crate::connector::{BoxSource, Bytes, Record, Sink, Source};
use crate::error::BoxError;
use crate::pipeline::BoxFuture;

/// `type = "file"` as a source: lines of files (a path, a directory or a `*` pattern), each a
/// record whose payload is the line; durable checkpoints so a rerun resumes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file, a directory, or a pattern with `*`/`?` in the file name.
    pub path: PathBuf,
    /// Follow the files like `tail -F` instead of finishing at their end.
    #[serde(default)]
    pub follow: bool,
    /// How often a followed file is checked for more.
    #[serde(default = "default_poll", with = "super::duration")]
    pub poll_interval: Duration,
    /// Where checkpoints go (default: none, every run reads everything).
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
    /// How often acknowledged progress is written.
    #[serde(default = "default_checkpoint", with = "super::duration")]
    pub checkpoint_interval: Duration,
    /// What a failed line does to the checkpoint: `"skip"` (the default) or `"hold"`.
    #[serde(default)]
    pub on_failed: FileOnFailed,
}

/// [`OnFailed`] in a configuration file.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileOnFailed {
    /// The checkpoint moves past a failed line.
    #[default]
    Skip,
    /// The checkpoint stays before it.
    Hold,
}

fn default_poll() -> Duration {
    Duration::from_millis(250)
}

fn default_checkpoint() -> Duration {
    Duration::from_secs(1)
}

impl SourceConfig for FileSourceConfig {
    const TYPE: &'static str = "file";
    const SUMMARY: &'static str = "lines of files, resumed from a durable checkpoint";
    const EXAMPLE: &'static str = r#"path = "input/*.ndjson"        # a file, a directory or a pattern
follow = false                   # true: like tail -F, never finishes
poll_interval = "250ms"
checkpoint_dir = "state"         # default: none (every run reads everything)
checkpoint_interval = "1s"
on_failed = "skip"               # or "hold": a failed line stops the checkpoint"#;

    fn build(self, ctx: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        let mut b = FileSource::builder(&self.path)
            .format(Bytes)
            .follow(self.follow)
            .poll_interval(self.poll_interval)
            .checkpoint_interval(self.checkpoint_interval)
            .on_failed(match self.on_failed {
                FileOnFailed::Skip => OnFailed::Skip,
                FileOnFailed::Hold => OnFailed::Hold,
            })
            .name(ctx.component.clone());
        if let Some(dir) = self.checkpoint_dir {
            b = b.checkpoint_dir(dir);
        }
        Ok(BoxSource::new(b.open()?.map(Record::from)))
    }
}

/// `type = "file"` as a sink: each record's payload appended as a line, durable (fsync) before
/// the batch is acknowledged; dead letters as JSON records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file appended to (created with its directory if missing).
    pub path: PathBuf,
    /// fsync before every acknowledgement (default), or on this interval.
    #[serde(default, with = "super::duration::option")]
    pub fsync_interval: Option<Duration>,
    /// Rotate the file when it reaches this many bytes.
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
}

impl SinkConfig for FileSinkConfig {
    const TYPE: &'static str = "file";
    const SUMMARY: &'static str = "payloads appended as lines, fsynced before acknowledgement";
    const EXAMPLE: &'static str = r#"path = "output/out.ndjson"
# fsync_interval = "100ms"       # default: fsync before every acknowledgement
# rotate_bytes = 67108864        # default: never rotate"#;

    fn build(self, ctx: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        let name = ctx.component.clone();
        Box::pin(async move {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut opts = FileSinkOptions::new().name(name);
            if let Some(every) = self.fsync_interval {
                opts = opts.sync(SyncPolicy::Interval(every));
            }
            if let Some(max) = self.rotate_bytes {
                opts = opts.rotation(Rotation::max_bytes(max));
            }
            let sink: Arc<dyn Sink<Record>> = Arc::new(FileSink::open(&self.path, opts).await?);
            Ok(sink)
        })
    }
}

/// `type = "stdin"`: lines of standard input; finishes at its end.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {}

impl SourceConfig for StdinConfig {
    const TYPE: &'static str = "stdin";
    const SUMMARY: &'static str = "lines of standard input";
    const EXAMPLE: &'static str = "# no options";

    fn build(self, ctx: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        let source = ReaderSource::stdin().format(Bytes).name(&ctx.component);
        Ok(BoxSource::new(source.map(Record::from)))
    }
}

/// `type = "stdout"`: payloads as lines on standard output, flushed before acknowledgement.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

impl SinkConfig for StdoutConfig {
    const TYPE: &'static str = "stdout";
    const SUMMARY: &'static str = "payloads as lines on standard output";
    const EXAMPLE: &'static str = "# no options";

    fn build(self, _: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        Box::pin(async {
            let sink: Arc<dyn Sink<Record>> = Arc::new(WriterSink::stdout());
            Ok(sink)
        })
    }
}

/// `type = "generator"`: numbered records `{"seq":N}` (or a payload template with `{seq}`),
/// for demos and load tests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// How many (default: no end).
    #[serde(default)]
    pub count: Option<u64>,
    /// At most this many per second (default: as fast as demanded).
    #[serde(default)]
    pub rate: Option<f64>,
    /// The payload, `{seq}` replaced by the sequence number (default `{"seq":{seq}}`).
    #[serde(default)]
    pub payload: Option<String>,
}

impl SourceConfig for GeneratorConfig {
    const TYPE: &'static str = "generator";
    const SUMMARY: &'static str = "numbered records, for demos and load tests";
    const EXAMPLE: &'static str = r#"count = 1000                     # default: no end
# rate = 100.0                   # per second; default: as fast as demanded
# payload = '{"seq":{seq}}'      # {seq} is the sequence number"#;

    fn build(self, _: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        if let Some(r) = self.rate
            && !(r > 0.0 && r.is_finite())
        {
            return Err(format!("rate: must be a positive number of records per second, got {r}").into());
        }
        let mut g = match self.count {
            Some(n) => Generator::new(n),
            None => Generator::unbounded(),
        };
        if let Some(r) = self.rate {
            g = g.rate(r);
        }
        let template = self.payload.unwrap_or_else(|| "{\"seq\":{seq}}".to_owned());
        g = g.payload(move |seq| template.replace("{seq}", &seq.to_string()));
        Ok(BoxSource::new(g.map(Record::from)))
    }
}
