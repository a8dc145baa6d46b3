//! Reactor configuration: limits and timings, with the original's defaults.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::pool::Limits;
use crate::time::millis_ceil;

/// How a [`Reactor`](crate::Reactor) limits, keeps and times out connections.
///
/// The defaults are those of POE::Component::Client::Keepalive 0.272. Build one
/// with [`Config::default`] and the `with_*` setters:
///
/// ```
/// use std::time::Duration;
/// let config = keepalive::Config::default()
///     .with_max_per_host(8)
///     .with_keep_alive(Duration::from_secs(30));
/// assert_eq!(config.max_per_host, 8);
/// ```
///
/// [`Reactor::new`](crate::Reactor::new) validates it and names the first bad
/// field in [`Error::InvalidConfig`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// At most this many connections per pool key, connecting plus lent.
    /// Requests over the limit wait in FIFO order. Default 4; must be ≥ 1.
    pub max_per_host: usize,
    /// At most this many sockets in all: connecting, lent and idle. A request
    /// that waits only because of this limit closes the least recently used
    /// idle socket of another key to make room. Default 128; must be ≥ 1.
    pub max_open: usize,
    /// How long a freed connection stays idle in the pool before it is closed.
    /// Default 15 s; must be at least 1 ms.
    pub keep_alive: Duration,
    /// Default request timeout, from `allocate` to the outcome, queue wait
    /// included. A request may set its own. Default 120 s.
    pub timeout: Duration,
    /// Local address every socket binds to before connecting, unless the
    /// request names its own. Default none: the kernel picks.
    pub bind_address: Option<IpAddr>,
    /// Set `TCP_NODELAY` on every socket. Default on: a pooled connection
    /// usually carries request/response traffic, where Nagle only adds delay.
    pub nodelay: bool,
    /// Schemes whose connections are TLS: the connect phase includes a
    /// handshake, and the lent connection reads and writes plaintext through
    /// rustls. Compared without regard to case, like request schemes.
    /// Default `["https"]`.
    pub tls_schemes: Vec<Cow<'static, str>>,
    /// The rustls client configuration for TLS schemes: trusted roots, client
    /// certificates, ALPN, session resumption. Default (`None`): Mozilla's
    /// root certificates from `webpki-roots`, the `ring` provider, TLS 1.2
    /// and 1.3, and an in-memory session cache, built on first use.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// At most this many readiness events, and at most this many expired
    /// timers, are handled by one [`poll_events`](crate::Reactor::poll_events)
    /// (or one tick of [`poll`](crate::Reactor::poll)); the rest wait for the
    /// next call, which then does not block. Bounds the latency one tick can
    /// add to everything else in the caller's loop. Default 1024; must be ≥ 1.
    pub max_events_per_tick: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_per_host: 4,
            max_open: 128,
            keep_alive: Duration::from_secs(15),
            timeout: Duration::from_secs(120),
            bind_address: None,
            nodelay: true,
            tls_schemes: vec![Cow::Borrowed("https")],
            tls: None,
            max_events_per_tick: 1024,
        }
    }
}

impl Config {
    /// Sets [`max_per_host`](Config::max_per_host).
    #[must_use]
    pub fn with_max_per_host(mut self, n: usize) -> Self {
        self.max_per_host = n;
        self
    }

    /// Sets [`max_open`](Config::max_open).
    #[must_use]
    pub fn with_max_open(mut self, n: usize) -> Self {
        self.max_open = n;
        self
    }

    /// Sets [`keep_alive`](Config::keep_alive).
    #[must_use]
    pub fn with_keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }

    /// Sets [`timeout`](Config::timeout).
    #[must_use]
    pub fn with_timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Sets [`bind_address`](Config::bind_address).
    #[must_use]
    pub fn with_bind_address(mut self, addr: IpAddr) -> Self {
        self.bind_address = Some(addr);
        self
    }

    /// Sets [`nodelay`](Config::nodelay).
    #[must_use]
    pub fn with_nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Sets the rustls configuration for TLS schemes (custom roots, client
    /// certificates, ALPN). Keep one `Arc` for all reactors that should share
    /// resumable sessions.
    #[must_use]
    pub fn with_tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Sets [`max_events_per_tick`](Config::max_events_per_tick).
    #[must_use]
    pub fn with_max_events_per_tick(mut self, n: usize) -> Self {
        self.max_events_per_tick = n;
        self
    }

    /// Makes `scheme` a TLS scheme too (besides `https`).
    pub fn with_tls_scheme(mut self, scheme: impl Into<Cow<'static, str>>) -> Self {
        self.tls_schemes.push(scheme.into());
        self
    }

    /// The validated limits, in the pool's units.
    pub(crate) fn limits(&self) -> Result<Limits, Error> {
        self.validate()?;
        Ok(Limits {
            max_per_host: self.max_per_host,
            max_open: self.max_open,
            keep_alive: millis_ceil(self.keep_alive),
            timeout: millis_ceil(self.timeout),
            bind_address: self.bind_address,
        })
    }

    /// Checks every field, as [`Reactor::new`](crate::Reactor::new) does.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first field that is out of range
    /// and what it must be.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.max_per_host == 0 {
            return bad("max_per_host", "must be at least 1");
        }
        if self.max_open == 0 {
            return bad("max_open", "must be at least 1");
        }
        // Slot and request indices are u32 inside the pool.
        if self.max_open > u32::MAX as usize / 2 {
            return bad("max_open", "must be below 2^31");
        }
        if self.max_events_per_tick == 0 {
            return bad("max_events_per_tick", "must be at least 1");
        }
        if self.keep_alive < Duration::from_millis(1) {
            return bad("keep_alive", "must be at least 1 ms");
        }
        if crate::time::millis_ceil(self.keep_alive) > crate::time::MAX_DELAY_MS
            || crate::time::millis_ceil(self.timeout) > crate::time::MAX_DELAY_MS
        {
            let field = if crate::time::millis_ceil(self.keep_alive) > crate::time::MAX_DELAY_MS {
                "keep_alive"
            } else {
                "timeout"
            };
            return bad(field, "must be below 10 years");
        }
        Ok(())
    }
}
