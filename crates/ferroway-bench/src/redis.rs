//! `redis` and `redis-sink`: a pipeline against a bare loop with the same client.
//!
//! Source: 1,000,000 entries pre-added; a pipeline (2 processors) reads and acknowledges all
//! of them, against a bare loop doing `XREADGROUP COUNT 1000` + `XACK`. Sink: a pipeline
//! writing 1,000,000 messages in batches of 1000, against bare pipelined `XADD`s of 1000.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroway::BoxError;
use ferroway::pipeline::{BatchInfo, Batcher, Handler, Message, Pipeline, Processors};
use ferroway::stage::{Emit, Producer};
use ferroway_redis::{Entry, RedisSink, RedisSource, SinkOptions, SourceOptions};
use redis::Value;

use crate::report::Report;

const N: u64 = 1_000_000;
const URL: &str = "redis://127.0.0.1:6379";

async fn connect() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(URL).expect("url");
    match client.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Redis is not reachable at {URL} ({e}); start it with `bash scripts/services/redis.sh`");
            std::process::exit(2);
        }
    }
}

fn fields(i: u64) -> Vec<(String, Vec<u8>)> {
    vec![
        ("n".to_owned(), i.to_string().into_bytes()),
        ("payload".to_owned(), vec![b'x'; 64]),
    ]
}

async fn fill(c: &mut redis::aio::MultiplexedConnection, stream: &str) {
    for chunk in 0..N / 10_000 {
        let mut pipe = redis::pipe();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("n")
                .arg(i)
                .arg("payload")
                .arg(&[b'x'; 64][..])
                .ignore();
        }
        pipe.query_async::<()>(c).await.expect("XADD");
    }
}

/// Entry ids of an `XREADGROUP` reply, fields decoded into owned vectors as the source does.
fn entries(v: Value) -> Vec<(String, ferroway_redis::Fields)> {
    let Value::Array(streams) = v else { return Vec::new() };
    let mut out = Vec::new();
    for s in streams {
        let Value::Array(mut kv) = s else { continue };
        let Some(Value::Array(items)) = kv.pop() else { continue };
        for e in items {
            let Value::Array(mut parts) = e else { continue };
            let Some(Value::Array(f)) = parts.pop() else { continue };
            let Some(Value::BulkString(id)) = parts.pop() else {
                continue;
            };
            let mut fields = Vec::new();
            let mut it = f.into_iter();
            while let (Some(Value::BulkString(k)), Some(Value::BulkString(v))) = (it.next(), it.next()) {
                fields.push((String::from_utf8(k).unwrap_or_default(), v));
            }
            out.push((String::from_utf8(id).unwrap_or_default(), fields));
        }
    }
    out
}

async fn bare_source(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> f64 {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("bare")
        .arg("0")
        .query_async(c)
        .await
        .unwrap();
    let started = Instant::now();
    let mut seen = 0u64;
    while seen < N {
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("bare")
            .arg("c")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(c)
            .await
            .unwrap();
        let batch = entries(v);
        let mut ack = redis::cmd("XACK");
        ack.arg(stream).arg("bare");
        for (id, _) in &batch {
            ack.arg(id);
        }
        let _: u64 = ack.query_async(c).await.unwrap();
        seen += batch.len() as u64;
    }
    N as f64 / started.elapsed().as_secs_f64()
}

struct Count(Arc<AtomicU64>);

impl Handler for Count {
    type Data = Entry;
    async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), BoxError> {
        if m.data().get("n").is_none() {
            return Err("no n".into());
        }
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn pending(c: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) -> u64 {
    match redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async::<Value>(c)
        .await
    {
        Ok(Value::Array(v)) => match v.first() {
            Some(Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => u64::MAX,
    }
}

async fn pipeline_source(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> (f64, bool) {
    let count = Arc::new(AtomicU64::new(0));
    let opts = SourceOptions::new(URL, "pipeline", [stream])
        .consumer("bench")
        .claim(None)
        .block(Duration::from_millis(50));
    let started = Instant::now();
    let p = Pipeline::builder("redis-bench", Count(count.clone()))
        .producer(move || RedisSource::new(opts.clone()).expect("options"))
        .processors(Processors::new().concurrency(2))
        .start()
        .await
        .expect("pipeline");
    while count.load(Ordering::Relaxed) < N {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Draining flushes every XACK before stop returns.
    p.stop().await.expect("stop");
    let per_sec = N as f64 / started.elapsed().as_secs_f64();
    let ok = count.load(Ordering::Relaxed) == N && pending(c, stream, "pipeline").await == 0;
    (per_sec, ok)
}

async fn bare_sink(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> f64 {
    let started = Instant::now();
    for chunk in 0..N / 1000 {
        let mut pipe = redis::pipe();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let cmd = pipe.cmd("XADD").arg(stream).arg("*");
            for (k, v) in fields(i) {
                cmd.arg(k).arg(v);
            }
        }
        let _: Vec<Value> = pipe.query_async(c).await.unwrap();
    }
    N as f64 / started.elapsed().as_secs_f64()
}

struct Numbers(u64);

impl Producer for Numbers {
    type Output = Message<u64>;
    async fn handle_demand(&mut self, demand: usize) -> Result<Emit<Message<u64>>, BoxError> {
        let end = (self.0 + demand as u64).min(N);
        let batch = (self.0..end).map(Message::new).collect();
        self.0 = end;
        Ok(if end == N {
            Emit::Done(batch)
        } else {
            Emit::Events(batch)
        })
    }
}

struct Write(RedisSink, Arc<AtomicU64>);

impl Handler for Write {
    type Data = u64;
    async fn handle_message(&self, _: &mut Message<u64>) -> Result<(), BoxError> {
        Ok(())
    }
    async fn handle_batch(&self, b: &mut [Message<u64>], _: &BatchInfo) -> Result<(), BoxError> {
        self.0.send(b, |m| fields(*m.data())).await?;
        self.1
            .fetch_add(b.iter().filter(|m| !m.is_failed()).count() as u64, Ordering::Relaxed);
        Ok(())
    }
}

async fn pipeline_sink(stream: &str) -> (f64, bool) {
    let written = Arc::new(AtomicU64::new(0));
    let sink = RedisSink::new(SinkOptions::new(URL, stream)).expect("options");
    let started = Instant::now();
    let p = Pipeline::builder("redis-sink-bench", Write(sink, written.clone()))
        .producer(|| Numbers(0))
        .processors(Processors::new().concurrency(2))
        .batcher(
            Batcher::new("xadd")
                .batch_size(1000)
                .batch_timeout(Duration::from_millis(50))
                .concurrency(2),
        )
        .start()
        .await
        .expect("pipeline");
    p.join().await.expect("pipeline");
    (
        N as f64 / started.elapsed().as_secs_f64(),
        written.load(Ordering::Relaxed) == N,
    )
}

pub async fn run(sink: bool) -> Report {
    let mut c = connect().await;
    let tag = format!("{}-{:x}", std::process::id(), unique_suffix());
    if !sink {
        let stream = format!("ferroway-bench-src-{tag}");
        eprintln!("adding {N} entries to {stream} ...");
        fill(&mut c, &stream).await;
        let baseline = bare_source(&mut c, &stream).await;
        let (per_sec, ok) = pipeline_source(&mut c, &stream).await;
        let _: () = redis::cmd("DEL").arg(&stream).query_async(&mut c).await.unwrap();
        let mut r = Report::new("redis", "messages", N, N as f64 / per_sec);
        r.baseline_per_sec = Some(baseline);
        r.checksum_ok = Some(ok);
        r
    } else {
        let (a, b) = (
            format!("ferroway-bench-sink-bare-{tag}"),
            format!("ferroway-bench-sink-{tag}"),
        );
        let baseline = bare_sink(&mut c, &a).await;
        let (per_sec, ok) = pipeline_sink(&b).await;
        let len: u64 = redis::cmd("XLEN").arg(&b).query_async(&mut c).await.unwrap();
        let _: () = redis::cmd("DEL").arg(&a).arg(&b).query_async(&mut c).await.unwrap();
        let mut r = Report::new("redis-sink", "messages", N, N as f64 / per_sec);
        r.baseline_per_sec = Some(baseline);
        r.checksum_ok = Some(ok && len == N);
        r
    }
}

fn unique_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
