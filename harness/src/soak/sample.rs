//! The host's memory and descriptors, sampled once a second during a soak,
//! and the verdicts on them: RSS flat after warm-up, descriptors back to
//! their baseline once the clients are gone.

use std::time::{Duration, Instant};

use crate::procfs;

/// One sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    /// Resident memory of the host's process tree, KiB.
    pub rss_kib: u64,
    /// Open descriptors of the host's process tree.
    pub fds: usize,
    /// Requests done so far.
    pub done: u64,
}

/// Samples `pid` now.
pub fn take(pid: u32, start: Instant, done: u64) -> Sample {
    Sample {
        t: start.elapsed().as_secs_f64(),
        rss_kib: procfs::tree_rss_kib(pid),
        fds: procfs::tree_fd_count(pid),
        done,
    }
}

/// The median RSS of `s`.
fn median_rss(s: &[Sample]) -> u64 {
    let mut v: Vec<u64> = s.iter().map(|x| x.rss_kib).collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// RSS over the last half of the run: the median of its first five samples,
/// the median of its last five, and the growth between them in percent.
/// `None` with fewer than ten samples in that half.
pub fn rss_growth(samples: &[Sample]) -> Option<(u64, u64, f64)> {
    let half = &samples[samples.len() / 2..];
    if half.len() < 10 {
        return None;
    }
    let first = median_rss(&half[..5]);
    let last = median_rss(&half[half.len() - 5..]);
    if first == 0 {
        return None;
    }
    let pct = (last as f64 - first as f64) * 100.0 / first as f64;
    Some((first, last, pct))
}

/// Waits up to `timeout` for the descriptors of `pid` to fall to `baseline`;
/// returns the last count seen.
pub fn wait_fds(pid: u32, baseline: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let n = procfs::tree_fd_count(pid);
        if n <= baseline || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(rss: u64) -> Sample {
        Sample {
            t: 0.0,
            rss_kib: rss,
            fds: 0,
            done: 0,
        }
    }

    #[test]
    fn growth_over_the_last_half() {
        let flat: Vec<Sample> = (0..40).map(|_| s(1000)).collect();
        assert_eq!(rss_growth(&flat), Some((1000, 1000, 0.0)));
        let rising: Vec<Sample> = (0..40).map(|i| s(1000 + i * 10)).collect();
        let (a, b, pct) = rss_growth(&rising).unwrap();
        assert!(b > a && pct > 10.0);
        assert_eq!(rss_growth(&flat[..10]), None);
    }
}
