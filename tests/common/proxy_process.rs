//! The proxy example's binary as a child process: started on a free
//! loopback port, its descriptors and memory read from `/proc`, signalled
//! and stopped by its pid.
//!
//! `cargo test --all-targets` (the README's command) builds the example
//! beside the test binaries; a test run without it panics saying so.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::CAP;

/// `target/<profile>/examples/proxy`, beside this test binary's `deps/`.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = profile.join("examples").join("proxy");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run the tests with `cargo test --all-targets`, or `cargo build --example proxy` first",
                bin.display()
            )
        });
    // `cargo test --test X` builds no example: a binary older than one of
    // its sources (cargo's dep-info beside it lists them) would test
    // yesterday's proxy.
    let deps = std::fs::read_to_string(bin.with_extension("d")).unwrap_or_default();
    let stale = deps
        .split_once(": ")
        .map(|(_, list)| list)
        .unwrap_or("")
        .split_whitespace()
        .find(|dep| {
            std::fs::metadata(dep)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
        });
    assert!(
        stale.is_none(),
        "{} is older than {}: `cargo build --example proxy` (or run `cargo test --all-targets`)",
        bin.display(),
        stale.unwrap_or("")
    );
    bin
}

pub struct ProxyProcess {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    /// What the proxy printed, for a failing test's message.
    pub output: Arc<Mutex<Vec<String>>>,
}

impl ProxyProcess {
    /// One worker in front of `upstream`, listening on a free loopback
    /// port, with `args` added.
    #[track_caller]
    pub fn start(upstream: &str, args: &[&str]) -> ProxyProcess {
        ProxyProcess::spawn(Command::new(binary()), upstream, args)
    }

    /// The same, with `RLIMIT_NOFILE` set to `nofile` for the proxy alone
    /// (the shell's `ulimit`, then `exec`).
    #[track_caller]
    pub fn start_limited(upstream: &str, args: &[&str], nofile: u32) -> ProxyProcess {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(binary());
        ProxyProcess::spawn(sh, upstream, args)
    }

    /// The proxy as `command` runs it (the example's binary, or a binary
    /// that runs the example's command line, as the benchmark does).
    #[track_caller]
    pub fn spawn(mut command: Command, upstream: &str, args: &[&str]) -> ProxyProcess {
        let mut child = command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--threads",
                "1",
                "--upstream",
                upstream,
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the proxy");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&output);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.strip_prefix("proxy listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let _ = tx.send(addr.parse::<SocketAddr>());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(CAP) {
            Ok(Ok(addr)) => addr,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the proxy did not start: {other:?}");
            }
        };
        ProxyProcess {
            addr,
            pid,
            child,
            output,
        }
    }

    /// Descriptors the proxy has open. Panics if the proxy is gone: a
    /// crashed proxy has no descriptors, which must not read as "back to
    /// baseline".
    #[track_caller]
    pub fn fds(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
        let exited = status.as_deref().map_or(true, |s| {
            s.lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        });
        match std::fs::read_dir(format!("/proc/{}/fd", self.pid)) {
            Ok(dir) if !exited => dir.count(),
            Ok(_) => panic!(
                "the proxy (pid {}) exited; it printed {:?}",
                self.pid,
                self.output.lock().unwrap()
            ),
            Err(e) => panic!(
                "the proxy (pid {}) is gone: {e}; it printed {:?}",
                self.pid,
                self.output.lock().unwrap()
            ),
        }
    }

    /// The proxy's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Waits (bounded by [`CAP`]) until the descriptor count satisfies
    /// `cond`; returns it.
    #[track_caller]
    pub fn wait_fds(&self, what: &str, cond: impl Fn(usize) -> bool) -> usize {
        let start = Instant::now();
        loop {
            let n = self.fds();
            if cond(n) {
                return n;
            }
            assert!(
                start.elapsed() < CAP,
                "timed out waiting for {what}: {n} descriptors open"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends `SIG<name>` to the proxy (by its pid).
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid);
    }

    /// Waits (bounded by [`CAP`]) for the proxy to exit.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the proxy") {
                return status;
            }
            assert!(
                start.elapsed() < CAP,
                "the proxy did not exit; it printed {:?}",
                self.output.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
