//! The pool at work, against its own loopback HTTP server: no network needed.
//!
//! ```sh
//! cargo run --release --example demo
//! ```
//!
//! Each step allocates through the reactor, does one HTTP/1.1 GET where it
//! got a connection, and prints what the outcome said and how long it took.

#![allow(
    clippy::disallowed_methods,
    reason = "tests, benchmarks and examples measure wall time; only the library is held to one clock read"
)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use keepalive::{Config, Connection, Event, Events, FromCache, Outcome, Reactor, Request};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn main() -> Result<()> {
    let server = Server::start()?;
    println!(
        "keepalive demo: an HTTP/1.1 keep-alive server is listening on {}\n",
        server.addr
    );

    // 1. A new connection, then 2. the same one again from the pool.
    let mut reactor: Reactor<&str> = Reactor::new(Config::default())?;
    let mut events = Events::new();
    let first = step(
        &mut reactor,
        &mut events,
        "1. first request",
        server.addr.port(),
    )?;
    expect(first.from_cache().is_none(), "a new connection")?;
    reactor.free(first)?;
    let again = step(
        &mut reactor,
        &mut events,
        "2. same target, after free",
        server.addr.port(),
    )?;
    expect(
        again.from_cache() == Some(FromCache::Immediate),
        "an Immediate reuse",
    )?;
    reactor.free(again)?;

    // 3. max_per_host 1: the second request waits for the first connection.
    println!();
    let mut strict: Reactor<&str> = Reactor::new(Config::default().with_max_per_host(1))?;
    let held = step(
        &mut strict,
        &mut events,
        "3. max_per_host 1, first request",
        server.addr.port(),
    )?;
    let t = Instant::now();
    strict.allocate(Request::new(
        "http",
        LOCALHOST,
        server.addr.port(),
        "second",
    ))?;
    strict.poll(&mut events, Some(Duration::from_millis(50)))?;
    let waiting = events
        .iter()
        .filter(|e| matches!(e, Event::Outcome(_)))
        .count();
    println!(
        "   second request allocated: {waiting} outcomes after 50 ms (it waits); freeing the first"
    );
    expect(waiting == 0, "the second request to wait")?;
    strict.free(held)?;
    let outcome = wait_outcome(&mut strict, &mut events)?;
    let conn = outcome.result?;
    report("   second request", t, &conn);
    expect(
        conn.from_cache() == Some(FromCache::Deferred),
        "a Deferred reuse",
    )?;
    drop(conn);

    // 4. A port nobody listens on.
    println!();
    let refused = {
        let l = TcpListener::bind((LOCALHOST, 0))?;
        l.local_addr()?.port()
    };
    let t = Instant::now();
    reactor.allocate(Request::new("http", LOCALHOST, refused, "refused"))?;
    let err = wait_outcome(&mut reactor, &mut events)?
        .result
        .err()
        .ok_or("refused port connected")?;
    println!(
        "4. refused port {refused:<5}  function {:<8} errno {:<4} {:?}  ({} µs)",
        err.function().as_str(),
        err.errno().unwrap_or(0),
        err.message(),
        t.elapsed().as_micros()
    );

    // 5. A listener whose accept queue is full: the connect never completes.
    let (stuck, _held) = full_backlog()?;
    let t = Instant::now();
    reactor.allocate(
        Request::new("http", LOCALHOST, stuck.port(), "stuck").timeout(Duration::from_millis(300)),
    )?;
    let err = wait_outcome(&mut reactor, &mut events)?
        .result
        .err()
        .ok_or("full backlog connected")?;
    println!(
        "5. full backlog, 300 ms   function {:<8} errno {:<4} {:?}  ({} ms)",
        err.function().as_str(),
        err.errno().unwrap_or(0),
        err.message(),
        t.elapsed().as_millis()
    );
    expect(err.is_timeout(), "a timeout")?;

    // 6. keep_alive 200 ms: an idle connection expires and is replaced.
    println!();
    let mut brief: Reactor<&str> =
        Reactor::new(Config::default().with_keep_alive(Duration::from_millis(200)))?;
    let conn = step(
        &mut brief,
        &mut events,
        "6. keep_alive 200 ms, first",
        server.addr.port(),
    )?;
    brief.free(conn)?;
    let idle_before = brief.idle_count();
    let t = Instant::now();
    while brief.idle_count() > 0 && t.elapsed() < Duration::from_secs(5) {
        brief.poll(&mut events, Some(Duration::from_millis(50)))?;
    }
    println!(
        "   idle connections: {idle_before} -> {} after {} ms",
        brief.idle_count(),
        t.elapsed().as_millis()
    );
    let conn = step(
        &mut brief,
        &mut events,
        "   after expiry",
        server.addr.port(),
    )?;
    expect(conn.from_cache().is_none(), "a new connection after expiry")?;
    drop(conn);

    // 7. The server closes an idle connection: the reactor notices.
    println!();
    let conn = step(
        &mut reactor,
        &mut events,
        "7. before the server closes",
        server.addr.port(),
    )?;
    reactor.free(conn)?;
    server.close_idle();
    let t = Instant::now();
    while reactor.idle_count() > 0 && t.elapsed() < Duration::from_secs(5) {
        reactor.poll(&mut events, Some(Duration::from_millis(10)))?;
    }
    println!(
        "   server closed it: idle connections now {}",
        reactor.idle_count()
    );
    let conn = step(
        &mut reactor,
        &mut events,
        "   next request",
        server.addr.port(),
    )?;
    expect(
        conn.from_cache().is_none(),
        "a fresh connection, not the closed one",
    )?;
    drop(conn);

    // 8. https: the handshake is part of the connect, and the pool keeps
    //    TLS connections alive like plain ones.
    println!();
    let tls = TlsDemo::start()?;
    let mut secure: Reactor<&str> =
        Reactor::new(Config::default().with_tls_config(tls.client_config.clone()))?;
    let https = |port| Request::new("https", LOCALHOST, port, "tls").server_name("localhost");
    let t = Instant::now();
    secure.allocate(https(tls.port))?;
    let mut conn = wait_outcome(&mut secure, &mut events)?.result?;
    get(&mut secure, &mut events, &mut conn)?;
    report("8. https, first (handshake)", t, &conn);
    println!(
        "   {:?}, key exchange {:?}, resumed: {}",
        conn.tls_version().ok_or("no TLS version")?,
        conn.tls_kx_group().ok_or("no key exchange group")?,
        conn.is_resumed()
    );
    secure.free(conn)?;
    let t = Instant::now();
    secure.allocate(https(tls.port))?;
    let mut conn = wait_outcome(&mut secure, &mut events)?.result?;
    get(&mut secure, &mut events, &mut conn)?;
    report("   https, after free", t, &conn);
    expect(
        conn.from_cache() == Some(FromCache::Immediate),
        "an Immediate TLS reuse",
    )?;
    // A second connection while the first is lent resumes the session.
    let t = Instant::now();
    secure.allocate(https(tls.port))?;
    let second = wait_outcome(&mut secure, &mut events)?.result?;
    report("   https, second connection", t, &second);
    println!(
        "   resumed: {}, key exchange {:?}",
        second.is_resumed(),
        second.tls_kx_group().ok_or("no key exchange group")?
    );
    expect(second.is_resumed(), "a resumed TLS session")?;
    drop((conn, second));

    // 9. By name: `localhost` comes from the hosts file (or, if the file
    //    does not name it, RFC 6761's ::1 and 127.0.0.1), so no network is
    //    needed. Happy Eyeballs tries ::1 first; the demo server listens on
    //    127.0.0.1 only, so ::1 is refused and 127.0.0.1 is tried at once.
    println!();
    let port = server.addr.port();
    let by_name = |context| Request::host("http", "localhost", port, context);
    let t = Instant::now();
    reactor.allocate(by_name("by name"))?;
    let outcome = wait_outcome(&mut reactor, &mut events)?;
    let target = outcome.target.to_string();
    let mut conn = outcome.result?;
    get(&mut reactor, &mut events, &mut conn)?;
    report("9. by name: localhost", t, &conn);
    println!("   {target} reached {}", conn.peer_addr());
    reactor.free(conn)?;
    let t = Instant::now();
    reactor.allocate(by_name("by name, again"))?;
    let mut conn = wait_outcome(&mut reactor, &mut events)?.result?;
    get(&mut reactor, &mut events, &mut conn)?;
    report("   same name, after free", t, &conn);
    expect(
        conn.from_cache() == Some(FromCache::Immediate),
        "an Immediate reuse by name (the pool key is the name)",
    )?;
    drop(conn);

    reactor.shutdown();
    println!(
        "\nthe plain HTTP server accepted {} connections for {} requests",
        server.accepted.load(Ordering::SeqCst),
        server.requests.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Allocates a connection to the demo server, does one GET, prints it.
fn step(
    reactor: &mut Reactor<&'static str>,
    events: &mut Events<&'static str>,
    label: &str,
    port: u16,
) -> Result<Connection> {
    let t = Instant::now();
    reactor.allocate(Request::new("http", LOCALHOST, port, "demo"))?;
    let outcome = wait_outcome(reactor, events)?;
    let mut conn = outcome.result?;
    get(reactor, events, &mut conn)?;
    report(label, t, &conn);
    Ok(conn)
}

fn report(label: &str, since: Instant, conn: &Connection) {
    let how = match conn.from_cache() {
        None => "new connection",
        Some(FromCache::Immediate) => "from cache: Immediate",
        Some(FromCache::Deferred) => "from cache: Deferred",
    };
    println!(
        "{label:<34} {how:<24} {:>6} µs",
        since.elapsed().as_micros()
    );
}

fn expect(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("expected {what}").into())
    }
}

/// Polls until the next outcome (5 s at most).
fn wait_outcome<C>(reactor: &mut Reactor<C>, events: &mut Events<C>) -> Result<Outcome<C>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        reactor.poll(events, Some(Duration::from_millis(100)))?;
        if let Some(Event::Outcome(outcome)) =
            events.drain().find(|e| matches!(e, Event::Outcome(_)))
        {
            return Ok(outcome);
        }
    }
    Err("no outcome within 5 s".into())
}

/// One GET over a lent connection: write the request, read the response by
/// Content-Length, waiting for readiness from the reactor on `WouldBlock`.
fn get<C>(reactor: &mut Reactor<C>, events: &mut Events<C>, conn: &mut Connection) -> Result<()> {
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => return Err("server closed mid-response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("no response within 5 s".into());
                }
                reactor.poll(events, Some(Duration::from_millis(100)))?;
                events.drain().for_each(drop);
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("response without Content-Length")?;
            if buf.len() >= end + 4 + len {
                return Ok(());
            }
        }
    }
}

/// A listener whose accept queue is full: new connects stall in SYN-SENT.
/// Returns it with the connections that filled it, which must stay open.
fn full_backlog() -> Result<(SocketAddr, (socket2::Socket, Vec<TcpStream>))> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(LOCALHOST, 0).into())?;
    socket.listen(0)?;
    let addr = socket.local_addr()?.as_socket().ok_or("no address")?;
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => fillers.push(s),
            Err(_) => return Ok((addr, (socket, fillers))),
        }
    }
    Err("could not fill the accept queue".into())
}

/// A TLS server for step 8: a throwaway certificate for `localhost` made
/// with rcgen, and a client configuration that trusts it.
struct TlsDemo {
    port: u16,
    client_config: std::sync::Arc<keepalive::rustls::ClientConfig>,
}

impl TlsDemo {
    fn start() -> Result<TlsDemo> {
        use keepalive::rustls::{self, pki_types::PrivateKeyDer, pki_types::PrivatePkcs8KeyDer};
        use std::sync::Arc;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
        let der = cert.cert.der().clone();
        // The provider keepalive itself uses (aws-lc-rs with X25519MLKEM768
        // first, or ring with the `ring` feature), for both ends.
        let provider = keepalive::tls_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone())?;
        let client_config = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let server_config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(vec![der], key)?,
        );
        let listener = TcpListener::bind((LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = server_config.clone();
                // Without it, Nagle holds the server's last handshake flight
                // until the client's delayed ACK: 40 ms.
                let _ = stream.set_nodelay(true);
                thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let tls = rustls::StreamOwned::new(conn, stream);
                    serve(tls, &AtomicUsize::new(0), "hello over TLS\n");
                });
            }
        });
        Ok(TlsDemo {
            port,
            client_config,
        })
    }
}

/// A small HTTP/1.1 keep-alive server on a thread per connection.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Server {
    fn start() -> Result<Server> {
        let listener = TcpListener::bind((LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (a, r, o) = (accepted.clone(), requests.clone(), open.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                if let (Ok(copy), Ok(mut list)) = (stream.try_clone(), o.lock()) {
                    list.push(copy);
                }
                let r = r.clone();
                thread::spawn(move || serve(stream, &r, "hello from the demo server\n"));
            }
        });
        Ok(Server {
            addr,
            accepted,
            requests,
            open,
        })
    }

    /// Closes every connection the server has open.
    fn close_idle(&self) {
        if let Ok(mut list) = self.open.lock() {
            for s in list.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Answers HTTP/1.1 requests on one connection, plain or TLS, until EOF.
fn serve(stream: impl Read + Write, requests: &AtomicUsize, body: &str) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // Read one request head, up to the blank line.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let out = reader.get_mut();
        if out
            .write_all(response.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}
