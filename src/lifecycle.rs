//! What happens to a pooled connection over its life, for callers who want
//! to watch the pool: opened, parked idle, closed, and why it was closed.
//!
//! Lifecycle events are opt-in ([`Config::lifecycle_events`]): with them
//! off, the reactor queues nothing. Close reasons are counted either way
//! (see [`Stats`](crate::Stats)).
//!
//! [`Config::lifecycle_events`]: crate::Config::lifecycle_events

use std::fmt;
use std::net::SocketAddr;

use crate::request::ConnId;

/// Why the pool closed a socket. Every socket the pool closes has exactly
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The connect failed (refused, unreachable, TLS handshake failed).
    ConnectFailed,
    /// The request's timeout passed while it was connecting.
    ConnectTimedOut,
    /// It idled for [`keep_alive`](crate::Config::keep_alive).
    KeepAliveExpired,
    /// The peer closed it (or it failed) while idle.
    PeerClosed,
    /// Data nobody asked for arrived while idle.
    StrayData,
    /// It was idle and the least recently used when a request needed room
    /// under [`max_open`](crate::Config::max_open).
    Evicted,
    /// It reached [`max_lifetime`](crate::Config::max_lifetime).
    Lifetime,
    /// It was handed out [`max_uses`](crate::Config::max_uses) times.
    Uses,
    /// Its key had [`max_idle_per_key`](crate::Config::max_idle_per_key)
    /// idle connections already; it was the least recently used.
    IdleOverflow,
    /// [`Reactor::purge`](crate::Reactor::purge) named its target.
    Purged,
    /// [`Reactor::shutdown`](crate::Reactor::shutdown) was called.
    Shutdown,
    /// It came back unfit to pool: closed by the caller, EOF or an error
    /// seen, unread data, or unsent TLS data.
    ReturnedUnusable,
    /// Its target is a host name whose refreshed answer no longer holds
    /// the address it reached (see
    /// [`dns_refresh`](crate::Config::dns_refresh)): closed at once while
    /// idle, when it comes back while lent.
    AddressGone,
}

impl CloseReason {
    /// Every reason, in the order of [`index`](CloseReason::index).
    pub const ALL: [CloseReason; 13] = [
        CloseReason::ConnectFailed,
        CloseReason::ConnectTimedOut,
        CloseReason::KeepAliveExpired,
        CloseReason::PeerClosed,
        CloseReason::StrayData,
        CloseReason::Evicted,
        CloseReason::Lifetime,
        CloseReason::Uses,
        CloseReason::IdleOverflow,
        CloseReason::Purged,
        CloseReason::Shutdown,
        CloseReason::ReturnedUnusable,
        CloseReason::AddressGone,
    ];

    /// A dense index, for counting by reason.
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            CloseReason::ConnectFailed => 0,
            CloseReason::ConnectTimedOut => 1,
            CloseReason::KeepAliveExpired => 2,
            CloseReason::PeerClosed => 3,
            CloseReason::StrayData => 4,
            CloseReason::Evicted => 5,
            CloseReason::Lifetime => 6,
            CloseReason::Uses => 7,
            CloseReason::IdleOverflow => 8,
            CloseReason::Purged => 9,
            CloseReason::Shutdown => 10,
            CloseReason::ReturnedUnusable => 11,
            CloseReason::AddressGone => 12,
        }
    }

    /// A short name: `"keep_alive_expired"`, `"peer_closed"`, …
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ConnectFailed => "connect_failed",
            CloseReason::ConnectTimedOut => "connect_timed_out",
            CloseReason::KeepAliveExpired => "keep_alive_expired",
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::StrayData => "stray_data",
            CloseReason::Evicted => "evicted",
            CloseReason::Lifetime => "lifetime",
            CloseReason::Uses => "uses",
            CloseReason::IdleOverflow => "idle_overflow",
            CloseReason::Purged => "purged",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ReturnedUnusable => "returned_unusable",
            CloseReason::AddressGone => "address_gone",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step in a pooled connection's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The connect (and TLS handshake) completed.
    Opened,
    /// It went idle in the pool.
    Parked,
    /// The pool closed it.
    Closed(CloseReason),
}

/// A lifecycle event: which connection, to where, and what happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifecycle {
    /// The connection, as [`Connection::id`](crate::Connection::id) names
    /// it while lent.
    pub conn: ConnId,
    /// The remote address.
    pub peer: SocketAddr,
    /// What happened.
    pub change: Change,
}
