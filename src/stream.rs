//! The socket under a connection: TCP or a Unix-domain stream.
//!
//! Both are nonblocking byte streams registered with the reactor's poller
//! in the same way, peeked and read in the same way; only how they are
//! opened and what their peer's address is differ. An enum, not a trait
//! object: the hit path matches on it, without an indirect call.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use mio::net::{TcpStream, UnixStream};

/// A connected (or connecting) stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Whether a nonblocking connect has finished: see [`connect_result`].
    pub(crate) fn connect_result(&self) -> Option<io::Result<()>> {
        match self {
            Stream::Tcp(s) => connect_result(s.take_error(), || s.peer_addr().map(drop)),
            Stream::Unix(s) => connect_result(s.take_error(), || s.peer_addr().map(drop)),
        }
    }

    /// The TCP stream, if it is one.
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Unix(_) => None,
        }
    }
}

/// Whether a nonblocking connect has finished, from its socket's
/// `SO_ERROR` (`error`) and, when that is clear, whether it has a `peer`:
/// `None` while it is under way (a spurious wake-up), else how it ended.
/// One `getsockopt(SO_ERROR)`, and a `getpeername` when there is no error.
pub(crate) fn connect_result(
    error: io::Result<Option<io::Error>>,
    peer: impl FnOnce() -> io::Result<()>,
) -> Option<io::Result<()>> {
    match error {
        Ok(Some(e)) | Err(e) => Some(Err(e)),
        Ok(None) => match peer() {
            Ok(()) => Some(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        },
    }
}

impl Read for Stream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl mio::event::Source for Stream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
        }
    }
}
