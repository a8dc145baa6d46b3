//! A real DNS server, dnsmasq (Debian's `dnsmasq-base`), on a free loopback
//! port, serving a hosts file and nothing else: no upstream servers, no
//! system files, no DHCP. Started as a foreground child with its state in a
//! temporary directory; stopped by its pid (the child's) when dropped.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, TYPE};

use super::{CAP, LOCALHOST, TempDir};

/// Where dnsmasq is, or `None` (the caller prints why it skips).
pub fn binary() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("/usr/sbin/dnsmasq"),
        PathBuf::from("/usr/bin/dnsmasq"),
    ];
    if let Some(p) = candidates.into_iter().find(|p| p.exists()) {
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("dnsmasq"))
        .find(|p| p.exists())
}

/// A running dnsmasq.
pub struct Dnsmasq {
    /// Where it answers, UDP and TCP.
    pub addr: SocketAddr,
    child: Child,
    hosts_file: PathBuf,
    _dir: TempDir,
}

impl Dnsmasq {
    /// dnsmasq answering from `hosts` (hosts-file text); `ready_name` must
    /// be one of its names: it is asked until dnsmasq answers. `None` if
    /// dnsmasq is not installed.
    pub fn start(hosts: &str, ready_name: &str) -> Option<Dnsmasq> {
        let Some(bin) = binary() else {
            eprintln!("skipped: dnsmasq not installed (apt-get install dnsmasq-base)");
            return None;
        };
        let dir = TempDir::new("dnsmasq");
        let hosts_file = dir.path.join("hosts");
        std::fs::write(&hosts_file, hosts).unwrap();
        // A port free for UDP and TCP: bind, note, release; dnsmasq binds
        // it right after. Should another socket take it in between,
        // dnsmasq exits and we try another.
        for _ in 0..10 {
            let port = free_port();
            let addr = SocketAddr::new(LOCALHOST, port);
            let child = Command::new(&bin)
                .arg("--keep-in-foreground")
                .arg("--no-resolv")
                .arg("--no-hosts")
                .arg("--no-poll")
                .arg(format!("--addn-hosts={}", hosts_file.display()))
                .arg(format!("--port={port}"))
                .arg("--listen-address=127.0.0.1")
                .arg("--bind-interfaces")
                .arg(format!(
                    "--pid-file={}",
                    dir.path.join("dnsmasq.pid").display()
                ))
                // Stay the user we are (as root it would switch to nobody).
                .arg("--user=")
                .arg("--log-facility=-")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dnsmasq");
            let mut child = child;
            if wait_ready(&mut child, addr, ready_name) {
                return Some(Dnsmasq {
                    addr,
                    child,
                    hosts_file,
                    _dir: dir,
                });
            }
            // It exited: the port was taken. Try another.
            let _ = child.wait();
        }
        panic!("dnsmasq did not start on any of 10 ports");
    }
}

/// Asks dnsmasq at `addr` for `name` until an answer comes; `false` if it
/// exited first.
fn wait_ready(child: &mut Child, addr: SocketAddr, name: &str) -> bool {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut query = Packet::new_query(1);
    query.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    let query = query.build_bytes_vec().unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let _ = socket.send_to(&query, addr);
        if socket.recv_from(&mut buf).is_ok() {
            return true;
        }
        assert!(
            start.elapsed() < CAP,
            "dnsmasq did not answer within {CAP:?}"
        );
    }
}

impl Dnsmasq {
    /// Rewrites its hosts file to `hosts` and sends it SIGHUP (by the
    /// child's pid), which makes dnsmasq read the file again.
    pub fn rewrite_hosts(&self, hosts: &str) {
        std::fs::write(&self.hosts_file, hosts).unwrap();
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "SIGHUP to dnsmasq");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // By pid: the child this helper started.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both UDP and TCP just now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}
