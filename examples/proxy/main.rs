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
//! Options: `--listen ADDR` (default 127.0.0.1:8080), `--upstream ADDR`
//! (without it, the example's own loopback upstream), `--threads N`
//! (default: one per core), `--connect-timeout MS`, `--upstream-timeout MS`,
//! `--client-timeout MS`. Addresses are numeric: the pool does not resolve
//! names.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

mod engine;
mod http1;
mod selftest;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use engine::{Config, Proxy};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return self_test();
    }
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    let mut upstream = None;
    let mut config = Config::new(listen, listen);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .map(String::as_str)
        };
        let millis = |v: &str| v.parse().map(Duration::from_millis);
        match flag.as_str() {
            "--listen" => listen = value()?.parse()?,
            "--upstream" => upstream = Some(value()?.parse::<SocketAddr>()?),
            "--threads" => config.threads = value()?.parse()?,
            "--connect-timeout" => config.connect_timeout = millis(value()?)?,
            "--upstream-timeout" => config.upstream_timeout = millis(value()?)?,
            "--client-timeout" => config.client_timeout = millis(value()?)?,
            _ => return Err(usage(&format!("unknown argument {flag:?}")).into()),
        }
    }
    config.listen = listen;
    config.upstream = match upstream {
        Some(up) => up,
        None => {
            let up = selftest::upstream()?;
            println!("upstream: the example's own, on {up}");
            up
        }
    };
    let proxy = Proxy::start(config.clone())?;
    println!(
        "proxy listening on http://{} ({} threads), upstream {}",
        proxy.addr(),
        config.threads,
        config.upstream
    );
    let mut last = proxy.totals();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = proxy.totals();
        if now != last {
            let per_thread: Vec<String> = proxy
                .per_worker()
                .map(|w| format!("{}/{}", w.clients, w.requests))
                .collect();
            println!(
                "{} requests, {} upstream connections opened, {} retries, {} × 502, {} × 504, \
                 {} clients; per thread (clients/requests): {}",
                now.requests,
                now.upstream_connects,
                now.retries,
                now.bad_gateway,
                now.gateway_timeout,
                now.clients,
                per_thread.join(", ")
            );
            last = now;
        }
    }
}

fn usage(problem: &str) -> String {
    format!(
        "{problem}\nusage: proxy [--listen ADDR] [--upstream ADDR] [--threads N] \
         [--connect-timeout MS] [--upstream-timeout MS] [--client-timeout MS]"
    )
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
