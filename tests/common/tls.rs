//! TLS test support: a throwaway PKI made with rcgen, client and server
//! rustls configurations, a threaded TLS HTTP server on loopback, a listener
//! that accepts TCP and never answers, and nginx with TLS.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use keepalive::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use keepalive::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::LOCALHOST;
use super::nginx::{Nginx, Options, Site};

/// A CA, a server certificate it signed (for `localhost`, 127.0.0.1 and
/// ::1), and an unrelated second CA.
pub struct Pki {
    ca: CertificateDer<'static>,
    other_ca: CertificateDer<'static>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl Pki {
    pub fn new() -> Pki {
        let ca = ca("keepalive test CA");
        let other = ca_other();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        Pki {
            ca: ca.der().clone(),
            other_ca: other.der().clone(),
            server_cert_pem: format!("{}{}", cert.pem(), ca.pem()),
            server_key_pem: key.serialize_pem(),
            server_cert: cert.der().clone(),
            server_key: key.serialize_der(),
        }
    }

    fn roots(ca: &CertificateDer<'static>) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        roots
    }

    /// A client configuration that trusts the test CA.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config_with(|_| {})
    }

    /// The same, adjusted by `f` (ALPN, say).
    pub fn client_config_with(&self, f: impl FnOnce(&mut ClientConfig)) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(keepalive::tls_crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(Pki::roots(&self.ca))
            .with_no_client_auth();
        f(&mut config);
        Arc::new(config)
    }

    /// A client configuration that trusts only an unrelated CA.
    pub fn client_config_trusting_other_ca(&self) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder_with_provider(keepalive::tls_crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(Pki::roots(&self.other_ca))
                .with_no_client_auth(),
        )
    }

    /// A server configuration with the test certificate, for the given TLS
    /// versions (TLS 1.3 servers send two session tickets after the
    /// handshake, rustls's default).
    pub fn server_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ServerConfig> {
        self.server_config_with(versions, |_| {})
    }

    pub fn server_config_with(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        f: impl FnOnce(&mut ServerConfig),
    ) -> Arc<ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = ServerConfig::builder_with_provider(keepalive::tls_crypto_provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)
            .unwrap();
        f(&mut config);
        Arc::new(config)
    }
}

fn ca_other() -> CertifiedIssuer<'static, KeyPair> {
    ca("an unrelated CA")
}

/// A TLS HTTP/1.1 keep-alive server on loopback, a thread per connection.
pub struct TlsServer {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    close_notify: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl TlsServer {
    pub fn start(config: Arc<ServerConfig>) -> TlsServer {
        let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let close_notify = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (a, c, s, h) = (
            accepted.clone(),
            close_notify.clone(),
            stop.clone(),
            held.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                // Held before counted, as in the plain server.
                h.lock().unwrap().push(stream.try_clone().unwrap());
                a.fetch_add(1, Ordering::SeqCst);
                let (config, c, s) = (config.clone(), c.clone(), s.clone());
                thread::spawn(move || serve_tls(stream, config, &c, &s));
            }
        });
        TlsServer {
            addr,
            accepted,
            close_notify,
            stop,
            _held: held,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Asserts exactly `n` connections were accepted, once the accept
    /// thread has caught up with connects the client already saw complete.
    #[track_caller]
    pub fn assert_accepted(&self, n: usize) {
        super::wait_count(|| self.accepted(), n, "server accepted");
        assert_eq!(self.accepted(), n, "connections accepted");
    }

    /// From now on every connection sends close_notify when it next sits
    /// idle, and keeps the TCP connection open.
    pub fn send_close_notify(&self) {
        self.close_notify.store(true, Ordering::SeqCst);
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self._held.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn serve_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    close_notify: &AtomicBool,
    stop: &AtomicBool,
) {
    // Short read timeouts let the loop look at the close_notify flag.
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(10)));
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let mut sent_close = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match tls.read(&mut byte) {
            Ok(0) => return,
            Ok(_) => {
                head.push(byte[0]);
                if head.ends_with(b"\r\n\r\n") {
                    head.clear();
                    let body = "hello tls\n";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tls
                        .write_all(response.as_bytes())
                        .and_then(|()| tls.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if close_notify.load(Ordering::SeqCst) && !sent_close && !tls.conn.is_handshaking()
                {
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    sent_close = true;
                }
            }
            Err(_) => return,
        }
    }
}

/// Accepts TCP connections and never says a word: TLS handshakes stall.
pub struct Silent {
    pub addr: SocketAddr,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                h.lock().unwrap().push(stream);
            }
        });
        Silent { addr, _held: held }
    }
}

/// nginx with TLS and the test certificate, `None` (printed) without nginx.
/// Its own default protocols: TLS 1.2 only for nginx before 1.23.4, such as
/// Debian 12's 1.22.
pub fn nginx_tls(pki: &Pki) -> Option<Nginx> {
    nginx_tls_with(pki, "", Options::default())
}

/// [`nginx_tls`] also listening (TLS) on a Unix-domain socket
/// ([`Nginx::unix_path`]).
pub fn nginx_tls_unix(pki: &Pki) -> Option<Nginx> {
    let options = Options {
        unix: true,
        ..Options::default()
    };
    nginx_tls_with(pki, "", options)
}

/// The same with TLS 1.2 and 1.3, as Debian's packaged `nginx.conf` sets,
/// and classical groups only, OpenSSL 3.0's defaults: a server without
/// ML-KEM even where OpenSSL (3.5 and later) has it.
pub fn nginx_tls13(pki: &Pki) -> Option<Nginx> {
    nginx_tls_with(
        pki,
        &format!("ssl_protocols TLSv1.2 TLSv1.3; {CLASSICAL_GROUPS}"),
        Options::default(),
    )
}

/// The same with TLS 1.2 only, whatever this nginx's default.
pub fn nginx_tls12(pki: &Pki) -> Option<Nginx> {
    nginx_tls_with(
        pki,
        &format!("ssl_protocols TLSv1.2; {CLASSICAL_GROUPS}"),
        Options::default(),
    )
}

const CLASSICAL_GROUPS: &str = "ssl_ecdh_curve X25519:prime256v1:secp384r1;";

fn nginx_tls_with(pki: &Pki, extra: &str, options: Options) -> Option<Nginx> {
    let server = format!(
        "{extra} ssl_certificate cert.pem; ssl_certificate_key key.pem; keepalive_requests 1000; \
         keepalive_timeout 60s; location / {{ add_header X-Conn $connection always; return 200 \"hello\\n\"; }}"
    );
    Nginx::start_with(
        Site {
            listen_extra: "ssl",
            server: &server,
            files: vec![
                ("cert.pem", pki.server_cert_pem.clone().into_bytes()),
                ("key.pem", pki.server_key_pem.clone().into_bytes()),
            ],
        },
        options,
    )
}

/// A TLS server that takes one connection, waits `stall` before reading (so
/// the client's writes back up), then counts every plaintext byte until EOF.
pub struct TlsSink {
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
}

impl TlsSink {
    pub fn start(config: Arc<ServerConfig>, stall: Duration) -> TlsSink {
        let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        thread::spawn(move || {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            let Ok(conn) = ServerConnection::new(config) else {
                return;
            };
            let mut tls = StreamOwned::new(conn, tcp);
            // Finish the handshake first, then stall with the data unread.
            while tls.conn.is_handshaking() {
                if tls.conn.complete_io(&mut tls.sock).is_err() {
                    return;
                }
            }
            thread::sleep(stall);
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = tls.read(&mut buf) {
                if n == 0 {
                    return;
                }
                assert!(
                    buf[..n].iter().all(|&b| b == b'x'),
                    "plaintext arrived intact"
                );
                counter.fetch_add(n, Ordering::SeqCst);
            }
        });
        TlsSink { addr, received }
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}
