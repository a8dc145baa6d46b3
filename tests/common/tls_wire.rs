//! Watching a TLS handshake on the wire: a TCP relay on loopback that
//! forwards one connection to a server and keeps every byte it passed each
//! way, and a reader for the handshake messages that travel in the clear.
//!
//! This sees what rustls does not report: how many ClientHellos the client
//! sent (two means the server asked for another key share with a
//! HelloRetryRequest, one more round trip), whether a ServerHello was in
//! fact a HelloRetryRequest (RFC 8446 4.1.3: a ServerHello whose random is
//! SHA-256("HelloRetryRequest")), and which key shares the client offered.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use super::LOCALHOST;

/// The ServerHello random that marks a HelloRetryRequest.
const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const EXTENSION_KEY_SHARE: u16 = 51;

/// A relay for one connection to `upstream`; what passed is kept.
pub struct Relay {
    pub addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    pub fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let to_server = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let (up, down) = (to_server.clone(), to_client.clone());
        thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || pipe(c2, s2, &up));
            pipe(server, client, &down);
        });
        Relay {
            addr,
            to_server,
            to_client,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The handshake messages the client sent in the clear.
    pub fn client_handshakes(&self) -> Vec<Vec<u8>> {
        plaintext_handshakes(&self.to_server.lock().unwrap())
    }

    /// The handshake messages the server sent in the clear.
    pub fn server_handshakes(&self) -> Vec<Vec<u8>> {
        plaintext_handshakes(&self.to_client.lock().unwrap())
    }
}

/// Copies `from` to `to`, keeping each chunk before it is forwarded: once
/// the reader's side has seen a byte, the transcript holds it.
fn pipe(mut from: TcpStream, mut to: TcpStream, kept: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The handshake messages (type byte first) in the records of one
/// direction, up to the first record that is not a plaintext handshake
/// record: after the hellos TLS 1.3 encrypts the rest (a
/// change_cipher_spec record may come between, for middlebox
/// compatibility; it is skipped). Each hello fits one record.
fn plaintext_handshakes(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut rest = stream;
    while rest.len() >= 5 {
        let (kind, len) = (rest[0], usize::from(u16::from_be_bytes([rest[3], rest[4]])));
        let Some(body) = rest.get(5..5 + len) else {
            break;
        };
        match kind {
            CONTENT_HANDSHAKE => messages.push(body.to_vec()),
            20 => {} // change_cipher_spec
            _ => break,
        }
        rest = &rest[5 + len..];
    }
    messages
}

/// Whether a handshake message is a ClientHello.
pub fn is_client_hello(message: &[u8]) -> bool {
    message.first() == Some(&CLIENT_HELLO)
}

/// Whether a handshake message is a ServerHello (HelloRetryRequest
/// included).
pub fn is_server_hello(message: &[u8]) -> bool {
    message.first() == Some(&SERVER_HELLO)
}

/// Whether a ServerHello is a HelloRetryRequest.
pub fn is_hello_retry_request(message: &[u8]) -> bool {
    // type (1), length (3), legacy_version (2), random (32)
    is_server_hello(message) && message.get(6..38) == Some(&HELLO_RETRY_REQUEST_RANDOM[..])
}

/// The groups of the key shares a ClientHello carries, in order (IANA
/// numbers: 0x001d X25519, 0x11ec X25519MLKEM768).
pub fn client_key_share_groups(hello: &[u8]) -> Vec<u16> {
    let u16_at = |i: usize| u16::from_be_bytes([hello[i], hello[i + 1]]);
    // type (1), length (3), legacy_version (2), random (32)
    let mut i = 38;
    i += 1 + usize::from(hello[i]); // session id
    i += 2 + usize::from(u16_at(i)); // cipher suites
    i += 1 + usize::from(hello[i]); // compression methods
    let end = i + 2 + usize::from(u16_at(i));
    i += 2;
    while i + 4 <= end {
        let (kind, len) = (u16_at(i), usize::from(u16_at(i + 2)));
        let data = i + 4;
        if kind == EXTENSION_KEY_SHARE {
            let mut groups = Vec::new();
            let mut j = data + 2;
            while j + 4 <= data + len {
                groups.push(u16_at(j));
                j += 4 + usize::from(u16_at(j + 2));
            }
            return groups;
        }
        i = data + len;
    }
    Vec::new()
}
