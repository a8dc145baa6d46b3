//! An HTTP/1.1 reverse proxy on the pool: keep-alive to clients and to the
//! upstream, Content-Length and chunked bodies both ways, backpressure,
//! 502/504 answers, one retry on a new connection (the rule is in
//! `engine.rs`). One thread per core, each with its own `SO_REUSEPORT`
//! listener and its own reactor, and everything of a thread in that
//! reactor's loop.
//!
//! ```sh
//! cargo run --release --example proxy -- --listen 127.0.0.1:8080 --upstream 127.0.0.1:8081 --threads 2
//! cargo run --release --example proxy     # its own loopback upstream and a short self-test
//! ```
//!
//! Options (times in milliseconds):
//!
//! | option | default | what it bounds |
//! |---|---|---|
//! | `--listen ADDR` | 127.0.0.1:8080 | where clients connect |
//! | `--upstream HOST:PORT` | the example's own | the upstream: an address, or a name the pool resolves (and follows as its answers change) |
//! | `--threads N` | one per core | workers, each a listener and a reactor |
//! | `--max-clients N` | half of `RLIMIT_NOFILE` | clients at once; past it, 503 and close |
//! | `--header-timeout MS` | 10 000 | first byte of a request head to its end (slowloris): 408, close |
//! | `--client-timeout MS` | 60 000 | an idle client, a stalled request body (408), a client not reading |
//! | `--connect-timeout MS` | 5 000 | upstream lookup, connect and queue wait: 504 |
//! | `--upstream-timeout MS` | 30 000 | end of a request to its response head: 504 |
//! | `--upstream-keep-alive MS` | 30 000 | an idle pooled upstream connection |
//! | `--drain-timeout MS` | 10 000 | on SIGTERM/SIGINT, requests in flight may finish within it |
//! | `--busy-poll MICROSECONDS` | 0 (off) | a worker polls this long without sleeping after its last events: lower latency at low load, for up to a core of CPU per worker that no other thread wanted (HAProxy's `busy-polling`, bounded and yielding) |
//!
//! Signals: SIGTERM and SIGINT stop accepting, let the requests in flight
//! finish (up to `--drain-timeout`), close idle clients and pooled
//! upstream connections, and exit 0. SIGHUP is ignored (there is nothing
//! to reload: a named upstream is re-resolved as its answers expire).

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod admission;
mod cli;
mod engine;
mod http1;
mod selftest;
mod upstream;

use std::time::{Duration, Instant};

use engine::{Config, Proxy};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return self_test();
    }
    cli::run(&args)
}

/// The no-argument run: the example's own upstream, the proxy in front of
/// it, a few requests through it, and what happened.
fn self_test() -> Result<()> {
    let upstream = selftest::upstream()?;
    let mut config = Config::new("127.0.0.1:0".parse()?, upstream);
    config.threads = 2;
    let proxy = Proxy::start(config)?;
    println!(
        "proxy listening on http://{} (2 threads), upstream {upstream} (the example's own)",
        proxy.addr()
    );
    println!("self-test:");
    let started = Instant::now();
    let cap = Duration::from_secs(10);
    let mut client = selftest::Client::connect(proxy.addr(), cap)?;
    let check = |what: &str, ok: bool, detail: String| -> Result<()> {
        println!("  {} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
        if ok {
            Ok(())
        } else {
            Err(format!("self-test failed: {what}").into())
        }
    };
    for n in 1..=3 {
        let r = client.get("/")?;
        check(
            &format!("GET / #{n} on one kept-alive client connection"),
            r.status == 200,
            format!("{} {:?}", r.status, r.body_str().trim_end()),
        )?;
    }
    let body = b"a body with a Content-Length".repeat(100);
    let r = client.send_body("POST", "/echo", &body)?;
    check(
        "POST with a Content-Length body, echoed",
        r.status == 200 && r.body == body,
        format!("{} bytes back", r.body.len()),
    )?;
    let body = b"a chunked body ".repeat(2000);
    let r = client.send_chunked("POST", "/chunked/echo", &body, 777)?;
    check(
        "POST with a chunked body, echoed chunked",
        r.status == 200 && r.is_chunked() && r.body == body,
        format!("{} bytes back, chunked: {}", r.body.len(), r.is_chunked()),
    )?;
    // A proxy in front of a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut config = Config::new("127.0.0.1:0".parse()?, closed);
    config.threads = 1;
    let broken = Proxy::start(config)?;
    let r = selftest::Client::connect(broken.addr(), cap)?.get("/")?;
    check(
        "upstream refusing connections",
        r.status == 502,
        format!("{} {:?}", r.status, r.body_str().trim_end()),
    )?;
    broken.stop()?;
    let t = proxy.totals();
    println!(
        "passed in {} ms: {} requests relayed over {} upstream connection(s) opened",
        started.elapsed().as_millis(),
        t.requests,
        t.upstream_connects
    );
    proxy.stop()?;
    Ok(())
}
