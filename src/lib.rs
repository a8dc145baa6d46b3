//! Client connections with keep-alive pooling, on a single-threaded reactor
//! that the caller owns.
//!
//! `keepalive` re-creates Perl's POE::Component::Client::Keepalive on raw
//! mio: you [`allocate`](Reactor::allocate) a connection to a scheme, address
//! (or [host name](#host-names)) and port; the [`Reactor`] hands back an idle kept-alive connection or
//! connects a new one, within per-host and global limits, and reports the
//! outcome as an [`Event`] tagged with your [`RequestId`]. When you are done,
//! [`free`](Reactor::free) the [`Connection`] (or drop it) and it goes back
//! to the pool, watched for a remote close until it is reused or expires.
//!
//! There is no runtime and no thread: everything happens inside
//! [`poll`](Reactor::poll) or [`poll_events`](Reactor::poll_events), which
//! you call from your own loop.
//!
//! # Guides
//!
//! These docs give the shape; the [`guides`] give the depth, one topic a
//! page, every example in them compiled and run as a doc test:
//!
//! - [Embedding](guides::embedding): the tick contract, a checkout without
//!   a poll, the warm pool, the reactor as your whole loop, threads, tokio,
//!   calloop and `poll(2)`.
//! - [Writing a proxy](guides::proxy): the example proxy and what it
//!   guarantees against misbehaving clients.
//! - [Host names](guides::host_names), [TLS](guides::tls) and
//!   [Unix-domain sockets](guides::unix_sockets).
//! - [Configuration, policies and observability](guides::policies).
//! - [Guarantees, costs and reliability](guides::guarantees): what always
//!   holds, what it costs, and the fault suites that show it.
//! - [Performance](guides::performance): the benchmarks and every figure.
//! - [Migrating from POE::Component::Client::Keepalive](guides::migrating_from_poe).
//! - [How it is built, and its dependencies](guides::architecture).
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use keepalive::{Config, Event, Events, Reactor, Request};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
//! # let port = server.local_addr()?.port();
//! # std::thread::spawn(move || {
//! #     for s in server.incoming() { let mut s = s.unwrap();
//! #         std::thread::spawn(move || { let mut b = [0; 64];
//! #             while let Ok(n) = s.read(&mut b) { if n == 0 { break } s.write_all(&b[..n]).unwrap(); } }); }
//! # });
//! let mut reactor: Reactor<&str> = Reactor::new(Config::default())?;
//! let mut events = Events::new();
//!
//! // 1. Ask for a connection; the context comes back with the outcome.
//! reactor.allocate(Request::new("echo", [127, 0, 0, 1].into(), port, "first"))?;
//!
//! // 2. Poll until the outcome arrives.
//! let mut conn = loop {
//!     reactor.poll(&mut events, Some(Duration::from_secs(5)))?;
//!     if let Some(Event::Outcome(outcome)) = events.drain().next() {
//!         assert_eq!(outcome.context, "first");
//!         break outcome.result?;
//!     }
//! };
//! assert_eq!(conn.from_cache(), None); // a new connection
//!
//! // 3. Use it (nonblocking), then give it back.
//! conn.write_all(b"ping")?;
//! # let mut buf = [0; 4]; let mut got = 0;
//! # while got < 4 { match conn.read(&mut buf[got..]) { Ok(n) => got += n,
//! #     Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => reactor.poll(&mut events, Some(Duration::from_millis(10)))?,
//! #     Err(e) => return Err(e.into()) } }
//! # events.drain().for_each(drop);
//! reactor.free(conn)?;
//!
//! // 4. The next request to the same target reuses it.
//! reactor.allocate(Request::new("echo", [127, 0, 0, 1].into(), port, "second"))?;
//! reactor.poll(&mut events, Some(Duration::from_secs(5)))?;
//! let Some(Event::Outcome(outcome)) = events.drain().next() else { unreachable!() };
//! assert_eq!(outcome.result?.from_cache(), Some(keepalive::FromCache::Immediate));
//! # Ok(())
//! # }
//! ```
//!
//! # The tick contract
//!
//! A program that has its own event loop embeds the reactor like this:
//!
//! 1. Wait until [`as_raw_fd`](std::os::fd::AsRawFd::as_raw_fd) of the reactor
//!    is readable, or until [`next_timeout`](Reactor::next_timeout) has passed
//!    (`None`: no deadline), whichever is first. The descriptor is the
//!    reactor's epoll instance; register it in your loop once.
//! 2. Call [`poll_events`](Reactor::poll_events). It never blocks.
//! 3. Handle the [`Events`]: each [`Event::Outcome`] answers one request with a
//!    connection or an error; each [`Event::Ready`] says a lent connection is
//!    readable or writable. Read and write until `WouldBlock`.
//!    [`Event::Source`] and [`Event::Timer`] report the caller's own sources
//!    and timers.
//! 4. [`allocate`](Reactor::allocate), [`free`](Reactor::free) or drop
//!    connections as your work requires.
//! 5. Go back to 1, computing `next_timeout` afresh: allocating from the
//!    pool, freeing or dropping a connection makes it zero.
//!
//! A program without its own loop calls [`poll`](Reactor::poll), which does
//! 1 and 2 itself. The [embedding guide](guides::embedding) shows it nested
//! in a second `mio::Poll`, in tokio, and in `poll(2)`-style loops.
//!
//! A program can also make the reactor its whole loop: register its own
//! sources ([`register`](Reactor::register), under its own tokens) and set
//! timers on the reactor's wheel ([`set_timer`](Reactor::set_timer)). Their
//! readiness and expiries come out of the same poll as outcomes. One tick
//! handles at most [`max_events_per_tick`](Config::max_events_per_tick)
//! readiness events and as many expired timers; the rest wait for the next
//! call, which then does not block.
//!
//! # Threads
//!
//! A [`Reactor`] and the [`Connection`]s it lends share `Rc` state, so
//! neither is `Send`: build each reactor inside the thread that polls it,
//! and run one per thread for more cores. Nothing is shared between them.
//!
//! ```
//! use keepalive::{Config, Reactor};
//!
//! let workers: Vec<_> = (0..2)
//!     .map(|_| {
//!         std::thread::spawn(|| {
//!             let reactor: Reactor<u64> = Reactor::new(Config::default()).expect("config");
//!             // ... this thread's loop ...
//!             reactor.open_count()
//!         })
//!     })
//!     .collect();
//! for w in workers {
//!     assert_eq!(w.join().expect("worker"), 0);
//! }
//! ```
//!
//! ```compile_fail
//! // A reactor cannot be moved to another thread.
//! let reactor: keepalive::Reactor<()> = keepalive::Reactor::new(Default::default()).unwrap();
//! std::thread::spawn(move || drop(reactor));
//! ```
//!
//! # Host names
//!
//! [`Request::host`] asks for a host by name; [`Request::new`] stays
//! numeric and never looks anything up. The reactor resolves names on its
//! own poller (the hosts file, then a TTL-bounded cache, then DNS over UDP,
//! TCP when truncated, as [`Config::resolv_conf`] says) and connects with
//! Happy Eyeballs (RFC 8305: IPv6 first, the next address after
//! [`Config::happy_eyeballs_delay`] or at once on a failure, first to
//! connect wins). The pool key is the name, so connections to it are shared
//! whatever address they reached, never with a request by address;
//! [`Connection::peer_addr`] says which address was used. The request's one
//! timeout covers lookup, connect and TLS; a lookup that fails first is
//! function [`resolve`](Function::Resolve) with a [`ResolveError`]
//! ([`ConnectError::resolve_error`]).
//!
//! ```no_run
//! use keepalive::{Config, Event, Events, Reactor, Request};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut reactor: Reactor<()> = Reactor::new(Config::default())?;
//! let mut events = Events::new();
//! reactor.allocate(Request::host("http", "localhost", 8080, ()))?;
//! reactor.poll(&mut events, None)?;
//! if let Some(Event::Outcome(outcome)) = events.drain().next() {
//!     let conn = outcome.result?;
//!     println!("{} via {}", outcome.target, conn.peer_addr());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - Every allocated request gets exactly one outcome, unless it is
//!   [deallocated](Reactor::deallocate), in which case it gets none. The
//!   outcome always comes from a poll, never from `allocate` itself.
//! - At most [`max_per_host`](Config::max_per_host) connections per
//!   [`Target`] (a name counts as one target, whatever its addresses) are
//!   connecting or lent, and at most
//!   [`max_open`](Config::max_open) sockets are open in all; requests over a
//!   limit wait in FIFO order.
//! - A connection whose peer closed it, or that has unread data, is never
//!   handed out from the pool once the reactor has polled after it happened,
//!   even if the request was allocated before that poll.
//! - The timeout covers the whole wait, from `allocate` to the outcome. A
//!   deadline that has passed wins: an outcome decided at a tick at or past
//!   the request's deadline is the timeout (`connect`, `ETIMEDOUT`), whatever
//!   else became ready in that tick; a connection that completed late idles
//!   in the pool. A cache hit is decided at `allocate` and served whatever
//!   its timeout.
//! - Schemes compare without regard to case: `HTTPS` is TLS.
//! - Misuse returns an [`Error`], never panics, and hands back what it took.
//!
//! The whole list, what each operation costs, and the fault suites that
//! hold the pool to it are in the [guarantees guide](guides::guarantees).

mod checkout;
mod config;
mod conn;
mod error;
mod event;
pub mod guides;
mod index;
mod lifecycle;
mod net;
mod pool;
mod reactor;
mod request;
mod resolve;
mod stats;
mod stream;
mod time;
mod timer;
mod tls;
mod wheel;

pub use checkout::Checkout;
pub use config::Config;
pub use conn::{ConnId, Connection};
pub use error::{AllocateError, ConnectError, Error, Function};
pub use event::{Event, Events, FromCache, Outcome, Readiness, SourceReady, TimerFired};
pub use lifecycle::{Change, CloseReason, Lifecycle};
pub use reactor::Reactor;
pub use request::{Host, Request, RequestId, Target};
pub use resolve::ResolveError;
pub use stats::{Counters, Counts, KeyStats, Stats};
pub use timer::TimerId;

/// The pool's timer wheel, exposed only for the benchmarks (cargo feature
/// `internals`). Not part of the stable API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    /// The ring provider, for the benchmarks' before/after TLS figures.
    #[cfg(feature = "ring")]
    pub use crate::tls::provider::ring_provider;
    pub use crate::wheel::{TimerKey, Wheel};
}

// The README's examples are compiled as doc tests, so they cannot rot (the
// guides' are, through the `guides` module).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Re-exported so callers can name the connection's `mio::event::Source`
/// implementation and register it in their own poller.
pub use mio;
/// Re-exported so callers can build the [`Config::tls`] client configuration
/// with the same rustls version.
pub use rustls;

/// The rustls crypto provider this build uses for its default TLS
/// configuration, for callers who build their own [`Config::tls`] and want
/// the same key exchange.
///
/// Chosen by cargo feature: `aws-lc-rs` (the default) offers the
/// post-quantum hybrid X25519MLKEM768 first, with an X25519 key share beside
/// it so servers without ML-KEM answer without a HelloRetryRequest; `ring`
/// offers X25519, P-256 and P-384 only. With both features, aws-lc-rs. Each
/// call builds a new provider (a few small `Vec`s).
///
/// ```
/// use keepalive::rustls;
/// # fn main() -> Result<(), rustls::Error> {
/// let roots = rustls::RootCertStore::empty(); // your private CA here
/// let tls = rustls::ClientConfig::builder_with_provider(keepalive::tls_crypto_provider())
///     .with_safe_default_protocol_versions()?
///     .with_root_certificates(roots)
///     .with_no_client_auth();
/// # let _ = tls;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub fn tls_crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    tls::provider::shared()
}
