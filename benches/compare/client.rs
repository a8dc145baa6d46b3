//! Our side of the HTTP figures: a minimal HTTP/1.1 keep-alive client on the
//! public API only. Each of `conc` lanes loops allocate → write GET → read the
//! response by Content-Length → free, driven by one reactor's events.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use keepalive::{Config, Connection, Event, Events, Reactor, Request};

use crate::LOCALHOST;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// What one run measured.
pub struct HttpRun {
    pub requests: u64,
    pub elapsed: Duration,
    /// Per request, allocate to last byte, in microseconds.
    pub latencies_us: Vec<u32>,
}

impl HttpRun {
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

struct Lane {
    conn: Option<Connection>,
    started: Instant,
    buf: Vec<u8>,
}

/// Runs until `limit` passes or `max_requests` complete, whichever first.
pub fn run(port: u16, conc: usize, limit: Duration, max_requests: u64) -> HttpRun {
    run_with(conc, limit, max_requests, |lane| {
        Request::new("http", LOCALHOST, port, lane)
    })
}

/// [`run`] with the request for each lane made by `request` (a Unix-domain
/// target, say).
pub fn run_with(
    conc: usize,
    limit: Duration,
    max_requests: u64,
    request: impl Fn(usize) -> Request<usize>,
) -> HttpRun {
    let config = Config::default()
        .with_max_per_host(conc)
        .with_max_open(conc.max(128));
    let mut ka: Reactor<usize> = Reactor::new(config).expect("reactor");
    let mut events = Events::with_capacity(conc * 2);
    let mut lanes: Vec<Lane> = (0..conc)
        .map(|_| Lane {
            conn: None,
            started: Instant::now(),
            buf: Vec::with_capacity(512),
        })
        .collect();
    let mut latencies_us = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    let deadline = start + limit;
    let mut issued = 0u64;
    let mut done = 0u64;
    for (i, lane) in lanes.iter_mut().enumerate() {
        if issued < max_requests {
            lane.started = Instant::now();
            ka.allocate(request(i)).expect("allocate");
            issued += 1;
        }
    }
    while done < issued {
        ka.poll(&mut events, Some(Duration::from_millis(100)))
            .expect("poll");
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "HTTP run stalled"
        );
        for event in events.drain() {
            let lane = match event {
                Event::Outcome(o) => {
                    // Write, then wait for readiness: reading right away
                    // would mostly find nothing and cost an EAGAIN read.
                    let mut conn = o.result.expect("connection");
                    conn.write_all(GET).expect("write");
                    lanes[o.context].conn = Some(conn);
                    continue;
                }
                Event::Ready(r) => match lanes
                    .iter()
                    .position(|l| l.conn.as_ref().is_some_and(|c| c.id() == r.conn))
                {
                    Some(i) => i,
                    None => continue,
                },
                _ => continue,
            };
            if !read_response(&mut lanes[lane]) {
                continue;
            }
            let l = &mut lanes[lane];
            latencies_us.push(l.started.elapsed().as_micros().min(u32::MAX as u128) as u32);
            done += 1;
            if let Some(conn) = l.conn.take() {
                ka.free(conn).expect("free");
            }
            if Instant::now() < deadline && issued < max_requests {
                l.started = Instant::now();
                ka.allocate(request(lane)).expect("allocate");
                issued += 1;
            }
        }
    }
    HttpRun {
        requests: done,
        elapsed: start.elapsed(),
        latencies_us,
    }
}

/// Reads what is there; true once a whole response (by Content-Length) is in.
/// A read that fills less than the buffer is the last one needed: the
/// connection then knows its socket is drained without another syscall.
fn read_response(lane: &mut Lane) -> bool {
    let Some(conn) = lane.conn.as_mut() else {
        return false;
    };
    let mut chunk = [0u8; 4096];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => panic!("server closed the connection"),
            Ok(n) => {
                lane.buf.extend_from_slice(&chunk[..n]);
                if complete(&lane.buf) {
                    lane.buf.clear();
                    return true;
                }
                if n < chunk.len() {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = &buf[..end];
    let len = head
        .split(|&b| b == b'\n')
        .find_map(|line| {
            let line = std::str::from_utf8(line).ok()?.trim();
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    buf.len() >= end + 4 + len
}
