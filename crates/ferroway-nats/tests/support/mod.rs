//! Shared helpers: the real nats-server, unique names, a test-side client, a private server
//! for restart tests.
#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

pub fn url() -> String {
    std::env::var("FERROWAY_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A name no other test uses (stream names allow no `.`).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("ferroway-test-{prefix}-{}-{nanos:08x}", std::process::id())
}

/// A client of the test's own; fails the test loudly when NATS is not running.
pub async fn client_at(url: &str) -> async_nats::Client {
    match async_nats::connect(url).await {
        Ok(c) => c,
        Err(e) => panic!(
            "nats-server is not reachable at {url} ({e}). Start it with `bash scripts/services/nats.sh` \
             (nats-server -js on 127.0.0.1:4222), or set FERROWAY_NATS_URL."
        ),
    }
}

pub async fn client() -> async_nats::Client {
    client_at(&url()).await
}

/// A fresh file-backed stream `name` on subjects `name.>`.
pub async fn stream(c: &async_nats::Client, name: &str) -> stream::Stream {
    let js = jetstream::new(c.clone());
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await
    .unwrap()
}

pub async fn delete_stream(c: &async_nats::Client, name: &str) {
    let _ = jetstream::new(c.clone()).delete_stream(name).await;
}

/// Publishes `from..to` (decimal payloads) to `subject` through JetStream, each stored.
pub async fn publish_range(c: &async_nats::Client, subject: &str, from: u64, to: u64) {
    let js = jetstream::new(c.clone());
    let mut acks = Vec::new();
    for i in from..to {
        acks.push(
            js.publish(subject.to_owned(), Bytes::from(i.to_string()))
                .await
                .unwrap(),
        );
        if acks.len() >= 500 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// `(num_pending, num_ack_pending)` of a consumer: messages not yet delivered, delivered but
/// not acked.
pub async fn consumer_state(c: &async_nats::Client, stream: &str, consumer: &str) -> (u64, usize) {
    let js = jetstream::new(c.clone());
    let mut consumer: PullConsumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .get_consumer(consumer)
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    (info.num_pending, info.num_ack_pending)
}

/// Reads every message of `stream` (an ephemeral consumer from the start), payloads and
/// headers.
pub async fn read_all(c: &async_nats::Client, stream: &str, n: usize) -> Vec<async_nats::jetstream::Message> {
    use futures_util::StreamExt;
    let js = jetstream::new(c.clone());
    let consumer: PullConsumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n && tokio::time::Instant::now() < deadline {
        let mut batch = consumer
            .batch()
            .max_messages(n - out.len())
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            out.push(m);
        }
    }
    out
}

pub fn numbers<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u64> {
    payloads
        .into_iter()
        .map(|p| std::str::from_utf8(p).unwrap().parse().unwrap())
        .collect()
}

/// A nats-server of the test's own (JetStream on, its own store directory), on `port`: for
/// tests that restart the server, so the shared one stays up.
pub struct OwnServer {
    pub port: u16,
    pub dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnServer {
    pub fn start(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("ferroway-nats-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = OwnServer { port, dir, child: None };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = std::process::Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} for the restart test: {e} (install nats-server)"));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server on {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it (SIGKILL: JetStream recovers from its store).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
