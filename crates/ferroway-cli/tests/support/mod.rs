//! Running the `ferroway` binary in tests: a scratch directory per test, pipeline files
//! written into it, the process run to its end or signalled.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ferroway-cli-{name}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `text` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The lines of `name` (none if it does not exist).
    pub fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `ferroway` command, run in `dir`, logs at `info` unless `RUST_LOG` says otherwise.
pub fn ferroway(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferroway"));
    c.current_dir(dir).env_remove("RUST_LOG");
    if let Ok(level) = std::env::var("FERROWAY_TEST_LOG") {
        c.env("RUST_LOG", level);
    }
    c
}

/// Runs `ferroway ARGS` in `dir` to its end, at most `secs`; its output.
pub fn run(dir: &Path, args: &[&str], secs: u64) -> Output {
    let child = ferroway(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ferroway binary runs");
    wait_output(child, secs)
}

/// Waits for `child` at most `secs` (killing it then, and failing).
pub fn wait_output(child: Child, secs: u64) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => out.expect("ferroway's output"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("ferroway did not exit within {secs}s");
        }
    }
}

/// Sends `SIG<name>` to `pid`.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid}");
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `f` until true, at most `secs`.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs}s waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub const REDIS: &str = "redis://127.0.0.1:6379";

/// Fails (never skips) when Redis is down, saying how to start it.
pub fn require_redis() {
    let addr: std::net::SocketAddr = "127.0.0.1:6379".parse().unwrap();
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!(
            "Redis is not reachable on 127.0.0.1:6379: start it with `bash scripts/services/redis.sh` (`./scripts/test` does this for you)"
        );
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// `GET path` on `addr` (HTTP/1.1, the connection closed by the server): the whole response.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A free local port, as `127.0.0.1:PORT`.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}
