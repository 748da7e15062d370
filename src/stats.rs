//! Counting without allocating: a latency histogram for status lines and reports.

/// Latencies in 10 µs buckets up to 1 s; anything slower lands in the last bucket.
pub struct LatencyHistogram {
    buckets: Vec<u32>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

const BUCKET_US: u64 = 10;
const BUCKETS: usize = 100_000;

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
        let i = ((us / BUCKET_US) as usize).min(BUCKETS - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us += us;
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

    /// The latency below which `p` (0..=1) of the samples fall, in µs (bucket
    /// midpoint, so within 5 µs), or `None` with no samples.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n as u64;
            if seen >= rank {
                return Some((i as u64 * BUCKET_US) as f64 + BUCKET_US as f64 / 2.0);
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
        assert!((p50 - 5000.0).abs() <= 10.0, "{p50}");
        let p99 = h.percentile(0.99).unwrap();
        assert!((p99 - 9900.0).abs() <= 10.0, "{p99}");
        h.record(5_000_000);
        assert_eq!(h.max_us(), 5_000_000);
        assert!(h.percentile(1.0).unwrap() >= 999_990.0);
        h.clear();
        assert_eq!(h.count(), 0);
    }
}
