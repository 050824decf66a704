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
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<(u64, RedisMetadata)>>>,
    pub fail: Arc<dyn Fn(u64) -> bool + Send + Sync>,
}

impl Recorder {
    pub fn failing(f: impl Fn(u64) -> bool + Send + Sync + 'static) -> Self {
        Recorder {
            seen: Arc::default(),
            fail: Arc::new(f),
        }
    }
    pub fn numbers(&self) -> Vec<u64> {
        self.seen.lock().unwrap().iter().map(|(n, _)| *n).collect()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::failing(|_| false)
    }
}

impl Handler for Recorder {
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

/// The consumers of `group` on `stream` (`XINFO CONSUMERS`); empty if the group is gone.
pub async fn consumers(c: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) -> Vec<String> {
    let v: redis::RedisResult<Vec<std::collections::HashMap<String, redis::Value>>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(c)
        .await;
    v.unwrap_or_default()
        .into_iter()
        .filter_map(|m| redis::from_redis_value_ref::<String>(m.get("name")?).ok())
        .collect()
}

/// How many entries wait in `consumer`'s pending list (`XPENDING … consumer`).
pub async fn consumer_pending(
    c: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
) -> usize {
    let v: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .arg(consumer)
        .query_async(c)
        .await
        .unwrap();
    v.len()
}

/// The ids of the clients named `name` (`CLIENT LIST`).
pub async fn client_ids(c: &mut redis::aio::MultiplexedConnection, name: &str) -> Vec<u64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(c).await.unwrap();
    list.lines()
        .filter(|l| l.split_whitespace().any(|f| f == format!("name={name}")))
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id="))?.parse().ok())
        .collect()
}

/// A Redis server of a test's own (AOF, fsync always), on a free port, that the test can kill
/// and restart with its data.
pub struct RedisServer {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ferroway-redis-server-{port}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = RedisServer { port, dir, child: None };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and data, and waits until it answers.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "server.log"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it (`bash scripts/services/redis.sh` does)")
            });
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..500 {
            if let Ok(mut c) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "redis-server on port {} did not answer; see {}",
            self.port,
            self.dir.display()
        );
    }

    /// SIGKILL: what an outage looks like to clients.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
