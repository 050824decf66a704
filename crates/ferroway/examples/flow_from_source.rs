//! Flow over a connector source, restart-safe: a file of events `KEY TS_MS` → per-key counts
//! in one-second event-time windows → a file, one line per window and key. A line of the input
//! is acknowledged (the file source's checkpoint moves past it) only once every window it went
//! into was written; killed and run again, the flow redoes what was not acknowledged.
//!
//! ```sh
//! cargo run -p ferroway --example flow_from_source                  # a generated sample
//! cargo run -p ferroway --example flow_from_source -- IN OUT STATE  # your files
//! ```
//!
//! Run it twice: the second run finds everything acknowledged and writes nothing new. Append
//! lines to the input and run it again: only the new windows come out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferroway::connector::file::{FileSink, FileSinkOptions, FileSource};
use ferroway::flow::{Accumulator, Flow, Partition, Window};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let (input, output, state) = match (args.next(), args.next(), args.next()) {
        (Some(i), Some(o), Some(s)) => (i, o, s),
        _ => {
            let dir = std::env::temp_dir().join("ferroway-flow-from-source");
            std::fs::create_dir_all(&dir)?;
            let input = dir.join("events.txt");
            if !input.exists() {
                // 100,000 events of 5 keys, 20 a millisecond, up to 50 ms out of order.
                let text: String = (0..100_000u64)
                    .map(|i| format!("k{} {}\n", i % 5, 1_700_000_000_000 + i / 20 + (i * 7919) % 50))
                    .collect();
                std::fs::write(&input, text)?;
                tracing::info!(file = %input.display(), "wrote a sample");
            }
            (input, dir.join("counts.txt"), dir.join("state"))
        }
    };

    let source = FileSource::builder(&input)
        .name("events")
        .checkpoint_dir(state.join("offsets"))
        .open()?;
    let sink = FileSink::open(&output, FileSinkOptions::new()).await?;
    let window = Window::fixed(Duration::from_secs(1))
        .event_time(|e: &(String, i64)| e.1)
        .out_of_orderness(Duration::from_millis(100));
    let started = Instant::now();
    let written = Flow::from_source(source, 1, state.join("flow.ckpt"))
        .name("counts")
        .filter_map(|line: String| {
            let (key, ts) = line.split_once(' ')?;
            match ts.parse() {
                Ok(ts) => Some((key.to_string(), ts)),
                Err(_) => {
                    tracing::warn!(line, "not `KEY TS_MS`: skipped");
                    None
                }
            }
        })
        .partition(
            Partition::by_key(|e: &(String, i64)| e.0.clone())
                .stages(2)
                .window(window),
        )
        .reduce_with(
            BTreeMap::<String, u64>::new,
            |counts, e| *counts.entry(e.0.clone()).or_default() += 1,
            |counts, t| {
                let lines = counts
                    .iter()
                    .map(|(key, n)| format!("{} {key} {n}", t.window.start))
                    .collect();
                (lines, Accumulator::Reset)
            },
        )
        .into_sink(sink, 100)
        .await?;
    tracing::info!(
        written,
        output = %output.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "done: every input line acknowledged after its window was written"
    );
    Ok(())
}
