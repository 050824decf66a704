//! A complete pipeline, no server needed: generated order events are parsed, filtered and
//! enriched by processors, batched per country, and appended to files by batch processors.
//! Malformed events (a few on purpose) fail, go to the dead-letter sink, and are counted.
//!
//! Run: `cargo run --release -p ferroway --example orders [EVENTS]`

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::pipeline::{
    AckToken, Acknowledger, Acks, BatchInfo, BatchKey, Batcher, Handler, Message, Pipeline, Processors,
};
use ferroway::stage::{Emit, Producer};
use tokio::sync::mpsc;

/// What the source knows about acknowledgements; a broker connector would commit offsets here.
#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    failed: AtomicU64,
}

impl Acknowledger for Tally {
    fn ack(&self, acks: Acks) {
        self.acked.fetch_add(acks.successful.len() as u64, Ordering::Relaxed);
        self.failed.fetch_add(acks.failed.len() as u64, Ordering::Relaxed);
    }
}

/// Emits `total` CSV order events `id,country,amount_cents`, one in 500 malformed.
struct Orders {
    next: u64,
    total: u64,
    tally: Arc<Tally>,
}

impl Producer for Orders {
    type Output = Message<String>;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<String>>, BoxError> {
        const COUNTRIES: [&str; 4] = ["de", "fr", "jp", "us"];
        let end = (self.next + demand as u64).min(self.total);
        let acker: Arc<dyn Acknowledger> = self.tally.clone();
        let events = (self.next..end)
            .map(|id| {
                let line = if id % 500 == 499 {
                    format!("{id},??,not-a-number")
                } else {
                    format!("{id},{},{}", COUNTRIES[(id % 4) as usize], (id * 7919) % 10_000)
                };
                Message::with_acker(line, acker.clone(), AckToken(id, 0))
            })
            .collect();
        self.next = end;
        Ok(if end == self.total {
            Emit::Done(events)
        } else {
            Emit::Events(events)
        })
    }
}

struct Shop {
    dir: std::path::PathBuf,
    written: AtomicU64,
}

impl Handler for Shop {
    type Data = String;

    /// Parse, filter, enrich: runs in the processors, concurrently.
    async fn handle_message(&self, m: &mut Message<String>) -> Result<(), BoxError> {
        let mut fields = m.data().split(',');
        let (Some(id), Some(country), Some(amount)) = (fields.next(), fields.next(), fields.next()) else {
            return Err("expected id,country,amount".into());
        };
        let cents: u64 = amount
            .parse()
            .map_err(|e| format!("order {id}: bad amount {amount:?}: {e}"))?;
        if cents == 0 {
            m.discard(); // nothing to bill: acknowledged, not batched
            return Ok(());
        }
        let with_tax = cents + cents / 5;
        let line = format!("{{\"id\":{id},\"country\":\"{country}\",\"cents\":{with_tax}}}");
        m.put_batch_key(country.to_owned());
        m.update_data(|_| line.clone());
        Ok(())
    }

    /// One file append per batch: runs in the batch processors.
    async fn handle_batch(&self, batch: &mut [Message<String>], info: &BatchInfo) -> Result<(), BoxError> {
        let BatchKey::Str(country) = &info.batch_key else {
            return Err("batch without a country".into());
        };
        let mut out = Vec::with_capacity(batch.len() * 48);
        for m in batch.iter() {
            out.extend_from_slice(m.data().as_bytes());
            out.push(b'\n');
        }
        let path = self.dir.join(format!("orders-{country}.ndjson"));
        tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
                .write_all(&out)
        })
        .await??;
        self.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let total: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("ferroway-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tally = Arc::new(Tally::default());
    let shop = Shop {
        dir: dir.clone(),
        written: AtomicU64::new(0),
    };
    let (dead_tx, mut dead_rx) = mpsc::channel::<Message<String>>(1024);
    let dead = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(m) = dead_rx.recv().await {
            if n < 3 {
                eprintln!("dead letter: {:?}: {}", m.data(), m.failure().unwrap_or("?"));
            }
            n += 1;
        }
        n
    });

    let started = Instant::now();
    let t = tally.clone();
    let pipeline = Pipeline::builder("quickstart", shop)
        .producer(move || Orders {
            next: 0,
            total,
            tally: t.clone(),
        })
        .processors(Processors::new().concurrency(2))
        .batcher(
            Batcher::new("files")
                .batch_size(1_000)
                .batch_timeout(Duration::from_millis(100))
                .concurrency(2),
        )
        .dead_letter(dead_tx)
        .start()
        .await?;

    let progress = tokio::spawn({
        let tally = tally.clone();
        async move {
            let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
            loop {
                tokio::time::sleep(Duration::from_millis(if tty { 100 } else { 1000 })).await;
                let acked = tally.acked.load(Ordering::Relaxed);
                let line = format!(
                    "{acked} / {total} acknowledged ({:.1}%)",
                    acked as f64 * 100.0 / total as f64
                );
                if tty {
                    eprint!("\r{line}   ");
                } else {
                    eprintln!("{line}");
                }
            }
        }
    });
    // Until the orders are done, or Ctrl-C drains early.
    pipeline.run_until(ferroway::shutdown_signal()).await?;
    progress.abort();
    let elapsed = started.elapsed();
    let dead_lettered = dead.await?;
    let acked = tally.acked.load(Ordering::Relaxed);
    println!();
    println!("messages in:     {total}");
    println!(
        "acknowledged:    {acked} ({} failed)",
        tally.failed.load(Ordering::Relaxed)
    );
    println!("dead-lettered:   {dead_lettered}");
    println!("elapsed:         {:.2?}", elapsed);
    println!(
        "throughput:      {:.0} messages/s",
        total as f64 / elapsed.as_secs_f64()
    );
    println!("output:          {}", dir.display());
    if acked != total {
        return Err(format!("{} messages were not acknowledged", total - acked).into());
    }
    Ok(())
}
