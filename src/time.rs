//! The pool's notion of time: whole milliseconds since the reactor started.
//!
//! The sans-I/O core never reads a clock; every input carries `now` in these
//! units. Durations are rounded *up* to the next millisecond so that no
//! deadline fires early, and so that a sub-millisecond wait never becomes a
//! zero-length poll that spins.

use std::time::Duration;

/// Milliseconds since the reactor's epoch.
pub(crate) type Millis = u64;

/// Longest delay the pool accepts (about ten years). It keeps `now + delay`
/// far from overflow for any realistic uptime.
pub(crate) const MAX_DELAY_MS: Millis = 10 * 365 * 24 * 3600 * 1000;

/// `d` in whole milliseconds, rounded up.
pub(crate) fn millis_ceil(d: Duration) -> Millis {
    let ms = d.as_millis();
    let ms = if !d.subsec_nanos().is_multiple_of(1_000_000) {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_partial_milliseconds() {
        assert_eq!(millis_ceil(Duration::ZERO), 0);
        assert_eq!(millis_ceil(Duration::from_nanos(1)), 1);
        assert_eq!(millis_ceil(Duration::from_millis(15)), 15);
        assert_eq!(millis_ceil(Duration::from_micros(15_001)), 16);
        assert_eq!(millis_ceil(Duration::MAX), u64::MAX);
    }
}
