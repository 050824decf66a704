//! What a run shows while it goes: a live block of counts on a terminal (redrawn every
//! second, log lines printed above it), a log line per interval otherwise, and a summary at
//! the end.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

use crate::stats::{PipelineStats, Snapshot};

/// The live block on stderr, shared by the progress task and the log writer.
struct Block {
    lines: Vec<String>,
    shown: usize,
}

static BLOCK: Mutex<Block> = Mutex::new(Block {
    lines: Vec::new(),
    shown: 0,
});

fn with_block<R>(f: impl FnOnce(&mut Block, &mut std::io::StderrLock<'_>) -> R) -> R {
    let mut block = BLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    f(&mut block, &mut err)
}

impl Block {
    fn erase(&mut self, err: &mut impl Write) {
        if self.shown > 0 {
            // To the start of the block's first line, then clear to the end of the screen.
            let _ = write!(err, "\x1b[{}F\x1b[J", self.shown);
            self.shown = 0;
        }
    }

    fn draw(&mut self, err: &mut impl Write) {
        for l in &self.lines {
            let _ = writeln!(err, "{l}");
        }
        self.shown = self.lines.len();
        let _ = err.flush();
    }
}

/// The log writer: on a terminal with a live block, each log line goes above the block.
#[derive(Debug, Clone, Copy, Default)]
pub struct Console;

impl<'a> MakeWriter<'a> for Console {
    type Writer = ConsoleWriter;

    fn make_writer(&'a self) -> ConsoleWriter {
        ConsoleWriter(Vec::new())
    }
}

/// One log event, written whole when dropped.
#[derive(Debug)]
pub struct ConsoleWriter(Vec<u8>);

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        with_block(|block, err| {
            let redraw = block.shown > 0;
            block.erase(err);
            let _ = err.write_all(&self.0);
            if redraw {
                block.draw(err);
            }
            let _ = err.flush();
        });
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live block on the terminal, redrawn every second.
    Live,
    /// A log line per pipeline every interval.
    Log(Duration),
    /// Nothing until the summary.
    Off,
}

impl Mode {
    /// Live on a terminal, else log lines every `interval` (none if zero).
    pub fn auto(interval: Duration) -> Mode {
        if std::io::stderr().is_terminal() {
            Mode::Live
        } else if interval.is_zero() {
            Mode::Off
        } else {
            Mode::Log(interval)
        }
    }
}

/// Shows progress of `pipelines` until dropped (the task is aborted then, and the live
/// block removed).
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl Progress {
    /// Starts showing.
    pub fn start(mode: Mode, pipelines: Vec<(String, Arc<PipelineStats>)>) -> Progress {
        let every = match mode {
            Mode::Off => return Progress { task: None },
            Mode::Live => Duration::from_secs(1),
            Mode::Log(d) => d,
        };
        let task = tokio::spawn(async move {
            let mut last: Vec<(Instant, u64)> = pipelines.iter().map(|_| (Instant::now(), 0)).collect();
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut lines = Vec::new();
                for ((name, stats), (at, before)) in pipelines.iter().zip(last.iter_mut()) {
                    let s = stats.snapshot();
                    let rate = (s.emitted - *before) as f64 / at.elapsed().as_secs_f64();
                    (*at, *before) = (Instant::now(), s.emitted);
                    match mode {
                        Mode::Live => lines.extend(live_lines(name, &s, rate)),
                        _ => tracing::info!(
                            pipeline = %name,
                            emitted = s.emitted,
                            per_sec = rate.round() as u64,
                            acked = s.acked,
                            failed = s.failed,
                            dead_lettered = s.dead_lettered,
                            dropped = s.dropped,
                            in_flight = s.in_flight,
                            "progress"
                        ),
                    }
                }
                if mode == Mode::Live {
                    with_block(|block, err| {
                        block.erase(err);
                        block.lines = lines;
                        block.draw(err);
                    });
                }
            }
        });
        Progress { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        with_block(|block, err| {
            block.erase(err);
            block.lines.clear();
            let _ = err.flush();
        });
    }
}

fn live_lines(name: &str, s: &Snapshot, rate: f64) -> Vec<String> {
    let mut lines = vec![format!(
        "{name}: in {} ({}/s) · acked {} · failed {} · dead-lettered {} · dropped {} · in flight {}{}",
        s.emitted,
        rate.round(),
        s.acked,
        s.failed,
        s.dead_lettered,
        s.dropped,
        s.in_flight,
        if s.unavailable > 0 {
            format!(" · outage retries {}", s.unavailable)
        } else {
            String::new()
        }
    )];
    let processors: Vec<String> = s.processors.iter().map(|(_, n)| n.to_string()).collect();
    lines.push(format!("  processors: {}", processors.join(" ")));
    for (sink, written, refused) in &s.sinks {
        lines.push(format!(
            "  sink {sink}: {written} written{}",
            if *refused > 0 {
                format!(", {refused} refused")
            } else {
                String::new()
            }
        ));
    }
    lines
}

/// The end-of-run summary of one pipeline.
pub fn summary(name: &str, s: &Snapshot, elapsed: Duration, outcome: &Result<(), String>) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut out = format!(
        "{name}: {} in {:.2?} ({}/s): {} acknowledged, {} failed, {} dead-lettered, {} dropped by filters, {} left in flight",
        s.emitted,
        elapsed,
        (s.emitted as f64 / secs).round(),
        s.acked,
        s.failed,
        s.dead_lettered,
        s.dropped,
        s.in_flight
    );
    for (sink, written, refused) in &s.sinks {
        out.push_str(&format!("\n  sink {sink}: {written} written, {refused} refused"));
    }
    match outcome {
        Ok(()) => out.push_str("\n  stopped cleanly"),
        Err(e) => out.push_str(&format!("\n  FAILED: {e}")),
    }
    out
}
