//! The peers, each measured the way its users run it: hyper-util's legacy
//! `Client`, deadpool and bb8 on a current-thread tokio runtime; a bare mio
//! connect loop; a `BinaryHeap` timer queue; wrk as a subprocess. The
//! original Perl module, also a subprocess, is in `poe.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::client::HttpRun;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// hyper-util's pooled client, `conc` tasks looping GET → body.
pub fn hyper_http(port: u16, conc: usize, limit: Duration, max_requests: u64) -> HttpRun {
    use hyper_util::client::legacy::connect::HttpConnector;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true); // as ours: fair latency
    let uri = format!("http://127.0.0.1:{port}/");
    hyper_http_with(connector, &uri, conc, limit, max_requests)
}

/// [`hyper_http`] through `connector` (a Unix-domain one, say), GETting
/// `uri`.
pub fn hyper_http_with<C>(
    connector: C,
    uri: &str,
    conc: usize,
    limit: Duration,
    max_requests: u64,
) -> HttpRun
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let uri: hyper::Uri = uri.parse().expect("uri");
    runtime().block_on(async move {
        let client: Client<C, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(conc)
            .build(connector);
        let start = Instant::now();
        let deadline = start + limit;
        let per_task = max_requests.div_ceil(conc as u64);
        let tasks: Vec<_> = (0..conc)
            .map(|_| {
                let (client, uri) = (client.clone(), uri.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(1 << 14);
                    let mut n = 0;
                    while Instant::now() < deadline && n < per_task {
                        let t = Instant::now();
                        let resp = client.get(uri.clone()).await.expect("hyper get");
                        let _body = resp.into_body().collect().await.expect("hyper body");
                        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        n += 1;
                    }
                    lat
                })
            })
            .collect();
        let mut latencies_us = Vec::new();
        for t in tasks {
            latencies_us.extend(t.await.expect("task"));
        }
        HttpRun {
            requests: latencies_us.len() as u64,
            elapsed: start.elapsed(),
            latencies_us,
        }
    })
}

/// wrk's requests/s and p99 (µs), or `None` if wrk is missing or failed.
pub fn wrk(port: u16, conc: usize, secs: f64) -> Option<(f64, f64)> {
    let run = wrk_run(&format!("http://127.0.0.1:{port}/"), conc, secs)?;
    Some((run.rps, run.p99_us))
}

/// What one wrk run printed.
#[derive(Clone, Copy, Debug)]
pub struct WrkRun {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Requests completed.
    pub requests: u64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

/// Runs wrk (one thread, `conc` connections, `--latency`) against `url` for
/// `secs` (rounded up to whole seconds, at least 1). `None` if wrk is
/// missing, failed, or printed something unexpected.
pub fn wrk_run(url: &str, conc: usize, secs: f64) -> Option<WrkRun> {
    let secs = (secs.ceil() as u64).max(1);
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{conc}"),
            &format!("-d{secs}s"),
            "--latency",
        ])
        .arg(url)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// Parses wrk's `--latency` report.
pub fn parse_wrk(text: &str) -> Option<WrkRun> {
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
    };
    let rps = line("Requests/sec:")?.parse().ok()?;
    let p50 = parse_wrk_time(line("50%")?)?;
    let p99 = parse_wrk_time(line("99%")?)?;
    // "  123456 requests in 3.00s, 17.66MB read"
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())?;
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket_errors: u64 = line("Socket errors:").map_or(0, |v| {
        v.split(',')
            .filter_map(|kv| kv.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    });
    let non_2xx: u64 = line("Non-2xx or 3xx responses:").map_or(0, |v| v.parse().unwrap_or(0));
    Some(WrkRun {
        rps,
        p50_us: p50,
        p99_us: p99,
        requests,
        errors: socket_errors + non_2xx,
    })
}

/// wrk prints latencies like `45.00us`, `1.20ms`, `2.00s`.
fn parse_wrk_time(v: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * mult)
}

/// A manager for deadpool and bb8 whose objects cost nothing to make: the
/// figure is the pool's own overhead.
pub struct Noop;

impl deadpool::managed::Manager for Noop {
    type Type = ();
    type Error = Infallible;
    async fn create(&self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn recycle(
        &self,
        _: &mut (),
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

impl bb8::ManageConnection for Noop {
    type Connection = ();
    type Error = Infallible;
    async fn connect(&self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn is_valid(&self, _: &mut ()) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// deadpool get + drop, `batch` objects held at once; cycles per second.
pub fn deadpool_hits(batch: usize, limit: Duration) -> f64 {
    runtime().block_on(async move {
        let pool = deadpool::managed::Pool::<Noop>::builder(Noop)
            .max_size(batch)
            .build()
            .expect("deadpool");
        let mut held = Vec::with_capacity(batch);
        let mut cycles = 0u64;
        let start = Instant::now();
        while start.elapsed() < limit {
            for _ in 0..256 {
                for _ in 0..batch {
                    held.push(pool.get().await.expect("deadpool get"));
                }
                held.clear();
                cycles += batch as u64;
            }
        }
        cycles as f64 / start.elapsed().as_secs_f64()
    })
}

/// bb8 get + drop, `batch` objects held at once; cycles per second.
pub fn bb8_hits(batch: usize, limit: Duration) -> f64 {
    runtime().block_on(async move {
        let pool = bb8::Pool::builder()
            .max_size(batch as u32)
            .build(Noop)
            .await
            .expect("bb8");
        let mut cycles = 0u64;
        let start = Instant::now();
        while start.elapsed() < limit {
            for _ in 0..256 {
                let mut held = Vec::with_capacity(batch);
                for _ in 0..batch {
                    held.push(pool.get().await.expect("bb8 get"));
                }
                drop(held);
                cycles += batch as u64;
            }
        }
        cycles as f64 / start.elapsed().as_secs_f64()
    })
}

/// A nonblocking mio connect loop with no pool: connect, wait writable,
/// check, close. Connections per second.
pub fn mio_bare_connects(addr: SocketAddr, limit: Duration) -> f64 {
    use mio::{Events, Interest, Poll, Token};
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(8);
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < limit {
        let mut s = mio::net::TcpStream::connect(addr).expect("connect");
        let _ = s.set_nodelay(true); // as ours
        poll.registry()
            .register(&mut s, Token(0), Interest::WRITABLE)
            .expect("register");
        loop {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .expect("poll");
            if events.iter().any(|e| e.is_writable())
                && s.take_error().ok().flatten().is_none()
                && s.peer_addr().is_ok()
            {
                break;
            }
        }
        crate::abort_on_close(&s);
        drop(s);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// A binary heap of timers with lazy cancellation: cancelling bumps the
/// slot's generation; stale entries are skipped when they reach the top.
pub struct HeapTimers {
    heap: BinaryHeap<Reverse<(u64, u32, u32, u32)>>,
    generation: Vec<u32>,
    free: Vec<u32>,
}

impl HeapTimers {
    pub fn new() -> Self {
        HeapTimers {
            heap: BinaryHeap::new(),
            generation: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl crate::wheelbench::Timers for HeapTimers {
    type Key = (u32, u32);
    fn insert(&mut self, deadline: u64, id: u32) -> (u32, u32) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.generation.push(0);
            self.generation.len() as u32 - 1
        });
        let g = self.generation[slot as usize];
        self.heap.push(Reverse((deadline, slot, g, id)));
        (slot, g)
    }
    fn cancel(&mut self, (slot, g): (u32, u32)) {
        if self.generation[slot as usize] == g {
            self.generation[slot as usize] += 1;
            self.free.push(slot);
        }
    }
    fn poll(&mut self, now: u64) -> Option<u32> {
        while let Some(&Reverse((deadline, slot, g, id))) = self.heap.peek() {
            if deadline > now {
                return None;
            }
            self.heap.pop();
            if self.generation[slot as usize] == g {
                self.generation[slot as usize] += 1;
                self.free.push(slot);
                return Some(id);
            }
        }
        None
    }
}
