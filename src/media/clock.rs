//! The one clock that timestamps frames: CLOCK_MONOTONIC in microseconds.
//!
//! Monotonic, so a wall-clock step never makes latency negative. Two machines do not
//! share it: the viewer estimates the server's offset (see `docs/protocol.md`).

/// Microseconds on this machine's monotonic clock.
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// CPU time used by the calling thread so far, in nanoseconds (user + system).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above; every Linux thread has a CPU-time clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// The offset of another machine's clock from ours, estimated NTP-style from
/// timestamped exchanges: the viewer sends at `t1`, the server receives at `t2`
/// and answers at `t3`, the viewer receives at `t4` (t1, t4 ours; t2, t3 theirs).
/// A sample's offset is `((t2 − t1) + (t3 − t4)) / 2` and its round trip
/// `(t4 − t1) − (t3 − t2)`; the offset is taken from the sample with the smallest
/// round trip among the recent ones (NTP's clock filter), whose error is at most
/// half that round trip, whatever the path's asymmetry.
#[derive(Debug, Clone, Default)]
pub struct ClockSync {
    /// (offset µs, round trip µs), newest last.
    samples: std::collections::VecDeque<(i64, u64)>,
}

impl ClockSync {
    /// Samples kept: at one ping a second, the last quarter of a minute, so drift
    /// between the two clocks (tens of µs a minute) stays small.
    pub const KEEP: usize = 16;

    /// Adds one exchange. Impossible stamps (a negative round trip) are ignored.
    pub fn add(&mut self, t1: u64, t2: u64, t3: u64, t4: u64) {
        let (t1, t2, t3, t4) = (t1 as i128, t2 as i128, t3 as i128, t4 as i128);
        let round_trip = (t4 - t1) - (t3 - t2);
        if round_trip < 0 || t3 < t2 || t4 < t1 {
            return;
        }
        let offset = ((t2 - t1) + (t3 - t4)) / 2;
        let Ok(offset) = i64::try_from(offset) else {
            return;
        };
        if self.samples.len() == Self::KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back((offset, round_trip as u64));
    }

    /// Their clock minus ours, µs, with the round trip it was measured over (the
    /// error is at most half of it); `None` before the first sample.
    pub fn offset(&self) -> Option<(i64, u64)> {
        self.samples.iter().copied().min_by_key(|&(_, rtt)| rtt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shortest_round_trip_wins() {
        let mut c = ClockSync::default();
        assert_eq!(c.offset(), None);
        // Their clock is 600 s ahead; one-way delay 200 µs each way, plus queueing
        // delays on one side in some samples (asymmetric: would bias the offset).
        let off = 600_000_000i64;
        for (i, extra_down) in [5_000u64, 0, 12_000, 300, 0, 8_000].into_iter().enumerate() {
            let t1 = 1_000_000 + i as u64 * 1_000_000;
            let t2 = (t1 as i64 + 200 + off) as u64;
            let t3 = t2 + 50; // the server held it 50 µs
            let t4 = (t3 as i64 - off) as u64 + 200 + extra_down;
            c.add(t1, t2, t3, t4);
        }
        let (offset, rtt) = c.offset().unwrap();
        assert_eq!(rtt, 400);
        assert_eq!(offset, off);
        // Nonsense stamps are ignored.
        c.add(10, 5, 4, 9);
        assert_eq!(c.offset().unwrap().1, 400);
        // Old samples age out.
        for i in 0..ClockSync::KEEP as u64 {
            let t1 = 100_000_000 + i * 1000;
            c.add(t1, t1 + 1000, t1 + 1000, t1 + 2000);
        }
        assert_eq!(c.offset().unwrap(), (0, 2000));
    }
}
