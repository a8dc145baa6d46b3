//! What `poll` reports: allocation outcomes and readiness of lent connections,
//! collected in a caller-owned buffer that is reused every tick.

use std::fmt;
use std::rc::Rc;

use crate::conn::{ConnId, Connection};
use crate::error::ConnectError;
use crate::request::{RequestId, Target};
use crate::timer::TimerId;

pub use crate::request::FromCache;

/// The one outcome of a request: a connection or an error, with the request's
/// target and context handed back.
#[non_exhaustive]
pub struct Outcome<C> {
    /// The request this answers.
    pub id: RequestId,
    /// The request's target: scheme, address and port echoed. Shared with
    /// the pool's key for it (and every outcome of that key), so an outcome
    /// carries a pointer, not a copy of the target's strings.
    pub target: Rc<Target>,
    /// The caller's context, moved back.
    pub context: C,
    /// The connection, or why there is none. A connection says whether it
    /// came from the pool with [`Connection::from_cache`].
    pub result: Result<Connection, ConnectError>,
}

impl<C> fmt::Debug for Outcome<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("id", &self.id)
            .field("target", &self.target)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

/// Readiness of a lent connection (the original's `$conn->start`): read or
/// write until `WouldBlock`, then wait for the next one. Edge-triggered, like
/// mio: it is reported when readiness changes, not while it lasts, and may be
/// spurious.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// The connection, as [`Connection::id`] names it.
    pub conn: ConnId,
    /// Data (or EOF) may be readable.
    pub readable: bool,
    /// Writing may make progress.
    pub writable: bool,
    /// The peer shut down its sending side or the connection failed; reads
    /// will return EOF or an error once buffered data is consumed.
    pub closed: bool,
}

/// Readiness of a source the caller registered with
/// [`Reactor::register`](crate::Reactor::register) (a listener, an accepted
/// socket), under the caller's own token. Edge-triggered, like mio: drain
/// the source until `WouldBlock`; it may be spurious.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceReady {
    /// The token the caller registered the source with.
    pub token: mio::Token,
    /// Reading (or accepting) may make progress.
    pub readable: bool,
    /// Writing may make progress.
    pub writable: bool,
    /// The peer shut down its sending side, or the source failed.
    pub closed: bool,
}

/// A caller timer set with [`Reactor::set_timer`](crate::Reactor::set_timer)
/// fired. It is gone: its id is stale from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimerFired {
    /// The timer, as `set_timer` returned it.
    pub id: TimerId,
    /// The value the caller gave `set_timer`.
    pub value: u64,
}

/// One thing that happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<C> {
    /// A request's outcome: exactly one per request that was not deallocated.
    Outcome(Outcome<C>),
    /// A lent connection became ready.
    Ready(Readiness),
    /// A source the caller registered became ready.
    Source(SourceReady),
    /// A caller timer fired.
    Timer(TimerFired),
    /// A pooled connection opened, went idle or closed (only with
    /// [`Config::lifecycle_events`](crate::Config::lifecycle_events)).
    Lifecycle(crate::Lifecycle),
}

/// The caller-owned buffer `poll` appends events to.
///
/// Like `mio::Events`, keep one and reuse it: drained events leave its
/// capacity behind, so a warm loop allocates nothing.
pub struct Events<C> {
    pub(crate) list: Vec<Event<C>>,
}

impl<C> Events<C> {
    /// An empty buffer.
    #[must_use]
    pub fn new() -> Self {
        Events { list: Vec::new() }
    }

    /// An empty buffer with room for `n` events before it grows.
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Events {
            list: Vec::with_capacity(n),
        }
    }

    /// Number of events waiting to be taken.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are no events.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Takes the events out in the order they happened, keeping the capacity.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Event<C>> {
        self.list.drain(..)
    }

    /// Looks at the events without taking them.
    pub fn iter(&self) -> std::slice::Iter<'_, Event<C>> {
        self.list.iter()
    }
}

impl<C> Default for Events<C> {
    fn default() -> Self {
        Events::new()
    }
}

impl<C> fmt::Debug for Events<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("len", &self.list.len())
            .finish()
    }
}
