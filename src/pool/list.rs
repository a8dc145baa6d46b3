//! Intrusive doubly linked lists threaded through a `Slab` by index.
//!
//! The pool keeps several orders over the same entries: idle sockets per key
//! (most recently used first) and over all keys (least recently used first),
//! waiting requests per key (FIFO), and keys blocked on `max_open` (FIFO). An
//! entry must leave such an order in O(1) when it is reused, times out or is
//! cancelled, so each entry carries its own `Link` and the lists hold only
//! head, tail and length. No allocation ever happens here.

use slab::Slab;

/// "No entry" in a link.
const NIL: u32 = u32::MAX;

/// An entry's place in one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Link {
    prev: u32,
    next: u32,
    linked: bool,
}

impl Link {
    /// A link that is in no list.
    pub(super) const UNLINKED: Link = Link {
        prev: NIL,
        next: NIL,
        linked: false,
    };

    /// Whether the entry is in the list this link belongs to.
    pub(super) fn is_linked(&self) -> bool {
        self.linked
    }
}

/// Head, tail and length of one list. Which field of `T` holds the links is
/// passed to every call, so one entry type can sit in several lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

/// Selects the link of one list inside an entry.
pub(super) type LinkOf<T> = fn(&mut T) -> &mut Link;

fn link<T>(slab: &mut Slab<T>, i: u32, of: LinkOf<T>) -> Option<&mut Link> {
    let entry = slab.get_mut(i as usize);
    debug_assert!(entry.is_some(), "list points at vacant slab entry {i}");
    entry.map(of)
}

impl List {
    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the list is empty.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The last entry.
    pub(super) fn back(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// The first entry.
    pub(super) fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Links `i` in first. `i` must not be in this list already.
    pub(super) fn push_front<T>(&mut self, slab: &mut Slab<T>, i: u32, of: LinkOf<T>) {
        let old_head = self.head;
        let Some(l) = link(slab, i, of) else { return };
        debug_assert!(!l.linked, "entry {i} pushed twice");
        *l = Link {
            prev: NIL,
            next: old_head,
            linked: true,
        };
        match link_opt(slab, old_head, of) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
        self.len += 1;
    }

    /// Links `i` in last. `i` must not be in this list already.
    pub(super) fn push_back<T>(&mut self, slab: &mut Slab<T>, i: u32, of: LinkOf<T>) {
        let old_tail = self.tail;
        let Some(l) = link(slab, i, of) else { return };
        debug_assert!(!l.linked, "entry {i} pushed twice");
        *l = Link {
            prev: old_tail,
            next: NIL,
            linked: true,
        };
        match link_opt(slab, old_tail, of) {
            Some(t) => t.next = i,
            None => self.head = i,
        }
        self.tail = i;
        self.len += 1;
    }

    /// Unlinks `i` if it is in the list; returns whether it was.
    pub(super) fn remove<T>(&mut self, slab: &mut Slab<T>, i: u32, of: LinkOf<T>) -> bool {
        let Some(l) = link(slab, i, of) else {
            return false;
        };
        if !l.linked {
            return false;
        }
        let Link { prev, next, .. } = *l;
        *l = Link::UNLINKED;
        match link_opt(slab, prev, of) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match link_opt(slab, next, of) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
        self.len -= 1;
        true
    }

    /// Unlinks and returns the first entry.
    pub(super) fn pop_front<T>(&mut self, slab: &mut Slab<T>, of: LinkOf<T>) -> Option<u32> {
        let i = self.front()?;
        self.remove(slab, i, of);
        Some(i)
    }

    /// The entries in order; for invariant checks.
    #[cfg(test)]
    pub(super) fn collect<T>(&self, slab: &mut Slab<T>, of: LinkOf<T>) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len());
        let mut i = self.head;
        while i != NIL && out.len() <= self.len() {
            out.push(i);
            i = match link(slab, i, of) {
                Some(l) => l.next,
                None => NIL,
            };
        }
        out
    }
}

fn link_opt<T>(slab: &mut Slab<T>, i: u32, of: LinkOf<T>) -> Option<&mut Link> {
    if i == NIL { None } else { link(slab, i, of) }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E {
        a: Link,
    }
    fn a(e: &mut E) -> &mut Link {
        &mut e.a
    }

    fn slab(n: usize) -> Slab<E> {
        let mut s = Slab::new();
        for _ in 0..n {
            s.insert(E { a: Link::UNLINKED });
        }
        s
    }

    #[test]
    fn push_pop_remove_keep_order() {
        let mut s = slab(5);
        let mut l = List::default();
        l.push_back(&mut s, 1, a);
        l.push_back(&mut s, 2, a);
        l.push_front(&mut s, 0, a);
        l.push_back(&mut s, 3, a);
        assert_eq!(l.collect(&mut s, a), vec![0, 1, 2, 3]);
        assert!(l.remove(&mut s, 2, a));
        assert!(!l.remove(&mut s, 2, a), "second remove is a no-op");
        assert!(!l.remove(&mut s, 4, a), "unlinked entry");
        assert_eq!(l.collect(&mut s, a), vec![0, 1, 3]);
        assert_eq!(l.pop_front(&mut s, a), Some(0));
        assert!(l.remove(&mut s, 3, a));
        assert_eq!(l.collect(&mut s, a), vec![1]);
        assert_eq!(l.len(), 1);
        assert_eq!(l.pop_front(&mut s, a), Some(1));
        assert!(l.is_empty());
        assert_eq!(l.pop_front(&mut s, a), None);
        assert!(!s[1].a.is_linked());
    }
}
