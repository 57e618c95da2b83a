//! The table of requests in flight on a worker, in memory the supervisor
//! can read after the worker dies: a crash log names the URLs it took down.
//!
//! An extension thread claims a slot (one compare-and-swap, on a slot the
//! same thread used last time, so on its own cache line), writes the
//! request's method and target there with plain atomic stores, and frees
//! it when `HttpExtensionProc` returns: no system call per request. The
//! supervisor reads the file only once the worker is dead.
//!
//! Layout, in 64-bit words: [`HEADER_WORDS`] reserved, then [`SLOTS`]
//! slots of [`SLOT_WORDS`]: a state word (0 free, else `len << 8 | 1`), the
//! request's start (milliseconds since the Unix epoch, for hang detection),
//! the number of requests the slot has held (their sum is what the worker
//! has served, for `isapi-host ctl status`) and up to [`URL_BYTES`] bytes of
//! `METHOD target`.

use std::cell::Cell;
use std::fs::File;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Reserved words at the start.
const HEADER_WORDS: usize = 8;
/// Slots in the table: requests in flight beyond this go unrecorded.
pub(crate) const SLOTS: usize = 255;
/// Words per slot.
const SLOT_WORDS: usize = 32;
/// The words before a slot's URL: state, start, count.
const SLOT_HEAD: usize = 3;
/// The longest recorded `METHOD target`; longer ones are cut.
const URL_BYTES: usize = (SLOT_WORDS - SLOT_HEAD) * 8;
/// The table's size in bytes.
pub(crate) const TABLE_BYTES: usize = 65536;
const _: () = assert!((HEADER_WORDS + SLOTS * SLOT_WORDS) * 8 <= TABLE_BYTES);

/// This worker's table, once mapped.
static TABLE: OnceLock<&'static [AtomicU64]> = OnceLock::new();
/// Where a thread that never claimed a slot starts looking.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The slot this thread claimed last.
    static HINT: Cell<usize> = Cell::new(NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS);
}

/// Maps the worker's table (once, at start-up).
pub(crate) fn install(file: &File) -> std::io::Result<()> {
    let words = super::map_words(file, TABLE_BYTES)?;
    let _ = TABLE.set(words);
    Ok(())
}

/// A claimed slot, freed on drop.
pub(crate) struct Slot(&'static AtomicU64);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Records `method target` as in flight until the slot drops; `None`
/// without a table (no supervisor) or with every slot taken.
pub(crate) fn claim(method: &str, target: &str) -> Option<Slot> {
    let table = *TABLE.get()?;
    let start = HINT.with(Cell::get);
    for i in 0..SLOTS {
        let n = (start + i) % SLOTS;
        let base = HEADER_WORDS + n * SLOT_WORDS;
        let state = &table[base];
        if state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        HINT.with(|h| h.set(n));
        table[base + 1].store(now_ms(), Ordering::Relaxed);
        // Only the slot's holder writes its count: no read-modify-write.
        let count = &table[base + 2];
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let mut len = 0;
        let mut word = [0u8; 8];
        let mut w = 0;
        for b in method
            .bytes()
            .chain(std::iter::once(b' '))
            .chain(target.bytes())
            .take(URL_BYTES)
        {
            word[len % 8] = b;
            len += 1;
            if len % 8 == 0 {
                table[base + SLOT_HEAD + w].store(u64::from_le_bytes(word), Ordering::Relaxed);
                word = [0; 8];
                w += 1;
            }
        }
        if len % 8 != 0 {
            table[base + SLOT_HEAD + w].store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        state.store(((len as u64) << 8) | 1, Ordering::Release);
        return Some(Slot(state));
    }
    None
}

/// Now, in milliseconds since the Unix epoch (the same clock in every
/// process; a vDSO read, no system call).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The requests a dead worker's table holds, as `METHOD target`.
pub(crate) fn read(file: &File) -> Vec<String> {
    read_aged(file).into_iter().map(|(url, _)| url).collect()
}

/// The requests a worker's table holds, with how long each has run (read
/// while it runs: a slot being rewritten may read torn, which only a log
/// line shows).
pub(crate) fn read_aged(file: &File) -> Vec<(String, std::time::Duration)> {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0u8; TABLE_BYTES];
    if file.read_exact_at(&mut buf, 0).is_err() {
        return Vec::new();
    }
    parse(&buf, now_ms())
}

/// How many requests a worker has taken into an extension so far (read
/// while it runs: each slot's count is a word its holder alone writes).
pub(crate) fn served(file: &File) -> u64 {
    use std::os::unix::fs::FileExt as _;
    let mut buf = vec![0u8; TABLE_BYTES];
    if file.read_exact_at(&mut buf, 0).is_err() {
        return 0;
    }
    (0..SLOTS)
        .map(|n| {
            let i = (HEADER_WORDS + n * SLOT_WORDS + 2) * 8;
            u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"))
        })
        .sum()
}

/// [`read_aged`]'s parse of the table's bytes.
fn parse(buf: &[u8], now: u64) -> Vec<(String, std::time::Duration)> {
    let word = |i: usize| {
        let b = &buf[i * 8..i * 8 + 8];
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    };
    let mut out = Vec::new();
    for n in 0..SLOTS {
        let base = HEADER_WORDS + n * SLOT_WORDS;
        let state = word(base);
        if state == 0 {
            continue;
        }
        let age = std::time::Duration::from_millis(now.saturating_sub(word(base + 1)));
        let len = ((state >> 8) as usize).min(URL_BYTES);
        if len == 0 {
            out.push(("(a request whose URL was being recorded)".to_owned(), age));
            continue;
        }
        let start = (base + SLOT_HEAD) * 8;
        out.push((
            String::from_utf8_lossy(&buf[start..start + len]).into_owned(),
            age,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "memfd_create and mmap: foreign calls Miri cannot run")]
    fn claims_record_and_free() {
        let file = super::super::memfd(c"inflight-test", TABLE_BYTES as u64).unwrap();
        install(&file).unwrap();
        let a = claim("GET", "/crash?x=1").unwrap();
        let b = claim("POST", &format!("/{}", "y".repeat(400))).unwrap();
        let mut got = read(&file);
        got.sort();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], "GET /crash?x=1");
        assert!(got[1].starts_with("POST /yyy"));
        assert_eq!(got[1].len(), URL_BYTES);
        drop(a);
        assert_eq!(read(&file), vec![got[1].clone()]);
        let aged = read_aged(&file);
        assert_eq!(aged.len(), 1);
        assert!(aged[0].1 < std::time::Duration::from_secs(60));
        drop(b);
        assert!(read(&file).is_empty());
        assert_eq!(served(&file), 2);
        drop(claim("GET", "/"));
        assert_eq!(served(&file), 3);
    }
}
