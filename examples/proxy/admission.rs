//! Who gets in: the client limit, the answer past it, and what the proxy
//! does when the process runs out of descriptors at `accept`.
//!
//! # Past the client limit
//!
//! The proxy accepts the connection, answers `503 Service Unavailable` with
//! `Connection: close`, and closes it. A client learns at once that it must
//! come back later, instead of sitting in the listen backlog until its own
//! timeout. The answer is one `write` to a socket whose send buffer is
//! empty, so it is never partial; bytes the client sent already are read
//! and dropped first, so closing sends a FIN rather than a reset that could
//! destroy the 503 before the client reads it.
//!
//! # Out of descriptors (`EMFILE`, `ENFILE`)
//!
//! The listener is edge-triggered: connections already queued are not
//! announced again, so an accept loop that gives up on `EMFILE` strands
//! them until a new connection arrives. Each worker keeps one spare
//! descriptor (`/dev/null`) for this: it closes the spare, accepts the
//! connection with the descriptor that freed, answers it 503 as above, and
//! opens the spare again, until the backlog is empty. This is the technique
//! of libev's documentation and of nginx's `accept` loop (which also
//! disables accepting for a while); it answers every queued client at once.
//! If the spare cannot be opened again (another thread took the
//! descriptor), the worker stops accepting and retries on a timer of
//! [`RETRY_ACCEPT`], so it neither spins nor stalls.

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::Duration;

use keepalive::mio::net::TcpStream;

/// How long a worker that could not accept waits before it tries again.
pub const RETRY_ACCEPT: Duration = Duration::from_millis(100);

/// The answer past the limit.
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 20\r\nConnection: close\r\nRetry-After: 1\r\n\r\nproxy is at capacity";

/// Answers `sock` 503 and closes it (on drop).
pub fn refuse(mut sock: TcpStream) {
    let mut scratch = [0u8; 512];
    // Whatever the client sent already: unread bytes would turn the close
    // into a reset. Two reads at most; the rest, if any, is its loss.
    for _ in 0..2 {
        if !matches!(sock.read(&mut scratch), Ok(n) if n == scratch.len()) {
            break;
        }
    }
    let _ = sock.write(UNAVAILABLE);
    let _ = sock.shutdown(std::net::Shutdown::Write);
}

/// `EMFILE` or `ENFILE`: the process or the system is out of descriptors.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The spare descriptor (see the module docs).
pub struct Spare(Option<File>);

impl Spare {
    pub fn open() -> Spare {
        Spare(File::open("/dev/null").ok())
    }

    /// Frees the spare's descriptor for one `accept`; `false` if there is
    /// none to free.
    pub fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Takes a descriptor again; `false` if none was free.
    pub fn restore(&mut self) -> bool {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
        self.0.is_some()
    }
}

/// The process's soft limit on open descriptors (`RLIMIT_NOFILE`); `None`
/// if unlimited or unknown.
pub fn descriptor_limit() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.and_then(|n| usize::try_from(n).ok())
}

/// Raises the soft descriptor limit to the hard one, as nginx's
/// `worker_rlimit_nofile` and Go's runtime do: the soft default (often
/// 1 024) is a compatibility setting for `select`, which nothing here uses.
/// Returns the limit in force afterwards.
pub fn raise_descriptor_limit() -> Option<usize> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        // Refused (a container's seccomp, say): the soft limit stays.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    descriptor_limit()
}

/// Descriptors a process of `threads` workers keeps for itself: standard
/// streams, and per worker its poller, listener, wake pair, signal pipe and
/// spare, with room to spare.
pub fn fixed_descriptors(threads: usize) -> usize {
    16 + 8 * threads
}

/// The default client limit: half of what the descriptor limit leaves
/// after [`fixed_descriptors`], the other half being for upstream
/// connections (each client uses at most one at a time; the rest idle in
/// the pool). 1 024 descriptors and two workers give 496 clients.
pub fn default_max_clients(limit: Option<usize>, threads: usize) -> usize {
    match limit {
        Some(n) => (n.saturating_sub(fixed_descriptors(threads)) / 2).max(1),
        None => 1 << 20,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_limit_leaves_half_the_descriptors_for_upstreams() {
        use super::{default_max_clients, descriptor_limit};
        assert_eq!(default_max_clients(Some(1024), 2), 496);
        assert_eq!(default_max_clients(Some(10), 2), 1);
        assert!(descriptor_limit().is_some_and(|n| n > 0));
    }
}
