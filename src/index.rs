//! Slab indices in 32 bits.
//!
//! The pool, the resolver and the timer wheel keep their entries in slabs
//! and link them by index; 32-bit indices halve the size of every link.
//! Each bounds its slab far below 2^32 (the pool through `max_open` and
//! its pending-request limit, the resolver through its lookup limit, the
//! wheel through the entries those two give it), so the narrowing below
//! never loses bits; a debug build checks it.

/// `i` as a 32-bit slab index.
#[expect(
    clippy::cast_possible_truncation,
    reason = "callers bound their slabs below 2^32, see the module docs"
)]
pub(crate) fn index32(i: usize) -> u32 {
    debug_assert!(u32::try_from(i).is_ok(), "slab index {i} over 32 bits");
    i as u32
}
