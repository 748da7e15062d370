//! How much a viewer's link carries, estimated from its TCP connection: the
//! kernel's delivery rate of each acknowledged flight (`TCP_INFO`), sampled
//! every [`INTERVAL_US`] by the viewer's send loop. A sample taken while the
//! connection had more to send than the link took (not "application
//! limited") measures the link; one taken while the stream itself was the
//! limit only says the link carries at least that. The estimate is the
//! largest sample of the last [`WINDOW_US`] (as BBR's bandwidth filter: queues
//! and ack bunching make samples fall below the link's rate, rarely above),
//! so a link that gets worse shows within a window.
//!
//! Pure: times and samples are inputs, no socket here; no allocation.

use crate::net::socket::TcpInfo;

/// How often a viewer's connection is sampled, µs.
pub(crate) const INTERVAL_US: u64 = 200_000;
/// How far back the estimate looks, µs.
pub(crate) const WINDOW_US: u64 = 2_000_000;
/// How far back [`LinkEstimator::goodput`] looks, µs.
pub(crate) const GOODPUT_US: u64 = 1_000_000;
pub(crate) const GOODPUT_RECENT_US: u64 = 400_000;
/// Samples kept: a window's worth, with room for late ones.
const KEPT: usize = 16;

/// What a viewer's link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEstimate {
    pub bits_per_second: u64,
    /// A sample in the window measured the link itself (the stream was more
    /// than it took); otherwise the link carries at least this much.
    pub measured: bool,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_us: u64,
    /// 0: the kernel had no rate yet.
    bytes_per_second: u64,
    app_limited: bool,
    /// The connection's acknowledged bytes so far.
    bytes_acked: u64,
}

/// The samples of one viewer's connection.
#[derive(Debug)]
pub(crate) struct LinkEstimator {
    samples: [Option<Sample>; KEPT],
    next: usize,
    last_at_us: Option<u64>,
}

impl LinkEstimator {
    pub(crate) fn new() -> LinkEstimator {
        LinkEstimator {
            samples: [None; KEPT],
            next: 0,
            last_at_us: None,
        }
    }

    /// Whether a sample is due at `now_us`.
    pub(crate) fn due(&self, now_us: u64) -> bool {
        self.last_at_us
            .is_none_or(|t| now_us.saturating_sub(t) >= INTERVAL_US)
    }

    /// Takes the connection's state at `now_us`. A connection with nothing
    /// acknowledged yet (no rate) adds nothing.
    pub(crate) fn add(&mut self, now_us: u64, info: &TcpInfo) {
        self.last_at_us = Some(now_us);
        self.samples[self.next] = Some(Sample {
            at_us: now_us,
            bytes_per_second: info.delivery_rate,
            app_limited: info.app_limited,
            bytes_acked: info.bytes_acked,
        });
        self.next = (self.next + 1) % KEPT;
    }

    /// What the link delivered lately (bytes acknowledged over time between
    /// two samples), bit/s: the smaller of the last [`GOODPUT_US`] and the
    /// last [`GOODPUT_RECENT_US`] (a link that just fell shows there
    /// first); `None` before there are samples far enough apart. While the
    /// sender had more than the link took (frames dropped for it), this is
    /// what the link carries, whatever bursts a shaper let through;
    /// otherwise what it was sent.
    pub(crate) fn goodput(&self, now_us: u64) -> Option<u64> {
        let long = self.delivered(now_us, GOODPUT_US)?;
        Some(
            self.delivered(now_us, GOODPUT_RECENT_US)
                .map_or(long, |recent| recent.min(long)),
        )
    }

    /// Bit/s acknowledged over about the last `over_us`.
    fn delivered(&self, now_us: u64, over_us: u64) -> Option<u64> {
        let newest = self.samples.iter().flatten().max_by_key(|s| s.at_us)?;
        let oldest = self
            .samples
            .iter()
            .flatten()
            .filter(|s| now_us.saturating_sub(s.at_us) <= over_us + INTERVAL_US / 2)
            .min_by_key(|s| s.at_us)?;
        let span = newest.at_us.checked_sub(oldest.at_us)?;
        if span < over_us / 2 {
            return None;
        }
        let bytes = newest.bytes_acked.saturating_sub(oldest.bytes_acked);
        Some((bytes as u128 * 8 * 1_000_000 / span as u128).min(u64::MAX.into()) as u64)
    }

    /// The estimate at `now_us`, from the samples of the last window; `None`
    /// when there are none.
    pub(crate) fn estimate(&self, now_us: u64) -> Option<LinkEstimate> {
        let recent = self
            .samples
            .iter()
            .flatten()
            .filter(|s| s.bytes_per_second > 0 && now_us.saturating_sub(s.at_us) <= WINDOW_US);
        let mut best: Option<LinkEstimate> = None;
        for s in recent {
            let bits = s.bytes_per_second.saturating_mul(8);
            let e = best.get_or_insert(LinkEstimate {
                bits_per_second: 0,
                measured: false,
            });
            e.bits_per_second = e.bits_per_second.max(bits);
            e.measured |= !s.app_limited;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goodput_is_bytes_acknowledged_over_the_last_second() {
        let mut l = LinkEstimator::new();
        let acked = |bytes_acked| TcpInfo {
            bytes_acked,
            ..TcpInfo::default()
        };
        l.add(0, &acked(0));
        assert_eq!(l.goodput(0), None);
        l.add(200_000, &acked(25_000));
        assert_eq!(l.goodput(200_000), None, "too short a span");
        for i in 2..=10 {
            l.add(i * 200_000, &acked(i * 25_000));
        }
        // 125 kB/s: 1 Mbit/s, over the last second only.
        assert_eq!(l.goodput(2_000_000), Some(1_000_000));
        l.add(2_200_000, &acked(10 * 25_000 + 250_000));
        assert_eq!(
            l.goodput(2_200_000),
            Some(2_800_000),
            "the second's, the smaller"
        );
        // The link falls to 0.2 Mbit/s: the last 0.4 s show it first.
        l.add(2_400_000, &acked(500_000 + 5_000));
        l.add(2_600_000, &acked(500_000 + 10_000));
        assert_eq!(l.goodput(2_600_000), Some(200_000));
    }

    fn info(mbit: u64, app_limited: bool) -> TcpInfo {
        TcpInfo {
            delivery_rate: mbit * 1_000_000 / 8,
            app_limited,
            ..TcpInfo::default()
        }
    }

    #[test]
    fn samples_are_taken_at_the_interval() {
        let mut l = LinkEstimator::new();
        assert!(l.due(0));
        l.add(1_000, &info(8, false));
        assert!(!l.due(1_000 + INTERVAL_US - 1));
        assert!(l.due(1_000 + INTERVAL_US));
        // A clock that goes back is not a reason to sample for ever or never.
        assert!(!l.due(0));
    }

    #[test]
    fn the_link_is_the_largest_recent_sample_and_says_whether_it_was_measured() {
        let mut l = LinkEstimator::new();
        assert_eq!(l.estimate(0), None);
        l.add(0, &TcpInfo::default());
        assert_eq!(l.estimate(0), None, "nothing acknowledged yet");
        // A 3 Mbit/s stream on a fast link: only a lower bound.
        l.add(200_000, &info(3, true));
        assert_eq!(
            l.estimate(200_000),
            Some(LinkEstimate {
                bits_per_second: 3_000_000,
                measured: false
            })
        );
        // The link saturates at 8 and 7.5 Mbit/s: measured, the larger.
        l.add(400_000, &info(8, false));
        l.add(600_000, &info(7, false));
        assert_eq!(
            l.estimate(600_000),
            Some(LinkEstimate {
                bits_per_second: 8_000_000,
                measured: true
            })
        );
        // The link drops to 1 Mbit/s: shown once the better samples are
        // older than the window.
        let mut t = 600_000;
        while t < 600_000 + WINDOW_US + INTERVAL_US {
            t += INTERVAL_US;
            l.add(t, &info(1, false));
        }
        assert_eq!(
            l.estimate(t),
            Some(LinkEstimate {
                bits_per_second: 1_000_000,
                measured: true
            })
        );
        // Silence: after a window, nothing is known.
        assert_eq!(l.estimate(t + WINDOW_US + 1), None);
    }

    #[test]
    fn absurd_rates_do_not_overflow() {
        let mut l = LinkEstimator::new();
        l.add(
            0,
            &TcpInfo {
                delivery_rate: u64::MAX,
                ..TcpInfo::default()
            },
        );
        assert_eq!(l.estimate(0).unwrap().bits_per_second, u64::MAX);
    }
}
