//! Connector options from configuration files (feature `config`): what a connector crate
//! implements so that a tool such as the `ferroway` CLI can build it from a file — a `type`
//! name, serde options ([`duration`] for `"500ms"`, [`Secret`] for passwords), and a build
//! into a boxed source or sink of [`Record`]s.
//!
//! Adding a connector to such a tool is then one line: `registry.source::<KafkaSourceConfig>()`.
//! Options reject unknown keys (`#[serde(deny_unknown_fields)]`) so a typo is an error, not a
//! silently ignored setting.

mod connectors;
pub mod duration;
mod secret;

use std::sync::Arc;

use serde::de::DeserializeOwned;

pub use connectors::{FileOnFailed, FileSinkConfig, FileSourceConfig, GeneratorConfig, StdinConfig, StdoutConfig};
pub use secret::Secret;

use crate::connector::{BoxSource, Record, Sink};
use crate::error::BoxError;
use crate::pipeline::BoxFuture;

/// What a source or sink is built for.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildContext {
    /// The pipeline's name.
    pub pipeline: String,
    /// The component's name in the file (`sources.<name>`, `sinks.<name>`).
    pub component: String,
}

impl BuildContext {
    /// The context of component `component` of pipeline `pipeline`.
    pub fn new(pipeline: impl Into<String>, component: impl Into<String>) -> Self {
        BuildContext {
            pipeline: pipeline.into(),
            component: component.into(),
        }
    }
}

/// A source a configuration file can name.
///
/// ```
/// use ferroway::config::{BuildContext, SourceConfig};
/// use ferroway::config::GeneratorConfig;
///
/// let opts: GeneratorConfig = serde_json::from_str(r#"{"count": 3}"#).unwrap();
/// let source = opts.build(&BuildContext::new("p", "numbers")).unwrap();
/// # let _ = source;
/// assert_eq!(GeneratorConfig::TYPE, "generator");
/// ```
pub trait SourceConfig: DeserializeOwned + Send + 'static {
    /// The `type` a file names it by: a lowercase noun after the system (`"kafka"`).
    const TYPE: &'static str;
    /// One line saying what it reads.
    const SUMMARY: &'static str;
    /// Its options as a TOML table body, each with its default or an example, commented.
    const EXAMPLE: &'static str;

    /// Builds the source, its data as [`Record`]s. No connection is made yet: that happens
    /// when the pipeline starts.
    ///
    /// # Errors
    /// Options that are valid TOML but cannot work together, named.
    fn build(self, ctx: &BuildContext) -> Result<BoxSource<Record>, BoxError>;
}

/// A sink a configuration file can name.
pub trait SinkConfig: DeserializeOwned + Send + 'static {
    /// The `type` a file names it by.
    const TYPE: &'static str;
    /// One line saying what it writes.
    const SUMMARY: &'static str;
    /// Its options as a TOML table body, each with its default or an example, commented.
    const EXAMPLE: &'static str;

    /// Builds the sink (opening files, starting clients).
    ///
    /// # Errors
    /// As for [`SourceConfig::build`], and the sink could not be opened.
    fn build(self, ctx: &BuildContext) -> BoxFuture<'static, Result<Arc<dyn Sink<Record>>, BoxError>>;
}
