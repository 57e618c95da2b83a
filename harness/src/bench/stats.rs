//! The arithmetic of interleaved rounds: medians, the median round, paired
//! same-round ratios and their spread; and how latencies are written.

use super::model::RunResult;

/// The median of `v` (the mean of the middle two for an even count; 0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `v` without repeats, in first-seen order.
pub fn unique<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(x) {
            out.push(*x);
        }
    }
    out
}

/// `v` rotated left by `round` (round 0: A B C, round 1: B C A, round 2: C A B, ...).
pub fn rotated<T: Copy>(v: &[T], round: usize) -> Vec<T> {
    let mut v = v.to_vec();
    let n = v.len();
    if n > 0 {
        v.rotate_left(round % n);
    }
    v
}

/// The run of the median-rps round (the lower middle for an even count), carrying every
/// round's rps and p99 (index = round). None without rounds.
pub fn median_round(rounds: Vec<RunResult>) -> Option<RunResult> {
    let mut by_rps: Vec<usize> = (0..rounds.len()).collect();
    by_rps.sort_by(|&i, &j| rounds[i].rps.total_cmp(&rounds[j].rps));
    let pick = *by_rps.get(rounds.len().checked_sub(1)? / 2)?;
    let round_rps = rounds.iter().map(|r| r.rps).collect();
    let round_p99_us = rounds.iter().map(|r| r.p99_us).collect();
    let mut r = rounds.into_iter().nth(pick)?;
    r.round_rps = round_rps;
    r.round_p99_us = round_p99_us;
    Some(r)
}

/// Median, min and max of the per-round ratios of two servers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedRatio {
    /// The median ratio.
    pub median: f64,
    /// The smallest ratio.
    pub min: f64,
    /// The largest ratio.
    pub max: f64,
    /// How many rounds were paired.
    pub pairs: usize,
}

/// The ratios `a[i] / b[i]` of the same round `i` (rounds missing on either side, or with
/// `b[i] == 0`, skipped): their median, min and max. None without a pair.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> Option<PairedRatio> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, y)| **y != 0.0)
        .map(|(x, y)| x / y)
        .collect();
    if ratios.is_empty() {
        return None;
    }
    Some(PairedRatio {
        median: median(&ratios),
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        pairs: ratios.len(),
    })
}

/// The spread of the rounds around `mid` in percent: (max − min) / 2 / mid × 100; None for
/// fewer than two rounds or `mid` ≤ 0.
pub fn spread_pct(rounds: &[f64], mid: f64) -> Option<f64> {
    if rounds.len() < 2 || mid <= 0.0 {
        return None;
    }
    let max = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    Some((max - min) / 2.0 / mid * 100.0)
}

/// A latency in µs as reports write it: `870µs`, `1.23ms`, `45ms`.
pub fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0}ms", us as f64 / 1000.0)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::model::run_of;

    #[test]
    fn rounds_rotate_the_server_order() {
        let v = ['A', 'B', 'C'];
        assert_eq!(rotated(&v, 0), ['A', 'B', 'C']);
        assert_eq!(rotated(&v, 1), ['B', 'C', 'A']);
        assert_eq!(rotated(&v, 2), ['C', 'A', 'B']);
        assert_eq!(rotated(&v, 4), ['B', 'C', 'A']);
        assert!(rotated::<char>(&[], 3).is_empty());
        assert_eq!(unique(&[64, 1, 64, 16, 1]), [64, 1, 16]);
    }

    #[test]
    fn median_round_is_reported_with_every_round() {
        // odd: the middle rps, whichever round it was
        let r = median_round(vec![
            run_of("s", 100.0, 10),
            run_of("s", 300.0, 30),
            run_of("s", 200.0, 20),
        ])
        .unwrap();
        assert_eq!((r.rps, r.p99_us), (200.0, 20));
        assert_eq!(r.round_rps, [100.0, 300.0, 200.0]);
        assert_eq!(r.round_p99_us, [10, 30, 20]);
        // even: the lower middle
        let r = median_round(vec![
            run_of("s", 400.0, 40),
            run_of("s", 100.0, 10),
            run_of("s", 300.0, 30),
            run_of("s", 200.0, 20),
        ])
        .unwrap();
        assert_eq!((r.rps, r.p99_us), (200.0, 20));
        assert_eq!(r.round_rps, [400.0, 100.0, 300.0, 200.0]);
        // one round, and none
        let r = median_round(vec![run_of("s", 5.0, 1)]).unwrap();
        assert_eq!((r.rps, r.round_rps.as_slice()), (5.0, &[5.0][..]));
        assert!(median_round(Vec::new()).is_none());
    }

    #[test]
    fn paired_ratios_are_per_round() {
        // odd: ratios 0.8, 1.0, 0.9 (same round paired, not sorted values)
        let p = paired_ratio(&[80.0, 100.0, 90.0], &[100.0, 100.0, 100.0]).unwrap();
        assert_eq!((p.median, p.min, p.max, p.pairs), (0.9, 0.8, 1.0, 3));
        // even: the mean of the two middle ratios 0.5, 1.0, 2.0, 4.0
        let p = paired_ratio(&[1.0, 2.0, 4.0, 8.0], &[2.0, 2.0, 2.0, 2.0]).unwrap();
        assert_eq!((p.median, p.min, p.max, p.pairs), (1.5, 0.5, 4.0, 4));
        // a zero denominator is skipped; a round missing on one side too
        let p = paired_ratio(&[50.0, 70.0, 60.0], &[0.0, 100.0]).unwrap();
        assert_eq!((p.median, p.pairs), (0.7, 1));
        assert!(paired_ratio(&[1.0], &[0.0]).is_none());
        assert!(paired_ratio(&[], &[]).is_none());
    }

    #[test]
    fn spread_of_rounds() {
        assert_eq!(spread_pct(&[90.0, 100.0, 110.0], 100.0), Some(10.0));
        assert_eq!(spread_pct(&[100.0], 100.0), None);
        assert_eq!(spread_pct(&[0.0, 0.0], 0.0), None);
    }
}
