//! Raw sections to resolved ones: each `[serve]`, `[capture]` and `[view]` value
//! checked (with [`check`](super::check)), a flag's value taking precedence over
//! the file's, and defaults filled in. The limits every key must keep are here,
//! next to the key. Pure apart from reading the host name for the default
//! stream name; called while the configuration is parsed.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::check::{self, in_range};
use super::raw::{RawCapture, RawServe, RawView};
use super::{Overrides, ServeConfig, ViewConfig};
use crate::backend::table::{CaptureConfig, ConfigError, ConfigText};
use crate::backend::Kind;
use crate::media::frame::{FrameInfo, Limits};
use crate::net::ice::{ExtraCandidate, Network};
use crate::registry;
use crate::secure::trust::PairingCode;

/// `[serve]`, with `--source`, `--codec`, `--listen`, `--preview` and `--record`.
pub(super) fn serve(
    file: &ConfigText,
    s: RawServe,
    overrides: &Overrides,
) -> Result<ServeConfig, ConfigError> {
    let listen = match (&overrides.listen, s.listen) {
        (Some(l), _) => l.clone(),
        (None, Some(l)) => l.into_inner(),
        (None, None) => "0.0.0.0:7878".into(),
    };
    let source = check::backend_name(
        file,
        Kind::Source,
        s.source,
        overrides.source.as_ref(),
        "--source",
        "test-pattern",
    )?;
    let codec = check::backend_name(
        file,
        Kind::Codec,
        s.codec,
        overrides.codec.as_ref(),
        "--codec",
        "auto",
    )?;
    let codec = if codec == "auto" {
        registry::auto_codec().to_string()
    } else {
        codec
    };
    let connections_per_second = in_range(file, s.connections_per_second, 0.1..=10_000.0, |_| {
        "connections-per-second must be between 0.1 and 10000".into()
    })?;
    let max_viewers = in_range(file, s.max_viewers, 1..=u32::MAX, |_| {
        "max-viewers must be at least 1".into()
    })?;
    let name = s.name.map_or_else(default_stream_name, Spanned::into_inner);
    let handshake_timeout = in_range(file, s.handshake_timeout, 0.01..=3600.0, |_| {
        "handshake-timeout must be between 0.01 and 3600 seconds".into()
    })?;
    let encode_threads = in_range(file, s.encode_threads, 0..=16, |_| {
        "encode-threads must be from 0 (auto) to 16".into()
    })?;
    let rtsp_session_timeout = in_range(file, s.rtsp_session_timeout, 1.0..=3600.0, |_| {
        "rtsp-session-timeout must be between 1 and 3600 seconds".into()
    })?;
    let rtsp_udp_port = match s.rtsp_udp_port {
        Some(p) if p.get_ref() % 2 != 0 || *p.get_ref() == u16::MAX => {
            return Err(ConfigError::at(
                file,
                Some(p.span()),
                "rtsp-udp-port must be even (RTP on it, RTCP on the next), or 0 for any free pair"
                    .into(),
            ))
        }
        p => p.map_or(0, |p| p.into_inner()),
    };
    let publish = match s.publish {
        Some(p) => {
            let ok = rtsp_types::Url::parse(p.get_ref())
                .is_ok_and(|u| u.scheme() == "rtsp" && u.host_str().is_some_and(|h| !h.is_empty()));
            if !ok {
                return Err(ConfigError::at(
                    file,
                    Some(p.span()),
                    "publish must be an RTSP URL: rtsp://[user:password@]host[:port]/path".into(),
                ));
            }
            Some(p.into_inner())
        }
        None => None,
    };
    let webrtc_port = in_range(file, s.webrtc_port, 0..=65535, |_| {
        "webrtc-port must be from 0 (the port of `listen`) to 65535".into()
    })?;
    let webrtc_candidates = each(file, s.webrtc_candidates, |t| {
        ExtraCandidate::parse(t).map_err(|e| format!("webrtc-candidates: {e}"))
    })?;
    let webrtc_networks = each(file, s.webrtc_networks, |t| {
        Network::parse(t).map_err(|e| format!("webrtc-networks: {e}"))
    })?;
    Ok(ServeConfig {
        listen,
        source,
        codec,
        connections_per_second: connections_per_second.unwrap_or(10.0),
        max_viewers: max_viewers.map_or(16, |n| n as usize),
        name,
        handshake_timeout: handshake_timeout
            .map_or(Duration::from_secs(5), Duration::from_secs_f64),
        encode_threads: encode_threads.map_or(0, |n| n as usize),
        webrtc_port: webrtc_port.map_or(0, |n| n as u16),
        webrtc_candidates,
        webrtc_networks,
        http: s.http.unwrap_or(true),
        rtsp: s.rtsp.unwrap_or(true),
        rtsp_udp_port,
        rtsp_listen: s.rtsp_listen.map(|l| l.into_inner()),
        rtsp_session_timeout: rtsp_session_timeout
            .map_or(Duration::from_secs(60), Duration::from_secs_f64),
        publish,
        discovery: s.discovery.unwrap_or(true),
        auth: check::auth(file, s.auth)?,
        adapt: check::adapt(file, s.adapt)?,
        capture: check::capture(file, s.capture)?,
        key_dir: s.key_dir.map(Into::into),
        sinks: local_sinks(file, s.sinks.unwrap_or_default(), &overrides.local_sinks)?,
    })
}

/// Each value of an optional list through `parse`, or the error at the first
/// it refuses.
fn each<T>(
    file: &ConfigText,
    list: Option<Vec<Spanned<String>>>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    list.unwrap_or_default()
        .iter()
        .map(|v| parse(v.get_ref()).map_err(|e| ConfigError::at(file, Some(v.span()), e)))
        .collect()
}

/// `[serve] sinks` then the flags' (`--preview`, `--record`), each named once.
fn local_sinks(
    file: &ConfigText,
    listed: Vec<Spanned<String>>,
    flags: &[String],
) -> Result<Vec<String>, ConfigError> {
    let mut names = Vec::new();
    for name in listed {
        if !registry::exists(Kind::Sink, name.get_ref()) {
            return Err(check::unknown_name(
                file,
                Some(name.span()),
                Kind::Sink,
                name.get_ref(),
            ));
        }
        if !names.contains(name.get_ref()) {
            names.push(name.into_inner());
        }
    }
    for name in flags {
        if !registry::exists(Kind::Sink, name) {
            return Err(check::unknown_flag_name(
                "--preview/--record",
                Kind::Sink,
                name,
            ));
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

/// `[capture]`, with `--width`, `--height`, `--fps` and `--format`.
pub(super) fn capture(
    file: &ConfigText,
    c: RawCapture,
    overrides: &Overrides,
) -> Result<CaptureConfig, ConfigError> {
    let format = check::pixel_format(file, c.format, overrides.format.as_ref())?;
    // A flag's size has no place in the file: its error names the flags.
    let dim = |v: Option<Spanned<u32>>, flag: Option<u32>, default: u32| match (flag, v) {
        (Some(f), _) => (f, None),
        (None, Some(v)) => (*v.get_ref(), Some(v.span())),
        (None, None) => (default, None),
    };
    let (width, wspan) = dim(c.width, overrides.width, 1280);
    let (height, hspan) = dim(c.height, overrides.height, 720);
    let fps = match overrides.fps {
        Some(f) if !(0.0..=1000.0).contains(&f) => {
            return Err(ConfigError::flag(
                "--fps",
                format!("{f} is not between 0 and 1000"),
            ))
        }
        Some(f) => f,
        None => in_range(file, c.fps, 0.0..=1000.0, |f| {
            format!("fps {f} is not between 0 (unpaced) and 1000")
        })?
        .unwrap_or(30.0),
    };
    let capture = CaptureConfig {
        width,
        height,
        fps,
        format,
    };
    let flagged = overrides.width.or(overrides.height).is_some();
    check_geometry(file, &capture, wspan.or(hspan), flagged)?;
    Ok(capture)
}

/// The capture size must make a frame the pipeline accepts (within
/// [`Limits::default`], even where the format subsamples chroma). The error
/// points at the width (else the height) in the file, or names the flags.
fn check_geometry(
    file: &ConfigText,
    capture: &CaptureConfig,
    span: Option<Range<usize>>,
    flagged: bool,
) -> Result<(), ConfigError> {
    let CaptureConfig {
        format,
        width,
        height,
        ..
    } = *capture;
    let geometry = if format.is_compressed() {
        FrameInfo {
            format,
            width,
            height,
            stride: 0,
        }
        .validate(&Limits::default())
        .map(|_| ())
    } else {
        FrameInfo::packed(format, width, height)
            .and_then(|i| i.validate(&Limits::default()).map(|_| ()))
    };
    let Err(e) = geometry else {
        return Ok(());
    };
    let message = format!("impossible capture size: {e}");
    let err = if flagged {
        ConfigError::flag("--width/--height", message)
    } else {
        ConfigError::at(file, span, message)
    };
    Err(err.with_help(format!(
        "width and height from 1 to {}, even for 4:2:x formats",
        Limits::default().max_width
    )))
}

/// `[view]`, with `--sink` and `--pair`.
pub(super) fn view(
    file: &ConfigText,
    v: RawView,
    overrides: &Overrides,
) -> Result<ViewConfig, ConfigError> {
    let max_frame_bytes = in_range(file, v.max_frame_bytes, 1024..=(1 << 32), |_| {
        "max-frame-bytes must be between 1024 and 4294967296".into()
    })?;
    let sink = check::backend_name(
        file,
        Kind::Sink,
        v.sink,
        overrides.sink.as_ref(),
        "--sink",
        "auto",
    )?;
    let auth = check::auth(file, v.auth)?;
    let pair = match (&overrides.pair, v.pair) {
        (Some(code), _) => {
            Some(PairingCode::parse(code).map_err(|e| ConfigError::flag("--pair", e.to_string()))?)
        }
        (None, Some(code)) => Some(
            PairingCode::parse(code.get_ref())
                .map_err(|e| ConfigError::at(file, Some(code.span()), e.to_string()))?,
        ),
        (None, None) => None,
    };
    Ok(ViewConfig {
        address: v.address.map(Spanned::into_inner),
        sink,
        limits: Limits {
            max_frame_bytes: max_frame_bytes
                .map_or(Limits::default().max_frame_bytes, |m| m as usize),
            ..Limits::default()
        },
        reconnect: v.reconnect.unwrap_or(true),
        auth,
        key_dir: v.key_dir.map(Into::into),
        pair,
    })
}

/// "livestream on HOSTNAME", or "livestream" when the host has no name.
fn default_stream_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        "livestream".into()
    } else {
        format!("livestream on {host}")
    }
}
