//! The connectors a configuration file can name by `type`: one line per connector type,
//! each behind its cargo feature.

use std::sync::Arc;

use ferroway::BoxError;
use ferroway::config::{BuildContext, SinkConfig, SourceConfig};
use ferroway::connector::{BoxSource, Record, Sink};
use ferroway::pipeline::BoxFuture;
use toml::de::{Error as TomlError, ValueDeserializer};

/// A source's options, read from its table, ready to build.
pub trait SourceBuild: Send {
    /// Builds the source (no connection yet).
    ///
    /// # Errors
    /// Options that cannot work together.
    fn build(self: Box<Self>, ctx: &BuildContext) -> Result<BoxSource<Record>, BoxError>;
}

impl<C: SourceConfig> SourceBuild for C {
    fn build(self: Box<Self>, ctx: &BuildContext) -> Result<BoxSource<Record>, BoxError> {
        SourceConfig::build(*self, ctx)
    }
}

/// A sink's options, read from its table, ready to build.
pub trait SinkBuild: Send {
    /// Builds the sink (opens files, starts clients).
    fn build(self: Box<Self>, ctx: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>>;
}

impl<C: SinkConfig> SinkBuild for C {
    fn build(self: Box<Self>, ctx: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>> {
        SinkConfig::build(*self, ctx)
    }
}

type ParseSource = fn(ValueDeserializer<'_>) -> Result<Box<dyn SourceBuild>, TomlError>;
type ParseSink = fn(ValueDeserializer<'_>) -> Result<Box<dyn SinkBuild>, TomlError>;

/// What a connector type says about itself, for `ferroway connectors`.
#[derive(Debug, Clone, Copy)]
pub struct Description {
    /// The `type` name.
    pub type_name: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Its options with defaults, as a commented TOML table body.
    pub example: &'static str,
}

struct SourceEntry {
    description: Description,
    parse: ParseSource,
}

struct SinkEntry {
    description: Description,
    parse: ParseSink,
}

/// Connector types by name.
///
/// ```
/// use ferroway_cli::registry::Registry;
/// let r = Registry::with_compiled_in();
/// assert!(r.source_types().contains(&"file"));
/// assert!(r.sink_types().contains(&"stdout"));
/// ```
#[derive(Default)]
pub struct Registry {
    sources: Vec<SourceEntry>,
    sinks: Vec<SinkEntry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.source_types())
            .field("sinks", &self.sink_types())
            .finish()
    }
}

impl Registry {
    /// Every connector compiled into this build: the embedded ones (`file`, `stdin`,
    /// `stdout`, `generator`) and those of the enabled features.
    pub fn with_compiled_in() -> Self {
        use ferroway::config::{FileSinkConfig, FileSourceConfig, GeneratorConfig, StdinConfig, StdoutConfig};
        let mut r = Registry::default();
        r.source::<FileSourceConfig>()
            .source::<StdinConfig>()
            .source::<GeneratorConfig>()
            .sink::<FileSinkConfig>()
            .sink::<StdoutConfig>();
        #[cfg(feature = "kafka")]
        r.source::<ferroway_kafka::KafkaSourceConfig>()
            .sink::<ferroway_kafka::KafkaSinkConfig>();
        #[cfg(feature = "redis")]
        r.source::<ferroway_redis::RedisSourceConfig>()
            .sink::<ferroway_redis::RedisSinkConfig>();
        #[cfg(feature = "amqp")]
        r.source::<ferroway_amqp::AmqpSourceConfig>()
            .sink::<ferroway_amqp::AmqpSinkConfig>();
        #[cfg(feature = "nats")]
        r.source::<ferroway_nats::NatsSourceConfig>()
            .sink::<ferroway_nats::NatsSinkConfig>();
        #[cfg(feature = "sqs")]
        r.source::<ferroway_sqs::SqsSourceConfig>()
            .sink::<ferroway_sqs::SqsSinkConfig>();
        #[cfg(feature = "pubsub")]
        r.source::<ferroway_pubsub::PubSubSourceConfig>()
            .sink::<ferroway_pubsub::PubSubSinkConfig>();
        #[cfg(feature = "http")]
        r.source::<ferroway_http::config::SseSourceConfig>()
            .source::<ferroway_http::config::NdjsonSourceConfig>()
            .source::<ferroway_http::config::PollSourceConfig>()
            .source::<ferroway_http::config::IngestSourceConfig>()
            .sink::<ferroway_http::config::HttpSinkConfig>();
        r
    }

    /// Adds source type `C`.
    pub fn source<C: SourceConfig>(&mut self) -> &mut Self {
        self.sources.push(SourceEntry {
            description: Description {
                type_name: C::TYPE,
                summary: C::SUMMARY,
                example: C::EXAMPLE,
            },
            parse: |d| Ok(Box::new(<C as serde::Deserialize>::deserialize(d)?)),
        });
        self
    }

    /// Adds sink type `C`.
    pub fn sink<C: SinkConfig>(&mut self) -> &mut Self {
        self.sinks.push(SinkEntry {
            description: Description {
                type_name: C::TYPE,
                summary: C::SUMMARY,
                example: C::EXAMPLE,
            },
            parse: |d| Ok(Box::new(<C as serde::Deserialize>::deserialize(d)?)),
        });
        self
    }

    /// The source types, in registration order.
    pub fn source_types(&self) -> Vec<&'static str> {
        self.sources.iter().map(|e| e.description.type_name).collect()
    }

    /// The sink types, in registration order.
    pub fn sink_types(&self) -> Vec<&'static str> {
        self.sinks.iter().map(|e| e.description.type_name).collect()
    }

    /// Every source type's description.
    pub fn sources(&self) -> impl Iterator<Item = &Description> {
        self.sources.iter().map(|e| &e.description)
    }

    /// Every sink type's description.
    pub fn sinks(&self) -> impl Iterator<Item = &Description> {
        self.sinks.iter().map(|e| &e.description)
    }

    /// Reads the options of a source of type `type_name`; `None` if no such type.
    pub(crate) fn parse_source(
        &self,
        type_name: &str,
        options: ValueDeserializer<'_>,
    ) -> Option<Result<Box<dyn SourceBuild>, TomlError>> {
        let entry = self.sources.iter().find(|e| e.description.type_name == type_name)?;
        Some((entry.parse)(options))
    }

    /// Reads the options of a sink of type `type_name`; `None` if no such type.
    pub(crate) fn parse_sink(
        &self,
        type_name: &str,
        options: ValueDeserializer<'_>,
    ) -> Option<Result<Box<dyn SinkBuild>, TomlError>> {
        let entry = self.sinks.iter().find(|e| e.description.type_name == type_name)?;
        Some((entry.parse)(options))
    }
}
