//! `ferroway run`, `test` and `connectors` with the embedded connectors: no server needed.

mod support;

use std::process::Stdio;

use support::*;

/// NDJSON orders through a filter, a mapping, a dead-letter rule and two routed sinks.
const ORDERS: &str = r#"
name = "orders"

[sources.orders]
type = "file"
path = "in.ndjson"

[[steps]]
filter = '.status != "test"'

[[steps]]
map = '{id: .order_id, total: (.qty * .price)}'

[[steps]]
dead_letter = '.total < 0'
reason = "negative total"

[sinks.big]
type = "file"
path = "out/big.ndjson"
route = '.total >= 1000'
batch_size = 7

[sinks.rest]
type = "file"
path = "out/rest.ndjson"

[dead_letter]
type = "file"
path = "out/dead.ndjson"

[[tests]]
name = "routes by total"
input = ['{"order_id":1,"qty":10,"price":100,"status":"ok"}', '{"order_id":2,"qty":1,"price":5,"status":"ok"}']
output = { big = ['{"id":1,"total":1000}'], rest = ['{"total":5,"id":2}'] }

[[tests]]
name = "test orders are dropped, negative totals dead-lettered, non-JSON too"
input = ['{"order_id":3,"qty":1,"price":1,"status":"test"}', '{"order_id":4,"qty":-1,"price":3,"status":"ok"}', 'oops']
dead_letters = [{ payload = '{"order_id":4,"qty":-1,"price":3,"status":"ok"}', reason = "negative total" }, { payload = "oops", reason = "payload is not JSON" }]
"#;

fn order(i: u64) -> String {
    let status = if i.is_multiple_of(10) { "test" } else { "ok" };
    let qty: i64 = if i.is_multiple_of(7) { -1 } else { (i % 5) as i64 + 1 };
    format!(
        r#"{{"order_id":{i},"qty":{qty},"price":{},"status":"{status}"}}"#,
        i * 10
    )
}

#[test]
fn file_to_file_with_steps_routes_and_dead_letters_record_by_record() {
    let dir = Scratch::new("orders");
    let n = 2_000u64;
    let mut input: String = (1..=n).map(|i| order(i) + "\n").collect();
    input.push_str("not json\n");
    dir.write("in.ndjson", &input);
    let file = dir.write("orders.toml", ORDERS);

    let out = run(&dir.0, &["run", "--progress", "off", file.to_str().unwrap()], 120);
    let err = stderr(&out);
    assert!(out.status.success(), "ferroway run failed:\n{err}");

    // What each record must have become, computed here independently of jq.
    let (mut big, mut rest, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=n {
        if i.is_multiple_of(10) {
            continue;
        }
        let qty: i64 = if i.is_multiple_of(7) { -1 } else { (i % 5) as i64 + 1 };
        let total = qty * (i as i64) * 10;
        let v = serde_json::json!({"id": i, "total": total});
        if total < 0 {
            dead.push(i);
        } else if total >= 1000 {
            big.push(v);
        } else {
            rest.push(v);
        }
    }
    let parse = |lines: Vec<String>| -> Vec<serde_json::Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    };
    let mut got_big = parse(dir.lines("out/big.ndjson"));
    let mut got_rest = parse(dir.lines("out/rest.ndjson"));
    let key = |v: &serde_json::Value| v["id"].as_u64().unwrap();
    got_big.sort_by_key(key);
    got_rest.sort_by_key(key);
    assert_eq!(got_big, big);
    assert_eq!(got_rest, rest);
    // Dead letters: the record as it came in, with the reason.
    let dead_lines = parse(dir.lines("out/dead.ndjson"));
    assert_eq!(dead_lines.len(), dead.len() + 1, "{dead_lines:?}");
    let text = |v: &serde_json::Value| v.to_string();
    assert!(
        dead_lines
            .iter()
            .any(|v| text(v).contains("not json") && text(v).contains("payload is not JSON"))
    );
    for i in dead {
        let original = order(i);
        assert!(
            dead_lines
                .iter()
                .any(|v| text(v).contains("negative total") && text(v).contains(&format!("order_id\\\":{i},"))),
            "no dead letter for {original}"
        );
    }
    // The summary names every count.
    let dropped = n / 10;
    assert!(err.contains(&format!("{} dropped by filters", dropped)), "{err}");
    assert!(err.contains("stopped cleanly"), "{err}");
}

#[test]
fn ferroway_test_passes_a_right_file_and_shows_the_difference_in_a_wrong_one() {
    let dir = Scratch::new("tests");
    let good = dir.write("orders.toml", ORDERS);
    let out = run(&dir.0, &["test", good.to_str().unwrap()], 60);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("ok      ") && text.contains("routes by total"), "{text}");
    assert!(text.contains("2 passed, 0 failed"), "{text}");

    let wrong = ORDERS.replace(r#"rest = ['{"total":5,"id":2}']"#, r#"rest = ['{"total":6,"id":2}']"#);
    let bad = dir.write("wrong.toml", &wrong);
    let out = run(&dir.0, &["test", bad.to_str().unwrap()], 60);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED  "), "{text}");
    assert!(
        text.contains(
            "sink `rest`, record 0:\n      expected: {\"total\":6,\"id\":2}\n      got:      {\"id\":2,\"total\":5}"
        ),
        "{text}"
    );
    assert!(text.contains("1 passed, 1 failed"), "{text}");
}

#[test]
fn connectors_lists_every_compiled_in_type_with_its_options() {
    let dir = Scratch::new("connectors");
    let out = run(&dir.0, &["connectors"], 30);
    let text = stdout(&out);
    assert!(out.status.success());
    for t in [
        "file",
        "stdin",
        "generator",
        "stdout",
        "kafka",
        "redis",
        "amqp",
        "nats",
        "sqs",
        "pubsub",
    ] {
        assert!(text.contains(&format!("type = \"{t}\"")), "{t} missing:\n{text}");
    }
    assert!(text.contains("checkpoint_dir"), "{text}");
    assert!(text.contains("prefetch_count = 100"), "{text}");
    assert!(text.contains("max_receives = 4"), "{text}");
    assert!(text.contains("max_outstanding_messages = 1000"), "{text}");
}

#[test]
fn sigterm_drains_an_endless_source_and_serves_metrics_health_and_ready_meanwhile() {
    let dir = Scratch::new("sigterm");
    let file = dir.write(
        "endless.toml",
        r#"
[sources.numbers]
type = "generator"
rate = 2000.0

[sinks.out]
type = "file"
path = "out.ndjson"
batch_size = 50
"#,
    );
    let addr = free_addr();
    let child = ferroway(&dir.0)
        .args([
            "run",
            "--progress",
            "log",
            "--progress-interval",
            "200ms",
            "--metrics",
            &addr,
            file.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    eventually(30, "records written", || dir.lines("out.ndjson").len() > 500);
    let get = |path: &str| http_get(&addr, path);
    assert!(get("/health").starts_with("HTTP/1.1 200"));
    assert!(get("/ready").starts_with("HTTP/1.1 200"), "{}", get("/ready"));
    let metrics = get("/metrics");
    assert!(
        metrics.contains("ferroway_pipeline_messages_acked_total{pipeline=\"endless\""),
        "{metrics}"
    );
    signal(pid, "TERM");
    let out = wait_output(child, 60);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("SIGTERM: draining"), "{err}");
    assert!(err.contains("progress"), "no progress lines:\n{err}");
    // Drained: everything generated was written, each once, in order per number.
    let lines = dir.lines("out.ndjson");
    let summary = err.lines().find(|l| l.starts_with("endless: ")).expect("a summary");
    assert!(
        summary.contains(&format!("{} acknowledged", lines.len())),
        "{summary} vs {} lines",
        lines.len()
    );
    assert!(summary.contains("0 left in flight"), "{summary}");
    let mut sorted = lines.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), lines.len(), "duplicates after a drain");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = Scratch::new("json");
    let file = dir.write(
        "few.toml",
        "[sources.n]\ntype = \"generator\"\ncount = 10\n\n[sinks.out]\ntype = \"file\"\npath = \"out.txt\"\n",
    );
    let out = run(
        &dir.0,
        &[
            "--log-format",
            "json",
            "run",
            "--progress",
            "off",
            file.to_str().unwrap(),
        ],
        60,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let logs: Vec<serde_json::Value> = stderr(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        logs.iter().any(|v| v["fields"]["message"] == "pipeline started"),
        "{logs:?}"
    );
    assert_eq!(dir.lines("out.txt").len(), 10);
}

#[test]
fn the_shipped_example_validates_and_its_tests_pass() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/orders.toml");
    let dir = Scratch::new("example");
    let out = run(&dir.0, &["validate", example.to_str().unwrap()], 30);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&dir.0, &["test", example.to_str().unwrap()], 60);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("2 passed, 0 failed"), "{}", stdout(&out));
    // And it runs: 100,000 orders, 1,000 dropped, 99 flagged ones dead-lettered.
    let out = run(&dir.0, &["run", "--progress", "off", example.to_str().unwrap()], 120);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let written = dir.lines("target/orders/big.ndjson").len() + dir.lines("target/orders/small.ndjson").len();
    assert_eq!(written, 100_000 - 1_000 - 100);
    assert_eq!(dir.lines("target/orders/dead.ndjson").len(), 100);
    assert!(err.contains("1000 dropped by filters"), "{err}");
}

/// A sink whose broker is down: the drain cannot finish (an outage is waited out, never
/// dead-lettered); a second signal stops at once, acknowledging nothing.
#[test]
fn a_second_signal_stops_at_once_while_a_sink_is_down_and_nothing_is_dead_lettered() {
    let dir = Scratch::new("second-signal");
    let file = dir.write(
        "down.toml",
        r#"
[sources.numbers]
type = "generator"
count = 100

[sinks.kafka]
type = "kafka"
bootstrap_servers = "127.0.0.1:1"
topic = "nowhere"

[dead_letter]
type = "file"
path = "dead.ndjson"
"#,
    );
    let log = dir.path("stderr.log");
    let mut child = ferroway(&dir.0)
        .args(["run", "--progress", "off", file.to_str().unwrap()])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let logged = |text: &str| std::fs::read_to_string(&log).unwrap_or_default().contains(text);
    eventually(30, "the pipeline started", || logged("pipeline started"));
    signal(child.id(), "TERM");
    eventually(10, "draining", || logged("SIGTERM: draining"));
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the drain cannot finish while the sink is down"
    );
    signal(child.id(), "TERM");
    let mut status = None;
    eventually(10, "the process stopped", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(130));
    assert!(
        logged("SIGTERM again: stopping at once"),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(dir.lines("dead.ndjson").is_empty(), "an outage dead-lettered records");
}
