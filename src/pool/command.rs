//! What the pool tells its driver: socket work, decided requests, and the
//! phase of a slot (so the driver knows what readiness on it means).

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use crate::error::ConnectError;
use crate::request::{ConnId, FromCache, RequestId, Target};
use crate::time::Millis;

/// Names one socket's slot. The generation tells a slot from a later one
/// that reuses its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SlotId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// Socket work for the driver, drained with [`Pool::poll_command`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Open a socket for `slot` and connect it; report with
    /// `handle_connected` or `handle_connect_failed`.
    Connect {
        slot: SlotId,
        addr: SocketAddr,
        bind: Option<IpAddr>,
    },
    /// Close the slot's socket; the pool has forgotten the slot.
    Close { slot: SlotId },
}

impl SlotId {
    /// The id the caller knows this slot's connection by.
    pub(crate) fn conn_id(self) -> ConnId {
        ConnId {
            index: self.index,
            generation: self.generation,
        }
    }
}

/// What [`Pool::checkout_now`](super::Pool::checkout_now) decided.
pub(crate) enum CheckedOut<C> {
    /// An idle connection, lent now.
    Lent {
        slot: SlotId,
        checkout: Checkout,
        target: Rc<Target>,
        context: C,
    },
    /// Allocated as usual: its outcome comes out of a poll.
    Pending(RequestId),
}

/// A decided request, drained with [`Pool::poll_outcome`].
pub(crate) enum PoolOutcome<C> {
    /// Lend `slot` to the request; the slot is now `Lent`.
    Deliver {
        id: RequestId,
        slot: SlotId,
        checkout: Checkout,
        from_cache: Option<FromCache>,
        target: Rc<Target>,
        context: C,
    },
    /// The request failed.
    Fail {
        id: RequestId,
        target: Rc<Target>,
        context: C,
        error: ConnectError,
    },
}

/// What a checkout knows about the connection it hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkout {
    /// Times handed out, this one included.
    pub(crate) uses: u32,
    /// Milliseconds since its connect completed.
    pub(crate) age: Millis,
    /// Milliseconds it sat idle before this checkout (0 when new).
    pub(crate) idle: Millis,
}

/// Where a slot is in its life, for the driver to route readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Idle,
    Reserved,
    Lent,
}
