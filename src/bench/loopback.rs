//! One case of `livestream bench`: a real server and a real viewer in this
//! process, connected over TCP on 127.0.0.1, warmed up for a second and then
//! measured. CPU time comes from the kernel's per-thread run time, split into
//! the server's threads and the viewer's by their names; allocations from the
//! binary's counting allocator. Runs on the thread that runs the bench, plus
//! the `bench-view` thread it starts and joins for the viewer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{BenchError, ALLOCATIONS};
use crate::backend::Kind;
use crate::config::{Auth, Config, Overrides};
use crate::media::histogram::LatencyHistogram;
use crate::registry;
use crate::server::{CaptureTotals, RunningServer, ServeLimits};
use crate::viewer::{self, ViewOptions, ViewReport};

/// One measured case.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub codec: String,
    pub auth: String,
    pub content: String,
    pub size: (u32, u32),
    pub fps_target: f64,
    pub fps: f64,
    pub server_cpu_ms: f64,
    /// CPU time in the source (generating or capturing) per captured frame.
    pub source_ms: f64,
    /// CPU time in the encoder per encoded frame.
    pub encode_ms: f64,
    pub viewer_cpu_ms: f64,
    pub bytes_per_frame: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Latency by stage (encode, queue, network, decode, present): p50, p95,
    /// p99 in ms.
    pub stages: Vec<(&'static str, [f64; 3])>,
    /// Time in the sink's `present`, median and 99th percentile.
    pub present_p50_ms: f64,
    pub present_p99_ms: f64,
    /// Frames the server skipped for the viewer, and frames the viewer skipped.
    pub dropped_server: u64,
    pub dropped_viewer: u64,
    pub allocs_per_frame: f64,
    /// A second viewer joining the running stream after the measured time:
    /// from its connect to its first picture (handshake, the keyframe made for
    /// it, decode).
    pub join_ms: f64,
}

/// CPU time (ns) per thread of this process, keyed by thread id, with names.
pub(super) fn thread_cpu() -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in dir.flatten() {
        let path = task.path();
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let name = std::fs::read_to_string(path.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        out.insert(tid, (name, ns));
    }
    out
}

fn is_server_thread(name: &str) -> bool {
    name == "capture"
        || name == "accept"
        || name.starts_with("viewer-")
        || name.starts_with("encode-")
        || name == "http-jpeg"
        || name.starts_with("rtsp-r")
        || name.starts_with("publish")
}

/// The server's CPU time between two snapshots (openh264's threads included).
pub(super) fn server_cpu_ns(
    before: &HashMap<u64, (String, u64)>,
    after: &HashMap<u64, (String, u64)>,
) -> u64 {
    cpu_split(before, after).0
}

/// openh264's slice threads: a new thread takes its maker's name, and the
/// server makes its encoder on the thread that runs the bench (the process's
/// first, `main`, whose id is the process id) before capture starts.
fn is_encoder_worker(tid: u64, name: &str, main: &str) -> bool {
    name == main && tid != u64::from(std::process::id())
}

/// A bench case's key directory, removed when the case is done.
#[derive(Debug)]
struct KeyDir(std::path::PathBuf);

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// CPU used between two snapshots, split into (server, viewer) threads, in ns.
fn cpu_split(
    before: &HashMap<u64, (String, u64)>,
    after: &HashMap<u64, (String, u64)>,
) -> (u64, u64) {
    let (mut server, mut view) = (0, 0);
    let pid = u64::from(std::process::id());
    let main = after.get(&pid).map_or("", |(name, _)| name.as_str());
    for (tid, (name, ns)) in after {
        let used = ns - before.get(tid).map_or(0, |b| b.1.min(*ns));
        if is_server_thread(name) || is_encoder_worker(*tid, name, main) {
            server += used;
        } else if name == "net-reader" || name == "bench-view" {
            view += used;
        }
    }
    (server, view)
}

/// One case of the bench's matrix.
#[derive(Debug, Clone, Copy)]
pub struct Case<'a> {
    pub codec: &'a str,
    /// `pair` or `none`.
    pub auth: &'a str,
    /// `test-pattern` or `photo`.
    pub content: &'a str,
    pub size: (u32, u32),
    /// Frames per second the source is paced at; 0 = unpaced.
    pub fps: f64,
    /// The source's pixel format.
    pub format: &'a str,
    /// The viewer's sink.
    pub sink: &'a str,
    /// Seconds measured, after one second of warm-up.
    pub seconds: f64,
}

/// Runs one case: a server and a viewer on loopback in this process, warmed up
/// for a second, then measured for `case.seconds`.
pub fn measure(base: &Config, case: &Case) -> Result<BenchResult, BenchError> {
    let (mut cfg, keys) = case_config(base, case)?;
    let server = RunningServer::start(&cfg, ServeLimits::default())?;
    cfg.view.pair = server.auth().map(|a| a.code());
    let _keys = keys;
    let address = server.local_addr().to_string();
    let stop = AtomicBool::new(false);
    let warmup = Duration::from_secs(1);
    let measured = Duration::from_secs_f64(case.seconds);
    let viewing = warmup + measured + Duration::from_millis(500);

    let result = std::thread::scope(|scope| {
        let view = std::thread::Builder::new()
            .name("bench-view".into())
            .spawn_scoped(scope, || view(&cfg, case.sink, &address, viewing, &stop))?;
        std::thread::sleep(warmup);
        let before = Sample::start(&server);
        std::thread::sleep(measured);
        let after = Sample::end(&server);
        let joined = join(&cfg, &address, &stop)?;
        let report = view.join().map_err(|_| BenchError::ViewerPanicked)??;
        let mut r = result(case, &before, &after, &report);
        r.join_ms = joined
            .first_picture
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
        Ok(r)
    });
    server.stop()?;
    result
}

/// The configuration of one case, from the user's: its source, codec, size and
/// pace, on a free loopback port. With `auth = pair`, keys for this case only,
/// paired at once, in a directory removed when the returned guard drops: the
/// user's own keys are not touched.
fn case_config(base: &Config, case: &Case) -> Result<(Config, Option<KeyDir>), BenchError> {
    let source = match case.content {
        "test-pattern" => "test-pattern",
        "photo" => "synthetic-camera",
        other => return Err(BenchError::Content(other.into())),
    };
    let overrides = Overrides {
        source: Some(source.into()),
        codec: Some(case.codec.into()),
        listen: Some("127.0.0.1:0".into()),
        width: Some(case.size.0),
        height: Some(case.size.1),
        fps: Some(case.fps),
        format: Some(case.format.into()),
        ..Default::default()
    };
    let mut cfg = Config::parse(base.text.clone(), &overrides)?;
    let keys = match case.auth {
        "pair" => {
            static CASE: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "livestream-bench-{}-{}",
                std::process::id(),
                CASE.fetch_add(1, Ordering::Relaxed)
            ));
            cfg.serve.auth = Auth::Pair;
            cfg.view.auth = Auth::Pair;
            cfg.serve.key_dir = Some(dir.join("server"));
            cfg.view.key_dir = Some(dir.join("viewer"));
            Some(KeyDir(dir))
        }
        "none" => {
            cfg.serve.auth = Auth::None;
            cfg.view.auth = Auth::None;
            None
        }
        other => return Err(BenchError::Auth(other.into())),
    };
    Ok((cfg, keys))
}

/// The bench's viewer (on the `bench-view` thread): watches `address` with
/// `sink` for `duration`.
fn view(
    cfg: &Config,
    sink: &str,
    address: &str,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<ViewReport, BenchError> {
    let backend = registry::sink(sink)?;
    let mut sink = (backend.open)(&cfg.backend(Kind::Sink, sink))?;
    let opts = ViewOptions {
        frames: None,
        duration: Some(duration),
        quiet: true,
        reconnect: false,
        limits: cfg.view.limits,
        latency_log: None,
    };
    Ok(viewer::run(address, sink.as_mut(), cfg, &opts, stop)?)
}

/// A second viewer (`null` sink) that joins the running stream and leaves
/// after its first picture, or after 5 s without one.
fn join(cfg: &Config, address: &str, stop: &AtomicBool) -> Result<ViewReport, BenchError> {
    let mut sink = (registry::sink("null")?.open)(&cfg.backend(Kind::Sink, "null"))?;
    let opts = ViewOptions {
        frames: Some(1),
        duration: Some(Duration::from_secs(5)),
        quiet: true,
        reconnect: false,
        limits: cfg.view.limits,
        latency_log: None,
    };
    Ok(viewer::run(address, sink.as_mut(), cfg, &opts, stop)?)
}

/// The counters a case reads at the start and at the end of its measured time.
struct Sample {
    cpu: HashMap<u64, (String, u64)>,
    timing: CaptureTotals,
    /// Frames and bytes sent to the (first) viewer.
    sent: (u64, u64),
    allocations: u64,
    at: Instant,
}

impl Sample {
    fn start(server: &RunningServer) -> Sample {
        let cpu = thread_cpu();
        let timing = server.capture_totals();
        let sent = sent(server);
        // Last, after everything here that allocates.
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        Sample {
            cpu,
            timing,
            sent,
            allocations,
            at: Instant::now(),
        }
    }

    fn end(server: &RunningServer) -> Sample {
        // First, before reading /proc, which allocates.
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let cpu = thread_cpu();
        let at = Instant::now();
        Sample {
            cpu,
            timing: server.capture_totals(),
            sent: sent(server),
            allocations,
            at,
        }
    }
}

/// Frames and bytes the server sent to its first viewer (the bench's only one).
fn sent(server: &RunningServer) -> (u64, u64) {
    server
        .viewer_stats()
        .first()
        .map_or((0, 0), |v| (v.sent, v.bytes))
}

/// A case's figures from its two samples and the viewer's report.
fn result(case: &Case, before: &Sample, after: &Sample, report: &ViewReport) -> BenchResult {
    let elapsed = after.at.duration_since(before.at).as_secs_f64();
    let (t0, t1) = (&before.timing, &after.timing);
    let captured = (t1.frames - t0.frames).max(1) as f64;
    let frames = after.sent.0 - before.sent.0;
    let bytes = after.sent.1 - before.sent.1;
    let (server_ns, view_ns) = cpu_split(&before.cpu, &after.cpu);
    let per = |v: f64| {
        if frames > 0 {
            v / frames as f64
        } else {
            f64::NAN
        }
    };
    let ms = |h: &LatencyHistogram, p: f64| h.percentile(p).unwrap_or(f64::NAN) / 1000.0;
    BenchResult {
        codec: case.codec.into(),
        auth: case.auth.into(),
        content: case.content.into(),
        size: case.size,
        fps_target: case.fps,
        fps: frames as f64 / elapsed,
        server_cpu_ms: per(server_ns as f64 / 1e6),
        source_ms: (t1.source_ns - t0.source_ns) as f64 / 1e6 / captured,
        // Per frame encoded: with several encoders, frames none was free for
        // are captured but never encoded.
        encode_ms: (t1.encode_ns - t0.encode_ns) as f64
            / 1e6
            / (captured - (t1.encoder_dropped - t0.encoder_dropped) as f64).max(1.0),
        viewer_cpu_ms: per(view_ns as f64 / 1e6),
        bytes_per_frame: per(bytes as f64),
        p50_ms: ms(&report.latency, 0.5),
        p95_ms: ms(&report.latency, 0.95),
        p99_ms: ms(&report.latency, 0.99),
        stages: report
            .stages
            .all()
            .iter()
            .map(|(name, h)| (*name, [ms(h, 0.5), ms(h, 0.95), ms(h, 0.99)]))
            .collect(),
        present_p50_ms: ms(&report.present, 0.5),
        present_p99_ms: ms(&report.present, 0.99),
        dropped_server: report.dropped_upstream,
        dropped_viewer: report.dropped_here,
        allocs_per_frame: per((after.allocations - before.allocations) as f64),
        join_ms: f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigText;

    fn case<'a>(content: &'a str, auth: &'a str) -> Case<'a> {
        Case {
            codec: "raw",
            auth,
            content,
            size: (64, 48),
            fps: 0.0,
            format: "rgb24",
            sink: "null",
            seconds: 0.1,
        }
    }

    #[test]
    fn a_case_configures_its_own_source_port_and_keys() {
        let base = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
        let (cfg, keys) = case_config(&base, &case("photo", "pair")).unwrap();
        assert_eq!(cfg.serve.source, "synthetic-camera");
        assert_eq!(cfg.serve.listen, "127.0.0.1:0");
        assert_eq!((cfg.capture.width, cfg.capture.height), (64, 48));
        let dir = keys.as_ref().map(|k| k.0.clone()).unwrap();
        assert!(dir.starts_with(std::env::temp_dir()), "{dir:?}");
        assert_eq!(cfg.serve.key_dir, Some(dir.join("server")));
        assert_eq!((cfg.serve.auth, cfg.view.auth), (Auth::Pair, Auth::Pair));
        let (cfg, keys) = case_config(&base, &case("test-pattern", "none")).unwrap();
        assert!(keys.is_none());
        assert_eq!((cfg.serve.auth, cfg.view.auth), (Auth::None, Auth::None));
    }

    #[test]
    fn unknown_content_and_auth_are_named() {
        let base = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
        let e = case_config(&base, &case("movie", "none")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown content `movie`: expected test-pattern or photo"
        );
        let e = case_config(&base, &case("photo", "open")).unwrap_err();
        assert_eq!(e.to_string(), "unknown auth `open`: expected pair or none");
    }

    #[test]
    fn cpu_goes_to_the_side_whose_thread_used_it() {
        let snap = |v: &[(u64, &str, u64)]| -> HashMap<u64, (String, u64)> {
            v.iter()
                .map(|&(t, n, ns)| (t, (n.to_string(), ns)))
                .collect()
        };
        let before = snap(&[(1, "capture", 100), (2, "net-reader", 50)]);
        let after = snap(&[
            (1, "capture", 300),
            (2, "net-reader", 80),
            (3, "encode-0", 40),
            (4, "bench-view", 5),
            (5, "main", 1000),
        ]);
        assert_eq!(cpu_split(&before, &after), (240, 35));
        // openh264's slice threads carry the name of the process's first
        // thread, which is not counted itself.
        let pid = u64::from(std::process::id());
        let after = snap(&[(pid, "livestream", 1000), (pid + 1, "livestream", 70)]);
        assert_eq!(cpu_split(&HashMap::new(), &after), (70, 0));
    }
}
