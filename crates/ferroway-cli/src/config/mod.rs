//! A pipeline file: TOML, one pipeline per file.
//!
//! ```toml
//! name = "orders"                      # default: the file's name
//! shutdown_timeout = "30s"             # a graceful stop abandons what is left after this
//! partition_by = ".customer"           # per-key order: "key" (the record key) or a JSON field
//! rate_limit = { messages = 5000, per = "1s" }
//!
//! [processors]                         # they run the steps
//! concurrency = 2                      # default: one per core
//! max_demand = 1000
//!
//! [sources.orders]                     # one or more; several are merged
//! type = "kafka"                       # `ferroway connectors` lists the types and options
//! brokers = "${KAFKA_BROKERS:-127.0.0.1:9092}"
//!
//! [[steps]]                            # in order; each is exactly one of:
//! filter = '.status != "test"'         # keep records where this jq condition holds
//! [[steps]]
//! map = '{id: .order_id, total: (.qty * .price)}'   # jq; no output drops, error("why") dead-letters
//! [[steps]]
//! dead_letter = '.total < 0'           # dead-letter records where this holds…
//! reason = "negative total"            # …with this reason
//!
//! [sinks.big]                          # named batchers, each writing to a connector
//! type = "file"
//! path = "out/big.ndjson"
//! route = '.total >= 1000'             # the first sink (in file order) whose route holds
//! batch_size = 500
//! batch_timeout = "200ms"
//! concurrency = 1
//!
//! [sinks.rest]                         # no route: everything else
//! type = "stdout"
//!
//! [dead_letter]                        # failed records, with their reason
//! type = "file"
//! path = "out/dead.ndjson"
//!
//! [[tests]]                            # `ferroway test`: no server needed
//! name = "big orders go to big"
//! input = ['{"order_id":1,"qty":10,"price":100}']
//! output = { big = ['{"id":1,"total":1000}'] }
//! ```
//!
//! `${VAR}` and `${VAR:-default}` are replaced by environment variables before the file is
//! parsed ([`mod@env`]); a record's payload must be JSON for the steps, routes and `partition_by`
//! that read it (a payload that is not is dead-lettered with the reason).

pub mod doc;
pub mod env;
pub mod error;
pub mod model;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::partition::PartitionBy;
use crate::registry::{Registry, SinkBuild, SourceBuild};
use crate::steps::{Step, StepKind};
use crate::transform::{CompileError, Program};
use doc::Segment;
pub use error::{ConfigError, ConfigErrors};
use model::{ProcessorOptions, SinkOptions, StepSpec, TestSpec, Top};

/// The sections of a file read apart from [`Top`].
const SECTIONS: &[&str] = &["sources", "steps", "sinks", "dead_letter", "tests"];

/// A pipeline file, read and checked: every option valid, every jq program compiled, every
/// connector's options read (nothing built or connected yet).
pub struct PipelineConfig {
    /// The file it came from.
    pub file: PathBuf,
    /// The pipeline's name.
    pub name: String,
    /// Its sources, in file order.
    pub sources: Vec<SourceSpec>,
    /// Its processing steps, in order.
    pub steps: Vec<Step>,
    /// Its sinks, in file order (the order routes are tried in).
    pub sinks: Vec<SinkSpec>,
    /// Where failed records go.
    pub dead_letter: Option<DeadLetterSpec>,
    /// Per-key ordering.
    pub partition_by: Option<PartitionBy>,
    /// The processors.
    pub processors: ProcessorOptions,
    /// At most `.0` messages per `.1`.
    pub rate_limit: Option<(usize, Duration)>,
    /// How long a graceful stop may take.
    pub shutdown_timeout: Duration,
    /// The tests `ferroway test` runs.
    pub tests: Vec<TestSpec>,
}

impl std::fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Connector options may hold secrets: only their types are shown.
        f.debug_struct("PipelineConfig")
            .field("file", &self.file)
            .field("name", &self.name)
            .field("sources", &self.sources)
            .field("steps", &self.steps.len())
            .field("sinks", &self.sinks)
            .field("dead_letter", &self.dead_letter)
            .finish_non_exhaustive()
    }
}

/// A source: its name, type and options.
pub struct SourceSpec {
    /// Its name in the file (`[sources.NAME]`).
    pub name: String,
    /// Its connector type.
    pub type_name: String,
    /// Taken when built (a file's connectors are built once).
    pub(crate) options: Option<Box<dyn SourceBuild>>,
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.type_name)
    }
}

/// A sink and its batcher.
pub struct SinkSpec {
    /// Its name in the file (`[sinks.NAME]`), also its batcher's.
    pub name: String,
    /// Its connector type.
    pub type_name: String,
    /// Records per batch.
    pub batch_size: usize,
    /// Longest wait for a batch to fill.
    pub batch_timeout: Duration,
    /// Batches written at once.
    pub concurrency: usize,
    /// Records for which this holds come here (if no earlier sink took them).
    pub route: Option<Program>,
    /// Taken when built.
    pub(crate) options: Option<Box<dyn SinkBuild>>,
}

impl std::fmt::Debug for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.type_name)
    }
}

/// The dead-letter sink.
pub struct DeadLetterSpec {
    /// Its connector type.
    pub type_name: String,
    /// Taken when built.
    pub(crate) options: Option<Box<dyn SinkBuild>>,
}

impl std::fmt::Debug for DeadLetterSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.type_name)
    }
}

/// Reads and checks the pipeline file at `path`, variables from the environment.
///
/// # Errors
/// Everything wrong with it, each error at its line and column.
pub fn load(path: &Path, registry: &Registry) -> Result<PipelineConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::at(
            path,
            "",
            None,
            "",
            format!("cannot read the file: {e}"),
        )])
    })?;
    parse(path, &text, |name| std::env::var(name).ok(), registry)
}

/// Reads and checks `text`, the content of `file`, variables looked up with `env`.
///
/// ```
/// use std::path::Path;
/// use ferroway_cli::config::parse;
/// use ferroway_cli::registry::Registry;
///
/// let text = "[sources.in]\ntype = \"generator\"\ncount = 10\n\n[sinks.out]\ntype = \"stdout\"\nbatch_size = 0\n";
/// let errors = parse(Path::new("p.toml"), text, |_| None, &Registry::with_compiled_in()).unwrap_err();
/// assert_eq!(errors.to_string(), "p.toml:7:14: sinks.out.batch_size: must be at least 1");
/// ```
///
/// # Errors
/// Everything wrong with it, each error at its line and column.
pub fn parse(
    file: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
    registry: &Registry,
) -> Result<PipelineConfig, ConfigErrors> {
    let expanded = env::expand(text, env).map_err(|errs| {
        ConfigErrors(
            errs.into_iter()
                .map(|e| ConfigError::at(file, text, Some(e.offset), "", e.message))
                .collect(),
        )
    })?;
    let doc = DeTable::parse(&expanded.text).map_err(|e| {
        let offset = e.span().map(|s| expanded.original_offset(s.start));
        ConfigErrors(vec![ConfigError::at(
            file,
            text,
            offset,
            "",
            format!("invalid TOML: {}", expanded.mask(e.message().trim())),
        )])
    })?;
    let full = doc.get_ref().clone();
    let mut cx = Cx {
        file,
        original: text,
        expanded: &expanded,
        full: &full,
        errors: Vec::new(),
    };
    let config = cx.read(doc, registry);
    match config {
        Some(c) if cx.errors.is_empty() => Ok(c),
        _ => Err(ConfigErrors(cx.errors)),
    }
}

/// What reading a file needs at hand: its texts, its spanned tree, the errors so far.
struct Cx<'a, 'i> {
    file: &'a Path,
    original: &'a str,
    expanded: &'a env::Expanded,
    full: &'a DeTable<'i>,
    errors: Vec<ConfigError>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Source,
    Sink,
    DeadLetter,
}

impl<'i> Cx<'_, 'i> {
    /// An error at `span` of the expanded text, its path found from the place when not given.
    fn error(&mut self, span: Option<Range<usize>>, path: Option<String>, message: impl AsRef<str>) {
        let path = path.unwrap_or_else(|| {
            span.as_ref()
                .map_or_else(String::new, |s| doc::path_at(self.full, s.start))
        });
        let offset = span.map(|s| self.expanded.original_offset(s.start));
        let message = self.expanded.mask(message.as_ref());
        self.errors
            .push(ConfigError::at(self.file, self.original, offset, path, message));
    }

    /// An error at the option `path`.
    fn error_at(&mut self, path: &[Segment<'_>], message: impl AsRef<str>) {
        let span = doc::span_of(self.full, path);
        self.error(span, Some(doc::path_string(path)), message);
    }

    /// A deserialization error; `extra` are the other keys the table takes (for the list of
    /// valid options and "did you mean").
    fn de_error(&mut self, e: &toml::de::Error, extra: &[&str]) {
        let message = error::explain_unknown_field(e.message(), extra);
        self.error(e.span(), None, message);
    }

    fn read(&mut self, doc: Spanned<DeTable<'i>>, registry: &Registry) -> Option<PipelineConfig> {
        let span = doc.span();
        let mut root = doc.into_inner();
        let sections: Vec<Option<Spanned<DeValue<'i>>>> = SECTIONS.iter().map(|s| root.remove(*s)).collect();
        let [sources, steps, sinks, dead_letter, tests] = <[_; 5]>::try_from(sections).ok()?;

        let top = Top::deserialize(ValueDeserializer::from(Spanned::new(span, DeValue::Table(root))))
            .map_err(|e| self.de_error(&e, SECTIONS))
            .ok();
        let sources = self.sources(sources, registry);
        let steps = self.steps(steps);
        let sinks = self.sinks(sinks, registry);
        let dead_letter = dead_letter.and_then(|v| {
            let (type_name, options) = self.component(Kind::DeadLetter, "dead_letter", v, registry)?;
            let ComponentOptions::Sink(options) = options else {
                return None;
            };
            Some(DeadLetterSpec {
                type_name,
                options: Some(options),
            })
        });
        let tests = tests.and_then(|v| {
            Vec::<TestSpec>::deserialize(ValueDeserializer::from(v))
                .map_err(|e| self.de_error(&e, &[]))
                .ok()
        });
        let top = top?;
        let partition_by = top.partition_by.as_deref().and_then(|p| {
            PartitionBy::parse(p)
                .map_err(|m| self.error_at(&[Segment::Key("partition_by")], m))
                .ok()
        });
        let name = top.name.clone().unwrap_or_else(|| {
            self.file
                .file_stem()
                .map_or_else(|| "pipeline".to_owned(), |s| s.to_string_lossy().into_owned())
        });
        if name.is_empty() {
            self.error_at(&[Segment::Key("name")], "must not be empty");
        }
        let (sources, steps, sinks) = (sources?, steps?, sinks?);
        let tests = tests.unwrap_or_default();
        self.check_tests(&tests, &sinks);
        Some(PipelineConfig {
            file: self.file.to_owned(),
            name,
            sources,
            steps,
            sinks,
            dead_letter,
            partition_by,
            processors: top.processors,
            rate_limit: top.rate_limit.map(|r| (r.messages, r.per)),
            shutdown_timeout: top.shutdown_timeout,
            tests,
        })
    }

    fn sources(&mut self, v: Option<Spanned<DeValue<'i>>>, registry: &Registry) -> Option<Vec<SourceSpec>> {
        let known = registry.source_types().join(", ");
        let table = self.named_tables(v, "sources", "source", &known)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (name, v) in table {
            match self.component(Kind::Source, &name, v, registry) {
                Some((type_name, ComponentOptions::Source(options))) => out.push(SourceSpec {
                    name,
                    type_name,
                    options: Some(options),
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn sinks(&mut self, v: Option<Spanned<DeValue<'i>>>, registry: &Registry) -> Option<Vec<SinkSpec>> {
        let known = registry.sink_types().join(", ");
        let table = self.named_tables(v, "sinks", "sink", &known)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (name, v) in table {
            let span = v.span();
            let DeValue::Table(mut t) = v.into_inner() else {
                self.error(Some(span), None, "must be a table with a `type`, e.g. [sinks.out]");
                ok = false;
                continue;
            };
            let mut generic = DeTable::new();
            for key in &SinkOptions::KEYS[1..] {
                if let Some((k, v)) = t.remove_entry(*key) {
                    generic.insert(k, v);
                }
            }
            let opts = SinkOptions::deserialize(ValueDeserializer::from(Spanned::new(
                span.clone(),
                DeValue::Table(generic),
            )))
            .map_err(|e| self.de_error(&e, &[]))
            .ok();
            let route = opts.as_ref().and_then(|o| o.route.as_deref()).map(|code| {
                let path = [Segment::Key("sinks"), Segment::Key(&name), Segment::Key("route")];
                self.program(&path, code)
            });
            let component = self.component(Kind::Sink, &name, Spanned::new(span, DeValue::Table(t)), registry);
            match (opts, route, component) {
                (Some(o), route @ (None | Some(Some(_))), Some((type_name, ComponentOptions::Sink(options)))) => out
                    .push(SinkSpec {
                        name,
                        type_name,
                        batch_size: o.batch_size,
                        batch_timeout: o.batch_timeout,
                        concurrency: o.concurrency,
                        route: route.flatten(),
                        options: Some(options),
                    }),
                _ => ok = false,
            }
        }
        // Routes are tried in file order: a sink after one without a route gets nothing.
        if let Some(open) = out.iter().position(|s| s.route.is_none()) {
            for later in &out[open + 1..] {
                self.error_at(
                    &[Segment::Key("sinks"), Segment::Key(&later.name)],
                    format!(
                        "never reached: sink `{}` before it has no `route`, so it takes every record (give it a route, or put it last)",
                        out[open].name
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(out)
    }

    /// A section of named tables (`[sources.NAME]`, `[sinks.NAME]`), in file order.
    fn named_tables(
        &mut self,
        v: Option<Spanned<DeValue<'i>>>,
        section: &str,
        what: &str,
        known: &str,
    ) -> Option<Vec<(String, Spanned<DeValue<'i>>)>> {
        let example = if section == "sources" { "in" } else { "out" };
        let Some(v) = v else {
            self.error(
                None,
                Some(section.to_owned()),
                format!("a pipeline needs at least one {what}: add a [{section}.{example}] table with a `type` (one of: {known})"),
            );
            return None;
        };
        let span = v.span();
        match v.into_inner() {
            DeValue::Table(t) if !t.is_empty() => {
                Some(t.into_iter().map(|(k, v)| (k.into_inner().into_owned(), v)).collect())
            }
            DeValue::Table(_) => {
                self.error(
                    Some(span),
                    Some(section.to_owned()),
                    format!("has no {what}: add a [{section}.{example}] table with a `type` (one of: {known})"),
                );
                None
            }
            _ => {
                self.error(
                    Some(span),
                    Some(section.to_owned()),
                    format!(
                        "must be a table of named {section}, e.g. [{section}.{example}] with a `type` (one of: {known})"
                    ),
                );
                None
            }
        }
    }

    /// A connector's table: its `type`, and its options read by that type.
    fn component(
        &mut self,
        kind: Kind,
        name: &str,
        v: Spanned<DeValue<'i>>,
        registry: &Registry,
    ) -> Option<(String, ComponentOptions)> {
        let span = v.span();
        let path: Vec<Segment<'_>> = match kind {
            Kind::Source => vec![Segment::Key("sources"), Segment::Key(name)],
            Kind::Sink => vec![Segment::Key("sinks"), Segment::Key(name)],
            Kind::DeadLetter => vec![Segment::Key("dead_letter")],
        };
        let (what, known) = match kind {
            Kind::Source => ("source", registry.source_types()),
            Kind::Sink | Kind::DeadLetter => ("sink", registry.sink_types()),
        };
        let DeValue::Table(mut t) = v.into_inner() else {
            self.error(
                Some(span),
                Some(doc::path_string(&path)),
                "must be a table with a `type`",
            );
            return None;
        };
        let Some(ty) = t.remove("type") else {
            self.error(
                Some(span),
                Some(doc::path_string(&path)),
                format!("missing `type`: which {what} (one of: {})", known.join(", ")),
            );
            return None;
        };
        let type_span = ty.span();
        let DeValue::String(type_name) = ty.into_inner() else {
            self.error(
                Some(type_span),
                None,
                format!("must be a string naming the {what} type (one of: {})", known.join(", ")),
            );
            return None;
        };
        let options = ValueDeserializer::from(Spanned::new(span, DeValue::Table(t)));
        let extra: &[&str] = if kind == Kind::Sink {
            SinkOptions::KEYS
        } else {
            &["type"]
        };
        let parsed = match kind {
            Kind::Source => registry
                .parse_source(&type_name, options)
                .map(|r| r.map(ComponentOptions::Source)),
            Kind::Sink | Kind::DeadLetter => registry
                .parse_sink(&type_name, options)
                .map(|r| r.map(ComponentOptions::Sink)),
        };
        match parsed {
            None => {
                self.error(
                    Some(type_span),
                    None,
                    format!(
                        "unknown {what} type `{type_name}`{}; known {what} types: {}",
                        error::did_you_mean(&type_name, known.iter().copied()),
                        known.join(", ")
                    ),
                );
                None
            }
            Some(Err(e)) => {
                self.de_error(&e, extra);
                None
            }
            Some(Ok(options)) => Some((type_name.into_owned(), options)),
        }
    }

    fn steps(&mut self, v: Option<Spanned<DeValue<'i>>>) -> Option<Vec<Step>> {
        let Some(v) = v else { return Some(Vec::new()) };
        let specs = Vec::<StepSpec>::deserialize(ValueDeserializer::from(v))
            .map_err(|e| self.de_error(&e, &[]))
            .ok()?;
        let mut steps = Vec::new();
        let mut ok = true;
        for (i, s) in specs.into_iter().enumerate() {
            let at = |key| [Segment::Key("steps"), Segment::Index(i), Segment::Key(key)];
            let kinds: Vec<(&str, String)> = [("filter", s.filter), ("map", s.map), ("dead_letter", s.dead_letter)]
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect();
            if s.reason.is_some() && !kinds.iter().any(|(k, _)| *k == "dead_letter") {
                self.error_at(
                    &at("reason"),
                    "`reason` goes with `dead_letter` (the reason a record is dead-lettered with)",
                );
                ok = false;
            }
            let (key, code) = match <[_; 1]>::try_from(kinds) {
                Ok([(key, code)]) => (key, code),
                Err(kinds) => {
                    let message = if kinds.is_empty() {
                        "a step is one of `filter`, `map` or `dead_letter` (a jq program)".to_owned()
                    } else {
                        let names: Vec<String> = kinds.iter().map(|(k, _)| format!("`{k}`")).collect();
                        format!(
                            "a step is exactly one of `filter`, `map` or `dead_letter`; this one has {} (make one step of each)",
                            names.join(" and ")
                        )
                    };
                    self.error_at(&[Segment::Key("steps"), Segment::Index(i)], message);
                    ok = false;
                    continue;
                }
            };
            let Some(program) = self.program(&at(key), &code) else {
                ok = false;
                continue;
            };
            let label = format!("steps[{i}].{key}");
            let kind = match key {
                "filter" => StepKind::Filter(program),
                "map" => StepKind::Map(program),
                _ => StepKind::DeadLetter {
                    reason: s.reason.clone().unwrap_or_else(|| format!("{label} matched: {code}")),
                    when: program,
                },
            };
            steps.push(Step { label, kind });
        }
        ok.then_some(steps)
    }

    /// Compiles the jq program at `path`; its errors point into the file.
    fn program(&mut self, path: &[Segment<'_>], code: &str) -> Option<Program> {
        match Program::compile(code) {
            Ok(p) => Some(p),
            Err(errors) => {
                let span = doc::span_of(self.full, path);
                for CompileError { offset, message } in errors {
                    let at = span.clone().map(|s| {
                        let start = self.code_start(&s, code);
                        let o = start + offset;
                        o..o
                    });
                    self.error(
                        at,
                        Some(doc::path_string(path)),
                        format!("invalid jq program: {message}"),
                    );
                }
                None
            }
        }
    }

    /// Where `code` starts in the string value at `span`: after its quotes, when the value
    /// holds the code verbatim (no escapes); else the value's start.
    fn code_start(&self, span: &Range<usize>, code: &str) -> usize {
        let raw = self.expanded.text.get(span.clone()).unwrap_or("");
        let skip = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            3 + usize::from(raw[3..].starts_with('\n'))
        } else {
            1
        };
        if raw.get(skip..).is_some_and(|r| r.starts_with(code)) {
            span.start + skip
        } else {
            span.start
        }
    }

    fn check_tests(&mut self, tests: &[TestSpec], sinks: &[SinkSpec]) {
        let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
        for (i, t) in tests.iter().enumerate() {
            for sink in t.output.keys().filter(|k| !names.contains(&k.as_str())) {
                self.error_at(
                    &[
                        Segment::Key("tests"),
                        Segment::Index(i),
                        Segment::Key("output"),
                        Segment::Key(sink),
                    ],
                    format!(
                        "no sink named `{sink}`{}; the sinks are: {}",
                        error::did_you_mean(sink, names.iter().copied()),
                        names.join(", ")
                    ),
                );
            }
        }
    }
}

enum ComponentOptions {
    Source(Box<dyn SourceBuild>),
    Sink(Box<dyn SinkBuild>),
}
