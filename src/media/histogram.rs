//! Counting without allocating: a latency histogram for status lines and reports.

/// Latencies in log-linear buckets (as HdrHistogram): exact below 64 µs, then 64
/// buckets per power of two, so any value is kept within 1.6%, from 1 µs to about
/// 76 hours (longer ones count as that), in 8 KiB.
#[derive(Clone)]
pub struct LatencyHistogram {
    buckets: Vec<u32>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

/// Buckets per power of two (and the exact range below it).
const SUB: u64 = 64;
const SUB_BITS: u32 = 6;
/// Powers of two above the exact range.
const EXPONENTS: usize = 32;
const BUCKETS: usize = SUB as usize * (EXPONENTS + 1);

fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    // How far the value is right-shifted to fit 64..128.
    let shift = (63 - us.leading_zeros()) - SUB_BITS;
    let i = shift as usize * SUB as usize + (us >> shift) as usize;
    i.min(BUCKETS - 1)
}

/// The middle of a bucket's range, µs.
fn value(i: usize) -> f64 {
    let i = i as u64;
    if i < SUB * 2 {
        return i as f64;
    }
    let shift = i / SUB - 1;
    let low = (i - shift * SUB) << shift;
    low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; BUCKETS],
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count)
            .field("p50_us", &self.percentile(0.5))
            .field("max_us", &self.max_us)
            .finish()
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, us: u64) {
        self.buckets[bucket(us)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_us as f64 / self.count as f64)
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The latency below which `p` (0..=1) of the samples fall, in µs (its
    /// bucket's middle: within 1.6%), or `None` with no samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n as u64;
            if seen >= rank {
                return Some(value(i).min(self.max_us as f64));
            }
        }
        Some(self.max_us as f64)
    }

    pub fn clear(&mut self) {
        if self.count > 0 {
            self.buckets.fill(0);
        }
        self.count = 0;
        self.sum_us = 0;
        self.max_us = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.percentile(0.5), None);
        for us in 1..=1000u64 {
            h.record(us * 10);
        }
        let p50 = h.percentile(0.5).unwrap();
        assert!((p50 - 5000.0).abs() <= 5000.0 * 0.016, "{p50}");
        let p99 = h.percentile(0.99).unwrap();
        assert!((p99 - 9900.0).abs() <= 9900.0 * 0.016, "{p99}");
        h.record(5_000_000);
        assert_eq!(h.max_us(), 5_000_000);
        let top = h.percentile(1.0).unwrap();
        assert!((top - 5e6).abs() <= 5e6 * 0.016, "{top}");
        h.clear();
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn every_value_lands_within_its_bucket_precision() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100_000 {
            let v = match rng.u8(..3) {
                0 => rng.u64(..200),
                1 => rng.u64(..10_000_000),
                _ => rng.u64(..1 << 38),
            };
            let mid = value(bucket(v));
            let err = (mid - v as f64).abs();
            assert!(
                err <= (v as f64 * 0.016).max(0.5),
                "{v} -> bucket {} mid {mid}",
                bucket(v)
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }
}
