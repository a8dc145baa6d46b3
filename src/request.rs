//! What a caller asks for: a [`Request`] names a [`Target`] and carries the
//! caller's context; [`RequestId`] names it until its outcome.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The remote host of a [`Target`]: an address, a name the reactor
/// resolves (see [`Request::host`]), or a Unix-domain socket's path (see
/// [`Request::unix`]).
///
/// Part of the pool key as given: connections made for a name are shared by
/// every request for that name, whichever of its addresses they reached,
/// and never with a request for an address, even the same one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A numeric address: no name lookup.
    Addr(IpAddr),
    /// A host name, in lower case (names compare without regard to case),
    /// as the caller gave it otherwise (a trailing dot is kept: it skips
    /// the search list).
    Name(Cow<'static, str>),
    /// A Unix-domain stream socket: a filesystem path, or on Linux an
    /// abstract-namespace name written with a leading NUL byte
    /// (`"\0name"`). Compared byte for byte, as given: `/run/a.sock` and
    /// `/run/./a.sock` are two pools.
    Unix(Cow<'static, Path>),
}

impl Host {
    /// The host of `name`: a numeric [`Host::Addr`] if it parses as an
    /// IPv4 or IPv6 literal (brackets allowed: `[::1]`), a [`Host::Unix`]
    /// for `unix:` and a path (nginx's spelling; `unix:@name` is the
    /// abstract name `name`), else a [`Host::Name`] in lower case.
    /// Allocates only for a name with an upper-case letter, an owned
    /// `unix:` string, or an abstract name.
    ///
    /// ```
    /// use std::path::Path;
    /// use keepalive::Host;
    /// assert_eq!(Host::parse("[::1]"), Host::Addr("::1".parse().unwrap()));
    /// assert_eq!(Host::parse("10.0.0.1"), Host::Addr([10, 0, 0, 1].into()));
    /// assert_eq!(Host::parse("Example.ORG"), Host::Name("example.org".into()));
    /// assert_eq!(Host::parse("1.2.3").name(), Some("1.2.3")); // not an address
    /// assert_eq!(Host::parse("unix:/run/app.sock").unix_path(), Some(Path::new("/run/app.sock")));
    /// assert_eq!(Host::parse("unix:@app").unix_path(), Some(Path::new("\0app")));
    /// assert_eq!(Host::parse(String::from("unix:/a")).to_string(), "unix:/a");
    /// ```
    pub fn parse(name: impl Into<Cow<'static, str>>) -> Host {
        let name = name.into();
        if name.starts_with(UNIX_PREFIX) {
            return Host::Unix(unix_path_of(name));
        }
        let literal = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(&name);
        // One pass, as this is on the hit path: only text with a colon
        // (IPv6) or of digits and dots alone (IPv4) can be a literal, and
        // only text with an upper-case letter needs lowering.
        let (mut colon, mut numeric, mut upper) = (false, true, false);
        for b in literal.bytes() {
            colon |= b == b':';
            numeric &= b.is_ascii_digit() || b == b'.';
            upper |= b.is_ascii_uppercase();
        }
        if colon || numeric {
            if let Ok(ip) = literal.parse::<IpAddr>() {
                return Host::Addr(ip);
            }
        }
        if upper {
            Host::Name(Cow::Owned(name.to_ascii_lowercase()))
        } else {
            Host::Name(name)
        }
    }

    /// The address, for a numeric host.
    #[must_use]
    pub fn addr(&self) -> Option<IpAddr> {
        match self {
            Host::Addr(ip) => Some(*ip),
            Host::Name(_) | Host::Unix(_) => None,
        }
    }

    /// The name, for a host given by name.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(name) => Some(name),
            Host::Addr(_) | Host::Unix(_) => None,
        }
    }

    /// The socket's path, for a Unix-domain host (an abstract name starts
    /// with a NUL byte).
    #[must_use]
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Host::Unix(path) => Some(path),
            Host::Addr(_) | Host::Name(_) => None,
        }
    }
}

/// How [`Host::parse`] and [`Display`](fmt::Display) mark a Unix-domain
/// path, as nginx writes it (`proxy_pass http://unix:/path`).
const UNIX_PREFIX: &str = "unix:";

/// The path after `unix:` in `text`: `@name` is the abstract name `name`
/// (written with a leading NUL, as the kernel takes it).
fn unix_path_of(text: Cow<'static, str>) -> Cow<'static, Path> {
    let text = match text {
        Cow::Borrowed(t) => Cow::Borrowed(&t[UNIX_PREFIX.len()..]),
        Cow::Owned(mut t) => {
            t.drain(..UNIX_PREFIX.len());
            Cow::Owned(t)
        }
    };
    if let Some(name) = text.strip_prefix('@') {
        return Cow::Owned(PathBuf::from(format!("\0{name}")));
    }
    match text {
        Cow::Borrowed(t) => Cow::Borrowed(Path::new(t)),
        Cow::Owned(t) => Cow::Owned(PathBuf::from(t)),
    }
}

impl fmt::Display for Host {
    /// An address as written in a URL authority (`127.0.0.1`, `[::1]`), the
    /// name, or a Unix-domain path as [`Host::parse`] reads it
    /// (`unix:/run/app.sock`, `unix:@name` for an abstract one).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Addr(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Addr(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
            Host::Unix(path) => {
                let bytes = path.as_os_str().as_bytes();
                match bytes.split_first() {
                    Some((0, name)) => write!(f, "{UNIX_PREFIX}@{}", String::from_utf8_lossy(name)),
                    _ => write!(f, "{UNIX_PREFIX}{}", path.display()),
                }
            }
        }
    }
}

/// Where a connection goes and which pool it belongs to: the pool key.
///
/// Two requests share idle connections only when their targets are equal:
/// scheme, host, port, caller tag, local bind address and TLS server name
/// all match. So
/// `http` and `https` to one address never share a socket, and a proxy can
/// keep tunnels apart with a [tag](Request::tag) (the original's
/// `for_scheme`/`for_addr`/`for_port`). A host given by name is keyed by
/// the name, never by what it resolved to (see [`Host`]).
///
/// Strings are `Cow<'static, str>` so that the usual literal schemes (and
/// host names) cost no allocation on the hit path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub(crate) scheme: Cow<'static, str>,
    pub(crate) host: Host,
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

    /// The remote host, echoed: an address, or the name asked for.
    #[must_use]
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The host name, for a target given by name (lower case).
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.host.name()
    }

    /// The socket's path, for a [Unix-domain](Request::unix) target.
    #[must_use]
    pub fn unix_path(&self) -> Option<&Path> {
        self.host.unix_path()
    }

    /// The remote address, echoed, for a numeric target. A target given by
    /// name or a Unix-domain path has no fixed address: this is then the
    /// unspecified address `::`, never a real peer. The address a connection reached is its
    /// [`peer_addr`](crate::Connection::peer_addr); [`host`](Target::host)
    /// tells the two kinds apart.
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        match self.host {
            Host::Addr(ip) => ip,
            Host::Name(_) | Host::Unix(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    /// The remote port, echoed; 0 for a Unix-domain target.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The remote socket address: [`addr`](Target::addr) and the port, so
    /// `[::]:port` for a target given by name.
    #[must_use]
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr(), self.port)
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
        match self.host {
            // A path has no port: `http://unix:/run/app.sock`.
            Host::Unix(_) => write!(f, "{}://{}", self.scheme, self.host)?,
            _ => write!(f, "{}://{}:{}", self.scheme, self.host, self.port)?,
        }
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
/// §3.1): `HTTPS` must select TLS and share a pool with `https`; so are
/// host names (RFC 4343). Costs an allocation only when the text has an
/// upper-case letter.
pub(crate) fn lowercase(mut scheme: Cow<'static, str>) -> Cow<'static, str> {
    lower_in_place(&mut scheme);
    scheme
}

/// [`lowercase`] without moving the text in and out: `Request::new` runs
/// on every allocate, and the move cost more than the check.
#[inline]
fn lower_in_place(text: &mut Cow<'static, str>) {
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        *text = Cow::Owned(text.to_ascii_lowercase());
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
    pub(crate) fresh: bool,
    pub(crate) context: C,
}

impl<C> Request<C> {
    /// A request for a connection to `addr`:`port`, pooled under `scheme`.
    ///
    /// The scheme is free-form and case-insensitive (`HTTPS` is `https`; it
    /// is kept in lower case): it only partitions the pool (and, once TLS
    /// is configured, selects it). The address is numeric by type: no name
    /// lookup, at no cost; for a host name use [`Request::host`].
    /// `context` comes back in the outcome, whatever it is.
    pub fn new(scheme: impl Into<Cow<'static, str>>, addr: IpAddr, port: u16, context: C) -> Self {
        Request::from_parts(scheme, Host::Addr(addr), port, context)
    }

    /// A request for a connection to host `name`, port `port`, pooled
    /// under `scheme` and the name.
    ///
    /// ```
    /// use keepalive::{Host, Request};
    /// let req = Request::host("https", "Example.COM", 443, ());
    /// assert_eq!(req.target().name(), Some("example.com"));
    /// // An IP literal is a numeric request: no lookup.
    /// let req = Request::host("http", "127.0.0.1", 8080, ());
    /// assert_eq!(req.target().host(), &Host::Addr([127, 0, 0, 1].into()));
    /// ```
    ///
    /// The reactor resolves the name when it must open a connection (the
    /// hosts file, then its cache, then DNS; see the
    /// [host-names guide](crate::guides::host_names)),
    /// inside the request's timeout, and connects to its addresses with
    /// Happy Eyeballs. A pooled connection for the name is reused without
    /// a lookup. The pool key is the name in lower case (names compare
    /// without regard to case): connections to it are shared whatever
    /// address they reached, and never with a request by address. A name
    /// that parses as an IP literal (`"127.0.0.1"`, `"::1"`, `"[::1]"`) is
    /// numeric, as with [`Request::new`]. For TLS schemes the name is also
    /// the default [server name](Request::server_name).
    ///
    /// A borrowed lower-case name (a literal) costs no allocation; a name
    /// with upper-case letters is lowered into a new string. An invalid
    /// name is refused by [`allocate`](crate::Reactor::allocate).
    pub fn host(
        scheme: impl Into<Cow<'static, str>>,
        name: impl Into<Cow<'static, str>>,
        port: u16,
        context: C,
    ) -> Self {
        // `Host::parse` lowered the name already.
        Request::from_parts(scheme, Host::parse(name), port, context)
    }

    /// A request for `host`, numeric or by name: [`Request::new`] and
    /// [`Request::host`] in one. A name is lowered like any other (names
    /// compare without regard to case), however the `Host` was built.
    pub fn with_host(
        scheme: impl Into<Cow<'static, str>>,
        host: Host,
        port: u16,
        context: C,
    ) -> Self {
        let host = match host {
            Host::Name(mut name) => {
                lower_in_place(&mut name);
                Host::Name(name)
            }
            other @ (Host::Addr(_) | Host::Unix(_)) => other,
        };
        Request::from_parts(scheme, host, port, context)
    }

    /// A request for a connection to the Unix-domain stream socket at
    /// `path`, pooled under `scheme` and the path.
    ///
    /// ```
    /// use std::path::Path;
    /// use keepalive::Request;
    /// let req = Request::unix("http", Path::new("/run/app.sock"), ());
    /// assert_eq!(req.target().unix_path(), Some(Path::new("/run/app.sock")));
    /// assert_eq!(req.target().to_string(), "http://unix:/run/app.sock");
    /// ```
    ///
    /// Pooled like any target: the limits, the FIFO wait, idle watching,
    /// validation at delivery, keep-alive and the policies all hold, keyed
    /// by the path byte for byte. On Linux a path that starts with a NUL
    /// byte names a socket in the abstract namespace (`"\0name"`, which
    /// [`Host::parse`] also reads from `unix:@name`). The path must fit
    /// `sun_path` (107 bytes, 108 for an abstract name with its NUL):
    /// [`allocate`](crate::Reactor::allocate) refuses a longer one, an
    /// empty one, and a file path with a NUL byte inside. There is no
    /// port, and no [bind address](Request::bind_address): one given is
    /// refused; [`Config::bind_address`](crate::Config::bind_address) does
    /// not apply.
    ///
    /// For a TLS scheme a [`server_name`](Request::server_name) is
    /// required (a path is no name to check a certificate against);
    /// without one `allocate` refuses the request.
    ///
    /// The connect is one `socket` and one `connect`, which on a Unix
    /// socket succeeds or fails at once: `ENOENT` (no such path),
    /// `ECONNREFUSED` (nobody listens), `EACCES` (no permission) or
    /// `EAGAIN` (the listener's backlog is full) come back as an outcome
    /// with function `connect`. A `'static` path (or `Path::new` of a
    /// literal) costs no allocation on the hit path.
    pub fn unix(
        scheme: impl Into<Cow<'static, str>>,
        path: impl Into<Cow<'static, Path>>,
        context: C,
    ) -> Self {
        Request::from_parts(scheme, Host::Unix(path.into()), 0, context)
    }

    fn from_parts(scheme: impl Into<Cow<'static, str>>, host: Host, port: u16, context: C) -> Self {
        let mut scheme = scheme.into();
        lower_in_place(&mut scheme);
        // A path has no port: however the request was built, one path is
        // one key.
        let port = if matches!(host, Host::Unix(_)) {
            0
        } else {
            port
        };
        Request {
            target: Target {
                scheme,
                host,
                port,
                tag: None,
                bind: None,
                server_name: None,
            },
            timeout: None,
            fresh: false,
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

    /// Asks for a new connection, never an idle one from the pool: for a
    /// retry after a pooled connection failed in a way that says nothing of
    /// the server (the keep-alive race), where a second pooled connection
    /// may have gone stale the same way. Limits and the wait queue apply as
    /// for any request (a fresh request at the head of its key's queue is
    /// served by a connect, never by a connection freed meanwhile); once
    /// returned, the connection is pooled like any other of its key.
    pub fn fresh(mut self) -> Self {
        self.fresh = true;
        self
    }

    /// Whether [`Request::fresh`] was asked.
    pub fn is_fresh(&self) -> bool {
        self.fresh
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
    /// host name of a request [by name](Request::host), or for the numeric
    /// address. Part of the pool key: connections made for one name
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
            .field("fresh", &self.fresh)
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
