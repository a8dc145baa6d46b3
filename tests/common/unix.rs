//! An HTTP/1.1 keep-alive server on a Unix-domain socket in a temporary
//! directory (or, on Linux, in the abstract namespace), a thread per
//! connection, that can misbehave on demand: close or write to every
//! connection it holds, or stop listening while its path stays.
//!
//! Threads end when their peer closes; the socket file and its directory
//! are removed when the server is dropped.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use super::{TempDir, wait_count};

/// See the module docs.
pub struct UnixServer {
    /// The socket's path (a leading NUL for an abstract name).
    pub path: PathBuf,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<UnixStream>>>,
    stop: Arc<AtomicBool>,
    _dir: Option<TempDir>,
}

impl UnixServer {
    /// A server at `<temp dir>/s.sock`.
    pub fn start() -> UnixServer {
        let dir = TempDir::new("unix");
        let path = dir.path.join("s.sock");
        let listener = UnixListener::bind(&path).expect("bind a unix socket");
        UnixServer::serve_on(listener, path, Some(dir))
    }

    /// A server on a fresh abstract name (Linux only).
    #[cfg(target_os = "linux")]
    pub fn start_abstract() -> UnixServer {
        use std::os::linux::net::SocketAddrExt;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "keepalive-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).expect("bind an abstract unix socket");
        UnixServer::serve_on(listener, PathBuf::from(format!("\0{name}")), None)
    }

    fn serve_on(listener: UnixListener, path: PathBuf, dir: Option<TempDir>) -> UnixServer {
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, r, o, s) = (
            accepted.clone(),
            requests.clone(),
            open.clone(),
            stop.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return; // the listener closes: later connects are refused
                }
                let Ok(stream) = stream else { continue };
                o.lock().unwrap().push(stream.try_clone().unwrap());
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                thread::spawn(move || serve(stream, &r));
            }
        });
        UnixServer {
            path,
            accepted,
            requests,
            open,
            stop,
            _dir: dir,
        }
    }

    /// The path as a `'static` one, as a caller with a fixed upstream has
    /// it (leaked: a few bytes per test).
    pub fn static_path(&self) -> &'static std::path::Path {
        Box::leak(self.path.clone().into_boxed_path())
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    #[track_caller]
    pub fn assert_accepted(&self, n: usize) {
        wait_count(|| self.accepted(), n, "server accepted");
        assert_eq!(self.accepted(), n, "connections accepted");
    }

    /// Closes every connection the server holds (the client reads EOF).
    pub fn close_all(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Writes bytes nobody asked for on every connection the server holds.
    pub fn send_unsolicited(&self) {
        for s in self.open.lock().unwrap().iter_mut() {
            let _ = s.write_all(b"surprise");
        }
    }

    /// Stops listening; the socket file stays, so a connect to it is
    /// refused (`ECONNREFUSED`), as after a crashed server.
    pub fn stop_listening(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees `stop` and drops the listener.
        let _ = connect_to(&self.path);
        let start = std::time::Instant::now();
        while connect_to(&self.path).is_ok() {
            assert!(start.elapsed() < super::CAP, "listener still accepts");
            thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        self.close_all();
        if !self.stop.swap(true, Ordering::SeqCst) {
            let _ = connect_to(&self.path);
        }
    }
}

/// A blocking connect to `path` (a leading NUL: an abstract name).
pub fn connect_to(path: &std::path::Path) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    #[cfg(target_os = "linux")]
    if let Some((0, name)) = bytes.split_first() {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        return UnixStream::connect_addr(&addr);
    }
    let _ = bytes;
    UnixStream::connect(path)
}

/// Answers GETs with `hello\n` and the connection's serial number in
/// `X-Conn`, keep-alive, until the client closes.
fn serve(stream: UnixStream, requests: &AtomicUsize) {
    static SERIAL: AtomicUsize = AtomicUsize::new(0);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line != "\r\n" {
            continue;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let response =
            format!("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Conn: {serial}\r\n\r\nhello\n");
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
