//! `ferroway run` against the real servers: Redis stream → Kafka topic, Kafka topic → file,
//! RabbitMQ queue → RabbitMQ queue, JetStream stream → file, SQS queue → file, Pub/Sub
//! subscription → Pub/Sub topic, kill -9 and SIGTERM of the process (ferroway-testkit), and
//! two processes sharing a group. Needs Redis on 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672,
//! nats-server -js on 127.0.0.1:4222, a Kafka-API broker on 127.0.0.1:9092, moto on 127.0.0.1:4566 and the Pub/Sub emulator on
//! 127.0.0.1:8085 (`./scripts/test` starts them).

#[path = "../../ferroway-amqp/tests/support/mod.rs"]
mod amqp;
#[path = "../../ferroway-kafka/tests/common/mod.rs"]
mod kafka;
#[path = "../../ferroway-nats/tests/support/mod.rs"]
mod nats;
#[path = "../../ferroway-pubsub/tests/support/mod.rs"]
mod pubsub;
#[path = "../../ferroway-sqs/tests/support/mod.rs"]
mod sqs;
mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ferroway_testkit::{BoxError, CrashTest, Finish, Stop, Subject, count_lines, read_id_lines};
use support::*;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A Kafka source table for the test broker, with the short timeouts tests want.
fn kafka_source(topic: &str, group: &str) -> String {
    format!(
        r#"[sources.in]
type = "kafka"
bootstrap_servers = "{}"
topic = "{topic}"
group_id = "{group}"
commit_interval = "100ms"
session_timeout = "6s"
heartbeat_interval = "500ms"
"#,
        kafka::BROKER
    )
}

#[test]
fn redis_stream_to_kafka_topic_record_by_record() {
    require_redis();
    kafka::require_broker();
    let (stream, group, topic) = (unique("cli-orders"), unique("cli-g"), unique("cli-orders"));
    let n = 500usize;
    let mut c = redis::Client::open(REDIS).unwrap().get_connection().unwrap();
    for i in 0..n {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("order")
            .arg(i)
            .arg("customer")
            .arg(format!("c{}", i % 7))
            .query(&mut c)
            .unwrap();
    }
    block_on(kafka::create_topic(&topic, 2));
    let dir = Scratch::new("redis-kafka");
    let file = dir.write(
        "copy.toml",
        &format!(
            r#"
[sources.orders]
type = "redis"
url = "{REDIS}"
stream = "{stream}"
group = "{group}"
key_field = "customer"

[[steps]]
map = '{{order: (.order | tonumber), customer}}'

[sinks.kafka]
type = "kafka"
bootstrap_servers = "{}"
topic = "{topic}"
batch_size = 100
"#,
            kafka::BROKER
        ),
    );
    let child = ferroway(&dir.0)
        .args(["run", "--progress", "off", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let records = kafka::read_records(&topic, 2, n, 90);
    signal(child.id(), "TERM");
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut seen = BTreeMap::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let order = v["order"].as_u64().unwrap() as usize;
        let customer = format!("c{}", order % 7);
        assert_eq!(v["customer"], customer.as_str(), "{v}");
        assert_eq!(
            r.key.as_deref(),
            Some(customer.as_bytes()),
            "the entry's key_field is the record key"
        );
        *seen.entry(order).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), n, "every entry reached the topic");
    assert!(seen.values().all(|&c| c == 1), "no entry twice");
    // Every entry was XACKed once Kafka had it.
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(&stream)
        .arg(&group)
        .arg("-")
        .arg("+")
        .arg(10)
        .query(&mut c)
        .unwrap();
    assert!(pending.is_empty(), "entries left pending: {pending:?}");
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut c).unwrap();
}

#[test]
fn rabbitmq_queue_to_rabbitmq_queue_with_a_step_and_every_message_acked() {
    let (from, to) = (amqp::unique("cli-in"), amqp::unique("cli-out"));
    let n = 500u64;
    block_on(async {
        let rabbit = amqp::Rabbit::new().await;
        rabbit.queue(&from).await;
        rabbit.queue(&to).await;
        for i in 0..n {
            let body = format!("{{\"order\":{i},\"total\":{}}}", i * 10);
            rabbit.publish(&from, body.as_bytes(), Default::default()).await;
        }
        rabbit.ready(&from).await;
    });
    let dir = Scratch::new("amqp-amqp");
    let file = dir.write(
        "copy.toml",
        &format!(
            r#"
[sources.orders]
type = "amqp"
uri = "{uri}"
queue = "{from}"
prefetch_count = 50

[[steps]]
map = '{{order, cents: (.total * 100)}}'

[sinks.rabbit]
type = "amqp"
uri = "{uri}"
routing_key = "{to}"
content_type = "application/json"
batch_size = 100
"#,
            uri = amqp::uri()
        ),
    );
    let child = ferroway(&dir.0)
        .args(["run", "--progress", "off", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let got = block_on(async {
        let rabbit = amqp::Rabbit::new().await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while rabbit.ready(&to).await < n as u32 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        rabbit.take_all(&to).await
    });
    signal(child.id(), "TERM");
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen = BTreeMap::new();
    for (body, props) in &got {
        assert_eq!(props.content_type().map(String::as_str), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let order = v["order"].as_u64().unwrap();
        assert_eq!(v["cents"].as_u64(), Some(order * 1000), "{v}");
        *seen.entry(order).or_insert(0) += 1;
    }
    assert_eq!(seen.len() as u64, n, "every message reached the other queue");
    assert!(seen.values().all(|&c| c == 1), "none twice");
    block_on(async {
        let rabbit = amqp::Rabbit::new().await;
        assert_eq!(rabbit.ready(&from).await, 0, "every message acked once published");
        rabbit.delete(&from).await;
        rabbit.delete(&to).await;
    });
}

#[test]
fn jetstream_stream_to_file_with_a_step_and_every_message_acked() {
    let stream = nats::unique("cli-js").replace('-', "_").to_uppercase();
    let n = 500u64;
    block_on(async {
        let c = nats::client().await;
        nats::stream(&c, &stream).await;
        nats::publish_range(&c, &format!("{stream}.orders"), 0, n).await;
    });
    let dir = Scratch::new("nats-file");
    let file = dir.write(
        "archive.toml",
        &format!(
            r#"
[sources.orders]
type = "nats"
url = "{url}"
stream = "{stream}"
consumer = "archiver"

[[steps]]
map = '{{n: .}}'

[sinks.file]
type = "file"
path = "{out}"
batch_size = 100
"#,
            url = nats::url(),
            out = dir.path("out.ndjson").display()
        ),
    );
    let child = ferroway(&dir.0)
        .args(["run", "--progress", "off", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(60, "every message in the file", || {
        dir.lines("out.ndjson").len() as u64 >= n
    });
    signal(child.id(), "TERM");
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen = BTreeMap::new();
    for line in dir.lines("out.ndjson") {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        *seen.entry(v["n"].as_u64().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen.len() as u64, n, "every message reached the file");
    assert!(seen.values().all(|&c| c == 1), "none twice");
    block_on(async {
        let c = nats::client().await;
        assert_eq!(
            nats::consumer_state(&c, &stream, "archiver").await,
            (0, 0),
            "every message acked"
        );
        nats::delete_stream(&c, &stream).await;
    });
}

#[test]
fn sqs_queue_to_file_with_a_step_and_every_message_deleted() {
    let n = 200u64;
    let url = block_on(async {
        let c = sqs::client().await;
        let url = sqs::queue(&c, &sqs::unique("cli"), &[]).await;
        sqs::send_range(&c, &url, 0, n).await;
        url
    });
    let dir = Scratch::new("sqs-file");
    let file = dir.write(
        "archive.toml",
        &format!(
            r#"
[sources.orders]
type = "sqs"
queue_url = "{url}"
region = "us-east-1"
credentials = {{ access_key_id = "test", secret_access_key = "test" }}
wait_time = "1s"

[[steps]]
map = '{{n: .}}'

[sinks.file]
type = "file"
path = "{out}"
batch_size = 10
"#,
            out = dir.path("out.ndjson").display()
        ),
    );
    let child = ferroway(&dir.0)
        .args(["run", "--progress", "off", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(60, "every message in the file", || {
        dir.lines("out.ndjson").len() as u64 >= n
    });
    signal(child.id(), "TERM");
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen = BTreeMap::new();
    for line in dir.lines("out.ndjson") {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        *seen.entry(v["n"].as_u64().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(seen.len() as u64, n, "every message reached the file");
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "none twice, but (n, times): {twice:?}\n{}",
        stderr(&out)
    );
    block_on(async {
        let c = sqs::client().await;
        assert_eq!(sqs::counts(&c, &url).await, (0, 0), "every message deleted");
        sqs::delete_queue(&c, &url).await;
    });
}

#[test]
fn pubsub_subscription_to_pubsub_topic_with_a_step_and_every_message_acked() {
    use gcloud_pubsub::subscription::SubscriptionConfig;
    let n = 200u64;
    let (from, to) = block_on(async {
        let c = pubsub::client().await;
        let from = pubsub::topic_and_subscription(&c, &pubsub::unique("cli-from"), SubscriptionConfig::default()).await;
        let to = pubsub::topic_and_subscription(&c, &pubsub::unique("cli-to"), SubscriptionConfig::default()).await;
        pubsub::publish_range(&c, &from.0, 0, n).await;
        (from, to)
    });
    let dir = Scratch::new("pubsub-pubsub");
    let file = dir.write(
        "copy.toml",
        &format!(
            r#"
[sources.orders]
type = "pubsub"
project = "{project}"
emulator_host = "{emulator}"
subscription = "{from}"

[[steps]]
map = '{{n: .}}'

[sinks.copy]
type = "pubsub"
project = "{project}"
emulator_host = "{emulator}"
topic = "{to}"
batch_size = 50
"#,
            project = pubsub::PROJECT,
            emulator = pubsub::emulator(),
            from = from.1,
            to = to.0,
        ),
    );
    let child = ferroway(&dir.0)
        .args(["run", "--progress", "off", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let copies = block_on(async {
        let c = pubsub::client().await;
        let mut copies = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while (copies.len() as u64) < n && std::time::Instant::now() < deadline {
            copies.extend(pubsub::drain(&c, &to.1).await);
        }
        copies
    });
    signal(child.id(), "TERM");
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen = BTreeMap::new();
    for data in &copies {
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        *seen.entry(v["n"].as_u64().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len() as u64,
        n,
        "every message published to the topic\n{}",
        stderr(&out)
    );
    block_on(async {
        let c = pubsub::client().await;
        assert!(
            pubsub::drain(&c, &from.1).await.is_empty(),
            "every message acknowledged"
        );
        pubsub::delete(&c, &from.0, &from.1).await;
        pubsub::delete(&c, &to.0, &to.1).await;
    });
}

#[test]
fn kafka_topic_to_file_record_by_record_with_offsets_committed_at_sigterm() {
    kafka::require_broker();
    let (topic, group) = (unique("cli-in"), unique("cli-g"));
    let n = 3_000usize;
    block_on(async {
        kafka::create_topic(&topic, 3).await;
        kafka::produce(&topic, 3, (0..n).map(|i| format!(r#"{{"n":{i}}}"#))).await;
    });
    let dir = Scratch::new("kafka-file");
    let file = dir.write(
        "dump.toml",
        &format!(
            "{}\n[sinks.out]\ntype = \"file\"\npath = \"out.ndjson\"\nbatch_size = 200\n",
            kafka_source(&topic, &group)
        ),
    );
    let child = ferroway(&dir.0)
        .args(["run", "--progress", "off", file.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(90, "every record in the file", || dir.lines("out.ndjson").len() >= n);
    signal(child.id(), "TERM");
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = dir.lines("out.ndjson");
    assert_eq!(lines.len(), n, "each record once");
    let got: HashSet<String> = lines.into_iter().collect();
    let expected: HashSet<String> = (0..n).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    assert_eq!(got, expected);
    // The drain committed everything: each partition's committed offset is its end.
    let committed = kafka::committed(&group, &topic, 3);
    assert_eq!(committed.iter().sum::<i64>(), n as i64, "{committed:?}");
}

/// A Kafka topic of ids read by `ferroway run` into an fsynced file.
struct Pipeline {
    dir: Scratch,
    topic: String,
    file: PathBuf,
}

impl Pipeline {
    fn new(name: &str) -> Self {
        kafka::require_broker();
        let dir = Scratch::new(name);
        let (topic, group) = (unique(name), unique(&format!("{name}-g")));
        let file = dir.write(
            "crash.toml",
            &format!(
                "rate_limit = {{ messages = 1000, per = \"1s\" }}\n{}\n[processors]\nconcurrency = 2\nmax_demand = 50\n\n[sinks.out]\ntype = \"file\"\npath = \"out.txt\"\nbatch_size = 20\nbatch_timeout = \"50ms\"\n",
                kafka_source(&topic, &group)
            ),
        );
        Pipeline { dir, topic, file }
    }
}

impl Subject for Pipeline {
    fn command(&mut self) -> Command {
        let mut c = ferroway(&self.dir.0);
        c.args(["run", "--progress", "off"]).arg(&self.file);
        c
    }

    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        block_on(async {
            kafka::create_topic(&self.topic, 3).await;
            kafka::produce(&self.topic, 3, (1..=n).map(|i| i.to_string())).await;
        });
        Ok(())
    }

    fn record(&mut self) -> Result<Vec<u64>, BoxError> {
        read_id_lines(&self.dir.path("out.txt"))
    }

    fn progress(&mut self) -> Result<u64, BoxError> {
        count_lines(&self.dir.path("out.txt"))
    }
}

/// Per kill: what was written but not yet committed — a commit interval (100 ms) of
/// acknowledged records at the rate limit (1,000/s) plus what the pipeline holds (2
/// processors x 50 demand, batches of 20) — with a wide margin.
const DUPLICATES_PER_KILL: u64 = 1_000;

#[test]
fn kill_9_five_times_loses_nothing_and_bounds_duplicates() {
    let report = CrashTest::new("cli-kafka-sigkill")
        .messages(5_000)
        .kills(5)
        .stop(Stop::Kill)
        .finish(Finish::WhenComplete)
        .ready_line(None)
        .deadline(std::time::Duration::from_secs(240))
        .max_duplicates(5 * DUPLICATES_PER_KILL)
        .run(&mut Pipeline::new("cli-kill"))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
}

#[test]
fn sigterm_drains_so_restarts_see_no_duplicates() {
    let report = CrashTest::new("cli-kafka-sigterm")
        .messages(3_000)
        .kills(2)
        .stop(Stop::Terminate)
        .finish(Finish::WhenComplete)
        // A SIGTERM before the process listens for it would kill it: wait until it runs.
        .ready_log("pipeline started")
        .deadline(std::time::Duration::from_secs(180))
        .run(&mut Pipeline::new("cli-term"))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.duplicates, 0);
}

#[test]
fn two_processes_in_one_group_split_partitions_and_one_takes_over_when_the_other_is_killed() {
    kafka::require_broker();
    let (topic, group) = (unique("cli-scale"), unique("cli-scale-g"));
    let n = 4_000u64;
    block_on(async {
        kafka::create_topic(&topic, 4).await;
        kafka::produce(&topic, 4, (1..=n).map(|i| i.to_string())).await;
    });
    let dir = Scratch::new("scale");
    // Slow enough that neither finishes alone before the other joined.
    let config = |out: &str| {
        format!(
            "rate_limit = {{ messages = 200, per = \"1s\" }}\n{}\n[sinks.out]\ntype = \"file\"\npath = \"{out}\"\nbatch_size = 20\nbatch_timeout = \"50ms\"\n",
            kafka_source(&topic, &group)
        )
    };
    let a_file = dir.write("a.toml", &config("a.txt"));
    let b_file = dir.write("b.toml", &config("b.txt"));
    let start = |file: &PathBuf| {
        ferroway(&dir.0)
            .args(["run", "--progress", "off"])
            .arg(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = start(&a_file);
    let b = start(&b_file);
    let ids = |name: &str| read_id_lines(&dir.path(name)).unwrap_or_default();
    // Both read: the group split the partitions between them.
    eventually(60, "both processes writing", || {
        !ids("a.txt").is_empty() && !ids("b.txt").is_empty()
    });
    let a_before = ids("a.txt").len();
    a.kill().unwrap();
    let _ = a.wait();
    // b takes a's partitions over, from a's last commit: nothing lost.
    eventually(120, "every id written by a or b", || {
        let all: HashSet<u64> = ids("a.txt").into_iter().chain(ids("b.txt")).collect();
        all.len() as u64 == n
    });
    signal(b.id(), "TERM");
    let out = wait_output(b, 60);
    assert!(out.status.success());
    let (a_ids, b_ids) = (ids("a.txt"), ids("b.txt"));
    assert!(
        a_before > 0 && a_ids.len() < n as usize,
        "a read part of the topic: {}",
        a_ids.len()
    );
    let b_set: HashSet<u64> = b_ids.iter().copied().collect();
    let a_set: HashSet<u64> = a_ids.iter().copied().collect();
    assert!(
        b_set.len() as u64 > n / 2,
        "b took a's partitions over: {} ids",
        b_set.len()
    );
    assert!(a_set.iter().all(|id| (1..=n).contains(id)) && b_set.iter().all(|id| (1..=n).contains(id)));
    eprintln!(
        "scale-out: a wrote {} (killed), b wrote {} ({} distinct); {} ids written twice",
        a_ids.len(),
        b_ids.len(),
        b_set.len(),
        a_set.intersection(&b_set).count()
    );
}

#[test]
fn offsets_are_committed_while_running_not_only_at_the_stop() {
    kafka::require_broker();
    let (topic, group) = (unique("cli-commits"), unique("cli-commits-g"));
    block_on(async {
        kafka::create_topic(&topic, 2).await;
        kafka::produce(&topic, 2, (1..=3_000u64).map(|i| i.to_string())).await;
    });
    let dir = Scratch::new("commits");
    let file = dir.write(
        "slow.toml",
        &format!(
            "rate_limit = {{ messages = 300, per = \"1s\" }}\n{}\n[sinks.out]\ntype = \"file\"\npath = \"out.txt\"\nbatch_size = 10\nbatch_timeout = \"50ms\"\n",
            kafka_source(&topic, &group)
        ),
    );
    let mut child = ferroway(&dir.0)
        .args(["run", "--progress", "off"])
        .arg(&file)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(60, "600 records written", || dir.lines("out.txt").len() >= 600);
    // A commit interval (100 ms) is 30 records at this rate: the group's offsets follow.
    let mut committed = 0;
    eventually(10, "offsets committed while running", || {
        committed = kafka::committed(&group, &topic, 2)
            .iter()
            .filter(|&&o| o > 0)
            .sum::<i64>();
        committed >= 500
    });
    child.kill().unwrap();
    let _ = child.wait();
    let written = dir.lines("out.txt").len() as i64;
    assert!(committed <= written, "committed {committed} > written {written}");
}

#[test]
fn ready_waits_until_every_source_has_reached_its_server() {
    require_redis();
    kafka::require_broker();
    let dir = Scratch::new("ready");
    let serve = |file: &PathBuf, addr: &str| {
        ferroway(&dir.0)
            .args(["run", "--progress", "off", "--metrics", addr])
            .arg(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let ready = |addr: &str| {
        eventually(30, "the metrics endpoint", || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        http_get(addr, "/ready")
    };

    // A broker that never answers (default connect_timeout, 60 s): started, not ready.
    let down = dir.write(
        "down.toml",
        &format!(
            "[sources.in]\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\ngroup_id = \"g\"\ntopic = \"t\"\n\n[sinks.out]\ntype = \"stdout\"\n",
            free_addr()
        ),
    );
    let addr = free_addr();
    let mut child = serve(&down, &addr);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let answer = ready(&addr);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("down: sources not connected yet"), "{answer}");

    // Redis and Kafka that answer: ready once both sources reached them.
    let (topic, stream) = (unique("cli-ready"), unique("cli-ready"));
    block_on(kafka::create_topic(&topic, 1));
    let up = dir.write(
        "up.toml",
        &format!(
            "{}\n[sources.redis]\ntype = \"redis\"\nurl = \"{REDIS}\"\nstream = \"{stream}\"\ngroup = \"g\"\n\n[sinks.out]\ntype = \"file\"\npath = \"out.txt\"\n",
            kafka_source(&topic, &unique("cli-ready-g"))
        ),
    );
    let addr = free_addr();
    let child = serve(&up, &addr);
    let mut answer = String::new();
    eventually(60, "/ready says ready", || {
        answer = ready(&addr);
        answer.starts_with("HTTP/1.1 200")
    });
    signal(child.id(), "TERM");
    let out = wait_output(child, 60);
    assert!(out.status.success());
    let mut c = redis::Client::open(REDIS).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut c).unwrap();
}
