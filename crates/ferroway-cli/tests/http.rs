//! `ferroway run` with the HTTP connectors: an ingest server into a file, answered only once
//! the file holds the request's records; a generator into the HTTP sink, through a server
//! that is busy at first.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use support::*;

/// `POST /hooks` with `body` as NDJSON (the connection closed by the server after the
/// answer): status and body, or `None` while nothing listens.
fn post(addr: &str, body: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

#[test]
fn http_ingest_to_file_answers_once_the_records_are_written() {
    let dir = Scratch::new("ingest");
    let addr = free_addr();
    let file = dir.write(
        "hooks.toml",
        &format!(
            r#"
[sources.hooks]
type = "http-ingest"
listen = "{addr}"
path = "/hooks"

[[steps]]
map = '{{id: .id}}'

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
    // Up and with demand: a 200 for an empty batch.
    eventually(30, "the server answers 200", || {
        post(&addr, "").is_some_and(|(s, _)| s == 200)
    });
    let body: String = (1..=25).map(|i| format!("{{\"id\":{i},\"drop\":true}}\n")).collect();
    let (status, answer) = post(&addr, &body).expect("an answer");
    assert_eq!((status, answer.as_str()), (200, r#"{"accepted":25}"#));
    // The answer came after the sink wrote them: they are in the file now, not later.
    let lines = dir.lines("out.ndjson");
    assert_eq!(lines.len(), 25, "{lines:?}");
    assert_eq!(lines[0], r#"{"id":1}"#);
    let (status, answer) = post(&addr, "{\"id\":26}\n{oops\n").expect("an answer");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("line 2: not JSON"), "{answer}");
    signal(child.id(), "TERM");
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dir.lines("out.ndjson").len(), 25);
}

/// A server on a thread answering `busy` requests 503, then 200; the bodies it took.
fn collector(busy: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/in", listener.local_addr().unwrap());
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let taken = bodies.clone();
    std::thread::spawn(move || {
        let mut answered = 0;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            // Keep-alive: requests one after another on the connection.
            loop {
                let mut length = 0;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                answered += 1;
                let status = if answered <= busy {
                    "503 Service Unavailable"
                } else {
                    taken.lock().unwrap().push(String::from_utf8(body).unwrap());
                    "200 OK"
                };
                write!(writer, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").unwrap();
            }
        }
    });
    (url, bodies)
}

#[test]
fn a_generator_into_the_http_sink_outlasts_a_busy_server_with_nothing_lost() {
    let dir = Scratch::new("http-sink");
    let (url, bodies) = collector(2);
    let file = dir.write(
        "export.toml",
        &format!(
            r#"
[sources.numbers]
type = "generator"
count = 300

[sinks.collector]
type = "http"
url = "{url}"
attempts = 1
batch_size = 100
"#
        ),
    );
    let out = run(&dir.0, &["run", "--progress", "off", file.to_str().unwrap()], 60);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seqs: Vec<u64> = bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| serde_json::from_str::<Vec<serde_json::Value>>(b).unwrap())
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    assert!(stderr(&out).contains("0 dead-lettered"), "{}", stderr(&out));
}
