//! The counting allocator: the system allocator plus one relaxed atomic add per
//! allocation, so `livestream bench` and `tests/allocations.rs` can show that the
//! per-frame path allocates nothing.
//!
//! A program opts in by installing it (`main.rs` does, and the allocation test):
//!
//! ```
//! use std::sync::atomic::Ordering;
//! use livestream::bench::{CountingAlloc, ALLOCATIONS};
//!
//! #[global_allocator]
//! static ALLOC: CountingAlloc = CountingAlloc;
//!
//! fn main() {
//!     let before = ALLOCATIONS.load(Ordering::Relaxed);
//!     let v = std::hint::black_box(vec![1u8; 64]);
//!     assert!(ALLOCATIONS.load(Ordering::Relaxed) > before);
//!     drop(v);
//! }
//! ```
//!
//! Every thread of such a program touches [`ALLOCATIONS`]; elsewhere it stays 0.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// Heap allocations made by the process so far: `alloc`, `alloc_zeroed` and
/// `realloc` each count one (`dealloc` none). Stays 0 unless [`CountingAlloc`] is
/// the global allocator.
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting into [`ALLOCATIONS`]. Relaxed: the count is
/// read as a total between two points of one thread's work, never to order
/// other memory.
pub struct CountingAlloc;

// SAFETY: forwards every call to the system allocator unchanged; counting
// touches no memory the allocator hands out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`;
        // the caller upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
