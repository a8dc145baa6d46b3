//! A counting global allocator: live bytes and blocks allocated by the armed
//! thread, so a scenario can check that everything the pool allocated on its
//! (single) thread was given back once the reactor is dropped.
//!
//! Only the arming thread counts: the chaos server's threads and libtest's
//! allocate freely. Work that allocates on one thread and frees on another
//! (joining a server thread, spawning nginx) runs [`uncounted`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static BYTES: Cell<i64> = const { Cell::new(0) };
    static BLOCKS: Cell<i64> = const { Cell::new(0) };
}

fn note(bytes: i64, blocks: i64) {
    // `try_with`: the thread-locals may already be gone at thread exit.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            BYTES.with(|b| b.set(b.get() + bytes));
            BLOCKS.with(|b| b.set(b.get() + blocks));
        }
    });
}

fn size(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// SAFETY: defers to the system allocator; the counters are thread-local
// `Cell`s that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(size(layout.size()), 1);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-size(layout.size()), -1);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(size(new_size) - size(layout.size()), 0);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What the armed thread allocated and has not freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub bytes: i64,
    pub blocks: i64,
}

/// Starts counting on this thread, from zero.
pub fn arm() {
    BYTES.with(|b| b.set(0));
    BLOCKS.with(|b| b.set(0));
    ARMED.with(|a| a.set(true));
}

/// Stops counting and returns what is still live.
pub fn disarm() -> Live {
    ARMED.with(|a| a.set(false));
    Live {
        bytes: BYTES.with(Cell::get),
        blocks: BLOCKS.with(Cell::get),
    }
}

/// Runs `f` without counting (allocations it makes and frees in full, or
/// that cross threads).
pub fn uncounted<T>(f: impl FnOnce() -> T) -> T {
    let was = ARMED.with(|a| a.replace(false));
    let out = f();
    ARMED.with(|a| a.set(was));
    out
}
