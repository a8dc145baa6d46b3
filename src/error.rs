//! Errors: misuse of the API (returned from calls) and connection failures
//! (delivered in outcome events).

use std::fmt;
use std::io;

use crate::request::{Request, RequestId};
use crate::resolve::ResolveError;

/// A call was refused. Nothing was lost: values the call took are handed back
/// ([`AllocateError`] carries the request; a connection refused by
/// [`free`](crate::Reactor::free) goes back to the reactor that lent it).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`](crate::Config) field is out of range; fix the field named.
    InvalidConfig {
        /// The field, as spelled in `Config`.
        field: &'static str,
        /// What the field must be.
        reason: &'static str,
    },
    /// A [`Request`] cannot be served as built (empty scheme, port 0, a
    /// timeout too long to represent); fix the request.
    InvalidRequest {
        /// What is wrong.
        reason: &'static str,
    },
    /// The request id is not pending in this reactor: it already had its
    /// outcome, was deallocated, or belongs to another reactor.
    UnknownRequest(RequestId),
    /// The connection was lent by another reactor. It has been returned to
    /// its own reactor.
    ForeignConnection,
    /// The timer id is not live in this reactor: it fired, was cancelled, or
    /// belongs to another reactor.
    UnknownTimer(crate::TimerId),
    /// A caller's poller token is outside the range callers may use (the top
    /// bit is the reactor's, for its own sockets): use a smaller token.
    TokenOutOfRange(mio::Token),
    /// [`Reactor::shutdown`](crate::Reactor::shutdown) was called; the reactor
    /// takes no new requests.
    ShutDown,
    /// The operating system refused something the reactor needs (creating the
    /// poller, waiting on it).
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { field, reason } => {
                write!(f, "invalid config: {field} {reason}")
            }
            Error::InvalidRequest { reason } => write!(f, "invalid request: {reason}"),
            Error::UnknownRequest(id) => {
                write!(f, "request {id:?} is not pending in this reactor")
            }
            Error::ForeignConnection => {
                f.write_str("connection belongs to another reactor (returned to it)")
            }
            Error::UnknownTimer(id) => write!(f, "timer {id:?} is not live in this reactor"),
            Error::TokenOutOfRange(token) => write!(
                f,
                "token {} is out of the caller's range (must be below 2^{})",
                token.0,
                usize::BITS - 1
            ),
            Error::ShutDown => f.write_str("reactor is shut down"),
            Error::Io(e) => write!(f, "reactor I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// [`Reactor::allocate`](crate::Reactor::allocate) refused a request; the
/// request, context included, is handed back.
pub struct AllocateError<C> {
    /// Why.
    pub error: Error,
    /// The request, unchanged. Boxed so that `allocate`'s result stays small
    /// on the hit path; the box is made only when a request is refused.
    pub request: Box<Request<C>>,
}

impl<C> AllocateError<C> {
    /// The request, to retry or to take the context back.
    #[must_use]
    pub fn into_request(self) -> Request<C> {
        *self.request
    }
}

impl<C> fmt::Debug for AllocateError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllocateError")
            .field("error", &self.error)
            .field("target", &self.request.target())
            .finish_non_exhaustive()
    }
}

impl<C> fmt::Display for AllocateError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<C> std::error::Error for AllocateError<C> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<C> From<AllocateError<C>> for Error {
    fn from(e: AllocateError<C>) -> Self {
        e.error
    }
}

/// The step of establishing a connection that failed, the original's
/// `function` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Function {
    /// Creating the socket or setting its options (`socket`, `setsockopt`).
    Socket,
    /// Binding to the configured local address.
    Bind,
    /// The TCP connect, or the request timing out before an outcome
    /// (errno `ETIMEDOUT`).
    Connect,
    /// The TLS handshake.
    Tls,
    /// The reactor was shut down before the request was served
    /// (errno `ECANCELED`).
    Shutdown,
    /// The request's wait queue was full
    /// ([`max_pending_per_key`](crate::Config::max_pending_per_key) or
    /// [`max_pending`](crate::Config::max_pending); errno `EAGAIN`): it
    /// failed at once instead of waiting.
    Queue,
    /// Looking up the target's host name: no such name, no address, the
    /// name servers failed or did not answer (errno `ETIMEDOUT`).
    Resolve,
}

impl Function {
    /// The name the original uses: `"socket"`, `"bind"`, `"connect"`, `"tls"`,
    /// `"resolve"` (host name lookups); and ours: `"shutdown"`, `"queue"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Socket => "socket",
            Function::Bind => "bind",
            Function::Connect => "connect",
            Function::Tls => "tls",
            Function::Shutdown => "shutdown",
            Function::Queue => "queue",
            Function::Resolve => "resolve",
        }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request got no connection: the original's `function`, `error_num`
/// and `error_str`.
#[derive(Debug)]
pub struct ConnectError {
    function: Function,
    /// For a `resolve` failure, an error carrying the [`ResolveError`]
    /// (kept in the `io::Error`, so outcomes stay small).
    error: io::Error,
}

impl ConnectError {
    pub(crate) fn new(function: Function, error: io::Error) -> Self {
        ConnectError { function, error }
    }

    pub(crate) fn from_errno(function: Function, errno: i32) -> Self {
        ConnectError::new(function, io::Error::from_raw_os_error(errno))
    }

    /// The request's deadline passed first: `connect`, `ETIMEDOUT`.
    pub(crate) fn timed_out() -> Self {
        ConnectError::from_errno(Function::Connect, libc::ETIMEDOUT)
    }

    /// The wait queue was full: `queue`, `EAGAIN`.
    pub(crate) fn queue_full() -> Self {
        ConnectError::from_errno(Function::Queue, libc::EAGAIN)
    }

    /// The reactor was shut down first: `shutdown`, `ECANCELED`.
    pub(crate) fn cancelled() -> Self {
        ConnectError::from_errno(Function::Shutdown, libc::ECANCELED)
    }

    /// The host name did not resolve: `resolve`, with `ETIMEDOUT` for a
    /// lookup that timed out, and the resolver's message.
    pub(crate) fn resolve(error: ResolveError) -> Self {
        ConnectError::new(Function::Resolve, error.to_io_error())
    }

    /// For a failure of function [`resolve`](Function::Resolve): why the
    /// host name gave no address (no such name, no address of a usable
    /// family, the name servers failed or did not answer). `None` for
    /// every other function.
    #[must_use]
    pub fn resolve_error(&self) -> Option<ResolveError> {
        if self.function != Function::Resolve {
            return None;
        }
        self.error
            .get_ref()?
            .downcast_ref::<ResolveError>()
            .copied()
    }

    /// The step that failed.
    #[must_use]
    pub fn function(&self) -> Function {
        self.function
    }

    /// The OS error number (`ECONNREFUSED`, `ETIMEDOUT`, …), where the failure
    /// has one; TLS failures have none, nor do DNS answers (no such name,
    /// server failure), while a lookup that timed out has `ETIMEDOUT`.
    #[must_use]
    pub fn errno(&self) -> Option<i32> {
        match self.resolve_error() {
            Some(e) => e.errno(),
            None => self.error.raw_os_error(),
        }
    }

    /// A human-readable message, like the original's `error_str`.
    #[must_use]
    pub fn message(&self) -> String {
        match self.error.raw_os_error() {
            // io::Error's Display appends " (os error N)"; the original's
            // error_str is just the text.
            Some(_) => {
                let s = self.error.to_string();
                match s.rfind(" (os error ") {
                    Some(i) => s[..i].to_owned(),
                    None => s,
                }
            }
            None => self.error.to_string(),
        }
    }

    /// The underlying I/O error.
    #[must_use]
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }

    /// Whether this is a request timeout (`connect`, `ETIMEDOUT`).
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.function == Function::Connect && self.errno() == Some(libc::ETIMEDOUT)
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno() {
            Some(n) => write!(f, "{} error {n}: {}", self.function, self.message()),
            None => write!(f, "{} error: {}", self.function, self.message()),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
