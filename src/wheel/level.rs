//! One level of the wheel: 64 slots, each a list of entries, and a bitmap of
//! the slots that hold any.

use super::{NIL, SLOTS};

/// Slots of one level. Level `l` slot `s` holds entries whose deadline, in
/// the level's current block of `64^(l+1)` ms, falls in
/// `[s * 64^l, (s + 1) * 64^l)`.
pub(super) struct Level {
    level: u32,
    /// Bit `s` is set when slot `s` holds any entry.
    occupied: u64,
    /// First entry of each slot's list (`NIL` when empty).
    heads: [u32; SLOTS],
}

/// The earliest occupied slot of a level, and when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Expiration {
    pub(super) level: u32,
    pub(super) slot: u32,
    /// The slot's start: no entry in it is due earlier.
    pub(super) deadline: u64,
}

/// Milliseconds one slot of `level` spans: `64^level`.
pub(super) fn slot_range(level: u32) -> u64 {
    1 << (6 * level)
}

/// Milliseconds the whole of `level` spans: `64^(level + 1)`.
pub(super) fn level_range(level: u32) -> u64 {
    1 << (6 * (level + 1))
}

impl Level {
    pub(super) fn new(level: u32) -> Level {
        Level {
            level,
            occupied: 0,
            heads: [NIL; SLOTS],
        }
    }

    pub(super) fn head(&self, slot: u32) -> u32 {
        self.heads[slot as usize % SLOTS]
    }

    /// Sets a slot's first entry, keeping the bitmap in step.
    pub(super) fn set_head(&mut self, slot: u32, head: u32) {
        let slot = slot as usize % SLOTS;
        self.heads[slot] = head;
        if head == NIL {
            self.occupied &= !(1 << slot);
        } else {
            self.occupied |= 1 << slot;
        }
    }

    /// The earliest occupied slot after `now`.
    ///
    /// Rotating the bitmap by the slot `now` falls in puts the slots still
    /// ahead in this block first, then those of the next block, so
    /// `trailing_zeros` finds the next one in O(1). The slot `now` is in can
    /// only hold entries of the *next* block (an entry of this block there
    /// would be due and already cascaded): it comes last, not first. Only the
    /// top level has such entries, from deadlines almost a whole level away.
    #[expect(clippy::cast_possible_truncation, reason = "slot numbers are below 64")]
    pub(super) fn next_expiration(&self, now: u64) -> Option<Expiration> {
        if self.occupied == 0 {
            return None;
        }
        let now_slot = (now / slot_range(self.level)) % SLOTS as u64;
        let rotated = self.occupied.rotate_right(now_slot as u32);
        let ahead = rotated & !1;
        let distance = if ahead != 0 {
            ahead.trailing_zeros()
        } else {
            0
        };
        let slot = (u64::from(distance) + now_slot) % SLOTS as u64;
        let level_start = now & !(level_range(self.level) - 1);
        let mut deadline = level_start + slot * slot_range(self.level);
        if deadline <= now {
            // A slot behind `now` in this block holds the next block's
            // deadlines (top level only).
            deadline += level_range(self.level);
        }
        Some(Expiration {
            level: self.level,
            slot: slot as u32,
            deadline,
        })
    }

    #[cfg(test)]
    pub(super) fn occupied(&self) -> u64 {
        self.occupied
    }
}
