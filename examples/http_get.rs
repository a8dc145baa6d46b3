//! A minimal HTTP/1.1 GET client on the pool: fetches a path several times
//! over kept-alive connections and says where each connection came from.
//!
//! ```sh
//! cargo run --example http_get -- 127.0.0.1 8080 /index.html 5
//! cargo run --example http_get -- localhost 8080 /   # names are resolved by the pool
//! cargo run --example http_get            # against its own loopback server
//! ```

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use keepalive::{Config, Connection, Event, Events, Host, Reactor, Request};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (host, port, path, count) = match args.as_slice() {
        [] => {
            let port = local_server()?;
            ("127.0.0.1".to_string(), port, "/".to_string(), 3)
        }
        [host, port, rest @ ..] => {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{port:?} is not a port"))?;
            let path = rest.first().cloned().unwrap_or_else(|| "/".into());
            let count = rest.get(1).map(|c| c.parse()).transpose()?.unwrap_or(3);
            (host.clone(), port, path, count)
        }
        _ => return Err("usage: http_get [HOST PORT [PATH [COUNT]]]".into()),
    };
    let mut reactor: Reactor<usize> = Reactor::new(Config::default())?;
    let mut events = Events::new();
    for n in 1..=count {
        let started = Instant::now();
        let target = Host::parse(host.clone());
        reactor.allocate(
            Request::with_host("http", target, port, n).timeout(Duration::from_secs(10)),
        )?;
        let mut conn = loop {
            reactor.poll(&mut events, Some(Duration::from_secs(10)))?;
            if let Some(Event::Outcome(outcome)) =
                events.drain().find(|e| matches!(e, Event::Outcome(_)))
            {
                break outcome.result?;
            }
        };
        let from = match conn.from_cache() {
            None => "new connection".to_string(),
            Some(how) => format!("from cache ({how:?})"),
        };
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: keepalive-example\r\n\r\n"
        )?;
        let (status, body) = read_response(&mut reactor, &mut events, &mut conn)?;
        println!(
            "#{n}: {status}, {body} body bytes, {from}, {} µs",
            started.elapsed().as_micros()
        );
        reactor.free(conn)?;
    }
    Ok(())
}

/// Reads one response with a Content-Length body, waiting for readiness on
/// `WouldBlock`. Returns the status line and the body length.
fn read_response(
    reactor: &mut Reactor<usize>,
    events: &mut Events<usize>,
    conn: &mut Connection,
) -> Result<(String, usize)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head.lines().next().unwrap_or_default().to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                })
                .map(|(_, v)| v.trim().parse::<usize>())
                .transpose()?
                .ok_or(
                    "the response has no Content-Length (chunked bodies are not handled here)",
                )?;
            if buf.len() >= end + 4 + len {
                return Ok((status, len));
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection mid-response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("no response within 10 s".into());
                }
                reactor.poll(events, Some(Duration::from_millis(100)))?;
                events.drain().for_each(drop);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A tiny keep-alive server for the no-argument run.
fn local_server() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let body = "hello from http_get's own server\n";
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(port)
}
