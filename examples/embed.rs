//! Embedding the reactor in a loop you already have: here, a `mio::Poll` of
//! your own that also watches other things. The reactor's descriptor is
//! registered there once; the reactor runs only when it is readable or its
//! `next_timeout()` has passed, never blocking on its own.
//!
//! ```sh
//! cargo run --example embed
//! ```

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::fd::AsRawFd;

use keepalive::mio::{Events as MioEvents, Interest, Poll, Token, unix::SourceFd};
use keepalive::{Config, Connection, Event, Events, Reactor, Request};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const REACTOR: Token = Token(0);
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn main() -> Result<()> {
    let port = echo_server()?;
    let mut reactor: Reactor<u32> = Reactor::new(Config::default())?;
    let mut events = Events::new();

    // Your loop's poller. Register the reactor's descriptor once.
    let mut outer = Poll::new()?;
    let mut outer_events = MioEvents::with_capacity(64);
    outer.registry().register(
        &mut SourceFd(&reactor.as_raw_fd()),
        REACTOR,
        Interest::READABLE,
    )?;

    let total = 5u32;
    let mut next = 1u32;
    reactor.allocate(Request::new("echo", LOCALHOST, port, next))?;
    let mut lent: Option<(u32, Connection, Vec<u8>)> = None;
    let mut done = 0;
    while done < total {
        // 1. Wait for the reactor's descriptor, or until its next deadline.
        //    (Your own sources would be in `outer` too.)
        outer.poll(&mut outer_events, reactor.next_timeout())?;
        // 2. One non-blocking tick.
        reactor.poll_events(&mut events)?;
        // 3. Handle what happened.
        for event in events.drain() {
            match event {
                Event::Outcome(outcome) => {
                    let mut conn = outcome.result?;
                    println!(
                        "request {}: {:?}, from_cache {:?}",
                        outcome.context,
                        conn.id(),
                        conn.from_cache()
                    );
                    // One write for the whole line: the echo may still come
                    // back in pieces, so the reply is read up to its newline.
                    conn.write_all(format!("ping {}\n", outcome.context).as_bytes())?;
                    lent = Some((outcome.context, conn, Vec::new()));
                }
                Event::Ready(ready) => {
                    let Some((n, conn, reply)) = lent.as_mut() else {
                        continue;
                    };
                    if ready.conn != conn.id() || !ready.readable {
                        continue;
                    }
                    let mut buf = [0u8; 64];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) => return Err("echo server closed".into()),
                            Ok(len) => reply.extend_from_slice(&buf[..len]),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    if !reply.ends_with(b"\n") {
                        continue; // the rest comes with the next readiness
                    }
                    print!("  echo for {n}: {}", String::from_utf8_lossy(reply));
                    // 4. Give the connection back (dropping it works too)
                    //    and ask for the next one: it comes from the pool.
                    if let Some((_, conn, _)) = lent.take() {
                        reactor.free(conn)?;
                    }
                    done += 1;
                    if next < total {
                        next += 1;
                        reactor.allocate(Request::new("echo", LOCALHOST, port, next))?;
                    }
                }
                // Sources and timers of the caller's own, registered in the
                // reactor (see examples/proxy.rs); this example has none.
                _ => {}
            }
        }
        // 5. Back to 1: next_timeout() is computed afresh (zero now, since
        //    an allocate from the pool has an outcome waiting).
    }
    println!(
        "{total} requests over {} connection(s) opened",
        reactor.open_count()
    );
    Ok(())
}

/// An echo server on loopback, a thread per connection.
fn echo_server() -> Result<u16> {
    let listener = TcpListener::bind((LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}
