//! Flow: per-key counts in one-second event-time windows, with late events handed to a side
//! output, over a file's lines or a generated sample.
//!
//! ```sh
//! cargo run --release -p ferroway --example flow_windows              # a generated sample
//! cargo run --release -p ferroway --example flow_windows -- FILE      # lines "KEY TS_MS"
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::flow::{Accumulator, Flow, Partition, Window};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let path = match std::env::args().nth(1) {
        Some(p) => p.into(),
        None => {
            // 200,000 events of 10 keys, about 10 a millisecond, up to 80 ms out of order.
            let p = std::env::temp_dir().join("ferroway-flow-windows.txt");
            let text: String = (0..200_000u64)
                .map(|i| format!("k{} {}\n", i % 10, 1_700_000_000_000 + i / 10 + (i * 7919) % 80))
                .collect();
            std::fs::write(&p, text)?;
            tracing::info!(file = %p.display(), "wrote a sample");
            p
        }
    };

    let late = Arc::new(AtomicU64::new(0));
    let l = late.clone();
    let window = Window::fixed(Duration::from_secs(1))
        .event_time(|e: &(String, i64)| e.1)
        .out_of_orderness(Duration::from_millis(50))
        .on_late(move |(key, ts)| {
            // A side output: here, a counter and a debug line.
            l.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%key, ts, "late event");
        });
    let started = Instant::now();
    let mut results = std::pin::pin!(
        Flow::from_file_lines(&path, 2)
            .name("windows")
            .filter_map(|line: String| {
                let (key, ts) = line.split_once(' ')?;
                Some((key.to_string(), ts.trim().parse::<i64>().ok()?))
            })
            .partition(Partition::by_key(|e: &(String, i64)| e.0.clone()).window(window))
            .reduce_with(
                BTreeMap::<String, u64>::new,
                |counts, e| *counts.entry(e.0.clone()).or_default() += 1,
                |counts, t| (vec![(t.window.start, std::mem::take(counts))], Accumulator::Reset),
            )
            .into_stream()
    );
    use futures_util::StreamExt;
    let mut windows = 0;
    while let Some(result) = results.next().await {
        let (start, counts) = result?;
        windows += 1;
        if windows <= 3 {
            tracing::info!(window_start_ms = start, ?counts, "window closed");
        }
    }
    tracing::info!(
        windows,
        late = late.load(Ordering::Relaxed),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "done (windows are per partition: a window's keys may come in several results)"
    );
    Ok(())
}
