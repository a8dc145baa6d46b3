//! A FIFO the pool fills and the driver empties every tick.
//!
//! Decided requests and lifecycle changes go out through one each. The
//! driver takes everything each tick, so the queue never needs to wrap
//! around as a `VecDeque` does: it is a `Vec` read from a cursor, emptied
//! (capacity kept) when the cursor reaches the end. Push and pop are a
//! bounds check and a copy, small enough to inline on the hit path, where a
//! `VecDeque`'s out-of-line `push_back` was 4% of a cycle with lifecycle
//! events on.

/// See the module docs. Items are `Copy`: ids and small records.
#[derive(Debug)]
pub(super) struct Outbox<T> {
    items: Vec<T>,
    /// Index of the next item `pop` returns.
    read: usize,
}

impl<T: Copy> Outbox<T> {
    /// An empty outbox with room for `n` items before it allocates.
    pub(super) fn with_capacity(n: usize) -> Outbox<T> {
        Outbox {
            items: Vec::with_capacity(n),
            read: 0,
        }
    }

    #[inline]
    pub(super) fn push(&mut self, item: T) {
        self.items.push(item);
    }

    /// The oldest item not yet taken. Once all are taken the storage is
    /// reset, so items pushed by a pool that is never fully drained are the
    /// only way for it to grow.
    #[inline]
    pub(super) fn pop(&mut self) -> Option<T> {
        let item = self.items.get(self.read).copied();
        match item {
            Some(_) => self.read += 1,
            None => {
                self.items.clear();
                self.read = 0;
            }
        }
        item
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.read >= self.items.len()
    }

    /// The items not yet taken, oldest first.
    pub(super) fn pending(&self) -> &[T] {
        self.items.get(self.read..).unwrap_or_default()
    }
}

#[cfg(test)]
impl<T: Copy + PartialEq> Outbox<T> {
    /// Whether `item` waits to be taken. O(n): for invariant checks.
    pub(super) fn contains(&self, item: &T) -> bool {
        self.pending().contains(item)
    }
}

#[cfg(test)]
mod tests {
    use super::Outbox;

    #[test]
    fn first_in_first_out_across_refills_without_growing() {
        let mut q = Outbox::with_capacity(4);
        for round in 0..100u32 {
            q.push(round);
            q.push(round + 1000);
            assert!(q.contains(&(round + 1000)));
            assert_eq!(q.pop(), Some(round));
            q.push(round + 2000);
            assert_eq!(q.pop(), Some(round + 1000));
            assert_eq!(q.pop(), Some(round + 2000));
            assert!(q.is_empty());
            assert_eq!(q.pop(), None);
        }
        assert_eq!(q.items.capacity(), 4, "drained each round: no growth");
    }
}
