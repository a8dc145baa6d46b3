//! The proxy's command line: its options, and the run until a signal.
//! The example's `main` and the benchmark (which runs itself as the proxy
//! for its soak) share it.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::engine::{Config, Proxy};
use super::upstream::Upstream;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Parses `args` (the options, without the program name) and serves until
/// SIGTERM or SIGINT has drained the proxy, printing its counters every
/// two seconds while they change.
///
/// # Errors
///
/// A bad option (with the usage), or what stopped a worker.
pub fn run(args: &[String]) -> Result<()> {
    let (mut config, upstream_given) = parse(args).map_err(|problem| usage(&problem))?;
    if !upstream_given {
        let up = super::selftest::upstream()?;
        println!("upstream: the example's own, on {up}");
        config.upstream = up.into();
    }
    config.signals = true;
    let descriptors = super::admission::raise_descriptor_limit();
    let (clients, upstream) = (config.client_limit(), config.upstream_sockets());
    if config.clients_exceed_descriptors() {
        eprintln!(
            "warning: --max-clients {clients} asks for more descriptors than the limit ({}) \
             leaves beside the upstream's quarter ({upstream} sockets per thread): clients past \
             it are answered 503 at accept. Raise the limit (ulimit -n) or lower --max-clients.",
            descriptors.map_or("unlimited".to_owned(), |n| n.to_string())
        );
    }
    let proxy = Proxy::start(config.clone())?;
    println!(
        "proxy listening on http://{} ({} threads, at most {clients} clients, {upstream} \
         upstream sockets per thread), upstream {}",
        proxy.addr(),
        config.threads,
        config.upstream
    );
    let mut last = proxy.totals();
    // Until a signal (or an error) ends the workers.
    while !proxy.wait_ended(Duration::from_secs(2)) {
        let now = proxy.totals();
        if now != last {
            let per_thread: Vec<String> = proxy
                .per_worker()
                .map(|w| format!("{}/{}", w.clients, w.requests))
                .collect();
            println!(
                "{} requests, {} upstream connections opened, {} retries, {} × 502, {} × 504, \
                 {} × 408, {} refused, {} aborted, {} clients; per thread (clients/requests): {}",
                now.requests,
                now.upstream_connects,
                now.retries,
                now.bad_gateway,
                now.gateway_timeout,
                now.request_timeouts,
                now.refused,
                now.aborted,
                now.clients,
                per_thread.join(", ")
            );
            last = now;
        }
    }
    let t = proxy.totals();
    proxy.stop()?;
    println!("stopped: {} requests relayed", t.requests);
    Ok(())
}

/// The command line, and whether it named an upstream (without one, the
/// example serves from an upstream of its own).
pub fn parse(args: &[String]) -> std::result::Result<(Config, bool), String> {
    let mut config = Config::new(
        "127.0.0.1:8080".parse().map_err(|_| "listen")?,
        Upstream {
            host: keepalive::Host::Addr(Ipv4Addr::LOCALHOST.into()),
            port: 0,
        },
    );
    let mut upstream_given = false;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .map(String::as_str)
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v:?}: {e}"));
        let millis = |v: &str| number(v).map(Duration::from_millis);
        let count = |v: &str| {
            number(v)
                .and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
                .and_then(|n| {
                    if n == 0 {
                        Err(format!("{flag} must be at least 1"))
                    } else {
                        Ok(n)
                    }
                })
        };
        match flag.as_str() {
            "--listen" => {
                config.listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value:?}: {e}"))?;
            }
            "--upstream" => {
                config.upstream = Upstream::parse(value)?;
                upstream_given = true;
            }
            "--threads" => config.threads = count(value)?,
            "--max-clients" => config.max_clients = Some(count(value)?),
            "--header-timeout" => config.header_timeout = millis(value)?,
            "--client-timeout" => config.client_timeout = millis(value)?,
            "--connect-timeout" => config.connect_timeout = millis(value)?,
            "--upstream-timeout" => config.upstream_timeout = millis(value)?,
            "--upstream-keep-alive" => config.upstream_keep_alive = millis(value)?,
            "--drain-timeout" => config.drain_timeout = millis(value)?,
            "--busy-poll" => {
                let spin = Duration::from_micros(number(value)?);
                // The library's own bound, said before any worker starts.
                keepalive::Config::default()
                    .with_busy_poll(spin)
                    .validate()
                    .map_err(|e| format!("--busy-poll {value}: {e}"))?;
                config.busy_poll = spin;
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok((config, upstream_given))
}

pub fn usage(problem: &str) -> String {
    format!(
        "{problem}\nusage: proxy [--listen ADDR] [--upstream HOST:PORT] [--threads N] \
         [--max-clients N] [--header-timeout MS] [--client-timeout MS] [--connect-timeout MS] \
         [--upstream-timeout MS] [--upstream-keep-alive MS] [--drain-timeout MS] \
         [--busy-poll MICROSECONDS]"
    )
}
