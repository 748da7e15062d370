//! `livestream serve`: start the server, print where to watch it (and the
//! pairing code), log how it goes every ten seconds, and stop it on Ctrl-C or
//! when its `--frames`/`--duration` run out. On the main thread; the server's
//! own threads are started and joined by [`RunningServer`].

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{load, seconds, Failure, ServeArgs};
use crate::config::Overrides;
use crate::error::BackendError;
use crate::server::{RunningServer, ServeError, ServeLimits};

/// How often the running server's figures are logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

pub(super) fn run(
    args: ServeArgs,
    config: Option<&Path>,
    sets: &[String],
    stop: &AtomicBool,
) -> Result<(), Failure> {
    let mut local_sinks = Vec::new();
    let mut sets = sets.to_vec();
    if args.preview {
        local_sinks.push("window".to_string());
    }
    if let Some(dir) = &args.record {
        local_sinks.push("record".to_string());
        // As a TOML string, whatever the path holds.
        let dir = toml::Value::String(dir.display().to_string());
        sets.push(format!("sinks.record.dir={dir}"));
    }
    if let Some(url) = &args.publish {
        sets.push(format!(
            "serve.publish={}",
            toml::Value::String(url.clone())
        ));
    }
    let overrides = Overrides {
        source: args.source,
        codec: args.codec,
        listen: args.listen,
        width: args.width,
        height: args.height,
        fps: args.fps,
        format: args.format,
        local_sinks,
        ..Default::default()
    };
    let cfg = load(config, &sets, &overrides)?;
    let limits = ServeLimits {
        frames: args.frames,
        duration: seconds("--duration", args.duration)?,
    };
    let server = RunningServer::start(&cfg, limits).map_err(|e| match e {
        // A backend's table is configuration: status 2, like the file's errors.
        ServeError::Backend(BackendError::Config(c)) => Failure::Config(c),
        e => Failure::failed(e),
    })?;
    announce(&server);
    while !stop.load(Ordering::Relaxed) && !server.finished() {
        report(&server, stop);
    }
    server.stop().map_err(Failure::failed)
}

/// What is streamed, where to watch it, and the pairing code, on stdout.
fn announce(server: &RunningServer) {
    let info = server.stream_info();
    let addr = server.local_addr();
    let fps = if info.fps > 0.0 {
        format!("{} fps", info.fps)
    } else {
        "unpaced".into()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "livestream: streaming {}, {} at {}, codec {}\nlistening on {addr}",
        server.source_name(),
        info.frame,
        fps,
        server.codec_summary()
    );
    let token = server
        .auth()
        .map_or(String::new(), |a| format!("?token={}", a.http_token()));
    let rtsp_user = server
        .auth()
        .map_or(String::new(), |a| format!("livestream:{}@", a.http_token()));
    for ip in view_addresses(addr) {
        let at = SocketAddr::new(ip, addr.port());
        let _ = writeln!(out, "  watch with: livestream view {at}");
        let _ = writeln!(out, "  or open:    http://{at}/{token}");
        if server.serves_rtsp() {
            let _ = writeln!(out, "  or play:    rtsp://{rtsp_user}{at}/stream");
            if let Some(second) = server.rtsp_listen_addr() {
                let at = SocketAddr::new(ip, second.port());
                let _ = writeln!(out, "         or:  rtsp://{rtsp_user}{at}/stream");
            }
        }
    }
    match server.auth() {
        Some(auth) => {
            let _ = writeln!(
                out,
                "pairing code: {}  (a new viewer pairs once: livestream view ADDRESS --pair {})\n\
                 server key: {}  ({} viewers paired)",
                auth.code(),
                auth.code(),
                auth.fingerprint(),
                auth.paired_count()
            );
        }
        None => log::warn!(
            "auth = \"none\": no pairing and no encryption; anyone on the network can watch this stream"
        ),
    }
    let _ = out.flush();
}

/// Waits until `REPORT_EVERY` has passed (or the server is told to stop, or
/// ends), then logs the capture rate and each viewer's counters over that time.
fn report(server: &RunningServer, stop: &AtomicBool) {
    let (at, frames) = (Instant::now(), server.frames_captured());
    while at.elapsed() < REPORT_EVERY {
        std::thread::sleep(Duration::from_millis(50));
        if stop.load(Ordering::Relaxed) || server.finished() {
            return;
        }
    }
    let fps = (server.frames_captured() - frames) as f64 / at.elapsed().as_secs_f64();
    let viewers: Vec<String> = server
        .viewer_stats()
        .iter()
        .map(|v| {
            format!(
                "{} (sent {}, dropped {}, {:.1} MB)",
                v.peer,
                v.sent,
                v.dropped,
                v.bytes as f64 / 1e6
            )
        })
        .collect();
    log::info!(
        "capturing {fps:.1} fps; {} viewers: {}",
        viewers.len(),
        viewers.join(", ")
    );
}

/// The addresses a viewer can use to reach a server listening on `addr`.
fn view_addresses(addr: SocketAddr) -> Vec<IpAddr> {
    if !addr.ip().is_unspecified() {
        return vec![addr.ip()];
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4() == addr.is_ipv4() && !ip.is_unspecified())
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
        .collect();
    // Loopback first: it always works from this machine.
    ips.sort_by_key(|ip| !ip.is_loopback());
    ips.dedup();
    ips
}
