//! A real nginx (Debian's package) on a free loopback port, for interop and
//! fault tests. Started as a foreground child with its whole state in a
//! temporary directory; killed when dropped.
//!
//! By default nginx runs as a single process. With
//! [`Options::master_process`] it runs as production does, a master and a
//! worker, so that [`Nginx::reload`] retires the old worker (which closes
//! its idle keep-alive connections) and [`Nginx::stop`] takes both down.
//! Only processes this helper started are signalled, by pid.
//!
//! With [`Options::unix`] the same server block also listens on a
//! Unix-domain socket in the state directory ([`Nginx::unix_path`]), with
//! the same `listen` parameters (so `ssl` too).

#![allow(
    unsafe_code,
    reason = "signals the nginx processes the tests started, by pid"
)]

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
    /// The Unix-domain socket it also listens on, with [`Options::unix`].
    pub unix_path: Option<PathBuf>,
    child: Child,
    dir: PathBuf,
    bin: PathBuf,
    master_process: bool,
    /// False between `stop` and `start_again`.
    running: bool,
}

/// How to run nginx, besides the site.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// A master process and one worker, as in production (default: a
    /// single process). Stopped with SIGTERM to the master, which takes its
    /// worker down with it.
    pub master_process: bool,
    /// A fixed port; default: a free one. With `master_process` the free
    /// port is taken below the ephemeral range, so that a restart on the
    /// same port cannot find it taken by one of our own outgoing
    /// connections.
    pub port: Option<u16>,
    /// Also listen on `unix:<state dir>/nginx.sock` (see
    /// [`Nginx::unix_path`]).
    pub unix: bool,
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
        Nginx::start_http_with(keepalive_requests, keepalive_timeout, Options::default())
    }

    /// [`start_http`](Nginx::start_http), also listening on a Unix-domain
    /// socket ([`Nginx::unix_path`]).
    pub fn start_http_unix(keepalive_requests: u32, keepalive_timeout: &str) -> Option<Nginx> {
        let options = Options {
            unix: true,
            ..Options::default()
        };
        Nginx::start_http_with(keepalive_requests, keepalive_timeout, options)
    }

    /// [`start_http`](Nginx::start_http) with [`Options`].
    pub fn start_http_with(
        keepalive_requests: u32,
        keepalive_timeout: &str,
        options: Options,
    ) -> Option<Nginx> {
        let server = format!(
            "keepalive_requests {keepalive_requests};\n keepalive_timeout {keepalive_timeout};\n \
             location / {{ add_header X-Conn $connection always; return 200 \"hello\\n\"; }}"
        );
        Nginx::start_with(
            Site {
                listen_extra: "",
                server: &server,
                files: Vec::new(),
            },
            options,
        )
    }

    pub fn start(site: Site<'_>) -> Option<Nginx> {
        Nginx::start_with(site, Options::default())
    }

    pub fn start_with(site: Site<'_>, options: Options) -> Option<Nginx> {
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
        let port = match options.port {
            Some(port) => port,
            None if options.master_process => free_port(),
            None => TcpListener::bind((LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        };
        let addr = SocketAddr::new(LOCALHOST, port);
        let unix_path = options.unix.then(|| dir.join("nginx.sock"));
        let unix_listen = match &unix_path {
            Some(path) => format!("listen unix:{} {};\n  ", path.display(), site.listen_extra),
            None => String::new(),
        };
        let conf = format!(
            "daemon off;\nmaster_process {master};\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/logs/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n \
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n \
             server {{\n  listen {addr} {extra};\n  {unix_listen}{server}\n }}\n}}\n",
            d = dir.display(),
            master = if options.master_process { "on" } else { "off" },
            extra = site.listen_extra,
            server = site.server,
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = spawn(&bin, &dir, &[]);
        let mut nginx = Nginx {
            addr,
            unix_path,
            child,
            dir,
            bin,
            master_process: options.master_process,
            running: true,
        };
        nginx.wait_ready();
        Some(nginx)
    }

    /// Every process of this nginx: the one started, then its workers.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.child.id()];
        pids.extend(self.worker_pids());
        pids
    }

    /// The pids of the master's workers (empty without a master).
    pub fn worker_pids(&self) -> Vec<u32> {
        if !self.master_process || !self.running {
            return Vec::new();
        }
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// `nginx -s reload` (needs `master_process`): the master rereads its
    /// configuration, starts a new worker and retires the old one, which
    /// closes its idle keep-alive connections at once and the others after
    /// their current request. Returns the retired workers' pids once the new
    /// worker runs (see [`wait_retired`](Nginx::wait_retired)).
    #[track_caller]
    pub fn reload(&mut self) -> Vec<u32> {
        assert!(self.master_process, "reload needs a master process");
        let old = self.worker_pids();
        assert!(!old.is_empty(), "no worker to retire");
        let mut signaller = spawn(&self.bin, &self.dir, &["-s", "reload"]);
        let start = Instant::now();
        let status = loop {
            if let Some(status) = signaller.try_wait().expect("nginx -s reload") {
                break status;
            }
            if start.elapsed() > CAP {
                let _ = signaller.kill();
                let _ = signaller.wait();
                panic!("nginx -s reload did not return within {CAP:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert!(status.success(), "nginx -s reload: {status}");
        loop {
            let now = self.worker_pids();
            if now.iter().any(|p| !old.contains(p)) {
                return old;
            }
            assert!(
                start.elapsed() < CAP,
                "no new worker within {CAP:?} (workers {now:?})"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits until the workers `old` (from [`reload`](Nginx::reload)) have
    /// exited. A retired worker stays while a connection of its has a
    /// request to serve, including one accepted but with no request yet: the
    /// client must have finished its work (or closed) first.
    #[track_caller]
    pub fn wait_retired(&self, old: Vec<u32>) {
        let start = Instant::now();
        loop {
            let now = self.worker_pids();
            if old.iter().all(|p| !now.contains(p)) {
                return;
            }
            assert!(
                start.elapsed() < CAP,
                "the old workers {old:?} did not exit within {CAP:?} (workers now {now:?})"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops nginx by pid and waits until it has exited: SIGTERM to a
    /// master (it stops its worker first, closing every connection), SIGKILL
    /// to a single process. Its port is free again afterwards.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        if self.master_process {
            signal(self.child.id(), libc::SIGTERM);
            let start = Instant::now();
            // Broken if it takes longer than CAP: `kill` below then takes
            // everything down the hard way.
            while matches!(self.child.try_wait(), Ok(None)) && start.elapsed() < CAP {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.kill();
    }

    /// Starts nginx again, same configuration, same port, after `stop`.
    #[track_caller]
    pub fn start_again(&mut self) {
        assert!(!self.running, "start_again after stop");
        self.child = spawn(&self.bin, &self.dir, &[]);
        self.running = true;
        self.wait_ready();
    }

    #[track_caller]
    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let answered = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100))
                .is_ok()
                && self
                    .unix_path
                    .as_ref()
                    .is_none_or(|p| std::os::unix::net::UnixStream::connect(p).is_ok());
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

    /// Kills nginx now (its sockets close: RST or FIN to the clients), the
    /// master's workers first.
    pub fn kill(&mut self) {
        // Only while the master is alive (not reaped) is its pid ours.
        if matches!(self.child.try_wait(), Ok(None)) {
            for w in self.worker_pids() {
                signal(w, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.running = false;
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs nginx with its state in `dir`, plus `args` (e.g. `-s reload`).
fn spawn(bin: &Path, dir: &Path, args: &[&str]) -> Child {
    Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nginx")
}

/// Sends `sig` to a process this helper started (or its worker).
fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes no pointers; the pid is one we started.
    unsafe { libc::kill(pid, sig) };
}

/// The connection nginx served a response of [`Nginx::start_http`]'s site
/// on, from the `X-Conn` header [`read_response`](super::read_response)
/// appends to the body (which must say `hello`).
pub fn conn_serial(body: &str) -> String {
    assert!(body.starts_with("hello\n"), "{body:?}");
    body.lines()
        .find_map(|l| l.strip_prefix("conn="))
        .expect("X-Conn header")
        .to_string()
}
