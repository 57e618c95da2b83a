//! The global allocator on Unix: mimalloc, called the cheap way.
//!
//! Requests allocate on a runtime thread and free on an extension thread;
//! glibc's per-thread arenas pay for that with a lock and consolidation on
//! every cross-thread free.

use std::ffi::c_void;

/// The global allocator on Unix: mimalloc.
///
/// Word-aligned requests, nearly all of them, go to `mi_malloc`, which
/// always returns word-aligned blocks; the `mimalloc` crate sends every
/// request through `mi_malloc_aligned`, whose fast path misses for blocks
/// over 1 KiB and costs several times as much. Stricter alignments still
/// use the aligned calls.
pub(crate) struct MiMalloc;

const WORD: usize = size_of::<usize>();

/// Allocates `layout` with `plain` when word alignment suffices, else with
/// `aligned`.
///
/// # Safety
/// The pair must be one of mimalloc's allocation calls and its `_aligned`
/// twin, and `layout` non-zero in size (as `GlobalAlloc` guarantees).
unsafe fn mi_alloc(
    layout: std::alloc::Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: plain C allocation calls; see `MiMalloc`'s impl.
    unsafe {
        if layout.align() <= WORD {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: every block comes from mimalloc with at least the layout's
// alignment (word alignment is what `mi_malloc` guarantees; anything
// stricter goes through the `_aligned` calls), and is freed by `mi_free`.
unsafe impl std::alloc::GlobalAlloc for MiMalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            mi_alloc(
                layout,
                libmimalloc_sys::mi_malloc,
                libmimalloc_sys::mi_malloc_aligned,
            )
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            mi_alloc(
                layout,
                libmimalloc_sys::mi_zalloc,
                libmimalloc_sys::mi_zalloc_aligned,
            )
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: `ptr` came from this allocator with `layout`; the new
        // block keeps the alignment, as in `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// Turns transparent huge pages off for this process and its children
/// (`PR_SET_THP_DISABLE`, inherited across `fork` and `exec`), before the
/// process starts its threads.
///
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so on a
/// kernel with THP in `madvise` mode (the common default) the first small
/// block a thread allocates can fault in 2 MiB. With a pool of request
/// threads, and tokio's blocking threads for static files, that made an
/// idle host 36 MiB instead of 15, and one that had served static files
/// 85–98 MiB instead of 26 (BENCHMARKS.md, "Static files"). This is what
/// mimalloc's own `MIMALLOC_ALLOW_THP=0` does at its start.
#[cfg(target_os = "linux")]
pub(crate) fn no_huge_pages() {
    // SAFETY: prctl with an integer option and integer arguments; it reads
    // and writes no memory of ours. A kernel without the option returns
    // EINVAL, which leaves THP as it was: only memory is at stake.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::MiMalloc;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    #[cfg_attr(miri, ignore = "mimalloc is C: a foreign call Miri cannot run")]
    fn allocator_keeps_every_alignment() {
        // Sizes across mimalloc's bins, with word and stricter alignments;
        // several live blocks of each, so that not only a page's first
        // block is seen.
        for size in [1, 7, 8, 12, 24, 40, 100, 1000, 1500, 5000, 70_000] {
            for align in [1, 2, 4, 8, 16, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let blocks: Vec<*mut u8> = (0..16)
                    .map(|i| {
                        // SAFETY: a non-zero layout; freed below.
                        let p = unsafe {
                            if i % 2 == 0 {
                                MiMalloc.alloc(layout)
                            } else {
                                MiMalloc.alloc_zeroed(layout)
                            }
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        p
                    })
                    .collect();
                for p in blocks {
                    // SAFETY: grown then freed with the layout it came with.
                    unsafe {
                        let q = MiMalloc.realloc(p, layout, size * 3);
                        assert_eq!(q as usize % align, 0, "realloc {size} align {align}");
                        let grown = Layout::from_size_align(size * 3, align).unwrap();
                        MiMalloc.dealloc(q, grown);
                    }
                }
            }
        }
    }
}
