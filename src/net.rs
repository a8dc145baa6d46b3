//! The socket calls mio does not offer: bind before connect, and a one-byte
//! peek. This is the only module with `unsafe`; each block is one libc call
//! on a descriptor or buffer this module owns, with a `// SAFETY:` line.
//!
//! Sockets are created nonblocking and close-on-exec in one call
//! (`SOCK_NONBLOCK | SOCK_CLOEXEC`), wrapped in an `OwnedFd` at once so that
//! every early return closes them.

#![allow(
    unsafe_code,
    reason = "the libc socket calls mio lacks; each block has a SAFETY line"
)]

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{ConnectError, Function};

/// A socket address in the form the kernel takes.
enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    fn new(addr: SocketAddr) -> RawAddr {
        match addr {
            SocketAddr::V4(a) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            RawAddr::V4(a) => (a as *const libc::sockaddr_in).cast(),
            RawAddr::V6(a) => (a as *const libc::sockaddr_in6).cast(),
        }
    }

    fn len(&self) -> libc::socklen_t {
        let n = match self {
            RawAddr::V4(_) => size_of::<libc::sockaddr_in>(),
            RawAddr::V6(_) => size_of::<libc::sockaddr_in6>(),
        };
        n as libc::socklen_t
    }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret).map(drop)
}

/// Opens a nonblocking TCP socket, binds it to `bind` (port 0) if given, and
/// starts connecting it to `addr`.
///
/// The connect normally returns `EINPROGRESS`; completion is signalled by
/// writability and checked with `SO_ERROR` by the caller. On Linux the bind
/// uses `IP_BIND_ADDRESS_NO_PORT`, so the local port is chosen at connect
/// time with the destination known, and many connections from one bind
/// address do not exhaust the ephemeral ports.
///
/// Costs: `socket`, `setsockopt` (nodelay, bind-no-port), `bind`, `connect`.
pub(crate) fn connect(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    nodelay: bool,
) -> Result<mio::net::TcpStream, ConnectError> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let socket_err = |e| ConnectError::new(Function::Socket, e);
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let fd = check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
    .map_err(socket_err)?;
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    if nodelay {
        set_int_option(raw, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1).map_err(socket_err)?;
    }
    if let Some(local) = bind {
        #[cfg(target_os = "linux")]
        {
            // Best effort: older kernels lack it, and the bind still works.
            let _ = set_int_option(raw, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
        }
        let local = RawAddr::new(SocketAddr::new(local, 0));
        // SAFETY: `local` outlives the call and `len()` is its exact size.
        check(unsafe { libc::bind(raw, local.as_ptr(), local.len()) })
            .map_err(|e| ConnectError::new(Function::Bind, e))?;
    }
    let remote = RawAddr::new(addr);
    // SAFETY: `remote` outlives the call and `len()` is its exact size.
    match check(unsafe { libc::connect(raw, remote.as_ptr(), remote.len()) }) {
        Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => {
            return Err(ConnectError::new(Function::Connect, e));
        }
        _ => {}
    }
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(fd)))
}

/// What a nonblocking one-byte peek found.
#[derive(Debug)]
pub(crate) enum Peek {
    /// Nothing to read: the socket is quiet and open.
    Empty,
    /// Bytes are waiting.
    Data,
    /// The peer closed its side.
    Eof,
    /// The socket has failed.
    Error,
}

/// Looks at the receive queue without consuming it (`recv` with
/// `MSG_PEEK | MSG_DONTWAIT`). One syscall.
pub(crate) fn peek(fd: RawFd) -> Peek {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: `byte` is a live one-byte buffer and we pass its length;
        // recv on a closed or foreign fd only returns an error.
        let n = unsafe {
            libc::recv(
                fd,
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        return match n {
            0 => Peek::Eof,
            n if n > 0 => Peek::Data,
            _ => {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => Peek::Empty,
                    io::ErrorKind::Interrupted => continue,
                    _ => Peek::Error,
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn connect_refused_is_reported_by_so_error_or_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        match connect(addr, None, true) {
            Err(e) => assert_eq!(e.errno(), Some(libc::ECONNREFUSED)),
            Ok(stream) => {
                // Completion comes later: poll until SO_ERROR says why.
                let mut err = None;
                for _ in 0..1000 {
                    if let Some(e) = stream.take_error().unwrap() {
                        err = Some(e);
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                assert_eq!(err.and_then(|e| e.raw_os_error()), Some(libc::ECONNREFUSED));
            }
        }
    }

    #[test]
    fn bind_to_foreign_family_fails_with_bind() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let err = connect(addr, Some("::1".parse().unwrap()), true).unwrap_err();
        assert_eq!(err.function(), Function::Bind);
    }

    #[test]
    fn peek_sees_empty_data_and_eof() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert!(matches!(peek(client.as_raw_fd()), Peek::Empty));
        server.write_all(b"x").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut spins = 0;
        while matches!(peek(client.as_raw_fd()), Peek::Empty) && spins < 5000 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            spins += 1;
        }
        assert!(matches!(peek(client.as_raw_fd()), Peek::Data));
        drop(server);
        let mut buf = [0u8; 8];
        use std::io::Read;
        assert_eq!((&client).read(&mut buf).unwrap(), 1);
        let mut spins = 0;
        while !matches!(peek(client.as_raw_fd()), Peek::Eof) && spins < 5000 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            spins += 1;
        }
        assert!(matches!(peek(client.as_raw_fd()), Peek::Eof));
    }
}
