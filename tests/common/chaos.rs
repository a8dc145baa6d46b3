//! A misbehaving HTTP/1.1 server on 127.0.0.1 for the fault suite.
//!
//! Std threads: one accepts, one serves each connection. Every thread is
//! joined and every socket closed when the server is dropped, so a test can
//! count the process's descriptors before and after.
//!
//! New connections get the server's current [`Behavior`]. The `*_all`
//! methods act on every connection the server holds at that moment (the
//! pool's idle ones included) and return once the server side has done it:
//! the FIN or RST has been sent, or the bytes written.
//!
//! Connections are held as raw descriptors in a table whose lock the serving
//! thread also takes to close its socket, so the test side never touches a
//! descriptor number that was closed and reused.

#![allow(
    unsafe_code,
    reason = "the chaos server keeps raw descriptors and polls them with libc"
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{CAP, LOCALHOST};

/// What the server does with a connection it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Answers every request, keep-alive, until the client closes.
    Normal,
    /// Accepts and reads requests, never answers.
    Silent,
    /// Answers one request, then shuts down its sending side (a FIN right
    /// after the response) and reads until the client closes.
    HalfClose,
    /// Answers `n` requests; the next request gets a reset (RST, `SO_LINGER`
    /// 0) instead of an answer.
    ResetAfter(u32),
}

/// The response to every request.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
/// What `unsolicited_all` writes.
pub const UNSOLICITED: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\r\n";

struct Held {
    /// The serving thread's socket, valid while `open` (both under the lock).
    fd: RawFd,
    open: bool,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    requests: AtomicUsize,
    resets: AtomicUsize,
}

struct Inner {
    behavior: Mutex<Behavior>,
    listening: AtomicBool,
    held: Mutex<Vec<Held>>,
    counters: Counters,
}

impl Inner {
    fn held(&self) -> MutexGuard<'_, Vec<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A chaos server; see the module docs.
pub struct Chaos {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

impl Chaos {
    pub fn start(behavior: Behavior) -> Chaos {
        let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind chaos server");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            behavior: Mutex::new(behavior),
            listening: AtomicBool::new(true),
            held: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let shared = Arc::clone(&inner);
        let acceptor = thread::spawn(move || accept_loop(listener, &shared));
        Chaos {
            addr,
            inner,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The behavior of connections accepted from now on.
    pub fn set_behavior(&self, behavior: Behavior) {
        *self.inner.behavior.lock().unwrap() = behavior;
    }

    pub fn accepted(&self) -> usize {
        self.inner.counters.accepted.load(Ordering::SeqCst)
    }

    /// Asserts exactly `n` connections were accepted, once the accept
    /// thread has caught up with connects the client already saw complete.
    #[track_caller]
    pub fn assert_accepted(&self, n: usize) {
        super::wait_count(|| self.accepted(), n, "server accepted");
        assert_eq!(self.accepted(), n, "connections accepted");
    }

    pub fn requests(&self) -> usize {
        self.inner.counters.requests.load(Ordering::SeqCst)
    }

    /// Connections reset so far (by `ResetAfter` or `reset_all`).
    pub fn resets(&self) -> usize {
        self.inner.counters.resets.load(Ordering::SeqCst)
    }

    /// Connections the server holds open now.
    pub fn open(&self) -> usize {
        self.inner.held().iter().filter(|h| h.open).count()
    }

    /// Resets every connection the server holds (`SO_LINGER` 0, then close:
    /// an RST). Returns how many, once every RST has been sent.
    #[track_caller]
    pub fn reset_all(&self) -> usize {
        self.end_all(|fd| {
            let fd = unsafe_borrow(fd);
            let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
            self.inner.counters.resets.fetch_add(1, Ordering::SeqCst);
            // Wakes the serving thread (its read returns 0); it closes.
            let _ = socket2::SockRef::from(&fd).shutdown(Shutdown::Read);
        })
    }

    /// Closes every connection the server holds (FIN). Returns how many, once
    /// every socket is closed.
    #[track_caller]
    pub fn close_all(&self) -> usize {
        self.end_all(|fd| {
            let _ = socket2::SockRef::from(&unsafe_borrow(fd)).shutdown(Shutdown::Both);
        })
    }

    /// Shuts down the sending side of every connection the server holds (a
    /// FIN; the server keeps reading). Returns how many.
    pub fn half_close_all(&self) -> usize {
        let held = self.inner.held();
        let mut n = 0;
        for h in held.iter().filter(|h| h.open) {
            let _ = socket2::SockRef::from(&unsafe_borrow(h.fd)).shutdown(Shutdown::Write);
            n += 1;
        }
        n
    }

    /// Writes bytes nobody asked for on every connection the server holds.
    /// Returns on how many the write went through.
    pub fn unsolicited_all(&self) -> usize {
        let held = self.inner.held();
        let mut n = 0;
        for h in held.iter().filter(|h| h.open) {
            let fd = unsafe_borrow(h.fd);
            if (&*socket2::SockRef::from(&fd))
                .write_all(UNSOLICITED)
                .is_ok()
            {
                n += 1;
            }
        }
        n
    }

    /// Closes the listener: later connects are refused (`ECONNREFUSED`).
    /// Connections already accepted are kept. Returns once it is closed.
    #[track_caller]
    pub fn disappear(&mut self) {
        self.inner.listening.store(false, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            join(acceptor);
        }
    }

    /// Applies `end` to every open connection (under the table's lock), then
    /// joins their threads, which close the sockets.
    #[track_caller]
    fn end_all(&self, end: impl Fn(RawFd)) -> usize {
        let threads: Vec<JoinHandle<()>> = {
            let mut held = self.inner.held();
            held.iter_mut()
                .filter(|h| h.open)
                .filter_map(|h| {
                    end(h.fd);
                    h.thread.take()
                })
                .collect()
        };
        let n = threads.len();
        for t in threads {
            join(t);
        }
        n
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.disappear();
        self.close_all();
        let rest: Vec<JoinHandle<()>> = self
            .inner
            .held()
            .iter_mut()
            .filter_map(|h| h.thread.take())
            .collect();
        for t in rest {
            join(t);
        }
    }
}

/// Joins a server thread, failing the test if it has not ended within
/// [`CAP`] (it ends as soon as its socket is shut down).
#[track_caller]
fn join(thread: JoinHandle<()>) {
    let start = std::time::Instant::now();
    while !thread.is_finished() {
        assert!(
            start.elapsed() < CAP,
            "a chaos server thread did not end within {CAP:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
    thread.join().expect("chaos server thread panicked");
}

/// Borrows a descriptor of the table. Callers hold the table's lock and have
/// checked `open`, so the descriptor is the serving thread's live socket.
fn unsafe_borrow<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: see above; the serving thread closes its socket only under
    // the same lock, after marking it closed.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn accept_loop(listener: TcpListener, inner: &Arc<Inner>) {
    while inner.listening.load(Ordering::SeqCst) {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, count 1. A bounded wait, so a stop is
        // noticed within 10 ms.
        unsafe { libc::poll(&mut pfd, 1, 10) };
        let Ok((stream, _)) = listener.accept() else {
            continue;
        };
        stream.set_nonblocking(false).unwrap();
        let behavior = *inner.behavior.lock().unwrap();
        let mut held = inner.held();
        // Forget connections whose threads are done (they closed under the
        // lock and only return after it).
        let done: Vec<JoinHandle<()>> = held
            .iter_mut()
            .filter(|h| !h.open)
            .filter_map(|h| h.thread.take())
            .collect();
        held.retain(|h| h.open || h.thread.is_some());
        let fd = stream.as_raw_fd();
        let shared = Arc::clone(inner);
        let thread = thread::spawn(move || {
            serve(&stream, behavior, &shared);
            // Close under the lock, so the test side never acts on a closed
            // (and maybe reused) descriptor number.
            let mut held = shared.held();
            if let Some(h) = held.iter_mut().find(|h| h.fd == fd && h.open) {
                h.open = false;
            }
            drop(stream);
        });
        held.push(Held {
            fd,
            open: true,
            thread: Some(thread),
        });
        // Held before counted: once a test sees the count, the `*_all`
        // calls reach the connection.
        inner.counters.accepted.fetch_add(1, Ordering::SeqCst);
        drop(held);
        for t in done {
            join(t);
        }
    }
}

/// Serves one connection as `behavior` says, until EOF, an error, or the
/// behavior ends it.
fn serve(stream: &TcpStream, behavior: Behavior, inner: &Inner) {
    let mut reader = BufReader::new(stream);
    let mut out = stream;
    let mut line = String::new();
    let mut answered = 0u32;
    loop {
        // Read one request head.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        inner.counters.requests.fetch_add(1, Ordering::SeqCst);
        match behavior {
            Behavior::Silent => continue,
            Behavior::ResetAfter(n) if answered >= n => {
                let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
                inner.counters.resets.fetch_add(1, Ordering::SeqCst);
                return;
            }
            _ => {}
        }
        if out.write_all(RESPONSE).is_err() {
            return;
        }
        answered += 1;
        if behavior == Behavior::HalfClose {
            let _ = stream.shutdown(Shutdown::Write);
            // Read (and ignore) until the client closes.
            let mut sink = std::io::sink();
            let _ = std::io::copy(&mut reader, &mut sink);
            return;
        }
    }
}
