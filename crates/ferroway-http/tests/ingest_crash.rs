//! Kill -9 and SIGTERM crash tests of the ingest path: clients post ids to a pipeline
//! process (ingest server → file) that is stopped at seeded random moments and restarted;
//! each client retries a request until it gets a `200`. Every id must be in the file at
//! least once; with SIGTERM (the server answers what it took before it closes), exactly once.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferroway_testkit::{BoxError, CrashTest, Finish, Stop, Subject, count_lines, read_id_lines};

/// Requests in flight at once, and ids per request: what a kill can make clients send again.
const CLIENTS: u64 = 4;
const PER_REQUEST: u64 = 10;

struct Server {
    listen: String,
    out: PathBuf,
    stop: Arc<AtomicBool>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    fn new(name: &str) -> Self {
        // A free port now; every restart of the child listens on it again.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = std::env::temp_dir().join(format!("ferroway-{name}-{}-{port}.out", std::process::id()));
        let _ = std::fs::remove_file(&out);
        Server {
            listen: format!("127.0.0.1:{port}"),
            out,
            stop: Arc::default(),
            clients: Vec::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients.drain(..) {
            let _ = c.join();
        }
        let _ = std::fs::remove_file(&self.out);
    }
}

/// Posts `ids` as NDJSON until the server answers `200`, whatever happens meanwhile.
async fn deliver(client: &reqwest::Client, url: &str, ids: &[u64], stop: &AtomicBool) {
    let body: String = ids.iter().map(|i| format!("{i}\n")).collect();
    while !stop.load(Ordering::Relaxed) {
        match client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => return,
            Ok(r) => {
                let after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(20).max(Duration::from_secs(after))).await;
            }
            // Down (killed, restarting) or cut off mid-request.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

impl Subject for Server {
    fn command(&mut self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferroway-http-ingest-child"));
        c.arg(&self.listen).arg(&self.out);
        c
    }

    /// Clients start now and post until every request of theirs got its `200`.
    fn feed(&mut self, n: u64) -> Result<(), BoxError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = format!("http://{}/", self.listen);
        for c in 0..CLIENTS {
            let (url, stop) = (url.clone(), self.stop.clone());
            let ids: Vec<u64> = (1..=n).filter(|i| (i / PER_REQUEST) % CLIENTS == c).collect();
            self.clients.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    for chunk in ids.chunks(PER_REQUEST as usize) {
                        deliver(&client, &url, chunk, &stop).await;
                    }
                });
            }));
        }
        Ok(())
    }

    fn record(&mut self) -> Result<Vec<u64>, BoxError> {
        read_id_lines(&self.out)
    }

    fn progress(&mut self) -> Result<u64, BoxError> {
        count_lines(&self.out)
    }
}

#[test]
fn killed_with_sigkill_and_restarted_every_posted_record_is_written() {
    let mut server = Server::new("ingest-kill");
    let kills = 5;
    let report = CrashTest::new("ingest-sigkill")
        .messages(10_000)
        .kills(kills)
        .stop(Stop::Kill)
        .finish(Finish::WhenComplete)
        .max_duplicates(kills as u64 * CLIENTS * PER_REQUEST)
        .run(&mut server)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
}

#[test]
fn stopped_with_sigterm_and_restarted_no_record_is_written_twice() {
    let mut server = Server::new("ingest-term");
    let report = CrashTest::new("ingest-sigterm")
        .messages(10_000)
        .kills(4)
        .stop(Stop::Terminate)
        .finish(Finish::WhenComplete)
        .run(&mut server)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{report}");
    assert_eq!(report.duplicates, 0);
}
