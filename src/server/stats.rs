//! Snapshots of the server's counters, as `/stats` (JSON), `/metrics`
//! (Prometheus) and `livestream bench` report them. Read from any thread; the
//! counters are relaxed atomics, so a snapshot is a consistent-enough picture,
//! never a lock on the hot path.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::hub::{Hub, LocalSink, Subscriber, SubscriberKind};

/// What the capture thread did so far (`livestream bench` reads it).
#[derive(Debug, Clone, Copy)]
pub struct CaptureTotals {
    pub frames: u64,
    /// Captured frames that were never sent: no encoder was free in time.
    pub encoder_dropped: u64,
    /// Frames the encoder's rate control skipped.
    pub encoder_skipped: u64,
    /// Keyframes asked for by viewers, and made on request.
    pub keyframes_asked: u64,
    pub keyframes_forced: u64,
    pub source_ns: u64,
    pub encode_ns: u64,
}

/// A snapshot of one viewer's counters (`/stats`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewerStats {
    pub peer: SocketAddr,
    pub protocol: SubscriberKind,
    /// Frames written to this viewer.
    pub sent: u64,
    /// Frames skipped for this viewer because it was still busy with an older one.
    pub dropped: u64,
    /// Bytes written, framing included.
    pub bytes: u64,
    /// Frames sent per second since it connected.
    pub fps: f64,
    /// Capture to sent, smoothed, ms (measured on the server).
    pub latency_ms: f64,
    /// What its link carries, as the server estimates it from its TCP
    /// connection (`server/link.rs`); TCP viewers, once data was acknowledged.
    pub link: Option<LinkStats>,
    /// Capture to presented, as the viewer measured it over its last seconds
    /// (native viewers that report it).
    pub reported_latency: Option<ReportedLatency>,
    /// What an RTSP client's RTCP receiver reports say.
    pub rtcp: Option<RtcpStats>,
    /// A WebRTC viewer's figures, as its session's str0m counts them.
    pub webrtc: Option<WebrtcStats>,
    /// The rendition it is sent, when the stream has several (`[serve] adapt`).
    pub rendition: Option<RenditionStats>,
    pub connected_seconds: f64,
}

/// Which rendition of the ladder a viewer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RenditionStats {
    /// Its place in the ladder: 0 is the stream itself.
    pub index: u8,
    pub width: u32,
    pub height: u32,
    /// Its encoder's target, kbit/s.
    pub kbit: u32,
    /// Moves from one rendition to another so far.
    pub switches: u64,
}

/// A viewer's link as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LinkStats {
    /// What the link carries, kbit/s.
    pub kbit: u64,
    /// `true`: measured while the link was the limit; `false`: the stream
    /// was, so the link carries at least this much.
    pub measured: bool,
    /// The connection's smoothed round trip, ms.
    pub rtt_ms: f64,
}

/// An RTSP client's latest reception report (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RtcpStats {
    /// Packets lost since its previous report, as a fraction (0 to 1).
    pub fraction_lost: f64,
    /// Packets lost in all.
    pub packets_lost: i32,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
}

/// A WebRTC viewer's figures over its session so far, from str0m's
/// statistics of the video it sends (`MediaEgressStats`, once a second) and
/// the browser's RTCP receiver reports in them. `None` until a report says.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct WebrtcStats {
    /// Round trip from the latest receiver report (its LSR and DLSR), ms.
    pub rtt_ms: Option<f64>,
    /// Retransmissions, picture losses and full intra requests the browser
    /// asked for.
    pub nacks: u64,
    pub plis: u64,
    pub firs: u64,
    /// RTP sent (retransmissions included) over the last interval, kbit/s.
    pub bitrate_kbit: f64,
    /// Packets lost, as a fraction (0 to 1), averaged over the receiver
    /// reports of the last interval (the previous figure if none came).
    pub fraction_lost: Option<f64>,
    /// Packets lost in all, from the latest receiver report.
    pub packets_lost: Option<i64>,
    /// Interarrival jitter from the latest receiver report, ms.
    pub jitter_ms: Option<f64>,
    /// What str0m's send-side bandwidth estimate (from the browser's
    /// transport-wide congestion feedback) says the link carries, kbit/s;
    /// none on a stream without renditions (no estimate is run).
    pub estimate_kbit: Option<f64>,
}

/// A viewer's own latency figures, capture to presented, ms.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReportedLatency {
    pub last_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// A snapshot of the whole server (`/stats`, `/metrics`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerStats {
    pub name: String,
    pub source: String,
    pub codec: String,
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// Nominal frame rate of the source (0 = unpaced).
    pub fps: f64,
    /// Frames captured per second, over the last second.
    pub capture_fps: f64,
    /// The source is open (`false` while closed for want of viewers,
    /// `[serve] capture`).
    pub source_open: bool,
    pub frames_captured: u64,
    /// Captured frames no encoder was free for.
    pub encoder_dropped: u64,
    /// Frames the encoder's rate control skipped (h264 over its bitrate).
    pub encoder_skipped: u64,
    /// Keyframe requests from viewers that joined or lost a frame of an
    /// inter-frame stream, and keyframes made for them (coalesced).
    pub keyframes_asked: u64,
    pub keyframes_forced: u64,
    /// What the stream's encoder aims at now, kbit/s: below its own bitrate
    /// while a viewer's link carries less (`[serve] adapt`); none without
    /// renditions or rate control.
    pub encoder_kbit: Option<u32>,
    pub uptime_seconds: f64,
    pub viewers: Vec<ViewerStats>,
    /// Sinks on the server itself (preview, recording).
    pub local_sinks: Vec<LocalSinkStats>,
    /// The renditions below the stream (`[serve] adapt`), each encoded only
    /// while some viewer takes it.
    pub renditions: Vec<RenditionFeedStats>,
}

/// One rendition below the stream in `/stats`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RenditionFeedStats {
    /// `h264` (native and WebRTC viewers) or `jpeg` (MJPEG browsers).
    pub codec: &'static str,
    pub index: u8,
    pub width: u32,
    pub height: u32,
    /// Its encoder's target, kbit/s.
    pub kbit: u32,
    /// Viewers it is sent to now.
    pub viewers: usize,
    /// Pictures scaled and encoded so far, and the CPU time that took per
    /// picture, ms.
    pub frames: u64,
    pub cpu_ms_per_frame: f64,
}

/// A local sink in `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalSinkStats {
    pub name: String,
    /// Frames the sink took.
    pub presented: u64,
    /// Frames it missed because it was still busy with an older one.
    pub dropped: u64,
    pub running: bool,
    pub failed: Option<String>,
}

impl LocalSink {
    pub(crate) fn stats(&self) -> LocalSinkStats {
        LocalSinkStats {
            name: self.name.clone(),
            presented: self.presented.load(Ordering::Relaxed),
            dropped: self.viewer.counters.dropped.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            failed: self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

impl Subscriber {
    pub(crate) fn stats(&self) -> ViewerStats {
        let c = &self.counters;
        let sent = c.sent.load(Ordering::Relaxed);
        let secs = self.connected.elapsed().as_secs_f64();
        let report = *self
            .feedback
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        ViewerStats {
            peer: self.peer,
            protocol: self.kind,
            sent,
            dropped: c.dropped.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            fps: if secs > 0.0 { sent as f64 / secs } else { 0.0 },
            latency_ms: c.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
            link: match c.link_bps.load(Ordering::Relaxed) {
                0 => None,
                bps => Some(LinkStats {
                    kbit: bps / 1000,
                    measured: c.link_measured.load(Ordering::Relaxed),
                    rtt_ms: c.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0,
                }),
            },
            reported_latency: report.map(|r| ReportedLatency {
                last_ms: r.last_us as f64 / 1000.0,
                p50_ms: r.p50_us as f64 / 1000.0,
                p95_ms: r.p95_us as f64 / 1000.0,
            }),
            rtcp: self
                .feedback
                .rtcp
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(|r| RtcpStats {
                    fraction_lost: f64::from(r.fraction_lost) / 256.0,
                    packets_lost: r.cumulative_lost,
                    jitter_ms: f64::from(r.jitter) / 90.0,
                }),
            webrtc: *self
                .feedback
                .webrtc
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            rendition: None,
            connected_seconds: secs,
        }
    }
}

impl Hub {
    /// The keyframe requests of every encoder: the main one, the
    /// `webrtc-h264` transcoder's and each rendition's.
    fn all_keyframes(&self) -> impl Iterator<Item = &super::hub::Keyframes> {
        [&self.keyframes, &self.h264_keyframes]
            .into_iter()
            .chain(self.renditions.iter().map(|r| &r.keyframes))
    }

    /// The rendition a native viewer is sent, when there is a ladder.
    fn rendition_of(&self, v: &Subscriber) -> Option<RenditionStats> {
        let ladder = self.ladder_for(v.kind).0;
        if ladder.len() < 2 || !v.takes_renditions.load(Ordering::Relaxed) {
            return None;
        }
        let index = v.rendition.load(Ordering::Relaxed);
        let rung = ladder.get(index as usize)?;
        Some(RenditionStats {
            index,
            width: rung.width,
            height: rung.height,
            kbit: rung.bits_per_second / 1000,
            switches: v.counters.switches.load(Ordering::Relaxed),
        })
    }

    pub(crate) fn capture_totals(&self) -> CaptureTotals {
        CaptureTotals {
            frames: self.captured.load(Ordering::Relaxed),
            encoder_dropped: self.encoder_dropped.load(Ordering::Relaxed)
                + self.main.late.load(Ordering::Relaxed),
            encoder_skipped: self.encoder_skipped.load(Ordering::Relaxed),
            // The main encoder's, and the `webrtc-h264` transcoder's.
            keyframes_asked: self
                .all_keyframes()
                .map(|k| k.asked.load(Ordering::Relaxed))
                .sum(),
            keyframes_forced: self
                .all_keyframes()
                .map(|k| k.forced.load(Ordering::Relaxed))
                .sum(),
            source_ns: self.source_ns.load(Ordering::Relaxed),
            encode_ns: self.encode_ns.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn stats(&self) -> ServerStats {
        // One lock at a time: never two fan-out locks held together.
        let mut viewers: Vec<ViewerStats> = Vec::new();
        let feeds = [&self.main, &self.jpeg, &self.h264]
            .into_iter()
            .chain(self.renditions.iter().map(|r| &r.fanout))
            .chain(self.jpeg_renditions.iter().map(|r| &r.fanout));
        for feed in feeds {
            viewers.extend(
                feed.takers()
                    .iter()
                    .filter(|v| {
                        matches!(
                            v.kind,
                            SubscriberKind::Native
                                | SubscriberKind::Http
                                | SubscriberKind::Rtsp
                                | SubscriberKind::Webrtc
                        )
                    })
                    .map(|v| {
                        let mut stats = v.stats();
                        stats.rendition = self.rendition_of(v);
                        stats
                    }),
            );
        }
        viewers.sort_by_key(|v| v.peer);
        let totals = self.capture_totals();
        ServerStats {
            name: self.name.clone(),
            source: self.source_name.clone(),
            codec: self.codec.clone(),
            format: self.stream.frame.format.name().into(),
            width: self.stream.frame.width,
            height: self.stream.frame.height,
            fps: self.stream.fps,
            capture_fps: f64::from_bits(self.capture_fps.load(Ordering::Relaxed)),
            source_open: self.source_open.load(Ordering::Relaxed),
            frames_captured: totals.frames,
            encoder_dropped: totals.encoder_dropped,
            encoder_skipped: totals.encoder_skipped,
            keyframes_asked: totals.keyframes_asked,
            keyframes_forced: totals.keyframes_forced,
            encoder_kbit: match self.encoder_bps.load(Ordering::Relaxed) {
                0 => None,
                bps => Some(bps / 1000),
            },
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            viewers,
            local_sinks: self
                .locals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|l| l.stats())
                .collect(),
            renditions: [
                ("h264", &self.renditions, &self.ladder),
                ("jpeg", &self.jpeg_renditions, &self.jpeg_ladder),
            ]
            .into_iter()
            .flat_map(|(codec, renditions, ladder)| {
                renditions
                    .iter()
                    .zip(ladder.iter().skip(1))
                    .enumerate()
                    .map(move |(i, r)| (codec, i, r))
            })
            .map(|(codec, i, (r, rung))| {
                let frames = r.made.load(Ordering::Relaxed);
                let ns = r.encode_ns.load(Ordering::Relaxed);
                RenditionFeedStats {
                    codec,
                    index: (i + 1) as u8,
                    width: rung.width,
                    height: rung.height,
                    kbit: rung.bits_per_second / 1000,
                    viewers: r.fanout.takers().len(),
                    frames,
                    cpu_ms_per_frame: if frames > 0 {
                        ns as f64 / frames as f64 / 1e6
                    } else {
                        0.0
                    },
                }
            })
            .collect(),
        }
    }
}
