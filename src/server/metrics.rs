//! `/metrics`: the server's counters in the Prometheus text exposition format,
//! version 0.0.4, from a [`ServerStats`] snapshot. Pure: a snapshot in, text
//! out; it runs on the HTTP connection's thread that asked.

use std::fmt::Write as _;

use super::hub::SubscriberKind;
use super::stats::{LocalSinkStats, ServerStats, ViewerStats};

/// The exposition of one snapshot.
pub fn metrics(s: &ServerStats) -> String {
    let mut out = String::new();
    stream_metrics(&mut out, s);
    local_sink_metrics(&mut out, s);
    viewer_metrics(&mut out, s);
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
