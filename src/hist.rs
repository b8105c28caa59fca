//! Log2 histograms of microseconds, as the kernel side fills them: slot 0
//! holds [0, 1) us, slot i holds [2^(i-1), 2^i) us, and the last slot is
//! open-ended. Count, exact mean (the kernel also sums the latencies) and
//! percentiles estimated from the buckets.

use std::io::{self, Write};

/// One bucket: `low <= us < high`; `high` is None for the open-ended last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    pub low: u64,
    pub high: Option<u64>,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log2Hist {
    pub slots: Vec<u64>,
    /// Sum of the latencies, nanoseconds
    pub sum_ns: u64,
}

/// The slot a latency of `us` microseconds goes to, out of `n` (as the kernel
/// does; the tests check the bounds against it).
#[cfg(test)]
pub fn slot_of(us: u64, n: usize) -> usize {
    let bits = (u64::BITS - us.leading_zeros()) as usize;
    bits.min(n.saturating_sub(1))
}

/// [low, high) of slot `i` out of `n`, in microseconds.
pub fn bounds(i: usize, n: usize) -> (u64, Option<u64>) {
    let low = if i == 0 { 0 } else { 1u64 << (i - 1).min(63) };
    let high = (i + 1 < n).then(|| 1u64 << i.min(63));
    (low, high)
}

impl Log2Hist {
    pub fn new(slots: Vec<u64>, sum_ns: u64) -> Self {
        Log2Hist { slots, sum_ns }
    }

    pub fn count(&self) -> u64 {
        self.slots.iter().sum()
    }

    /// What was added since `earlier` (the kernel's counts only grow).
    pub fn since(&self, earlier: &Log2Hist) -> Log2Hist {
        Log2Hist {
            slots: self
                .slots
                .iter()
                .enumerate()
                .map(|(i, &c)| c.saturating_sub(earlier.slots.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
        }
    }

    /// The buckets from the first non-empty one to the last non-empty one
    /// (empty ones between them included); none when the histogram is empty.
    pub fn buckets(&self) -> Vec<Bucket> {
        let n = self.slots.len();
        let first = self.slots.iter().position(|&c| c > 0);
        let last = self.slots.iter().rposition(|&c| c > 0);
        match (first, last) {
            (Some(f), Some(l)) => (f..=l)
                .map(|i| {
                    let (low, high) = bounds(i, n);
                    Bucket {
                        low,
                        high,
                        count: self.slots[i],
                    }
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Mean latency in microseconds (exact: from the kernel's sum).
    pub fn mean_us(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum_ns as f64 / 1000.0 / n as f64)
    }

    /// The `q` quantile (0 < q <= 1) in microseconds, estimated from the
    /// buckets: find the bucket that holds the call of rank q * count, and
    /// place it linearly inside that bucket by how far into the bucket's
    /// calls the rank falls. The true value is in the same bucket, so the
    /// estimate is off by less than the bucket's width. In the open-ended
    /// last bucket the estimate is its lower bound.
    pub fn percentile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let n = self.slots.len();
        let mut below = 0u64;
        for (i, &c) in self.slots.iter().enumerate() {
            if c == 0 {
                continue;
            }
            // (a rank that floating point put a hair past a bucket's last call
            // still belongs to that bucket)
            if (below + c) as f64 >= rank - 1e-9 * total as f64 {
                let (low, high) = bounds(i, n);
                let Some(high) = high else {
                    return Some(low as f64);
                };
                let frac = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(low as f64 + frac * (high - low) as f64);
            }
            below += c;
        }
        // rounding left the rank past the last call: the top of the last bucket
        let last = self.slots.iter().rposition(|&c| c > 0)?;
        let (low, high) = bounds(last, n);
        Some(high.unwrap_or(low) as f64)
    }

    /// A text rendering: one line per bucket with a bar scaled to the largest.
    pub fn write_bars(&self, w: &mut dyn Write, indent: &str) -> io::Result<()> {
        const WIDTH: u64 = 40;
        let buckets = self.buckets();
        let max = buckets.iter().map(|b| b.count).max().unwrap_or(0);
        writeln!(w, "{indent}{:>22} {:>10}  distribution", "us", "count")?;
        for b in &buckets {
            let range = match b.high {
                Some(h) => format!("{} -> {}", b.low, h),
                None => format!("{} -> inf", b.low),
            };
            let stars = if max == 0 {
                0
            } else {
                // at least one star for any non-empty bucket
                ((b.count * WIDTH).div_ceil(max)).min(WIDTH)
            };
            writeln!(
                w,
                "{indent}{range:>22} {:>10}  |{:<width$}|",
                b.count,
                "*".repeat(stars as usize),
                width = WIDTH as usize
            )?;
        }
        Ok(())
    }
}

/// Round to three decimals (nanosecond resolution for microseconds).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 32;

    fn approx(got: Option<f64>, want: f64) {
        let g = got.expect("a value");
        assert!((g - want).abs() < 1e-6, "got {g}, want {want}");
    }

    fn hist(pairs: &[(usize, u64)]) -> Log2Hist {
        let mut slots = vec![0; N];
        for &(i, c) in pairs {
            slots[i] = c;
        }
        Log2Hist::new(slots, 0)
    }

    #[test]
    fn slots_and_bounds_agree() {
        assert_eq!(slot_of(0, N), 0);
        assert_eq!(slot_of(1, N), 1);
        assert_eq!(slot_of(2, N), 2);
        assert_eq!(slot_of(3, N), 2);
        assert_eq!(slot_of(4, N), 3);
        assert_eq!(slot_of(1023, N), 10);
        assert_eq!(slot_of(1024, N), 11);
        assert_eq!(slot_of(u64::MAX, N), N - 1);
        assert_eq!(bounds(0, N), (0, Some(1)));
        assert_eq!(bounds(1, N), (1, Some(2)));
        assert_eq!(bounds(11, N), (1024, Some(2048)));
        assert_eq!(bounds(N - 1, N), (1 << 30, None));
        // every value lands in the bucket whose bounds hold it
        for us in [
            0u64,
            1,
            2,
            3,
            5,
            999,
            1000,
            65_535,
            600_000,
            1 << 29,
            (1 << 30) - 1,
        ] {
            let (lo, hi) = bounds(slot_of(us, N), N);
            assert!(lo <= us && hi.is_some_and(|h| us < h), "{us}");
        }
        let (lo, hi) = bounds(slot_of(1 << 40, N), N);
        assert!(lo <= 1 << 40 && hi.is_none());
    }

    #[test]
    fn percentiles_of_one_bucket_interpolate_linearly() {
        // 100 calls all in [512, 1024) us
        let h = hist(&[(10, 100)]);
        assert_eq!(h.count(), 100);
        approx(h.percentile(0.5), 768.0);
        approx(h.percentile(0.9), 972.8);
        approx(h.percentile(0.99), 1018.88);
        approx(h.percentile(1.0), 1024.0);
    }

    #[test]
    fn percentiles_pick_the_bucket_that_holds_the_rank() {
        // 50 calls in [1, 2) us, 40 in [8, 16) us, 10 in [1024, 2048) us
        let h = hist(&[(1, 50), (4, 40), (11, 10)]);
        // rank 50 is the last call of the first bucket
        approx(h.percentile(0.5), 2.0);
        // rank 90: the last call of the second bucket
        approx(h.percentile(0.9), 16.0);
        // rank 99: 9 of the 10 calls of the third bucket
        approx(h.percentile(0.99), 1024.0 + 0.9 * 1024.0);
        // rank 25: halfway through the first bucket
        approx(h.percentile(0.25), 1.5);
        // rank 70: halfway through the second
        approx(h.percentile(0.7), 12.0);
    }

    #[test]
    fn a_single_call_sits_in_the_middle_of_its_bucket() {
        let h = hist(&[(20, 1)]);
        let (lo, hi) = bounds(20, N);
        let mid = (lo + hi.unwrap()) as f64 / 2.0;
        for q in [0.5, 0.9, 0.99] {
            let p = h.percentile(q).unwrap();
            assert!(p >= lo as f64 && p <= hi.unwrap() as f64, "{q}: {p}");
        }
        approx(h.percentile(0.5), mid);
    }

    #[test]
    fn the_open_ended_bucket_reports_its_lower_bound() {
        let h = hist(&[(N - 1, 3)]);
        assert_eq!(h.percentile(0.5), Some((1u64 << 30) as f64));
        assert_eq!(
            h.buckets(),
            vec![Bucket {
                low: 1 << 30,
                high: None,
                count: 3
            }]
        );
    }

    #[test]
    fn empty_histograms_have_no_statistics() {
        let h = hist(&[]);
        assert_eq!(h.count(), 0);
        assert_eq!((h.mean_us(), h.percentile(0.5)), (None, None));
        assert!(h.buckets().is_empty());
    }

    #[test]
    fn buckets_span_first_to_last_non_empty() {
        let h = hist(&[(2, 3), (5, 1)]);
        let b = h.buckets();
        assert_eq!(b.len(), 4);
        assert_eq!((b[0].low, b[0].high, b[0].count), (2, Some(4), 3), "{b:?}");
        assert_eq!(b[1].count + b[2].count, 0);
        assert_eq!((b[3].low, b[3].high, b[3].count), (16, Some(32), 1));
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), h.count());
    }

    #[test]
    fn mean_is_exact_and_deltas_subtract() {
        let mut h = hist(&[(3, 2), (4, 2)]);
        h.sum_ns = 4 * 7_500; // 7.5 us each
        assert_eq!(h.mean_us(), Some(7.5));
        let mut later = hist(&[(3, 5), (4, 2), (9, 1)]);
        later.sum_ns = h.sum_ns + 4 * 6_000 + 300_000;
        let d = later.since(&h);
        assert_eq!(d.count(), 4);
        assert_eq!(d.slots[3], 3);
        assert_eq!(d.slots[9], 1);
        assert_eq!(d.mean_us(), Some((24_000.0 + 300_000.0) / 1000.0 / 4.0));
    }

    #[test]
    fn bars_render() {
        let h = hist(&[(1, 10), (3, 5)]);
        let mut out = Vec::new();
        h.write_bars(&mut out, "  ").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].contains("1 -> 2") && lines[1].contains(&"*".repeat(40)));
        assert!(lines[2].contains("2 -> 4") && lines[2].contains("|  "));
        assert!(lines[3].contains("4 -> 8") && lines[3].contains(&format!("|{}", "*".repeat(20))));
    }
}
