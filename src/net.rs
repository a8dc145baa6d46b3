//! The system calls mio does not offer: bind before connect, a one-byte
//! peek, random bits for the resolver, huge-page advice for the timer
//! wheel, and the calling thread's count of preemptions for busy polling;
//! and the checks of a Unix-domain path before mio connects to it. This is
//! the only module with `unsafe`; each block is one libc call on a
//! descriptor or buffer the call holds for its duration (its own, or one
//! borrowed from the caller), with a `// SAFETY:` line.
//!
//! Sockets are created nonblocking and close-on-exec in one call
//! (`SOCK_NONBLOCK | SOCK_CLOEXEC`), wrapped in an `OwnedFd` at once so that
//! every early return closes them.

#![expect(
    unsafe_code,
    reason = "the libc socket calls mio lacks; each block has a SAFETY line"
)]

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::path::Path;

use crate::error::{ConnectError, Function};

/// A socket address in the form the kernel takes.
enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "AF_INET and AF_INET6 are small constants that fit sa_family_t"
    )]
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

    #[expect(
        clippy::cast_possible_truncation,
        reason = "sockaddr sizes are a few dozen bytes"
    )]
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

#[expect(clippy::cast_possible_truncation, reason = "size_of::<c_int>() is 4")]
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

/// The room for a path in a `sockaddr_un` (108 bytes on Linux): a file
/// path takes all but its terminating NUL, an abstract name all of it
/// (its leading NUL included).
const SUN_PATH_LEN: usize =
    size_of::<libc::sockaddr_un>() - std::mem::offset_of!(libc::sockaddr_un, sun_path);

/// Why `path` cannot name a Unix-domain socket, if it cannot: checked at
/// `allocate`, so a bad path is refused there and not at connect.
pub(crate) fn unix_path_refusal(path: &Path) -> Option<&'static str> {
    let bytes = path.as_os_str().as_bytes();
    match bytes.split_first() {
        None => Some("unix socket path is empty"),
        Some((0, _)) if !cfg!(target_os = "linux") => {
            Some("abstract unix socket names (a leading NUL) exist only on Linux")
        }
        Some((0, _)) if bytes.len() > SUN_PATH_LEN => {
            Some("abstract unix socket name is longer than sun_path (107 bytes after the NUL)")
        }
        Some((0, _)) => None,
        Some(_) if bytes.contains(&0) => Some("unix socket path contains a NUL byte"),
        Some(_) if bytes.len() >= SUN_PATH_LEN => {
            Some("unix socket path is longer than sun_path (107 bytes)")
        }
        Some(_) => None,
    }
}

/// The kernel's address for `path`: a file path, or (Linux) an abstract
/// name after a leading NUL.
fn unix_address(path: &Path) -> io::Result<UnixAddr> {
    match path.as_os_str().as_bytes().split_first() {
        #[cfg(target_os = "linux")]
        Some((0, name)) => {
            use std::os::linux::net::SocketAddrExt;
            UnixAddr::from_abstract_name(name)
        }
        _ => UnixAddr::from_pathname(path),
    }
}

/// Opens a nonblocking Unix-domain stream socket and connects it to `path`
/// (mio's `socket` and `connect`). A Unix connect finishes at once: it
/// succeeds, or fails here with `ENOENT` (no such path), `ECONNREFUSED`
/// (no listener), `EACCES` (no permission) or `EAGAIN` (backlog full).
///
/// Costs: `socket`, `connect`.
pub(crate) fn connect_unix(path: &Path) -> Result<mio::net::UnixStream, ConnectError> {
    let addr = unix_address(path).map_err(|e| ConnectError::new(Function::Connect, e))?;
    mio::net::UnixStream::connect_addr(&addr).map_err(|e| {
        // connect(2) never runs out of descriptors or memory: socket(2) did.
        let function = match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => Function::Socket,
            _ => Function::Connect,
        };
        ConnectError::new(function, e)
    })
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

/// 128 random bits from the kernel (`getrandom(2)`), to key the resolver's
/// query ids and so make its replies hard to spoof.
///
/// Should the call fail (a kernel before 3.17, or a seccomp filter that
/// refuses it), the seed falls back to the wall-clock time in nanoseconds
/// and the process id, mixed with a randomly keyed hash: unique per
/// reactor, but guessable by someone who knows when the process started;
/// the per-query random source port still stands in the way of a spoofer.
pub(crate) fn random_seed() -> u128 {
    let mut buf = [0u8; 16];
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a live buffer and we pass its exact length.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(n) {
            Ok(n) => filled += n,
            Err(_) if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return fallback_seed(),
        }
    }
    u128::from_ne_bytes(buf)
}

/// How many times another thread has taken the CPU from the calling thread
/// while it could run (`ru_nivcsw` of `getrusage(RUSAGE_THREAD)`): busy
/// polling stops spinning once this moves. `None` if the call fails.
pub(crate) fn involuntary_switches() -> Option<i64> {
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live `rusage` the call fills for its duration.
    let ret = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    (ret == 0).then_some(usage.ru_nivcsw)
}

/// See [`random_seed`].
#[expect(
    clippy::disallowed_methods,
    reason = "a seed, not a timestamp: the pool's clock is not involved"
)]
fn fallback_seed() -> u128 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let pid = u128::from(std::process::id());
    let keyed = hashbrown::DefaultHashBuilder::default().hash_one((nanos, pid));
    nanos ^ (pid << 64) ^ u128::from(keyed).rotate_left(32)
}

/// Below this a vector gains little from huge pages: it spans at most one
/// aligned 2 MiB region.
const HUGE_PAGE_WORTHWHILE: usize = 4 << 20;

/// Asks the kernel to back `buf`'s whole capacity with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`), for a vector that is read at random: a timer
/// wheel of a million entries is 24 MiB, and with 4 KiB pages about a quarter
/// of a random access's cost was the page walk. Only the 4 KiB pages wholly
/// inside the buffer are named. Advice only: memory contents never change; a
/// kernel built without transparent huge pages refuses it, and one with them
/// set to `never` takes it and ignores it. Returns whether the kernel took
/// it; a small buffer is left alone (no syscall). One `madvise`; call it when
/// the capacity grows.
pub(crate) fn advise_huge_pages<T>(buf: &Vec<T>) -> bool {
    const PAGE: usize = 4096;
    let bytes = buf.capacity().saturating_mul(size_of::<T>());
    if bytes < HUGE_PAGE_WORTHWHILE {
        return false;
    }
    let start_addr = buf.as_ptr() as usize;
    let start = start_addr.next_multiple_of(PAGE);
    let end = (start_addr + bytes) / PAGE * PAGE;
    if end <= start {
        return false;
    }
    let offset = start - start_addr;
    // SAFETY: [start, end) is whole pages inside `buf`'s allocation (rounded
    // inwards), which `buf` keeps alive for the call; MADV_HUGEPAGE only
    // changes how the kernel backs those pages, never what they hold.
    let ret = unsafe {
        libc::madvise(
            buf.as_ptr().cast::<u8>().add(offset).cast_mut().cast(),
            end - start,
            libc::MADV_HUGEPAGE,
        )
    };
    ret == 0
}

#[cfg(test)]
mod tests;
