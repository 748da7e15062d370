//! The once-a-second status line of `view` (on stderr), the figures a sink's
//! overlay shows, and the latency report sent back to the server. Kept by the
//! calling thread.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::media::frame::StreamInfo;
use crate::media::histogram::LatencyHistogram;
use crate::net::protocol::Report;
use crate::sinks::Live;

use super::latency::{Moments, Stages};
use super::reader::Shared;

/// The last second's figures.
pub(crate) struct StatusLine {
    quiet: bool,
    since: Instant,
    frames: u64,
    bytes_at: u64,
    dropped_at: u64,
    /// The server's drops counted at the start of this second, and in it.
    upstream_at: u64,
    dropped_upstream: u64,
    latency: LatencyHistogram,
    stages: Stages,
    /// The last second's figures, for sinks with an overlay.
    pub(crate) live: Live,
}

/// One second's counts, as the line shows them.
struct Second {
    secs: f64,
    bytes: u64,
    /// Dropped here (the sink was slower than the network) this second.
    here: u64,
}

impl StatusLine {
    pub(crate) fn new(quiet: bool) -> StatusLine {
        StatusLine {
            quiet,
            since: Instant::now(),
            frames: 0,
            bytes_at: 0,
            dropped_at: 0,
            upstream_at: 0,
            dropped_upstream: 0,
            latency: LatencyHistogram::default(),
            stages: Stages::default(),
            live: Live::default(),
        }
    }

    /// Counts one presented frame.
    pub(crate) fn presented(&mut self, m: &Moments) {
        let latency = m.latency_us();
        self.latency.record(latency);
        self.stages.record(m);
        self.live.latency_ms = latency as f64 / 1000.0;
        self.frames += 1;
    }

    /// Once a second: prints the status line and returns the report for the
    /// server.
    pub(crate) fn tick(
        &mut self,
        shared: &Shared,
        info: &StreamInfo,
        codec: &str,
    ) -> Option<Report> {
        let elapsed = self.since.elapsed();
        if elapsed < Duration::from_secs(1) {
            return None;
        }
        let us = |p: f64| self.latency.percentile(p).unwrap_or(0.0);
        let report = Report {
            last_us: (self.live.latency_ms * 1000.0) as u64,
            p50_us: us(0.5) as u64,
            p95_us: us(0.95) as u64,
            frames: self.frames,
        };
        self.live.latency_p50_ms = us(0.5) / 1000.0;
        self.live.latency_p95_ms = us(0.95) / 1000.0;
        let bytes = shared.bytes.load(Ordering::Relaxed);
        let dropped = shared.dropped_here.load(Ordering::Relaxed);
        let upstream = shared.dropped_upstream.load(Ordering::Relaxed);
        self.dropped_upstream = upstream - self.upstream_at;
        self.upstream_at = upstream;
        let second = Second {
            secs: elapsed.as_secs_f64(),
            bytes: bytes - self.bytes_at,
            here: dropped - self.dropped_at,
        };
        self.live.fps = self.frames as f64 / second.secs;
        self.live.mbps = second.bytes as f64 * 8.0 / second.secs / 1e6;
        self.live.dropped = self.dropped_upstream + second.here;
        self.say(shared, &second, info, codec);
        self.since = Instant::now();
        self.frames = 0;
        self.bytes_at = bytes;
        self.dropped_at = dropped;
        self.dropped_upstream = 0;
        self.latency.clear();
        self.stages.clear();
        Some(report)
    }

    /// The line itself, or with `--quiet` only the warning it may carry.
    fn say(&self, shared: &Shared, s: &Second, info: &StreamInfo, codec: &str) {
        // The server dropped a quarter of the frames for us: the link cannot carry
        // the stream, and frames are dropped to keep the picture live.
        let too_slow = self.dropped_upstream * 3 > self.frames.max(1);
        if self.quiet {
            if too_slow {
                log::warn!("the link is too slow for this stream: the server drops frames to keep the picture live");
            }
            return;
        }
        let ms = |p: f64| {
            self.latency
                .percentile(p)
                .map_or("-".into(), |us| format!("{:.1}", us / 1000.0))
        };
        let stages: Vec<String> = self
            .stages
            .all()
            .iter()
            .filter_map(|(name, h)| Some(format!("{name} {:.1}", h.percentile(0.5)? / 1000.0)))
            .collect();
        let clock = shared.clock().offset().map_or(String::new(), |(_, rtt)| {
            format!("  clock ±{:.2} ms", rtt as f64 / 2000.0)
        });
        let link = match shared.link_bps.load(Ordering::Relaxed) {
            0 => String::new(),
            bps if shared.link_measured.load(Ordering::Relaxed) => format!("  link ~{}", rate(bps)),
            bps => format!("  link ≥{}", rate(bps)),
        };
        // A smaller rendition than the stream's, because of that link.
        let rendition = match *shared.rendition.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(r) if r.index > 0 => format!(
                ": {}p ({}x{}, {})",
                r.height,
                r.width,
                r.height,
                rate(r.bits_per_second.into())
            ),
            _ => String::new(),
        };
        eprintln!(
            "{:.1} fps  {:.1} Mbit/s{link}{rendition}  dropped {} (server {}, here {})  latency {} ms (p50 {}, p95 {}{}){clock}  {} {}{}",
            self.frames as f64 / s.secs,
            s.bytes as f64 * 8.0 / s.secs / 1e6,
            self.dropped_upstream + s.here,
            self.dropped_upstream,
            s.here,
            self.latency.mean_us().map_or("-".into(), |us| format!("{:.1}", us / 1000.0)),
            ms(0.5),
            ms(0.95),
            if stages.is_empty() {
                String::new()
            } else {
                format!("; p50 {}", stages.join(", "))
            },
            info.frame,
            codec,
            if too_slow {
                "  LINK TOO SLOW: the server drops frames to keep the picture live"
            } else {
                ""
            },
        );
    }
}

/// A link's rate for a person: Mbit/s with a decimal, Gbit/s from 1000.
fn rate(bits_per_second: u64) -> String {
    let mbit = bits_per_second as f64 / 1e6;
    if mbit < 1000.0 {
        format!("{mbit:.1} Mbit/s")
    } else {
        format!("{:.0} Gbit/s", mbit / 1000.0)
    }
}
