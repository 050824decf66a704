//! # ferroway-cli
//!
//! The `ferroway` command: pipelines from TOML files — any compiled-in source to any sink, with
//! jq steps between — without writing Rust.
//!
//! ```text
//! ferroway run pipeline.toml [more.toml …]   # one pipeline per file; SIGINT/SIGTERM drain
//! ferroway validate pipeline.toml            # every error with file:line:column and option path
//! ferroway test pipeline.toml                # the file's [[tests]], no server needed
//! ferroway connectors                        # the connector types and their options
//! ```
//!
//! The file format is described in [`config`]; the connectors it can name in [`registry`];
//! the steps in [`steps`] and the transform language (jq, through jaq) in [`transform`].
//!
//! The library half exists so the pieces can be tested and reused: [`config::parse`] checks a
//! file, [`assemble::pipeline`] wires one, [`run::run`] runs files as the command does.
//!
//! ```
//! use std::path::Path;
//! use ferroway_cli::config::parse;
//! use ferroway_cli::registry::Registry;
//!
//! let text = r#"
//! [sources.numbers]
//! type = "generator"
//! count = 3
//!
//! [sinks.out]
//! type = "stdout"
//! "#;
//! let config = parse(Path::new("numbers.toml"), text, |_| None, &Registry::with_compiled_in()).unwrap();
//! assert_eq!(config.name, "numbers");
//! assert_eq!(config.sinks[0].name, "out");
//! ```

pub mod assemble;
pub mod config;
pub mod file_tests;
pub mod merge;
pub mod metrics;
pub mod partition;
pub mod progress;
pub mod registry;
pub mod run;
pub mod signals;
pub mod stats;
pub mod steps;
pub mod transform;
