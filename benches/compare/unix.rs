//! HTTP keep-alive GETs to one nginx over a Unix-domain socket and over
//! loopback TCP, in one run (`http_unix_c1`, `http_unix_c16`): ours over
//! each, and hyper-util's legacy `Client` over each, its Unix side through
//! a connector of our own (a `tower_service::Service<Uri>` that opens a
//! tokio `UnixStream`; hyper-util ships none). Rounds are interleaved:
//! ours over Unix, ours over TCP, hyper-util over Unix, hyper-util over TCP.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use keepalive::Request;

use crate::nginx::{Nginx, Options};
use crate::{Figure, Settings, client, median, peers, percentile};

/// hyper-util's connector for one Unix-domain path, whatever the URI says.
#[derive(Clone)]
struct UnixConnector(&'static Path);

impl tower_service::Service<hyper::Uri> for UnixConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let path = self.0;
        Box::pin(async move {
            tokio::net::UnixStream::connect(path)
                .await
                .map(TokioIo::new)
        })
    }
}

pub fn figures(settings: Settings) -> Vec<Figure> {
    let options = Options {
        unix: true,
        ..Options::default()
    };
    let Some(nginx) = Nginx::start_http_with(100_000_000, "600s", options) else {
        println!("http_unix: skipped (nginx not installed)\n");
        return Vec::new();
    };
    let path: &'static Path = match nginx.unix_path.clone() {
        Some(p) => Box::leak(p.into_boxed_path()),
        None => return Vec::new(),
    };
    let port = nginx.port();
    println!(
        "http_unix: nginx on {} and unix:{} (one server, both listeners)\n",
        nginx.addr,
        path.display()
    );
    let mut figures = Vec::new();
    for (name, conc) in [("http_unix_c1", 1usize), ("http_unix_c16", 16)] {
        let max = if settings.smoke { 200 } else { u64::MAX };
        let ours_unix =
            |limit, max| client::run_with(conc, limit, max, |i| Request::unix("http", path, i));
        let ours_tcp = |limit, max| client::run(port, conc, limit, max);
        let hyper_unix = |limit, max| {
            peers::hyper_http_with(UnixConnector(path), "http://localhost/", conc, limit, max)
        };
        let hyper_tcp = |limit, max| peers::hyper_http(port, conc, limit, max);
        let sides: [&dyn Fn(Duration, u64) -> client::HttpRun; 4] =
            [&ours_unix, &ours_tcp, &hyper_unix, &hyper_tcp];
        for side in sides {
            side(Duration::from_millis(100), max.min(1000)); // warm up
        }
        let mut runs: [Vec<client::HttpRun>; 4] = Default::default();
        for _ in 0..settings.rounds {
            for (side, out) in sides.iter().zip(runs.iter_mut()) {
                out.push(side(settings.round(), max));
            }
        }
        let [rps, p99]: [Vec<f64>; 2] = [
            runs.iter()
                .map(|r| median(r.iter().map(client::HttpRun::per_sec).collect()))
                .collect(),
            runs.iter_mut()
                .map(|r| {
                    median(
                        r.iter_mut()
                            .map(|run| percentile(&mut run.latencies_us, 0.99))
                            .collect(),
                    )
                })
                .collect(),
        ];
        figures.push(
            Figure::new(name, "req/s", true, rps[0])
                .peer("ours over TCP", rps[1])
                .peer("hyper-util (unix)", rps[2])
                .peer("hyper-util (TCP)", rps[3])
                .note(format!(
                    "unix/TCP: ours {:.2}×, hyper-util {:.2}×; p99 µs unix/TCP: ours {:.0}/{:.0}, hyper-util {:.0}/{:.0}",
                    rps[0] / rps[1],
                    rps[2] / rps[3],
                    p99[0],
                    p99[1],
                    p99[2],
                    p99[3]
                )),
        );
    }
    figures
}
