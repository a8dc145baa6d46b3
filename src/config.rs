//! Reactor configuration: limits and timings, with the original's defaults.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::pool::Limits;
use crate::time::millis_ceil;

/// The largest `max_events_per_tick`: 12 MiB of event buffer.
const MAX_EVENTS_PER_TICK: usize = 1 << 20;

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
    /// A connection by host name counts once while it connects, though Happy
    /// Eyeballs may hold an attempt per address of the name open for it at
    /// once, and the resolver's queries their own sockets (two per name
    /// being looked up): those are not counted.
    pub max_open: usize,
    /// How long a freed connection stays idle in the pool before it is closed.
    /// Default 15 s; at least 1 ms. `None`: idle connections never expire
    /// (for servers that decide: they close, and the pool notices).
    pub keep_alive: Option<Duration>,
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
    /// root certificates from `webpki-roots`, the crate's
    /// [provider](crate::tls_crypto_provider) (aws-lc-rs, or `ring` when
    /// that feature is the only one), TLS 1.2 and 1.3, and an in-memory
    /// session cache, built on first use.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// At most this many readiness events, and at most this many expired
    /// timers, are handled by one [`poll_events`](crate::Reactor::poll_events)
    /// (or one tick of [`poll`](crate::Reactor::poll)); the rest wait for the
    /// next call, which then does not block. Bounds the latency one tick can
    /// add to everything else in the caller's loop. A tick cut short checks
    /// each pooled connection it hands out with one peek instead of relying
    /// on readiness it did not read. Default 1024; from 1 to 2^20 (the
    /// poller's event buffer, 12 bytes an event, is allocated up front).
    pub max_events_per_tick: usize,
    /// A connection older than this (since its connect completed) is closed
    /// when it comes back instead of being pooled, and an idle one is closed
    /// when it reaches it (nginx's `keepalive_time`, curl's max-lifetime).
    /// Default `None`: no limit.
    pub max_lifetime: Option<Duration>,
    /// A connection handed out this many times is closed when it comes back
    /// (nginx's `keepalive_requests`). Default `None`: no limit; at least 1.
    pub max_uses: Option<u32>,
    /// Shortens each idle period's keep-alive and each connection's lifetime
    /// by a random amount up to this, so connections made together do not
    /// all expire together. Never lengthens them. Default zero: none.
    pub expiry_jitter: Duration,
    /// At most this many idle connections per key; a newly idle one over
    /// the limit closes that key's least recently used idle connection.
    /// Default `None`: only `max_per_host` bounds them; at least 1.
    pub max_idle_per_key: Option<usize>,
    /// At most this many requests wait in one key's queue; one more fails at
    /// once (function `queue`, `EAGAIN`) instead of waiting. Default `None`:
    /// unbounded, as the original.
    pub max_pending_per_key: Option<usize>,
    /// At most this many requests wait in all queues together; one more
    /// fails at once as above. Default `None`: unbounded.
    pub max_pending: Option<usize>,
    /// Report [`Event::Lifecycle`](crate::Event::Lifecycle) for every
    /// connection opened, parked idle and closed (with its
    /// [`CloseReason`](crate::CloseReason)). Default off: nothing is queued.
    pub lifecycle_events: bool,
    /// The resolver configuration file for requests [by
    /// name](crate::Request::host): name servers, search list, `ndots`,
    /// `timeout`, `attempts`, `rotate` (see the
    /// [host-names guide](crate::guides::host_names)).
    /// Read by [`Reactor::new`](crate::Reactor::new), and again when it
    /// changes (checked by its modification time, size and inode at most
    /// once a second, on a lookup; a file that cannot be read then keeps
    /// the last good text). A missing file
    /// means glibc's defaults (a server on 127.0.0.1, port 53, no search
    /// list, `ndots:1 timeout:5 attempts:2`); lines it does not understand
    /// are skipped, as glibc skips them. The `RES_OPTIONS` environment
    /// variable, if set, overrides its options, as with glibc. Default
    /// `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// Name servers to ask instead of those of
    /// [`resolv_conf`](Config::resolv_conf) (whose search list and options
    /// still apply), with their ports: at most 3 are used, as glibc does.
    /// Default empty: the file's.
    pub nameservers: Vec<SocketAddr>,
    /// The hosts file, looked up before DNS. Read by
    /// [`Reactor::new`](crate::Reactor::new), and again when it changes,
    /// as [`resolv_conf`](Config::resolv_conf) is; a missing file means no
    /// entries (`localhost` still answers `::1` and `127.0.0.1`, RFC 6761).
    /// Default `/etc/hosts`.
    pub hosts_file: PathBuf,
    /// Host names whose answers the resolver caches at most (least
    /// recently used evicted first); 0 turns the cache off. Default 1024.
    pub dns_cache_size: usize,
    /// Shortest time a positive answer is cached, whatever its TTL (a TTL
    /// of 0 included). Default 1 s.
    pub dns_ttl_floor: Duration,
    /// Longest time a positive answer is cached, whatever its TTL, so a
    /// long-lived pool notices a changed address. Default 1 h; at least the
    /// floor.
    pub dns_ttl_cap: Duration,
    /// Longest time a negative answer (no such name, no address) is cached;
    /// its zone's SOA decides within that (RFC 2308). Default 30 s.
    pub dns_negative_ttl_cap: Duration,
    /// Happy Eyeballs (RFC 8305): how long a connection attempt to one of a
    /// name's addresses may go unanswered before the next address is tried
    /// in parallel. Default 250 ms (the RFC's recommendation); at least
    /// 10 ms (its minimum).
    pub happy_eyeballs_delay: Duration,
    /// Happy Eyeballs' resolution delay (RFC 8305 §3): when a name's A
    /// answer comes before its AAAA answer, how long to wait for AAAA
    /// before connecting to the IPv4 addresses alone; AAAA addresses that
    /// come later join the race. An AAAA answer that comes first is used
    /// at once, and a family that fails or times out is not waited for.
    /// Default 50 ms (the RFC's recommendation); 0 connects as soon as
    /// either family is in.
    pub happy_eyeballs_resolution_delay: Duration,
    /// Keep the answers of names in use fresh: while a host name has
    /// connections (idle or lent), its answer is looked up again in the
    /// background when its TTL runs out (at most once per
    /// [`dns_ttl_floor`](Config::dns_ttl_floor)), and its connections to
    /// addresses that left the answer are closed with
    /// [`AddressGone`](crate::CloseReason::AddressGone): idle ones at
    /// once, lent ones when freed. A refresh that fails changes nothing
    /// and is tried again one floor later. Default on.
    pub dns_refresh: bool,
    /// How long [`poll`](crate::Reactor::poll) polls without waiting before
    /// it lets the thread sleep in the kernel: it looks for events with
    /// zero-timeout ticks until one comes or this much time has passed.
    /// Waking a sleeping thread costs the sender of the bytes a wake-up and
    /// the receiver the scheduler's latency (tens of microseconds on a
    /// virtual machine); a reply that comes within the spin skips both, so
    /// a request-response exchange at low concurrency finishes sooner.
    /// The cost is CPU: up to this long after every batch of events, and a
    /// whole core when events come more often than this (HAProxy's
    /// `busy-polling` makes the same trade, without the bound). Only CPU
    /// nobody else wanted: between looks the thread yields (`sched_yield`),
    /// so a thread ready to run on its core (the client, the upstream,
    /// another worker) gets the core at once, and a spin that had to give
    /// the core away ends in a sleep.
    /// Never delays an event or a deadline, and never waits past `poll`'s
    /// timeout. [`poll_events`](crate::Reactor::poll_events) is unaffected:
    /// an embedding loop spins, if it wants to, itself. Default zero (off);
    /// at most 1 s; 20 to 100 µs suits a low-latency proxy with a core to
    /// spare.
    pub busy_poll: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_per_host: 4,
            max_open: 128,
            keep_alive: Some(Duration::from_secs(15)),
            timeout: Duration::from_secs(120),
            bind_address: None,
            nodelay: true,
            tls_schemes: vec![Cow::Borrowed("https")],
            tls: None,
            max_events_per_tick: 1024,
            max_lifetime: None,
            max_uses: None,
            expiry_jitter: Duration::ZERO,
            max_idle_per_key: None,
            max_pending_per_key: None,
            max_pending: None,
            lifecycle_events: false,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            nameservers: Vec::new(),
            hosts_file: PathBuf::from("/etc/hosts"),
            dns_cache_size: 1024,
            dns_ttl_floor: Duration::from_secs(1),
            dns_ttl_cap: Duration::from_secs(3600),
            dns_negative_ttl_cap: Duration::from_secs(30),
            happy_eyeballs_delay: Duration::from_millis(250),
            happy_eyeballs_resolution_delay: Duration::from_millis(50),
            dns_refresh: true,
            busy_poll: Duration::ZERO,
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
        self.keep_alive = Some(d);
        self
    }

    /// Idle connections never expire: [`keep_alive`](Config::keep_alive)
    /// `None`.
    #[must_use]
    pub fn with_keep_alive_forever(mut self) -> Self {
        self.keep_alive = None;
        self
    }

    /// Sets [`max_lifetime`](Config::max_lifetime).
    #[must_use]
    pub fn with_max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = Some(d);
        self
    }

    /// Sets [`max_uses`](Config::max_uses).
    #[must_use]
    pub fn with_max_uses(mut self, n: u32) -> Self {
        self.max_uses = Some(n);
        self
    }

    /// Sets [`expiry_jitter`](Config::expiry_jitter).
    #[must_use]
    pub fn with_expiry_jitter(mut self, d: Duration) -> Self {
        self.expiry_jitter = d;
        self
    }

    /// Sets [`max_idle_per_key`](Config::max_idle_per_key).
    #[must_use]
    pub fn with_max_idle_per_key(mut self, n: usize) -> Self {
        self.max_idle_per_key = Some(n);
        self
    }

    /// Sets [`max_pending_per_key`](Config::max_pending_per_key).
    #[must_use]
    pub fn with_max_pending_per_key(mut self, n: usize) -> Self {
        self.max_pending_per_key = Some(n);
        self
    }

    /// Sets [`max_pending`](Config::max_pending).
    #[must_use]
    pub fn with_max_pending(mut self, n: usize) -> Self {
        self.max_pending = Some(n);
        self
    }

    /// Sets [`lifecycle_events`](Config::lifecycle_events).
    #[must_use]
    pub fn with_lifecycle_events(mut self, on: bool) -> Self {
        self.lifecycle_events = on;
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

    /// Sets [`busy_poll`](Config::busy_poll).
    #[must_use]
    pub fn with_busy_poll(mut self, d: Duration) -> Self {
        self.busy_poll = d;
        self
    }

    /// Sets [`resolv_conf`](Config::resolv_conf).
    #[must_use]
    pub fn with_resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.resolv_conf = path.into();
        self
    }

    /// Sets [`nameservers`](Config::nameservers).
    #[must_use]
    pub fn with_nameservers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.nameservers = servers;
        self
    }

    /// Sets [`hosts_file`](Config::hosts_file).
    #[must_use]
    pub fn with_hosts_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.hosts_file = path.into();
        self
    }

    /// Sets [`dns_cache_size`](Config::dns_cache_size).
    #[must_use]
    pub fn with_dns_cache_size(mut self, n: usize) -> Self {
        self.dns_cache_size = n;
        self
    }

    /// Sets [`dns_ttl_floor`](Config::dns_ttl_floor),
    /// [`dns_ttl_cap`](Config::dns_ttl_cap) and
    /// [`dns_negative_ttl_cap`](Config::dns_negative_ttl_cap).
    #[must_use]
    pub fn with_dns_ttl(mut self, floor: Duration, cap: Duration, negative_cap: Duration) -> Self {
        self.dns_ttl_floor = floor;
        self.dns_ttl_cap = cap;
        self.dns_negative_ttl_cap = negative_cap;
        self
    }

    /// Sets [`happy_eyeballs_delay`](Config::happy_eyeballs_delay).
    #[must_use]
    pub fn with_happy_eyeballs_delay(mut self, d: Duration) -> Self {
        self.happy_eyeballs_delay = d;
        self
    }

    /// Sets [`dns_refresh`](Config::dns_refresh).
    #[must_use]
    pub fn with_dns_refresh(mut self, on: bool) -> Self {
        self.dns_refresh = on;
        self
    }

    /// Sets [`happy_eyeballs_resolution_delay`](Config::happy_eyeballs_resolution_delay).
    #[must_use]
    pub fn with_happy_eyeballs_resolution_delay(mut self, d: Duration) -> Self {
        self.happy_eyeballs_resolution_delay = d;
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
            keep_alive: self.keep_alive.map(millis_ceil),
            timeout: millis_ceil(self.timeout),
            bind_address: self.bind_address,
            max_lifetime: self.max_lifetime.map(millis_ceil),
            max_uses: self.max_uses,
            // Rounded down: jitter only shortens, and never by more than asked.
            jitter: u64::try_from(self.expiry_jitter.as_millis()).unwrap_or(u64::MAX),
            max_idle_per_key: self.max_idle_per_key,
            max_pending_per_key: self.max_pending_per_key,
            max_pending: self.max_pending,
            lifecycle_events: self.lifecycle_events,
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
        // On 32-bit targets a poller token is the slot index alone, below
        // the two bits the reactor keeps (caller tokens, name lookups).
        if self.max_open > usize::MAX >> 2 {
            return bad("max_open", "must be below 2^30 on 32-bit targets");
        }
        if self.max_events_per_tick == 0 {
            return bad("max_events_per_tick", "must be at least 1");
        }
        // The poller's event buffer is allocated up front at this size.
        if self.max_events_per_tick > MAX_EVENTS_PER_TICK {
            return bad(
                "max_events_per_tick",
                "must be at most 1 048 576 (its buffer is allocated up front)",
            );
        }
        let too_long = |d: Duration| millis_ceil(d) > crate::time::MAX_DELAY_MS;
        if let Some(keep_alive) = self.keep_alive {
            if keep_alive < Duration::from_millis(1) {
                return bad("keep_alive", "must be at least 1 ms");
            }
            if too_long(keep_alive) {
                return bad("keep_alive", "must be below 10 years");
            }
        }
        if too_long(self.timeout) {
            return bad("timeout", "must be below 10 years");
        }
        if let Some(lifetime) = self.max_lifetime {
            if lifetime < Duration::from_millis(1) {
                return bad("max_lifetime", "must be at least 1 ms");
            }
            if too_long(lifetime) {
                return bad("max_lifetime", "must be below 10 years");
            }
        }
        if too_long(self.expiry_jitter) {
            return bad("expiry_jitter", "must be below 10 years");
        }
        if self.busy_poll > Duration::from_secs(1) {
            return bad(
                "busy_poll",
                "must be at most 1 s (a longer spin burns a core for nothing)",
            );
        }
        if self.max_uses == Some(0) {
            return bad("max_uses", "must be at least 1");
        }
        if self.max_idle_per_key == Some(0) {
            return bad("max_idle_per_key", "must be at least 1");
        }
        for (field, d) in [
            ("dns_ttl_floor", self.dns_ttl_floor),
            ("dns_ttl_cap", self.dns_ttl_cap),
            ("dns_negative_ttl_cap", self.dns_negative_ttl_cap),
            ("happy_eyeballs_delay", self.happy_eyeballs_delay),
            (
                "happy_eyeballs_resolution_delay",
                self.happy_eyeballs_resolution_delay,
            ),
        ] {
            if too_long(d) {
                return bad(field, "must be below 10 years");
            }
        }
        if self.dns_ttl_cap < self.dns_ttl_floor {
            return bad("dns_ttl_cap", "must be at least dns_ttl_floor");
        }
        if self.happy_eyeballs_delay < Duration::from_millis(10) {
            return bad(
                "happy_eyeballs_delay",
                "must be at least 10 ms (RFC 8305's minimum)",
            );
        }
        if self
            .nameservers
            .iter()
            .any(|s| s.ip().to_canonical().is_unspecified() || s.port() == 0)
        {
            return bad(
                "nameservers",
                "must not hold an unspecified address or port 0",
            );
        }
        Ok(())
    }
}
