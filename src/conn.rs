//! The lent connection: a nonblocking TCP or Unix-domain stream that goes
//! back to its pool.
//!
//! A [`Connection`] owns its socket while lent, but the socket stays
//! registered with the reactor's poller the whole time (token = slot), so
//! lending and returning cost no `epoll_ctl`. Dropping a connection queues it
//! for return in memory shared with the reactor; the next tick takes it back.
//!
//! # Knowing whether a returned socket is clean without asking the kernel
//!
//! A socket may only be pooled if nothing is waiting in its receive queue. The
//! connection notes the reactor's tick whenever a read returns `WouldBlock`,
//! or returns fewer bytes than asked for from plain TCP (either way the queue
//! was empty then). Any byte that arrives later wakes the poller in
//! a later tick, which the reactor notes on the slot. At return, "drained at
//! tick ≥ last readiness tick" proves the queue is empty with no syscall;
//! otherwise the reactor peeks once.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use crate::pool::Checkout;
pub use crate::request::ConnId;
use crate::request::FromCache;
use crate::stream::Stream;
use crate::time::Millis;
use crate::tls::TlsSession;

/// State shared by a reactor and the connections it lent.
///
/// The return queue is a `Cell`, not a `RefCell`: it is only ever moved in
/// and out whole, with no borrow that could be outstanding, so pushing a
/// dropped connection cannot fail and no connection can be lost.
pub(crate) struct Shared {
    /// Counts the reactor's polls; see the module docs.
    pub(crate) tick: Cell<u64>,
    /// Connections dropped since the reactor last took them back.
    returned: Cell<Vec<Returned>>,
    /// How many: lets the reactor skip the queue, a plain load, when empty.
    returned_len: Cell<usize>,
    /// Cleared when the reactor is dropped: returns then just close.
    pub(crate) alive: Cell<bool>,
    /// The reactor's poller, with which every lent connection stays
    /// registered: the caller's `Source` calls must not touch that
    /// registration (see `Connection`'s `Source` impl).
    poller: RawFd,
}

impl Shared {
    pub(crate) fn new(poller: RawFd) -> Rc<Shared> {
        Rc::new(Shared {
            tick: Cell::new(0),
            returned: Cell::new(Vec::new()),
            returned_len: Cell::new(0),
            alive: Cell::new(true),
            poller,
        })
    }

    /// Queues a dropped connection for the reactor.
    fn push_returned(&self, returned: Returned) {
        let mut queue = self.returned.take();
        queue.push(returned);
        self.returned_len.set(queue.len());
        self.returned.set(queue);
    }

    /// Takes the queued connections, leaving `spare` (empty, with its
    /// capacity) in their place: no allocation once both have grown.
    pub(crate) fn swap_returned(&self, spare: Vec<Returned>) -> Vec<Returned> {
        debug_assert!(spare.is_empty(), "spare return queue holds connections");
        self.returned_len.set(0);
        self.returned.replace(spare)
    }

    /// Whether connections wait to be taken back.
    pub(crate) fn has_returned(&self) -> bool {
        self.returned_len.get() > 0
    }

    /// Drops every queued connection, closing its socket.
    pub(crate) fn close_returned(&self) {
        self.returned_len.set(0);
        drop(self.returned.take());
    }
}

/// A connection on its way back to the reactor.
pub(crate) struct Returned {
    pub(crate) id: ConnId,
    pub(crate) stream: Stream,
    pub(crate) tls: Option<Box<TlsSession>>,
    /// False after `close()`, EOF or an I/O error.
    pub(crate) reusable: bool,
    /// Tick of the last read that found the receive queue empty.
    pub(crate) drained_at: Option<u64>,
}

/// A connection lent by a [`Reactor`](crate::Reactor).
///
/// Read and write it like a nonblocking `TcpStream` (or `UnixStream`): calls return
/// `WouldBlock` instead of waiting, and a [`Readiness`](crate::Readiness)
/// event with this connection's [`id`](Connection::id) comes from the
/// reactor's `poll` when it is worth trying again.
///
/// Give it back with [`Reactor::free`](crate::Reactor::free), or just drop
/// it: either returns it to the pool if it is clean (no unread data, no EOF,
/// no error), and closes it otherwise. Call [`close`](Connection::close) to
/// make sure it is never reused, e.g. after a protocol error.
///
/// # Using your own poller
///
/// The socket is already registered with the reactor, and stays so. To wait
/// on it in your own `mio::Poll` instead, register the connection there (it
/// implements [`mio::event::Source`] by file descriptor, so one socket can
/// sit in both pollers), and deregister it before you free it; the reactor's
/// own `Ready` events for it can then be ignored.
pub struct Connection {
    /// Always `Some` while a caller holds the connection: only `Drop` and
    /// `into_returned`, which consume it, take the stream.
    stream: Option<Stream>,
    /// The stream's descriptor, fixed for the connection's life.
    fd: RawFd,
    tls: Option<Box<TlsSession>>,
    id: ConnId,
    shared: Rc<Shared>,
    from_cache: Option<FromCache>,
    // The checkout's fields, flattened so `uses` packs with the
    // descriptors: a connection is moved through every outcome event, and
    // at 88 bytes (112 with `Checkout`, `SocketAddr` and an `Option`) the
    // hit cycle moves less.
    uses: u32,
    age: Millis,
    idle: Millis,
    /// With `peer_port`: the remote address. A `SocketAddr` is 32 bytes;
    /// the flow and scope of an IPv6 peer are never set here.
    peer_ip: IpAddr,
    peer_port: u16,
    /// Tick of the last read that found the receive queue empty; 0 for
    /// none (ticks count from 1).
    drained_at: u64,
    reusable: bool,
}

impl Connection {
    pub(crate) fn new(
        stream: Stream,
        tls: Option<Box<TlsSession>>,
        id: ConnId,
        shared: Rc<Shared>,
        from_cache: Option<FromCache>,
        checkout: Checkout,
        peer: SocketAddr,
    ) -> Connection {
        // A pooled socket had an empty receive queue when this tick polled,
        // or readiness would have closed it; a new one is unknown.
        let drained_at = if from_cache.is_some() {
            shared.tick.get()
        } else {
            0
        };
        Connection {
            fd: stream.as_raw_fd(),
            stream: Some(stream),
            tls,
            id,
            shared,
            from_cache,
            uses: checkout.uses,
            age: checkout.age,
            idle: checkout.idle,
            peer_ip: peer.ip(),
            peer_port: peer.port(),
            drained_at,
            reusable: true,
        }
    }

    /// This connection's id, as its `Ready` events carry it.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Whether it came from the pool: `Immediate`, `Deferred`, or `None` for
    /// a new connection.
    pub fn from_cache(&self) -> Option<FromCache> {
        self.from_cache
    }

    /// How many times the pool has handed this connection out, this time
    /// included: 1 for a new connection.
    #[must_use]
    pub fn uses(&self) -> u32 {
        self.uses
    }

    /// How long ago its connect completed, at this checkout (whole
    /// milliseconds of the reactor's clock).
    #[must_use]
    pub fn age(&self) -> Duration {
        Duration::from_millis(self.age)
    }

    /// How long it sat idle in the pool before this checkout; zero for a new
    /// connection.
    #[must_use]
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(self.idle)
    }

    /// The remote address. No syscall. A connection to a
    /// [Unix-domain](crate::Request::unix) socket has none: `[::]:0` (its
    /// outcome's target has the path).
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::new(self.peer_ip, self.peer_port)
    }

    /// The local address (one `getsockname`).
    ///
    /// # Errors
    ///
    /// The `getsockname` failure, as `std::net::TcpStream::local_addr`
    /// reports it; `Unsupported` for a Unix-domain connection, which has
    /// no IP address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.socket()?.tcp() {
            Some(tcp) => tcp.local_addr(),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a Unix-domain connection has no IP address",
            )),
        }
    }

    /// Whether it is a Unix-domain stream (see
    /// [`Request::unix`](crate::Request::unix)) rather than TCP.
    #[must_use]
    pub fn is_unix(&self) -> bool {
        matches!(self.stream, Some(Stream::Unix(_)))
    }

    /// Whether returning it now could pool it: no `close()`, EOF or error so
    /// far. (The reactor still checks for unread data.)
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Whether reads and writes go through TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The ALPN protocol the server chose, for a TLS connection that offered
    /// some (see [`Config::tls`](crate::Config::tls)).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.as_ref()?.alpn_protocol()
    }

    /// The negotiated TLS version, for a TLS connection.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        self.tls.as_ref()?.protocol_version()
    }

    /// The key-exchange group the TLS handshake negotiated, for a TLS
    /// connection: `X25519MLKEM768` (post-quantum hybrid) with servers that
    /// offer it under the default `aws-lc-rs` feature, `X25519` with servers
    /// that do not and under the `ring` feature. `None` for plain TCP and for
    /// a resumed TLS 1.2 session, which exchanges no new key. The value is
    /// copied out of rustls: no allocation, no syscall.
    pub fn tls_kx_group(&self) -> Option<rustls::NamedGroup> {
        self.tls.as_ref()?.kx_group()
    }

    /// Whether this TLS connection's handshake resumed an earlier session
    /// (no certificate exchange). Always false for plain TCP.
    pub fn is_resumed(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_resumed())
    }

    /// Marks the connection as never to be reused and returns it; the
    /// reactor closes the socket at its next tick and frees its slot for the
    /// next request. A TLS connection sends close_notify first (best effort).
    pub fn close(mut self) {
        self.reusable = false;
        if let (Some(tls), Some(stream)) = (self.tls.as_mut(), self.stream.as_mut()) {
            tls.close_notify(stream);
        }
    }

    /// The socket: always there while a caller holds the connection, since
    /// only `Drop` and `into_returned`, which consume it, take it. Its
    /// absence is reported as `NotConnected`, the one answer every method
    /// gives, so no path can panic.
    fn socket(&self) -> io::Result<&Stream> {
        self.stream.as_ref().ok_or_else(not_connected)
    }

    /// Takes the connection apart for [`Reactor::free`](crate::Reactor::free),
    /// which hands it straight back without the queue. It consumes the
    /// connection, so no method can ever see it without its stream.
    pub(crate) fn into_returned(mut self) -> Option<Returned> {
        let stream = self.stream.take()?;
        Some(Returned {
            id: self.id,
            stream,
            tls: self.tls.take(),
            reusable: self.reusable,
            drained_at: self.drained(),
        })
    }

    fn drained(&self) -> Option<u64> {
        (self.drained_at != 0).then_some(self.drained_at)
    }

    pub(crate) fn shared(&self) -> &Rc<Shared> {
        &self.shared
    }

    /// Notes what an I/O result says about the socket's health and queue:
    /// `WouldBlock` on a read means the receive queue (and rustls) is empty
    /// now; EOF or an error means the connection is done.
    fn observe<T>(&mut self, result: &io::Result<T>, eof: bool, read: bool) {
        match result {
            Ok(_) if eof => self.reusable = false,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if read {
                    self.drained_at = self.shared.tick.get();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.reusable = false,
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(not_connected());
        };
        let result = match self.tls.as_mut() {
            Some(tls) => tls.read_plain(stream, buf),
            None => stream.read(buf),
        };
        let eof = matches!(result, Ok(0)) && !buf.is_empty();
        self.observe(&result, eof, true);
        // A short read from a stream socket (TCP or Unix) takes all it
        // holds: the receive queue was empty then, as good as a `WouldBlock` (saves the caller
        // that extra read, and the reactor a peek at free). Not for TLS,
        // where rustls may hold more plaintext than one read returns.
        if self.tls.is_none() && matches!(result, Ok(n) if n > 0 && n < buf.len()) {
            self.drained_at = self.shared.tick.get();
        }
        result
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(not_connected());
        };
        let result = match self.tls.as_mut() {
            Some(tls) => tls.write_plain(stream, buf),
            None => stream.write(buf),
        };
        self.observe(&result, false, false);
        result
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if self.tls.is_some() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.write(first);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(not_connected());
        };
        let result = stream.write_vectored(bufs);
        self.observe(&result, false, false);
        result
    }

    /// Plain TCP has nothing to flush. For TLS, sends the ciphertext rustls
    /// still holds, or `WouldBlock`: call it again when the connection is
    /// writable.
    fn flush(&mut self) -> io::Result<()> {
        let (Some(tls), Some(stream)) = (self.tls.as_mut(), self.stream.as_mut()) else {
            return Ok(());
        };
        let result = tls.flush_tls(stream);
        self.observe(&result, false, false);
        result
    }
}

impl AsRawFd for Connection {
    /// The socket's descriptor, valid for as long as the connection lives.
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl Connection {
    /// Refuses a `Source` call on the lending reactor's own poller: the
    /// connection is registered there for as long as it lives, and the
    /// reactor relies on that registration to see its peer close (it
    /// reports its readiness as `Event::Ready`). Another poller is fine.
    fn other_poller(&self, registry: &mio::Registry) -> io::Result<()> {
        if self.shared.alive.get() && registry.as_raw_fd() == self.shared.poller {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a lent connection stays registered with its reactor, which reports its readiness as Event::Ready",
            ));
        }
        Ok(())
    }
}

/// For a poller of the caller's own (the connection stays registered with
/// its reactor too). On the lending reactor's poller, through
/// [`Reactor::register`](crate::Reactor::register) and its siblings, every
/// call fails with `InvalidInput`: the reactor's registration must stay as
/// it is.
impl mio::event::Source for Connection {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.other_poller(registry)?;
        mio::unix::SourceFd(&self.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.other_poller(registry)?;
        mio::unix::SourceFd(&self.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.other_poller(registry)?;
        mio::unix::SourceFd(&self.as_raw_fd()).deregister(registry)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if !self.shared.alive.get() {
            return; // the reactor is gone: dropping the stream closes it
        }
        let returned = Returned {
            id: self.id,
            stream,
            tls: self.tls.take(),
            reusable: self.reusable,
            drained_at: self.drained(),
        };
        self.shared.push_returned(returned);
    }
}

fn not_connected() -> io::Error {
    io::ErrorKind::NotConnected.into()
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer", &self.peer_addr())
            .field("from_cache", &self.from_cache)
            .field("reusable", &self.reusable)
            .finish_non_exhaustive()
    }
}
