//! The TLS glue against an in-memory rustls server: no sockets, every byte
//! moved by hand, so each record's effect on an idle session is exact.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, ServerConnection};

use super::*;

/// One direction of an in-memory connection.
type Wire = Rc<RefCell<VecDeque<u8>>>;

/// The client's end: reads what the server wrote, `WouldBlock` when empty,
/// EOF once the server hung up.
struct ClientEnd {
    from_server: Wire,
    to_server: Wire,
    server_gone: Rc<RefCell<bool>>,
}

impl Read for ClientEnd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut q = self.from_server.borrow_mut();
        if q.is_empty() {
            return if *self.server_gone.borrow() {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(q.len());
        for (dst, src) in buf.iter_mut().zip(q.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for ClientEnd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to_server.borrow_mut().extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Pair {
    client: TlsSession,
    end: ClientEnd,
    server: ServerConnection,
    from_client: Wire,
    to_client: Wire,
    server_gone: Rc<RefCell<bool>>,
}

struct Pki {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

/// A self-signed certificate for `localhost`, trusted by the client.
fn pki() -> Pki {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let der: CertificateDer<'static> = cert.cert.der().clone();
    let mut roots = RootCertStore::empty();
    roots.add(der.clone()).expect("root");
    let provider = crate::tls::provider::shared();
    let client = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server cert");
    Pki {
        client: Arc::new(client),
        server: Arc::new(server),
    }
}

impl Pair {
    fn new(pki: &Pki, name: &str) -> Pair {
        let from_client: Wire = Rc::default();
        let to_client: Wire = Rc::default();
        let server_gone = Rc::new(RefCell::new(false));
        let name = ServerName::try_from(name.to_owned()).expect("name");
        Pair {
            client: TlsSession::new(&pki.client, name).expect("client session"),
            end: ClientEnd {
                from_server: to_client.clone(),
                to_server: from_client.clone(),
                server_gone: server_gone.clone(),
            },
            server: ServerConnection::new(pki.server.clone()).expect("server"),
            from_client,
            to_client,
            server_gone,
        }
    }

    /// Lets the server read everything the client sent and write its
    /// replies. Returns the server's plaintext.
    fn server_turn(&mut self) -> Vec<u8> {
        let bytes: Vec<u8> = self.from_client.borrow_mut().drain(..).collect();
        let mut input = &bytes[..];
        while !input.is_empty() {
            self.server.read_tls(&mut input).expect("server read_tls");
            self.server.process_new_packets().expect("server process");
        }
        let mut plain = Vec::new();
        let _ = self.server.reader().read_to_end(&mut plain);
        let mut out = Vec::new();
        while self.server.wants_write() {
            self.server.write_tls(&mut out).expect("server write_tls");
        }
        self.to_client.borrow_mut().extend(out);
        plain
    }

    /// Runs the handshake to completion, including the server's TLS 1.3
    /// session tickets, which stay unread on the client's side.
    fn handshake(&mut self) {
        for _ in 0..10 {
            let step = self.client.drive_handshake(&mut self.end);
            self.server_turn();
            if matches!(step, Handshake::Done) && !self.server.is_handshaking() {
                return;
            }
            if let Handshake::Failed(e) = step {
                panic!("handshake failed: {e}");
            }
        }
        panic!("handshake did not finish");
    }

    fn server_says(&mut self, data: &[u8]) {
        self.server.writer().write_all(data).expect("server write");
        self.server_turn();
    }
}

#[test]
fn session_tickets_arriving_while_idle_keep_the_session() {
    let pki = pki();
    let mut p = Pair::new(&pki, "localhost");
    p.handshake();
    assert!(
        !p.to_client.borrow().is_empty(),
        "the server sent its tickets"
    );
    assert_eq!(p.client.idle_readable(&mut p.end), IdleVerdict::StillIdle);
    assert!(!p.client.has_buffered_plaintext());

    // And the session still carries data both ways.
    assert_eq!(p.client.write_plain(&mut p.end, b"ping").expect("write"), 4);
    assert_eq!(p.server_turn(), b"ping");
    p.server_says(b"pong");
    let mut buf = [0u8; 16];
    assert_eq!(p.client.read_plain(&mut p.end, &mut buf).expect("read"), 4);
    assert_eq!(&buf[..4], b"pong");
    assert!(
        matches!(p.client.read_plain(&mut p.end, &mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    );
}

#[test]
fn close_notify_while_idle_is_dead() {
    let pki = pki();
    let mut p = Pair::new(&pki, "localhost");
    p.handshake();
    p.server.send_close_notify();
    p.server_turn();
    assert_eq!(p.client.idle_readable(&mut p.end), IdleVerdict::Dead);
}

#[test]
fn application_data_while_idle_is_dead() {
    let pki = pki();
    let mut p = Pair::new(&pki, "localhost");
    p.handshake();
    p.server_says(b"unsolicited");
    assert_eq!(p.client.idle_readable(&mut p.end), IdleVerdict::Dead);
}

#[test]
fn plaintext_left_unread_is_noticed_at_free() {
    let pki = pki();
    let mut p = Pair::new(&pki, "localhost");
    p.handshake();
    p.server_says(b"0123456789");
    let mut two = [0u8; 2];
    assert_eq!(p.client.read_plain(&mut p.end, &mut two).expect("read"), 2);
    assert!(
        p.client.has_buffered_plaintext(),
        "eight bytes still inside rustls"
    );
}

#[test]
fn garbage_or_eof_while_idle_is_dead() {
    let pki = pki();
    let mut p = Pair::new(&pki, "localhost");
    p.handshake();
    p.to_client
        .borrow_mut()
        .extend(b"this is not a TLS record at all");
    assert_eq!(p.client.idle_readable(&mut p.end), IdleVerdict::Dead);

    let mut p = Pair::new(&pki, "localhost");
    p.handshake();
    p.server_turn();
    let _ = p.client.idle_readable(&mut p.end);
    *p.server_gone.borrow_mut() = true;
    assert_eq!(p.client.idle_readable(&mut p.end), IdleVerdict::Dead);
}

#[test]
fn a_stale_wake_up_reads_nothing_and_keeps_the_session() {
    let pki = pki();
    let mut p = Pair::new(&pki, "localhost");
    p.handshake();
    assert_eq!(p.client.idle_readable(&mut p.end), IdleVerdict::StillIdle);
    assert_eq!(
        p.client.idle_readable(&mut p.end),
        IdleVerdict::StillIdle,
        "nothing new arrived"
    );
}

#[test]
fn wrong_name_fails_the_handshake_with_a_clear_message() {
    let pki = pki();
    let mut p = Pair::new(&pki, "other.example");
    let mut failure = None;
    for _ in 0..10 {
        match p.client.drive_handshake(&mut p.end) {
            Handshake::Failed(e) => {
                failure = Some(e);
                break;
            }
            _ => {
                // The server may reject the client's alert; ignore its errors.
                let bytes: Vec<u8> = p.from_client.borrow_mut().drain(..).collect();
                let mut input = &bytes[..];
                while !input.is_empty() && p.server.read_tls(&mut input).is_ok() {
                    if p.server.process_new_packets().is_err() {
                        break;
                    }
                }
                let mut out = Vec::new();
                while p.server.wants_write() && p.server.write_tls(&mut out).is_ok() {}
                p.to_client.borrow_mut().extend(out);
            }
        }
    }
    let e = failure.expect("the handshake fails");
    assert_eq!(e.function(), Function::Tls);
    assert_eq!(e.errno(), None);
    assert!(e.message().contains("not valid for the server name"), "{e}");
}

#[test]
fn eof_during_the_handshake_is_a_tls_failure() {
    let pki = pki();
    let mut p = Pair::new(&pki, "localhost");
    assert!(matches!(
        p.client.drive_handshake(&mut p.end),
        Handshake::WantIo
    ));
    *p.server_gone.borrow_mut() = true;
    match p.client.drive_handshake(&mut p.end) {
        Handshake::Failed(e) => assert!(e.message().contains("closed during TLS handshake"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_default_configuration_offers_this_builds_groups_in_order() {
    use rustls::NamedGroup as G;
    let config = default_client_config().expect("default config");
    let groups: Vec<G> = config
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect();
    // X25519 right after the hybrid: its share rides along for free, so a
    // server without ML-KEM needs no HelloRetryRequest.
    let expected = if cfg!(feature = "aws-lc-rs") {
        vec![G::X25519MLKEM768, G::X25519, G::secp256r1, G::secp384r1]
    } else {
        vec![G::X25519, G::secp256r1, G::secp384r1]
    };
    assert_eq!(groups, expected);
}

#[test]
fn the_in_memory_pair_negotiates_this_builds_first_group() {
    let pki = pki();
    let mut p = Pair::new(&pki, "localhost");
    p.handshake();
    let expected = if cfg!(feature = "aws-lc-rs") {
        rustls::NamedGroup::X25519MLKEM768
    } else {
        rustls::NamedGroup::X25519
    };
    assert_eq!(p.client.kx_group(), Some(expected));
}
