//! `ferroway-bench WORKLOAD`: runs a benchmark workload and prints one JSON line per measured
//! thing on stdout (the contract in `shared/bench/README.md`). Progress goes to stderr.

mod amqp;
mod cli;
mod file;
mod flow;
mod http_ingest;
mod kafka;
mod nats;
mod pipeline;
mod pubsub;
mod redis;
mod report;
mod sqs;
mod sse;
mod stage;

use std::process::ExitCode;

const WORKLOADS: &[&str] = &[
    "stage",
    "pipeline",
    "pipeline-partitioned",
    "pipeline-skewed",
    "redis",
    "redis-sink",
    "file",
    "kafka",
    "kafka-sink",
    "amqp",
    "amqp-sink",
    "nats",
    "nats-sink",
    "sqs",
    "sqs-sink",
    "pubsub",
    "pubsub-sink",
    "sse",
    "http-ingest",
    "flow-wordcount",
    "flow-window",
    // Last: `ferroway run` installs the process's metrics recorder.
    "cli-file",
    "cli-transform",
];

fn main() -> ExitCode {
    let workload = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    let selected: Vec<&str> = match workload.as_str() {
        "all" => WORKLOADS.to_vec(),
        w if WORKLOADS.contains(&w) => vec![w],
        other => {
            eprintln!(
                "unknown workload `{other}`; choose one of: all, {}",
                WORKLOADS.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    // Warnings from the connectors (a broker unreachable, a call retried) on stderr, beside
    // the JSON lines on stdout; `RUST_LOG` for more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut ok = true;
    for w in selected {
        eprintln!("running {w} ...");
        // Each workload's peak_rss_bytes is its own, also under `all`: reset the high-water mark.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let reports = match w {
            "stage" => rt.block_on(stage::run()),
            "pipeline" => vec![rt.block_on(pipeline::run(pipeline::Shape::Plain))],
            "pipeline-partitioned" => vec![rt.block_on(pipeline::run(pipeline::Shape::Partitioned))],
            "pipeline-skewed" => vec![rt.block_on(pipeline::run(pipeline::Shape::Skewed))],
            "redis" => vec![rt.block_on(redis::run(false))],
            "redis-sink" => vec![rt.block_on(redis::run(true))],
            "file" => vec![rt.block_on(file::run())],
            "kafka" => rt.block_on(kafka::run_source()),
            "kafka-sink" => rt.block_on(kafka::run_sink()),
            "amqp" => vec![rt.block_on(amqp::run(false))],
            "amqp-sink" => vec![rt.block_on(amqp::run(true))],
            "nats" => vec![rt.block_on(nats::run(false))],
            "nats-sink" => vec![rt.block_on(nats::run(true))],
            "sqs" => vec![rt.block_on(sqs::run(false))],
            "sqs-sink" => vec![rt.block_on(sqs::run(true))],
            "pubsub" => vec![rt.block_on(pubsub::run(false))],
            "pubsub-sink" => vec![rt.block_on(pubsub::run(true))],
            "sse" => vec![rt.block_on(sse::run())],
            "http-ingest" => vec![rt.block_on(http_ingest::run())],
            "flow-wordcount" => rt.block_on(flow::run_wordcount()),
            "flow-window" => rt.block_on(flow::run_window()),
            "cli-file" => vec![rt.block_on(cli::run_file())],
            "cli-transform" => vec![rt.block_on(cli::run_transform())],
            _ => unreachable!("listed in WORKLOADS"),
        };
        for r in reports {
            ok &= r.checksum_ok.unwrap_or(true);
            println!("{}", r.to_json());
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
