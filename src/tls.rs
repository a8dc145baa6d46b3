//! TLS over the pool's nonblocking sockets, with rustls.
//!
//! # How a handshake runs without blocking
//!
//! rustls is a state machine that never touches a socket: TLS records go in
//! through `read_tls` + `process_new_packets`, records to send come out of
//! `write_tls`, and plaintext moves through `reader()`/`writer()`. The
//! reactor drives it from readiness: once the TCP connect completes, it
//! writes the ClientHello; every later readiness event reads what arrived,
//! lets rustls process it, and writes what rustls wants to send, until
//! `is_handshaking()` turns false and nothing is left to send. Only then is
//! the request's outcome delivered, so the request timeout covers TCP connect
//! plus handshake, and a failed handshake is an outcome with function `tls`.
//!
//! # Why an idle TLS socket is not dead when it becomes readable
//!
//! A plaintext socket that becomes readable while idle in the pool has either
//! data nobody asked for or a close: it is dead. A TLS 1.3 server, though,
//! sends session tickets *after* the handshake, and may send a KeyUpdate at
//! any time; they are records for rustls, not data for the caller. So an idle
//! TLS socket feeds what arrived to rustls: tickets and key updates are
//! consumed and the socket stays pooled; application data, a close_notify,
//! any other alert, EOF or a protocol error close it.
//!
//! # Key exchange
//!
//! The crypto provider, and so which key-exchange groups are offered, is
//! chosen at compile time by a cargo feature: aws-lc-rs by default, with the
//! post-quantum hybrid X25519MLKEM768 first and an X25519 share beside it so
//! servers without ML-KEM answer without an extra round trip; or ring,
//! classical groups only. [`provider`] explains the choice.
//!
//! # Costs
//!
//! rustls keeps its buffers per connection and grows them as records arrive;
//! moving a connection in and out of the pool moves a `Box`, so the pool's
//! hit path allocates nothing for TLS either. The default configuration is
//! built once per reactor.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, NamedGroup, ProtocolVersion, RootCertStore,
};

use crate::error::{ConnectError, Function};

pub(crate) mod provider;
#[cfg(all(
    feature = "ring",
    any(not(feature = "aws-lc-rs"), feature = "internals")
))]
mod ring_parts;
#[cfg(test)]
mod tests;

/// The configuration used when the caller gives none: Mozilla's root
/// certificates (webpki-roots), the build's crypto provider (see
/// [`provider`]), TLS 1.2 and 1.3, and rustls's in-memory session cache for
/// resumption.
pub(crate) fn default_client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = ClientConfig::builder_with_provider(provider::shared())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What a handshake step came to.
#[derive(Debug)]
pub(crate) enum Handshake {
    /// Done, and everything rustls wanted to send is sent.
    Done,
    /// Waiting for the socket.
    WantIo,
    /// Failed; the connection must be closed.
    Failed(ConnectError),
}

/// Whether an idle socket survived the records that arrived on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleVerdict {
    StillIdle,
    Dead,
}

/// One TLS client session, travelling with its socket.
pub(crate) struct TlsSession {
    conn: ClientConnection,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.conn.is_handshaking())
            .field("version", &self.conn.protocol_version())
            .finish_non_exhaustive()
    }
}

impl TlsSession {
    pub(crate) fn new(
        config: &Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<TlsSession, ConnectError> {
        ClientConnection::new(Arc::clone(config), server_name)
            .map(|conn| TlsSession { conn })
            .map_err(|e| tls_error(&e))
    }

    /// Moves the handshake on as far as the socket allows.
    pub(crate) fn drive_handshake<S: Read + Write>(&mut self, sock: &mut S) -> Handshake {
        loop {
            if let Err(e) = self.flush_tls(sock) {
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Handshake::Failed(ConnectError::new(Function::Tls, e));
                }
                return Handshake::WantIo;
            }
            if !self.conn.is_handshaking() {
                return Handshake::Done;
            }
            match self.conn.read_tls(sock) {
                Ok(0) => {
                    return Handshake::Failed(ConnectError::new(
                        Function::Tls,
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed during TLS handshake",
                        ),
                    ));
                }
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        // Tell the server why, if the socket takes it.
                        let _ = self.flush_tls(sock);
                        return Handshake::Failed(tls_error(&e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Handshake::WantIo,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Handshake::Failed(ConnectError::new(Function::Tls, e)),
            }
        }
    }

    /// Reads plaintext: what rustls holds first, then records from the
    /// socket. `WouldBlock` means rustls and the socket are both empty;
    /// `Ok(0)` means the server closed (close_notify).
    pub(crate) fn read_plain<S: Read + Write>(
        &mut self,
        sock: &mut S,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(sock) {
                // EOF without close_notify: the reader reports it next turn.
                Ok(0) => {
                    return match self.conn.reader().read(buf) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                        other => other,
                    };
                }
                Ok(_) => {
                    self.conn
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    // rustls may owe the server a reply (a KeyUpdate, say).
                    let _ = self.flush_tls(sock);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Encrypts `buf` and sends what the socket takes. Ciphertext the socket
    /// does not take stays with rustls, up to its buffer limit (64 KiB by
    /// default); past it, `WouldBlock`.
    pub(crate) fn write_plain<S: Write>(&mut self, sock: &mut S, buf: &[u8]) -> io::Result<usize> {
        let sent = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        };
        sent(self.flush_tls(sock))?;
        let n = self.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        sent(self.flush_tls(sock))?;
        Ok(n)
    }

    /// Sends all ciphertext rustls holds, or `WouldBlock`.
    pub(crate) fn flush_tls<S: Write>(&mut self, sock: &mut S) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether ciphertext waits to be sent.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Best effort: queues a close_notify and sends what the socket takes.
    pub(crate) fn close_notify<S: Write>(&mut self, sock: &mut S) {
        self.conn.send_close_notify();
        let _ = self.flush_tls(sock);
    }

    /// Reads the records that arrived while the socket sat idle. Session
    /// tickets and key updates keep it; anything else kills it.
    pub(crate) fn idle_readable<S: Read + Write>(&mut self, sock: &mut S) -> IdleVerdict {
        loop {
            match self.conn.read_tls(sock) {
                Ok(0) => return IdleVerdict::Dead,
                Ok(_) => match self.conn.process_new_packets() {
                    Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                        return IdleVerdict::Dead;
                    }
                    Ok(_) => {
                        if matches!(self.flush_tls(sock), Err(e) if e.kind() != io::ErrorKind::WouldBlock)
                        {
                            return IdleVerdict::Dead;
                        }
                    }
                    Err(_) => return IdleVerdict::Dead,
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return IdleVerdict::StillIdle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return IdleVerdict::Dead,
            }
        }
    }

    /// Whether rustls holds plaintext the caller has not read.
    pub(crate) fn has_buffered_plaintext(&mut self) -> bool {
        match self.conn.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }

    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    pub(crate) fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The key-exchange group the handshake agreed on; `None` before the
    /// handshake ends, and for a resumed TLS 1.2 session, which exchanges no
    /// new key.
    pub(crate) fn kx_group(&self) -> Option<NamedGroup> {
        self.conn.negotiated_key_exchange_group().map(|g| g.name())
    }

    /// Whether the agreed key exchange resists a quantum computer: a hybrid
    /// with ML-KEM, or ML-KEM alone.
    pub(crate) fn is_post_quantum(&self) -> bool {
        matches!(
            self.kx_group(),
            Some(
                NamedGroup::X25519MLKEM768
                    | NamedGroup::secp256r1MLKEM768
                    | NamedGroup::MLKEM512
                    | NamedGroup::MLKEM768
                    | NamedGroup::MLKEM1024
            )
        )
    }

    pub(crate) fn is_resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }
}

/// A rustls error as an outcome: function `tls`, no errno, and a message
/// that says what went wrong in words a caller can act on.
pub(crate) fn tls_error(e: &rustls::Error) -> ConnectError {
    use rustls::{CertificateError as C, Error as E};
    let message = match e {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "certificate has an unknown issuer (not signed by a trusted CA)".to_owned()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "certificate is not valid for the server name".to_owned()
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "certificate has expired".to_owned()
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "certificate is not valid yet".to_owned()
        }
        E::InvalidCertificate(other) => format!("invalid certificate: {other:?}"),
        E::PeerIncompatible(why) => {
            format!("server is incompatible (protocol version or cipher suites): {why:?}")
        }
        E::AlertReceived(alert) => format!("server sent alert {alert:?}"),
        other => other.to_string(),
    };
    ConnectError::new(Function::Tls, io::Error::other(message))
}
