//! Shared helpers: the real RabbitMQ, unique queue names, a test-side client (amqprs) to
//! publish, count and read back.
#![allow(dead_code)]

use std::time::Duration;

use amqprs::channel::{
    BasicGetArguments, BasicPublishArguments, Channel, ConfirmSelectArguments, QueueDeclareArguments,
    QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties, FieldTable};

pub fn uri() -> String {
    std::env::var("FERROWAY_AMQP_URI").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A queue name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("ferroway-test-{prefix}-{}-{:08x}", std::process::id(), rand())
}

fn rand() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish() as u32
}

/// A connection of the test's own; fails the test loudly when RabbitMQ is not running.
pub async fn connect() -> Connection {
    let mut args = OpenConnectionArguments::try_from(uri().as_str()).unwrap();
    // amqprs takes the path as it is; the URI spec percent-encodes the vhost.
    if uri().ends_with("/%2f") {
        args.virtual_host("/");
    }
    match Connection::open(&args).await {
        Ok(c) => c,
        Err(e) => panic!(
            "RabbitMQ is not reachable at {} ({e}). Start it with `bash scripts/services/rabbitmq.sh` \
             (or `rabbitmq-server -detached`), or set FERROWAY_AMQP_URI.",
            uri()
        ),
    }
}

pub struct Rabbit {
    pub conn: Connection,
    pub channel: Channel,
}

impl Rabbit {
    pub async fn new() -> Self {
        let conn = connect().await;
        let channel = conn.open_channel(None).await.unwrap();
        channel.confirm_select(ConfirmSelectArguments::default()).await.unwrap();
        Rabbit { conn, channel }
    }

    /// Declares a durable queue afresh (deleted first).
    pub async fn queue(&self, name: &str) {
        self.queue_with(name, FieldTable::new()).await;
    }

    pub async fn queue_with(&self, name: &str, args: FieldTable) {
        let _ = self.channel.queue_delete(QueueDeleteArguments::new(name)).await;
        let mut a = QueueDeclareArguments::durable_client_named(name);
        a.arguments(args);
        self.channel.queue_declare(a).await.unwrap();
    }

    pub async fn delete(&self, name: &str) {
        let _ = self.channel.queue_delete(QueueDeleteArguments::new(name)).await;
    }

    /// Publishes `from..to` as payloads (the number in decimal) to `queue`, persistent.
    pub async fn publish_range(&self, queue: &str, from: u64, to: u64) {
        for i in from..to {
            self.publish(queue, i.to_string().as_bytes(), BasicProperties::default())
                .await;
        }
        // A synchronous round trip after the publishes: the broker has them all.
        self.ready(queue).await;
    }

    pub async fn publish(&self, queue: &str, payload: &[u8], mut props: BasicProperties) {
        props.with_delivery_mode(2);
        self.channel
            .basic_publish(props, payload.to_vec(), BasicPublishArguments::new("", queue))
            .await
            .unwrap();
    }

    /// Messages ready (not delivered to a consumer) in `queue`.
    pub async fn ready(&self, queue: &str) -> u32 {
        let mut a = QueueDeclareArguments::new(queue);
        a.passive(true);
        self.channel.queue_declare(a).await.unwrap().map_or(0, |(_, n, _)| n)
    }

    /// Takes every ready message off `queue` (acked), with its properties.
    pub async fn take_all(&self, queue: &str) -> Vec<(Vec<u8>, BasicProperties)> {
        let mut out = Vec::new();
        loop {
            let mut a = BasicGetArguments::new(queue);
            a.no_ack(true);
            match self.channel.basic_get(a).await.unwrap() {
                Some((_, props, body)) => out.push((body, props)),
                None => return out,
            }
        }
    }

    /// Waits until `queue` has `n` ready messages (or panics after `secs`).
    pub async fn wait_ready(&self, queue: &str, n: u32, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.ready(queue).await;
            if r == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue {queue}: {r} ready, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Closes, from the broker's side, every connection whose name is `name`
/// (`rabbitmqctl close_connection`); how many it closed.
pub fn close_connections_named(name: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "--no-table-headers",
            "--silent",
            "pid",
            "client_properties",
        ])
        .output()
        .unwrap_or_else(|e| panic!("rabbitmqctl is needed to close a connection from the server side: {e}"));
    assert!(
        out.status.success(),
        "rabbitmqctl list_connections failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut closed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains(&format!("\"{name}\"")) {
            continue;
        }
        let pid = line.split_whitespace().next().unwrap();
        let s = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "closed by a ferroway test"])
            .status()
            .unwrap();
        assert!(s.success());
        closed += 1;
    }
    closed
}

/// Parses payloads as decimal numbers.
pub fn numbers<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Vec<u64> {
    payloads
        .into_iter()
        .map(|p| std::str::from_utf8(p).unwrap().parse().unwrap())
        .collect()
}
