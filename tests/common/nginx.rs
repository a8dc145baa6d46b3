//! A real nginx (Debian's package) on a free loopback port, for interop and
//! fault tests. Started as a foreground child with its whole state in a
//! temporary directory; killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{CAP, LOCALHOST};

/// Where nginx is, or `None` (the caller prints why it skips).
pub fn binary() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("/usr/sbin/nginx"),
        PathBuf::from("/usr/bin/nginx"),
    ];
    if let Some(p) = candidates.into_iter().find(|p| p.exists()) {
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nginx"))
        .find(|p| p.exists())
}

/// A free loopback port below the kernel's ephemeral range (32768 and up on
/// Linux), so that no `bind(0)` or outgoing connection of a parallel test can
/// be handed the same port between our check and nginx's bind. Ports are
/// taken from a per-process sequence, so parallel tests never pick the same.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 12_000 + (std::process::id() % 1_000) as u16 * 16;
    for _ in 0..2_000 {
        let port = 12_000 + (base - 12_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 18_000;
        if TcpListener::bind((LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

/// A running nginx.
pub struct Nginx {
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

/// What the server block does besides listening.
pub struct Site<'a> {
    /// `listen` parameters after the address, e.g. `ssl`.
    pub listen_extra: &'a str,
    /// Directives inside `server { }`.
    pub server: &'a str,
    /// Files to write into the state directory first (name, contents).
    pub files: Vec<(&'a str, Vec<u8>)>,
}

impl Nginx {
    /// Starts nginx with `keepalive_requests`/`keepalive_timeout` as given,
    /// answering `/` with `hello\n` and the connection's serial number in an
    /// `X-Conn` header. `None`, with a printed reason, if nginx is missing.
    pub fn start_http(keepalive_requests: u32, keepalive_timeout: &str) -> Option<Nginx> {
        let server = format!(
            "keepalive_requests {keepalive_requests};\n keepalive_timeout {keepalive_timeout};\n \
             location / {{ add_header X-Conn $connection always; return 200 \"hello\\n\"; }}"
        );
        Nginx::start(Site {
            listen_extra: "",
            server: &server,
            files: Vec::new(),
        })
    }

    pub fn start(site: Site<'_>) -> Option<Nginx> {
        let Some(bin) = binary() else {
            eprintln!("skipped: nginx not installed (apt-get install nginx-light)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!(
            "keepalive-nginx-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        for (name, contents) in &site.files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        // A free port: bind, note, release. nginx binds it right after.
        let port = TcpListener::bind((LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::new(LOCALHOST, port);
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/logs/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n \
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n \
             server {{\n  listen {addr} {extra};\n  {server}\n }}\n}}\n",
            d = dir.display(),
            extra = site.listen_extra,
            server = site.server,
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { addr, child, dir };
        nginx.wait_ready();
        Some(nginx)
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let answered =
                TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok();
            if answered && self.child.try_wait().ok().flatten().is_none() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default();
                panic!("nginx exited with {status}: {log}");
            }
            assert!(start.elapsed() < CAP, "nginx did not accept within {CAP:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills nginx now (its sockets close: RST or FIN to the clients).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
