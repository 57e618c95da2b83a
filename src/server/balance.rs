//! Connection balancing in a web garden: each worker publishes how many
//! connections it holds, in a page of shared memory every worker of the
//! pool maps, and a worker that holds more than its share lets the others
//! accept first.
//!
//! Why: the workers accept on one inherited socket, the kernel wakes all of
//! them when connections arrive, and whichever runs first drains the
//! backlog. Keep-alive connections then stay where they landed: on two
//! workers sharing two busy CPUs, one worker took all 64 of a benchmark's
//! connections in about one run in five, and the pool served at one
//! worker's speed (BENCHMARKS.md, "Worker processes"). nginx (its
//! `accept_mutex`, and `ngx_accept_disabled` for a worker short of free
//! connections) and Envoy (its exact connection balancer) answer the same
//! problem.
//!
//! The rule: before it accepts, a worker that holds at least two more
//! connections than the least loaded other worker waits [`GIVE_WAY`], while
//! the others take what is pending; then it accepts in any case (the
//! others may be unable to), so that no connection waits longer than that.
//! A lone worker, a single process and Windows never wait.
//!
//! Layout: [`SEATS`] 64-bit words, one per accepting worker, `pid << 32 |
//! open connections`, 0 for a free seat. A worker takes a seat when it starts
//! accepting and leaves it when it stops (drain, or a run of failing
//! `accept`s); the supervisor frees the seat of a worker that died.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The table's size in bytes: one page.
#[cfg_attr(not(unix), allow(dead_code))]
const TABLE_BYTES: usize = 4096;
/// Seats in the table: workers accepting at once beyond this (a garden
/// of more than about 30 workers while it recycles) take no part.
const SEATS: usize = 64;
const _: () = assert!(SEATS * 8 <= TABLE_BYTES);
/// How long a crowded worker leaves a pending connection to the others.
pub(crate) const GIVE_WAY: Duration = Duration::from_millis(5);

/// The pool's table of seats, mapped in every process of it.
#[derive(Clone, Copy)]
pub(crate) struct Garden(&'static [AtomicU64]);

impl Garden {
    /// The table in `words` (at least [`TABLE_BYTES`] of shared memory).
    #[cfg_attr(not(unix), allow(dead_code))]
    fn new(words: &'static [AtomicU64]) -> Self {
        assert!(words.len() >= SEATS, "the garden table is too small");
        Garden(&words[..SEATS])
    }

    /// The supervisor's: a new, empty table, and the file its workers
    /// inherit.
    #[cfg(unix)]
    pub(crate) fn create() -> anyhow::Result<(std::fs::File, Garden)> {
        use anyhow::Context as _;
        let file = crate::os::memfd(c"isapi-host-garden", TABLE_BYTES as u64)
            .context("cannot make the connection-balancing table")?;
        let garden = Self::map(&file)?;
        Ok((file, garden))
    }

    /// A worker's: the table in the file the supervisor handed down.
    #[cfg(unix)]
    pub(crate) fn map(file: &std::fs::File) -> anyhow::Result<Garden> {
        use anyhow::Context as _;
        let words = crate::os::map_words(file, TABLE_BYTES)
            .context("cannot map the connection-balancing table")?;
        Ok(Self::new(words))
    }

    /// Takes a free seat for worker `pid`; `None` when every seat is taken.
    pub(crate) fn join(self, pid: u32) -> Option<Seat> {
        let word = u64::from(pid) << 32;
        let index = self.0.iter().position(|seat| {
            seat.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        Some(Seat {
            garden: self,
            index,
            pid,
        })
    }

    /// Frees the seat of worker `pid`, if it holds one (it died in it).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn evict(self, pid: u32) {
        for seat in self.0 {
            store_if_owned(seat, pid, 0);
        }
    }

    /// The connections worker `pid` holds, if it has a seat.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn connections(self, pid: u32) -> Option<u32> {
        self.0
            .iter()
            .map(|seat| seat.load(Ordering::Relaxed))
            .find(|&v| v != 0 && owner(v) == pid)
            .map(open)
    }
}

/// Stores `word` in `seat` if worker `pid` still holds it (the supervisor
/// may have freed it, and another worker taken it).
fn store_if_owned(seat: &AtomicU64, pid: u32, word: u64) {
    let _ = seat.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
        (owner(v) == pid).then_some(word)
    });
}

/// The pid in a seat's word.
fn owner(word: u64) -> u32 {
    (word >> 32) as u32
}

/// The connection count in a seat's word.
fn open(word: u64) -> u32 {
    word as u32
}

/// This worker's seat; leaving it is dropping it.
pub(crate) struct Seat {
    garden: Garden,
    index: usize,
    pid: u32,
}

impl Seat {
    fn word(&self) -> &AtomicU64 {
        &self.garden.0[self.index]
    }

    /// Publishes that this worker holds `open` connections.
    pub(crate) fn publish(&self, open: usize) {
        let open = u64::from(u32::try_from(open).unwrap_or(u32::MAX));
        store_if_owned(self.word(), self.pid, (u64::from(self.pid) << 32) | open);
    }

    /// Whether this worker holds at least two connections more than the
    /// least loaded other worker, and should let the others accept first.
    pub(crate) fn crowded(&self) -> bool {
        let mut mine = None;
        let mut least = None::<u32>;
        for (i, seat) in self.garden.0.iter().enumerate() {
            let v = seat.load(Ordering::Acquire);
            if v == 0 {
                continue;
            }
            if i == self.index {
                mine = Some(open(v));
            } else {
                least = Some(least.map_or(open(v), |l| l.min(open(v))));
            }
        }
        matches!((mine, least), (Some(m), Some(l)) if m >= l.saturating_add(2))
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        store_if_owned(self.word(), self.pid, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn garden() -> Garden {
        let words: Vec<AtomicU64> = (0..SEATS).map(|_| AtomicU64::new(0)).collect();
        Garden::new(Vec::leak(words))
    }

    #[test]
    fn a_lone_worker_is_never_crowded() {
        let g = garden();
        let a = g.join(100).unwrap();
        a.publish(1000);
        assert!(!a.crowded());
        assert_eq!(g.connections(100), Some(1000));
        assert_eq!(g.connections(200), None);
    }

    #[test]
    fn crowded_means_two_more_than_the_least_loaded_other() {
        let g = garden();
        let (a, b, c) = (g.join(1).unwrap(), g.join(2).unwrap(), g.join(3).unwrap());
        a.publish(10);
        b.publish(9);
        c.publish(12);
        assert!(!a.crowded() && !b.crowded());
        assert!(c.crowded(), "12 against 9");
        b.publish(11);
        assert!(c.crowded(), "12 against 10 and 11");
        a.publish(11);
        assert!(!c.crowded(), "12 against 11 and 11");
        assert!(!a.crowded() && !b.crowded());
        // One that leaves (drains, or fails to accept) counts no more.
        drop(a);
        assert!(!c.crowded(), "12 against 11");
        assert_eq!(g.connections(1), None);
        b.publish(0);
        assert!(c.crowded());
    }

    #[test]
    fn an_evicted_seat_is_taken_again_and_its_old_owner_writes_nothing() {
        let g = garden();
        let a = g.join(7).unwrap();
        a.publish(5);
        g.evict(7);
        assert_eq!(g.connections(7), None);
        let b = g.join(8).unwrap();
        assert_eq!(b.index, a.index, "the freed seat is taken again");
        a.publish(50);
        drop(a);
        assert_eq!(g.connections(8), Some(0), "the dead worker's seat is b's");
        b.publish(3);
        assert_eq!(g.connections(8), Some(3));
    }

    #[test]
    fn every_seat_taken_leaves_a_worker_out() {
        let g = garden();
        let seats: Vec<Seat> = (1..=SEATS as u32).map(|p| g.join(p).unwrap()).collect();
        assert!(g.join(1000).is_none());
        drop(seats);
        assert!(g.join(1000).is_some());
    }
}
