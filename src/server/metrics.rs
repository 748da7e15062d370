//! `/metrics`: the server's counters in the Prometheus text exposition format,
//! version 0.0.4, from a [`ServerStats`] snapshot. Pure: a snapshot in, text
//! out; it runs on the HTTP connection's thread that asked.

use std::fmt::Write as _;

use super::hub::SubscriberKind;
use super::stats::{LinkStats, LocalSinkStats, ServerStats, ViewerStats, WebrtcStats};

/// The exposition of one snapshot.
pub fn metrics(s: &ServerStats) -> String {
    let mut out = String::new();
    stream_metrics(&mut out, s);
    local_sink_metrics(&mut out, s);
    viewer_metrics(&mut out, s);
    webrtc_metrics(&mut out, s);
    out
}

/// One metric: its help and type lines, then one line per label set.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, lines: Vec<String>) {
    let _ = writeln!(
        out,
        "# HELP livestream_{name} {help}\n# TYPE livestream_{name} {kind}"
    );
    for l in lines {
        let _ = writeln!(out, "livestream_{name}{l}");
    }
}

fn stream_metrics(out: &mut String, s: &ServerStats) {
    let one = |v: String| vec![format!(" {v}")];
    metric(
        out,
        "frames_captured_total",
        "counter",
        "Frames captured from the source.",
        one(s.frames_captured.to_string()),
    );
    metric(
        out,
        "capture_fps",
        "gauge",
        "Frames captured per second over the last second.",
        one(s.capture_fps.to_string()),
    );
    metric(
        out,
        "encoder_dropped_frames_total",
        "counter",
        "Captured frames no encoder was free for.",
        one(s.encoder_dropped.to_string()),
    );
    metric(
        out,
        "encoder_skipped_frames_total",
        "counter",
        "Frames the encoder's rate control skipped (h264 over its bitrate).",
        one(s.encoder_skipped.to_string()),
    );
    metric(
        out,
        "keyframe_requests_total",
        "counter",
        "Keyframes asked for by viewers that joined or lost a frame (inter-frame codecs).",
        one(s.keyframes_asked.to_string()),
    );
    metric(
        out,
        "keyframes_forced_total",
        "counter",
        "Keyframes the encoder made on request (requests coalesced).",
        one(s.keyframes_forced.to_string()),
    );
    if let Some(kbit) = s.encoder_kbit {
        metric(
            out,
            "encoder_target_bytes_per_second",
            "gauge",
            "What the stream's encoder aims at now: below its own bitrate while a viewer's link carries less (adapt).",
            one((u64::from(kbit) * 1000 / 8).to_string()),
        );
    }
    metric(
        out,
        "uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        one(format!("{:.3}", s.uptime_seconds)),
    );
    let count = |k: SubscriberKind| s.viewers.iter().filter(|v| v.protocol == k).count();
    metric(
        out,
        "viewers",
        "gauge",
        "Viewers watching now.",
        vec![
            format!("{{protocol=\"native\"}} {}", count(SubscriberKind::Native)),
            format!("{{protocol=\"http\"}} {}", count(SubscriberKind::Http)),
            format!("{{protocol=\"rtsp\"}} {}", count(SubscriberKind::Rtsp)),
            format!("{{protocol=\"webrtc\"}} {}", count(SubscriberKind::Webrtc)),
        ],
    );
}

fn local_sink_metrics(out: &mut String, s: &ServerStats) {
    let per_local = |f: &dyn Fn(&LocalSinkStats) -> String| -> Vec<String> {
        s.local_sinks
            .iter()
            .map(|l| format!("{{sink=\"{}\"}} {}", l.name, f(l)))
            .collect()
    };
    metric(
        out,
        "local_sink_frames_total",
        "counter",
        "Frames each sink on the server (preview, recording) took.",
        per_local(&|l| l.presented.to_string()),
    );
    metric(
        out,
        "local_sink_frames_dropped_total",
        "counter",
        "Frames each sink on the server missed because it was still busy with an older one.",
        per_local(&|l| l.dropped.to_string()),
    );
    metric(
        out,
        "local_sink_running",
        "gauge",
        "1 while a sink on the server runs; 0 once it closed or failed.",
        per_local(&|l| u8::from(l.running).to_string()),
    );
}

fn viewer_metrics(out: &mut String, s: &ServerStats) {
    let per_viewer = |f: &dyn Fn(&ViewerStats) -> String| -> Vec<String> {
        s.viewers
            .iter()
            .map(|v| {
                let protocol = match v.protocol {
                    SubscriberKind::Http => "http",
                    SubscriberKind::Rtsp => "rtsp",
                    SubscriberKind::Webrtc => "webrtc",
                    _ => "native",
                };
                format!("{{peer=\"{}\",protocol=\"{protocol}\"}} {}", v.peer, f(v))
            })
            .collect()
    };
    metric(
        out,
        "viewer_frames_sent_total",
        "counter",
        "Frames written to each viewer.",
        per_viewer(&|v| v.sent.to_string()),
    );
    metric(
        out,
        "viewer_frames_dropped_total",
        "counter",
        "Frames skipped for each viewer because it was still busy with an older one.",
        per_viewer(&|v| v.dropped.to_string()),
    );
    metric(
        out,
        "viewer_sent_bytes_total",
        "counter",
        "Bytes written to each viewer, framing included.",
        per_viewer(&|v| v.bytes.to_string()),
    );
    metric(
        out,
        "viewer_send_latency_seconds",
        "gauge",
        "Capture to sent for each viewer, smoothed.",
        per_viewer(&|v| format!("{:.6}", v.latency_ms / 1000.0)),
    );
    let link = |f: &dyn Fn(&LinkStats) -> String| -> Vec<String> {
        s.viewers
            .iter()
            .filter_map(|v| Some(format!("{{peer=\"{}\"}} {}", v.peer, f(v.link.as_ref()?))))
            .collect()
    };
    metric(
        out,
        "viewer_link_bytes_per_second",
        "gauge",
        "What each TCP viewer's link carries, estimated from its connection.",
        link(&|l| (l.kbit * 1000 / 8).to_string()),
    );
    metric(
        out,
        "viewer_link_measured",
        "gauge",
        "1: the link estimate was measured with the link the limit; 0: the link carries at least that.",
        link(&|l| u8::from(l.measured).to_string()),
    );
    metric(
        out,
        "viewer_rtt_seconds",
        "gauge",
        "Each TCP viewer's connection's smoothed round trip.",
        link(&|l| format!("{:.6}", l.rtt_ms / 1000.0)),
    );
    let rendition = |f: &dyn Fn(&super::stats::RenditionStats) -> String| -> Vec<String> {
        s.viewers
            .iter()
            .filter_map(|v| {
                Some(format!(
                    "{{peer=\"{}\"}} {}",
                    v.peer,
                    f(v.rendition.as_ref()?)
                ))
            })
            .collect()
    };
    metric(
        out,
        "viewer_rendition_height_pixels",
        "gauge",
        "The picture height of the rendition each native viewer is sent (adapt).",
        rendition(&|r| r.height.to_string()),
    );
    metric(
        out,
        "viewer_rendition_switches_total",
        "counter",
        "Moves of each native viewer from one rendition to another.",
        rendition(&|r| r.switches.to_string()),
    );
    let per_rendition = |f: &dyn Fn(&super::stats::RenditionFeedStats) -> String| -> Vec<String> {
        s.renditions
            .iter()
            .map(|r| format!("{{codec=\"{}\",height=\"{}\"}} {}", r.codec, r.height, f(r)))
            .collect()
    };
    metric(
        out,
        "rendition_viewers",
        "gauge",
        "Native viewers sent each smaller rendition of the stream (adapt).",
        per_rendition(&|r| r.viewers.to_string()),
    );
    metric(
        out,
        "rendition_frames_total",
        "counter",
        "Pictures each smaller rendition's transcoder scaled and encoded.",
        per_rendition(&|r| r.frames.to_string()),
    );
    // What native viewers measured themselves, capture to presented.
    let mut reported = Vec::new();
    for v in &s.viewers {
        if let Some(r) = v.reported_latency {
            for (q, ms) in [("p50", r.p50_ms), ("p95", r.p95_ms)] {
                reported.push(format!(
                    "{{peer=\"{}\",stat=\"{q}\"}} {:.6}",
                    v.peer,
                    ms / 1000.0
                ));
            }
        }
    }
    metric(
        out,
        "viewer_reported_latency_seconds",
        "gauge",
        "Capture to presented as each native viewer measures it, over its last second.",
        reported,
    );
}

/// What str0m counts for each WebRTC viewer (`WebrtcStats`); a figure no
/// receiver report gave yet has no line.
fn webrtc_metrics(out: &mut String, s: &ServerStats) {
    let per_webrtc = |f: &dyn Fn(&WebrtcStats) -> Option<String>| -> Vec<String> {
        s.viewers
            .iter()
            .filter_map(|v| {
                let value = f(v.webrtc.as_ref()?)?;
                Some(format!("{{peer=\"{}\"}} {value}", v.peer))
            })
            .collect()
    };
    metric(
        out,
        "webrtc_viewer_rtt_seconds",
        "gauge",
        "Round trip to each WebRTC viewer, from its latest RTCP receiver report.",
        per_webrtc(&|w| w.rtt_ms.map(|ms| format!("{:.6}", ms / 1000.0))),
    );
    metric(
        out,
        "webrtc_viewer_nacks_total",
        "counter",
        "NACKs (retransmission requests) each WebRTC viewer sent.",
        per_webrtc(&|w| Some(w.nacks.to_string())),
    );
    metric(
        out,
        "webrtc_viewer_plis_total",
        "counter",
        "Picture loss indications (keyframe requests) each WebRTC viewer sent.",
        per_webrtc(&|w| Some(w.plis.to_string())),
    );
    metric(
        out,
        "webrtc_viewer_firs_total",
        "counter",
        "Full intra requests (keyframe requests) each WebRTC viewer sent.",
        per_webrtc(&|w| Some(w.firs.to_string())),
    );
    metric(
        out,
        "webrtc_viewer_sent_bytes_per_second",
        "gauge",
        "RTP sent to each WebRTC viewer over the last second, retransmissions included.",
        // Bytes, the base unit promtool asks for; /stats says kbit/s.
        per_webrtc(&|w| Some(format!("{:.0}", w.bitrate_kbit * 1000.0 / 8.0))),
    );
    metric(
        out,
        "webrtc_viewer_loss_ratio",
        "gauge",
        "Packets lost on the way to each WebRTC viewer, as a fraction, from its receiver reports.",
        per_webrtc(&|w| w.fraction_lost.map(|l| format!("{l:.4}"))),
    );
    metric(
        out,
        "webrtc_viewer_packets_lost",
        "gauge",
        "Packets lost on the way to each WebRTC viewer in all, from its latest receiver report.",
        per_webrtc(&|w| w.packets_lost.map(|n| n.to_string())),
    );
    metric(
        out,
        "webrtc_viewer_jitter_seconds",
        "gauge",
        "Interarrival jitter each WebRTC viewer reports.",
        per_webrtc(&|w| w.jitter_ms.map(|ms| format!("{:.6}", ms / 1000.0))),
    );
}
