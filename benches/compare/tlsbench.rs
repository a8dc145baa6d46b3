//! `tls_connect`: new TLS connections per second, and the median time from
//! `allocate` to the handshake's outcome, against nginx (OpenSSL, no ML-KEM
//! in Debian 12's 3.0) and a rustls server (ML-KEM with the default
//! provider). Each connection makes one request (so TLS 1.3 session tickets
//! arrive) and is closed.
//!
//! Ours is the build's provider (aws-lc-rs, X25519MLKEM768 first, by
//! default); the peer is the ring provider keepalive used before, with
//! classical key exchange, when the bench is built with `--features ring`
//! (`cargo bench --bench compare --features ring`). Full handshakes run with
//! resumption off; resumed ones with rustls's session cache, as the default
//! configuration has it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use keepalive::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use keepalive::rustls::{self, ClientConfig, ServerConfig, client::Resumption, crypto};
use keepalive::{Config, Connection, Event, Events, Reactor, Request};

use crate::nginx::{Nginx, Site};
use crate::{CAP, Figure, LOCALHOST, Settings, abort_on_close, interleaved, median};

/// A throwaway certificate for `localhost`.
struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

fn cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    Cert {
        der: c.cert.der().clone(),
        key: c.signing_key.serialize_der(),
        cert_pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
    }
}

fn client_config(
    cert: &Cert,
    provider: Arc<crypto::CryptoProvider>,
    resume: bool,
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).expect("root");
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = Resumption::disabled();
    }
    Arc::new(config)
}

/// A rustls HTTP server, a thread per connection: one response per request
/// until the client closes.
fn rustls_server(cert: &Cert) -> SocketAddr {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone()));
    let config = Arc::new(
        ServerConfig::builder_with_provider(keepalive::tls_crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der.clone()], key)
            .expect("server cert"),
    );
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            thread::spawn(move || {
                let _ = tcp.set_nodelay(true);
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while let Ok(1) = tls.read(&mut byte) {
                    head.push(byte[0]);
                    if head.ends_with(b"\r\n\r\n") {
                        head.clear();
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
                        if tls.write_all(reply).and_then(|()| tls.flush()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn nginx_server(cert: &Cert) -> Option<Nginx> {
    Nginx::start(Site {
        listen_extra: "ssl",
        server: "ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate cert.pem; \
                 ssl_certificate_key key.pem; location / { return 200 \"hello\\n\"; }",
        files: vec![
            ("cert.pem", cert.cert_pem.clone().into_bytes()),
            ("key.pem", cert.key_pem.clone().into_bytes()),
        ],
    })
}

/// Waits until `conn`'s socket is readable (or a second passes).
fn wait_readable(conn: &Connection) {
    let mut pfd = libc::pollfd {
        fd: conn.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid, owned pollfd, for the length given.
    unsafe { libc::poll(&mut pfd, 1, 1000) };
}

/// One request and its response (`hello\n` ends both servers' bodies).
fn one_request(conn: &mut Connection) {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    conn.flush().expect("flush");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let start = Instant::now();
    while !buf.ends_with(b"hello\n") {
        match conn.read(&mut chunk) {
            Ok(0) => panic!("server closed mid-response"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < CAP, "no response");
                wait_readable(conn);
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// A side: connects, requests, closes, for `limit`; conn/s, and each
/// handshake's microseconds pushed to `handshakes`.
fn side(
    config: Arc<ClientConfig>,
    port: u16,
    handshakes: &mut Vec<f64>,
) -> impl FnMut(Duration) -> f64 + '_ {
    let mut ka: Reactor<()> =
        Reactor::new(Config::default().with_tls_config(config)).expect("reactor");
    let mut events = Events::with_capacity(8);
    move |limit| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < limit {
            let t = Instant::now();
            ka.allocate(Request::new("https", LOCALHOST, port, ()).server_name("localhost"))
                .expect("allocate");
            let mut conn = 'wait: loop {
                ka.poll(&mut events, Some(CAP)).expect("poll");
                for e in events.drain() {
                    if let Event::Outcome(o) = e {
                        break 'wait o.result.expect("TLS connect");
                    }
                }
            };
            handshakes.push(t.elapsed().as_secs_f64() * 1e6);
            one_request(&mut conn);
            abort_on_close(&conn);
            conn.close();
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    }
}

/// The ring provider, the peer, when the bench is built with it.
fn ring_provider() -> Option<Arc<crypto::CryptoProvider>> {
    #[cfg(feature = "ring")]
    return Some(Arc::new(keepalive::internals::ring_provider()));
    #[cfg(not(feature = "ring"))]
    None
}

/// A burst of 64 requests on a fresh reactor, each to its own connection
/// (`max_per_host` 64): microseconds from the burst's start to each
/// outcome. `warm`: the key was kept warm with 64 idle connections first
/// ([`Reactor::keep_warm`]), so the burst pays no handshake.
fn burst(config: Arc<ClientConfig>, port: u16, warm: bool, out: &mut Vec<f64>) {
    let mut ka: Reactor<()> = Reactor::new(
        Config::default()
            .with_tls_config(config)
            .with_max_per_host(64),
    )
    .expect("reactor");
    let mut events = Events::with_capacity(128);
    let request = || Request::new("https", LOCALHOST, port, ()).server_name("localhost");
    if warm {
        ka.keep_warm(request(), 64).expect("keep_warm");
        let start = Instant::now();
        while ka.idle_count() < 64 {
            assert!(start.elapsed() < CAP, "warm-up");
            ka.poll(&mut events, Some(Duration::from_millis(10)))
                .expect("poll");
            events.drain().for_each(drop);
        }
        // Warm keys are topped up each tick; stop it before the burst so
        // the measured ticks do only the burst's work.
        ka.keep_warm(request(), 0).expect("keep_warm");
    }
    let start = Instant::now();
    for _ in 0..64 {
        ka.allocate(request()).expect("allocate");
    }
    let mut held = Vec::with_capacity(64);
    while held.len() < 64 {
        ka.poll(&mut events, Some(CAP)).expect("poll");
        for e in events.drain() {
            if let Event::Outcome(o) = e {
                out.push(start.elapsed().as_secs_f64() * 1e6);
                held.push(o.result.expect("TLS connect"));
            }
        }
    }
    for conn in held {
        abort_on_close(&conn);
        conn.close();
    }
}

/// `tls_burst_p99`: the p99 of a burst's 64 connections against a cold
/// pool and a warm one ([`Reactor::keep_warm`]), over `rounds` bursts each,
/// interleaved.
fn burst_figure(cert: &Cert, port: u16, server: &str, rounds: usize) -> Figure {
    let config = client_config(cert, keepalive::tls_crypto_provider(), true);
    let (mut warm, mut cold) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        burst(config.clone(), port, false, &mut cold);
        burst(config.clone(), port, true, &mut warm);
    }
    let p99 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get((v.len() * 99).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    let (warm_median, cold_median) = (median(warm.clone()), median(cold.clone()));
    Figure::new("tls_burst_p99", "µs", false, p99(warm))
        .peer("cold", p99(cold))
        .note(format!(
            "64 connections at once to {server}, {rounds} bursts; median {warm_median:.0} µs warm, {cold_median:.0} µs cold"
        ))
}

pub(crate) fn figures(settings: Settings) -> Vec<Figure> {
    let cert = cert();
    let rustls_addr = rustls_server(&cert);
    let nginx = nginx_server(&cert);
    let mut servers = vec![("rustls", rustls_addr.port())];
    match &nginx {
        Some(n) => servers.push(("nginx", n.port())),
        None => println!("tls_connect: nginx skipped (not installed)"),
    }
    if ring_provider().is_none() {
        println!("tls_connect: no ring column (build with --features ring for it)");
    }
    let mut figures = Vec::new();
    let (burst_server, burst_port) = servers[servers.len() - 1];
    figures.push(burst_figure(
        &cert,
        burst_port,
        burst_server,
        if settings.smoke { 1 } else { 20 },
    ));
    for (server, port) in servers {
        for resume in [false, true] {
            let (mut ours_lat, mut ring_lat) = (Vec::new(), Vec::new());
            let ours_config = client_config(&cert, keepalive::tls_crypto_provider(), resume);
            let mut ours = side(ours_config, port, &mut ours_lat);
            let ring_config = ring_provider().map(|p| client_config(&cert, p, resume));
            let mut ring = ring_config.map(|c| side(c, port, &mut ring_lat));
            let mut sides: Vec<&mut dyn FnMut(Duration) -> f64> = vec![&mut ours];
            if let Some(r) = ring.as_mut() {
                sides.push(r);
            }
            // Handshake rates follow the kernel's port state, as connects
            // do: many short rounds let both sides see the same.
            let rounds = if settings.smoke { 1 } else { 10 };
            let r = interleaved(Settings { rounds, ..settings }, sides);
            drop((ours, ring));
            let name = match (server, resume) {
                ("rustls", false) => "tls_connect_rustls",
                ("rustls", true) => "tls_resume_rustls",
                (_, false) => "tls_connect_nginx",
                (_, true) => "tls_resume_nginx",
            };
            let mut note = format!("median handshake {:.0} µs", median(ours_lat));
            let mut figure = Figure::new(name, "conn/s", true, r[0]);
            if let Some(&ring_rate) = r.get(1) {
                figure = figure.peer("ring", ring_rate);
                note.push_str(&format!(" (ring {:.0} µs)", median(ring_lat)));
            }
            figures.push(figure.note(note));
        }
    }
    figures
}
