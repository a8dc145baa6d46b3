//! Why a name did not resolve.

use std::fmt;
use std::io;

/// Why a host name gave no address to connect to: the outcome of a
/// request [by name](crate::Request::host) fails with function
/// [`resolve`](crate::Function::Resolve), and
/// [`ConnectError::resolve_error`](crate::ConnectError::resolve_error)
/// says which of these it was.
///
/// Only a timeout has an OS error number (`ETIMEDOUT`), like the pool's own
/// timeouts (and a socket error its own): the rest are DNS answers, not
/// system call failures, and getaddrinfo's `EAI_*` codes are not errno
/// values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// The name does not exist (NXDOMAIN) as given nor with any search
    /// domain. Check the spelling and the search list. Cached for the
    /// zone's negative TTL.
    NxDomain,
    /// The name exists but has neither an AAAA nor an A record (NODATA).
    /// Cached for the zone's negative TTL.
    NoData,
    /// The name servers could not answer (SERVFAIL, REFUSED, NOTIMP,
    /// FORMERR): a broken zone or a server that will not serve us. Not
    /// cached; a later lookup asks again.
    ServerFailure,
    /// No name server answered within `timeout`, on any of the `attempts`
    /// rounds over all of them. Not cached.
    TimedOut,
    /// Every try failed with a socket error before it could time out (the
    /// servers' ports refuse, the network is unreachable). Not cached.
    Unreachable {
        /// The last try's OS error number, as the driver reported it.
        errno: Option<i32>,
    },
    /// More than 2^31 lookups are pending: answers are not being drained.
    /// Refused by `lookup` itself.
    TooManyLookups,
    /// The name cannot be looked up as given; fix it. Refused by `lookup`
    /// itself.
    InvalidName {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The name has addresses, but none of a family the request can use:
    /// its sockets bind to an address (`bind_address`) of the other
    /// family. Bind to an address of the name's family, or none.
    NoUsableAddress,
}

impl ResolveError {
    /// The OS error number, where there is a natural one: `ETIMEDOUT` for
    /// [`ResolveError::TimedOut`], the last socket error's for
    /// [`ResolveError::Unreachable`].
    #[must_use]
    pub fn errno(self) -> Option<i32> {
        match self {
            ResolveError::TimedOut => Some(libc::ETIMEDOUT),
            ResolveError::Unreachable { errno } => errno,
            _ => None,
        }
    }

    /// As an `io::Error` of a fitting kind carrying this error (so its
    /// message is the resolver's: "timed out" alone would not say that it
    /// was the name servers that did not answer); the OS error number is
    /// [`errno`](Self::errno)'s, read back through
    /// [`ConnectError::errno`](crate::ConnectError::errno).
    pub(crate) fn to_io_error(self) -> io::Error {
        let kind = match self {
            ResolveError::NxDomain | ResolveError::NoData => io::ErrorKind::NotFound,
            ResolveError::InvalidName { .. } => io::ErrorKind::InvalidInput,
            ResolveError::TimedOut => io::ErrorKind::TimedOut,
            ResolveError::Unreachable { errno: Some(errno) } => {
                io::Error::from_raw_os_error(errno).kind()
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NxDomain => f.write_str("no such host name (NXDOMAIN)"),
            ResolveError::NoData => {
                f.write_str("the host name has no IPv6 or IPv4 address (NODATA)")
            }
            ResolveError::ServerFailure => {
                f.write_str("the name servers failed to answer (SERVFAIL or REFUSED)")
            }
            ResolveError::TimedOut => {
                f.write_str("name lookup timed out: no name server answered on any attempt")
            }
            ResolveError::Unreachable { .. } => {
                f.write_str("no name server could be reached (socket errors on every try)")
            }
            ResolveError::TooManyLookups => {
                f.write_str("too many lookups pending (over 2^31 answers not drained)")
            }
            ResolveError::InvalidName { reason } => write!(f, "invalid host name: {reason}"),
            ResolveError::NoUsableAddress => f.write_str(
                "no address of a usable family (the name's addresses are all of the other \
                 family than the bind address)",
            ),
        }
    }
}

impl std::error::Error for ResolveError {}
