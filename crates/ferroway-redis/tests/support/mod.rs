//! Shared helpers: the real Redis server, unique stream names, a recording handler.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use ferroway::BoxError;
use ferroway::pipeline::{Handler, Message};
use ferroway_redis::{Entry, RedisMetadata};

pub fn url() -> String {
    std::env::var("FERROWAY_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A connection to the test server; fails the test loudly when Redis is not running.
pub async fn redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url()).unwrap();
    match client.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) => panic!(
            "Redis is not reachable at {} ({e}). Start it with `bash scripts/services/redis.sh` \
             (or set FERROWAY_REDIS_URL).",
            url()
        ),
    }
}

/// A stream name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "ferroway-test-{prefix}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    )
}

pub async fn xadd_n(c: &mut redis::aio::MultiplexedConnection, stream: &str, from: u64, to: u64) {
    let mut pipe = redis::pipe();
    for i in from..to {
        pipe.cmd("XADD").arg(stream).arg("*").arg("n").arg(i).ignore();
    }
    pipe.query_async::<()>(c).await.unwrap();
}

/// Creates `group` at the start of `stream` and reads as `consumer` without acknowledging:
/// a consumer that took entries and died.
pub async fn group_read_as(
    c: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
    count: Option<usize>,
) {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .query_async(c)
        .await
        .unwrap();
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP").arg(group).arg(consumer);
    if let Some(n) = count {
        read.arg("COUNT").arg(n);
    }
    let _: redis::Value = read.arg("STREAMS").arg(stream).arg(">").query_async(c).await.unwrap();
}

pub async fn pending_count(c: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) -> u64 {
    let v: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(c)
        .await
        .unwrap();
    match v {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

pub async fn delete(c: &mut redis::aio::MultiplexedConnection, streams: &[&str]) {
    for s in streams {
        let _: () = redis::cmd("DEL").arg(*s).query_async(c).await.unwrap();
    }
}

pub fn n_of(e: &Entry) -> u64 {
    e.get_str("n").and_then(|s| s.parse().ok()).expect("field n")
}

/// Records every entry it handles, with its metadata; fails those listed in `fail`.
#[derive(Clone)]
pub struct Record {
    pub seen: Arc<Mutex<Vec<(u64, RedisMetadata)>>>,
    pub fail: Arc<dyn Fn(u64) -> bool + Send + Sync>,
}

impl Record {
    pub fn failing(f: impl Fn(u64) -> bool + Send + Sync + 'static) -> Self {
        Record {
            seen: Arc::default(),
            fail: Arc::new(f),
        }
    }
    pub fn numbers(&self) -> Vec<u64> {
        self.seen.lock().unwrap().iter().map(|(n, _)| *n).collect()
    }
}

impl Default for Record {
    fn default() -> Self {
        Record::failing(|_| false)
    }
}

impl Handler for Record {
    type Data = Entry;
    async fn handle_message(&self, m: &mut Message<Entry>) -> Result<(), BoxError> {
        let n = n_of(m.data());
        let md = m.metadata::<RedisMetadata>().cloned().expect("metadata");
        self.seen.lock().unwrap().push((n, md));
        if (self.fail)(n) {
            return Err(format!("entry {n} refused").into());
        }
        Ok(())
    }
}
