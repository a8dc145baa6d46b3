//! The reactor inside a tokio current-thread runtime: tokio waits on the
//! reactor's descriptor through `AsyncFd` and on its `next_timeout()` with a
//! `tokio::time::sleep`, and the reactor runs one non-blocking tick
//! (`poll_events`) when either fires. Other tokio tasks run meanwhile on
//! the same thread. The reactor is `!Send`, like everything on a current-
//! thread runtime's main future.
//!
//! ```sh
//! cargo run --example tokio_embed                    # against its own loopback server
//! cargo run --example tokio_embed -- 127.0.0.1 8080 20
//! ```

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keepalive::{Config, Connection, Event, Events, Reactor, Request};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// Responses read, each `200`.
    pub responses: u32,
    /// Connections the pool opened for them.
    pub opened: u64,
    /// Ticks another tokio task made meanwhile.
    pub other_task_ticks: u64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, port, count) = match args.as_slice() {
        [] => (IpAddr::V4(Ipv4Addr::LOCALHOST), http_server()?, 10),
        [addr, port, rest @ ..] => (
            addr.parse()?,
            port.parse()?,
            rest.first().map_or(Ok(10), |c| c.parse())?,
        ),
        _ => return Err("usage: tokio_embed [ADDR PORT [COUNT]]".into()),
    };
    let report = run(addr, port, count)?;
    println!(
        "{} responses over {} connection(s); another task ticked {} times meanwhile",
        report.responses, report.opened, report.other_task_ticks
    );
    Ok(())
}

/// `count` GETs to `addr:port`, one at a time over the pool, on a tokio
/// current-thread runtime that runs another task beside them.
///
/// # Errors
///
/// The runtime, the reactor, a failed connect or a bad response.
pub fn run(addr: IpAddr, port: u16, count: u32) -> Result<Report> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        // Another task on the same thread: it runs whenever the loop below
        // waits.
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&ticks);
        let other = tokio::spawn(async move {
            loop {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });

        let reactor: Reactor<u32> = Reactor::new(Config::default())?;
        // tokio watches the reactor's poller: readable when the reactor has
        // readiness to process.
        #[allow(
            unsafe_code,
            reason = "tokio's AsyncFd asks its caller to vouch for the descriptor's life"
        )]
        // SAFETY: the AsyncFd owns the reactor, whose poller descriptor is
        // opened by `Reactor::new`, closed only when the reactor drops, and
        // the one `as_raw_fd` returns all along.
        let mut poller = unsafe { AsyncFd::register_with_interest(reactor, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let mut events = Events::new();
        let mut lent: Option<(Connection, Vec<u8>)> = None;
        let mut responses = 0;
        poller
            .get_mut()
            .allocate(Request::new("http", addr, port, 1))?;
        while responses < count {
            // Wait for the reactor's descriptor or its next deadline.
            let deadline = poller
                .get_ref()
                .next_timeout()
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                guard = poller.readable() => guard?.clear_ready(),
                () = tokio::time::sleep(deadline) => {}
            }
            // One non-blocking tick, then what it reported.
            let reactor = poller.get_mut();
            reactor.poll_events(&mut events)?;
            for event in events.drain() {
                match event {
                    Event::Outcome(outcome) => {
                        let mut conn = outcome.result?;
                        conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
                        lent = Some((conn, Vec::new()));
                    }
                    Event::Ready(ready) if ready.readable => {
                        let Some((conn, response)) = lent.as_mut() else {
                            continue;
                        };
                        if ready.conn != conn.id() || !read_available(conn, response)? {
                            continue;
                        }
                        if !response.starts_with(b"HTTP/1.1 200") {
                            return Err("not a 200".into());
                        }
                        responses += 1;
                        if let Some((conn, _)) = lent.take() {
                            reactor.free(conn)?;
                        }
                        if responses < count {
                            reactor.allocate(Request::new("http", addr, port, responses + 1))?;
                        }
                    }
                    _ => {}
                }
            }
        }
        other.abort();
        Ok(Report {
            responses,
            opened: poller.get_ref().stats().counters.connected,
            other_task_ticks: ticks.load(Ordering::Relaxed),
        })
    })
}

/// Reads what `conn` has into `response`; `true` once a whole response
/// with a `Content-Length` body is in.
fn read_available(conn: &mut Connection, response: &mut Vec<u8>) -> Result<bool> {
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Err("the server closed mid-response".into()),
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e.into()),
        }
    }
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(false);
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no Content-Length")?;
    Ok(response.len() >= end + 4 + length)
}

/// A keep-alive HTTP server on loopback, a thread per connection.
fn http_server() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
                        if stream.write_all(reply).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(port)
}
