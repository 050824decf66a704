//! The crash-test child for flows over a connector source: a file of events `id ts_ms` ->
//! file source (checkpointed) -> flow: 2 partitions by `id % 4`, fixed 1-second event-time
//! windows (100 ms out of order allowed), the ids of each window and key -> file sink, one
//! line per window and key: `start key count id id ...` (ids sorted).
//!
//! ```text
//! flow-window-count --input FILE --output FILE --state DIR
//! ```
//!
//! Prints `ready` once running; exits 0 once the input is read, every window written and
//! every line acknowledged — or on SIGTERM, after a graceful stop (windows still open are left
//! for the next run).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ferroway::BoxError;
use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource};
use ferroway::flow::{Accumulator, Flow, Partition, Window};

struct Args {
    input: PathBuf,
    output: PathBuf,
    state: PathBuf,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let (mut input, mut output, mut state) = (None, None, None);
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value: PathBuf = it.next().ok_or_else(|| format!("{flag} needs a value"))?.into();
            match flag.as_str() {
                "--input" => input = Some(value),
                "--output" => output = Some(value),
                "--state" => state = Some(value),
                other => return Err(format!("unknown option {other}")),
            }
        }
        match (input, output, state) {
            (Some(input), Some(output), Some(state)) => Ok(Args { input, output, state }),
            _ => Err("--input, --output and --state are required".into()),
        }
    }
}

/// `id ts_ms`.
fn parse(line: &str) -> (u64, i64) {
    let mut f = line.split(' ');
    match (f.next().map(str::parse), f.next().map(str::parse), f.next()) {
        (Some(Ok(id)), Some(Ok(ts)), None) => (id, ts),
        _ => panic!("input line {line:?} is not `id ts_ms`"),
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let source = FileSource::builder(&args.input)
        .name("events")
        .checkpoint_dir(args.state.join("offsets"))
        .checkpoint_interval(Duration::from_millis(50))
        .open()?;
    let sink = FileSink::open(&args.output, FileSinkOptions::new()).await?;
    let window = Window::fixed(Duration::from_secs(1))
        .event_time(|e: &(u64, i64)| e.1)
        .out_of_orderness(Duration::from_millis(100));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!("ready");
    Flow::from_source(source, 1, args.state.join("flow.ckpt"))
        .name("window-count")
        .map(|line: String| parse(&line))
        .partition(Partition::by_key(|e: &(u64, i64)| e.0 % 4).stages(2).window(window))
        .reduce_with(
            BTreeMap::<u64, Vec<u64>>::new,
            |keys, e| keys.entry(e.0 % 4).or_default().push(e.0),
            |keys, t| {
                let lines = keys
                    .iter_mut()
                    .map(|(key, ids)| {
                        ids.sort_unstable();
                        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
                        format!("{} {key} {} {}", t.window.start, ids.len(), ids.join(" "))
                    })
                    .collect();
                (lines, Accumulator::Reset)
            },
        )
        .stop_when(async move {
            term.recv().await;
        })
        .into_sink(sink, 64)
        .await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    ferroway_testkit::child_main("flow-window-count", Args::parse(), run).await
}
