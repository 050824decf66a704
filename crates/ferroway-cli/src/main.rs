//! The `ferroway` command. See the crate documentation of `ferroway_cli`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ferroway_cli::progress::{Console, Mode};
use ferroway_cli::registry::Registry;
use ferroway_cli::run::{self, RunOptions};
use ferroway_cli::{config, file_tests};
use tracing_subscriber::EnvFilter;

/// Run streaming pipelines from TOML files: any source to any sink, with jq steps.
#[derive(Debug, Parser)]
#[command(name = "ferroway", version, about)]
struct Cli {
    /// Log format on stderr (the level comes from RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProgressArg {
    /// Live on a terminal, else a log line every --progress-interval.
    Auto,
    /// A log line every --progress-interval.
    Log,
    /// Only the summary at the end.
    Off,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline of each file until its sources end; SIGINT/SIGTERM drain (a second
    /// one stops at once).
    Run {
        /// Pipeline files (one pipeline each).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Serve Prometheus metrics at /metrics, and /health and /ready, on this address.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// How progress is shown on stderr.
        #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
        progress: ProgressArg,
        /// Interval of progress log lines, e.g. 10s.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        progress_interval: Duration,
    },
    /// Check files without running them: every error with its file, line, column and option.
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the [[tests]] declared in files, with their connectors swapped for memory.
    Test {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the connector types compiled in, with their options and defaults.
    Connectors,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    };
    init_logs(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let registry = Registry::with_compiled_in();
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run {
                files,
                metrics,
                progress,
                progress_interval,
            } => {
                let progress = match progress {
                    ProgressArg::Auto => Mode::auto(progress_interval),
                    ProgressArg::Log => Mode::Log(progress_interval),
                    ProgressArg::Off => Mode::Off,
                };
                match run::run(&files, &registry, RunOptions { progress, metrics }).await {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("error: {e}");
                        e.exit_code()
                    }
                }
            }
            Command::Validate { files } => validate(&files, &registry),
            Command::Test { files } => test(&files, &registry).await,
            Command::Connectors => {
                print!("{}", connectors(&registry));
                0
            }
        }
    });
    // Connector clients may keep blocking threads (e.g. librdkafka's); do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn init_logs(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Console);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(e) = result {
        eprintln!("warning: no log output: {e}");
    }
}

/// `ferroway validate`: 0 when every file is valid, 2 otherwise.
fn validate(files: &[PathBuf], registry: &Registry) -> i32 {
    let mut code = 0;
    for f in files {
        match config::load(f, registry) {
            Ok(c) => println!(
                "{}: ok — pipeline `{}`: {} source(s), {} step(s), {} sink(s){}, {} test(s)",
                f.display(),
                c.name,
                c.sources.len(),
                c.steps.len(),
                c.sinks.len(),
                if c.dead_letter.is_some() {
                    " and a dead-letter sink"
                } else {
                    ""
                },
                c.tests.len()
            ),
            Err(e) => {
                eprintln!("{}\n", e.render());
                code = 2;
            }
        }
    }
    code
}

/// `ferroway test`: 0 when every test of every file passed, 1 when one failed, 2 when a file
/// is invalid or has no tests.
async fn test(files: &[PathBuf], registry: &Registry) -> i32 {
    let (mut passed, mut failed, mut code) = (0, 0, 0);
    for f in files {
        let mut c = match config::load(f, registry) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}\n", e.render());
                code = 2;
                continue;
            }
        };
        if c.tests.is_empty() {
            eprintln!("error: {}: no [[tests]] in this file", f.display());
            code = 2;
            continue;
        }
        for r in file_tests::run(&mut c).await {
            if r.passed() {
                passed += 1;
                println!("ok      {}: {}", f.display(), r.name);
            } else {
                failed += 1;
                println!("FAILED  {}: {}", f.display(), r.name);
                for m in &r.mismatches {
                    println!("    {m}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if code == 0 && failed > 0 { 1 } else { code }
}

/// `ferroway connectors`: each type with its summary and options.
fn connectors(registry: &Registry) -> String {
    let mut out = String::new();
    for (what, list) in [
        ("Sources", registry.sources().collect::<Vec<_>>()),
        ("Sinks", registry.sinks().collect()),
    ] {
        out.push_str(&format!("{what}:\n"));
        for d in list {
            out.push_str(&format!("\n  type = \"{}\" — {}\n", d.type_name, d.summary));
            for line in d.example.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out.push('\n');
    }
    out
}
