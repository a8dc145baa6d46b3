//! What a caller asks for: a [`Request`] names a [`Target`] and carries the
//! caller's context; [`RequestId`] names it until its outcome.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where a connection goes and which pool it belongs to: the pool key.
///
/// Two requests share idle connections only when their targets are equal:
/// scheme, address, port, caller tag, local bind address and TLS server name
/// all match. So
/// `http` and `https` to one address never share a socket, and a proxy can
/// keep tunnels apart with a [tag](Request::tag) (the original's
/// `for_scheme`/`for_addr`/`for_port`).
///
/// Strings are `Cow<'static, str>` so that the usual literal schemes cost no
/// allocation on the hit path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub(crate) scheme: Cow<'static, str>,
    pub(crate) addr: IpAddr,
    pub(crate) port: u16,
    pub(crate) tag: Option<Cow<'static, str>>,
    pub(crate) bind: Option<IpAddr>,
    pub(crate) server_name: Option<Cow<'static, str>>,
}

impl Target {
    /// The scheme, echoed in lower case (`"http"`, `"https"`, or anything the
    /// caller made up): schemes compare without regard to case.
    #[must_use]
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The remote address, echoed.
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The remote port, echoed.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The remote socket address.
    #[must_use]
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// The caller's partition tag, if any.
    #[must_use]
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The TLS server name (SNI and certificate check), if set.
    #[must_use]
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The local address sockets for this target bind to, if any.
    #[must_use]
    pub fn bind_address(&self) -> Option<IpAddr> {
        self.bind
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.socket_addr())?;
        if let Some(name) = &self.server_name {
            write!(f, " ({name})")?;
        }
        if let Some(tag) = &self.tag {
            write!(f, " [{tag}]")?;
        }
        Ok(())
    }
}

/// Whether a connection came from the idle pool, the original's `from_cache`.
/// A new connection has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FromCache {
    /// An idle connection was in the pool when the request was allocated.
    Immediate,
    /// The request waited (a limit was full) and got a connection another
    /// user freed.
    Deferred,
}

/// `scheme` in lower case. URI schemes are case-insensitive (RFC 3986
/// §3.1): `HTTPS` must select TLS and share a pool with `https`. Costs an
/// allocation only when the scheme has an upper-case letter.
pub(crate) fn lowercase(scheme: Cow<'static, str>) -> Cow<'static, str> {
    if scheme.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(scheme.to_ascii_lowercase())
    } else {
        scheme
    }
}

/// A request for a connection, built with [`Request::new`] and handed to
/// [`Reactor::allocate`](crate::Reactor::allocate).
///
/// ```
/// use std::time::Duration;
/// use keepalive::Request;
/// let req = Request::new("http", [127, 0, 0, 1].into(), 8080, "my context")
///     .timeout(Duration::from_secs(5));
/// assert_eq!(req.target().port(), 8080);
/// ```
pub struct Request<C> {
    pub(crate) target: Target,
    pub(crate) timeout: Option<Duration>,
    pub(crate) context: C,
}

impl<C> Request<C> {
    /// A request for a connection to `addr`:`port`, pooled under `scheme`.
    ///
    /// The scheme is free-form and case-insensitive (`HTTPS` is `https`; it
    /// is kept in lower case): it only partitions the pool (and, once TLS
    /// is configured, selects it). The address is numeric by type; a
    /// hostname must be resolved first. `context` comes back in the
    /// outcome, whatever it is.
    pub fn new(scheme: impl Into<Cow<'static, str>>, addr: IpAddr, port: u16, context: C) -> Self {
        Request {
            target: Target {
                scheme: lowercase(scheme.into()),
                addr,
                port,
                tag: None,
                bind: None,
                server_name: None,
            },
            timeout: None,
            context,
        }
    }

    /// Fails the request with `connect`/`ETIMEDOUT` if no outcome is ready
    /// within `d` of `allocate`, queue wait included. Defaults to
    /// [`Config::timeout`](crate::Config::timeout). Zero fails at the next
    /// poll unless an idle connection is ready.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Keeps this request's connections in a pool of their own: only requests
    /// with an equal tag share them. A proxy uses it to keep a tunnel for one
    /// origin apart from plain connections to the same proxy.
    pub fn tag(mut self, tag: impl Into<Cow<'static, str>>) -> Self {
        self.target.tag = Some(tag.into());
        self
    }

    /// For a TLS scheme: the name to send as SNI and to check the server's
    /// certificate against. Without it the certificate must be valid for the
    /// numeric address. Part of the pool key: connections made for one name
    /// are never handed to a request for another.
    pub fn server_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.target.server_name = Some(name.into());
        self
    }

    /// Binds this request's sockets to `addr`, overriding
    /// [`Config::bind_address`](crate::Config::bind_address).
    pub fn bind_address(mut self, addr: IpAddr) -> Self {
        self.target.bind = Some(addr);
        self
    }

    /// Where the request goes.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The caller's context.
    pub fn context(&self) -> &C {
        &self.context
    }

    /// Takes the request apart, giving the context back.
    pub fn into_context(self) -> C {
        self.context
    }
}

impl<C> fmt::Debug for Request<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("target", &self.target)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Names a pending request, from [`allocate`](crate::Reactor::allocate) until
/// its outcome event, and tags that event.
///
/// Ids carry their reactor and a generation, so an id whose request has
/// ended is never mistaken for a later request that reuses its slot, nor an
/// id from another reactor for one of this reactor's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub(crate) reactor: u32,
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RequestId({}:{}.{})",
            self.reactor, self.index, self.generation
        )
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}.{}", self.reactor, self.index, self.generation)
    }
}

/// Names a connection while its socket lives, and tags its
/// [`Readiness`](crate::Readiness) and [`Lifecycle`](crate::Lifecycle) events. Generational: a later socket in
/// the same slot gets a different id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// A dense index: below the number of connections ever open at once
    /// (so below [`max_open`](crate::Config::max_open)), reused by a later
    /// connection once this one closed. Index a plain `Vec` with it and keep
    /// the whole `ConnId` to tell a later connection from this one.
    #[must_use]
    pub fn index(&self) -> usize {
        self.index as usize
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({}.{})", self.index, self.generation)
    }
}
