//! What [`Reactor::checkout_now`](crate::Reactor::checkout_now) gives: a
//! connection now, or the id of a request whose outcome a poll delivers.

use crate::conn::Connection;
use crate::request::RequestId;

/// The answer of [`Reactor::checkout_now`](crate::Reactor::checkout_now).
#[derive(Debug)]
pub enum Checkout<C> {
    /// An idle connection of the key, lent now
    /// ([`from_cache`](Connection::from_cache) is `Immediate`), and the
    /// request's context given back: no event will name this checkout.
    Ready(Connection, C),
    /// No idle connection could be handed out now (none idle, someone
    /// waits ahead, or the request is [fresh](crate::Request::fresh)): the
    /// request was allocated as by
    /// [`allocate`](crate::Reactor::allocate), and its outcome comes out
    /// of a poll under this id.
    Pending(RequestId),
}
