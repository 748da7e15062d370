//! The command line: parse flags, load the configuration, run a command, and map
//! the outcome to an exit status (0 done, 1 failed, 2 bad configuration or usage).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::table::ConfigError;

use crate::backend::Kind;
use crate::config::{self, Config, Overrides};
use crate::registry;
use crate::server::{RunningServer, ServeLimits};
use crate::viewer::{self, ViewEnd, ViewOptions};

#[derive(Parser, Debug)]
#[command(
    name = "livestream",
    version,
    about = "Live video from a camera to screens on the same network"
)]
pub struct Cli {
    /// Configuration file (default: ./livestream.toml if present, else the built-in one).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Set any configuration key, e.g. --set sinks.file.path=rec.lsr (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Capture and stream to every viewer that connects.
    Serve(ServeArgs),
    /// Watch a stream.
    View(ViewArgs),
    /// List the servers announcing themselves on the local network (mDNS).
    List(ListArgs),
    /// List every backend in this build and whether it works here.
    Backends,
    /// List cameras: formats, sizes, frame rates, and the settings that select each.
    Devices(DevicesArgs),
    /// Measure serve → view on loopback for each codec and size.
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Source backend, or "auto".
    #[arg(long)]
    source: Option<String>,
    /// Codec backend.
    #[arg(long)]
    codec: Option<String>,
    /// Address to listen on, e.g. 0.0.0.0:7878 or 127.0.0.1:0.
    #[arg(long)]
    listen: Option<String>,
    #[arg(long)]
    width: Option<u32>,
    #[arg(long)]
    height: Option<u32>,
    /// Frames per second (0 = as fast as possible).
    #[arg(long)]
    fps: Option<f64>,
    /// Pixel format (rgb24, yuyv, nv12, ...).
    #[arg(long)]
    format: Option<String>,
    /// End the stream after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// End the stream after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Also show the stream in a window on this machine (closing it leaves the
    /// server running).
    #[arg(long)]
    preview: bool,
    /// Also record into DIR (.mjpeg for JPEG streams, else .y4m; see [sinks.record]).
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Seconds to listen for answers.
    #[arg(long, default_value_t = 3.0)]
    wait: f64,
}

#[derive(Args, Debug)]
struct DevicesArgs {
    /// Also list each camera's controls (brightness, exposure, focus, ...) with ranges.
    #[arg(long)]
    controls: bool,
}

#[derive(Args, Debug)]
struct ViewArgs {
    /// Server address, HOST:PORT, or a stream's name to look for on the network
    /// (default: [view] address; without one, the server found on the network).
    address: Option<String>,
    /// Sink backend.
    #[arg(long)]
    sink: Option<String>,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// No status line.
    #[arg(long, short)]
    quiet: bool,
    /// Give up when the connection fails instead of reconnecting.
    #[arg(long)]
    no_reconnect: bool,
    /// Write every frame's latency, stage by stage, to this CSV file.
    #[arg(long, value_name = "PATH")]
    latency_log: Option<PathBuf>,
    /// Pair with the server using the code `livestream serve` printed (once:
    /// later connections need no code).
    #[arg(long, value_name = "CODE")]
    pair: Option<String>,
}

/// Runs the command line; returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second Ctrl-C while shutting down exits at once.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone());
        let _ = signal_hook::flag::register(signal, stop.clone());
    }
    match run(cli, &stop) {
        Ok(()) => 0,
        Err(Failure::Config(e)) => {
            eprintln!("error: {e}");
            2
        }
        Err(Failure::Run(e)) => {
            eprintln!("error: {e}");
            1
        }
    }
}

enum Failure {
    Config(ConfigError),
    Run(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

fn load(
    cli_config: Option<&std::path::Path>,
    sets: &[String],
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let text = config::locate(cli_config)?.with_overrides(sets)?;
    Config::parse(text, overrides)
}

fn seconds(flag: &str, v: Option<f64>) -> Result<Option<Duration>, ConfigError> {
    v.map(|s| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| ConfigError::flag(flag, format!("{s} is not a number of seconds")))
    })
    .transpose()
}

fn run(cli: Cli, stop: &Arc<AtomicBool>) -> Result<(), Failure> {
    match cli.command {
        Command::Serve(a) => {
            let mut local_sinks = Vec::new();
            let mut sets = cli.sets.clone();
            if a.preview {
                local_sinks.push("window".to_string());
            }
            if let Some(dir) = &a.record {
                local_sinks.push("record".to_string());
                // As a TOML string, whatever the path holds.
                let dir = toml::Value::String(dir.display().to_string());
                sets.push(format!("sinks.record.dir={dir}"));
            }
            let overrides = Overrides {
                source: a.source,
                codec: a.codec,
                listen: a.listen,
                width: a.width,
                height: a.height,
                fps: a.fps,
                format: a.format,
                local_sinks,
                ..Default::default()
            };
            let cfg = load(cli.config.as_deref(), &sets, &overrides)?;
            let limits = ServeLimits {
                frames: a.frames,
                duration: seconds("--duration", a.duration)?,
            };
            serve(&cfg, limits, stop)
        }
        Command::View(a) => {
            let overrides = Overrides {
                sink: a.sink,
                pair: a.pair,
                ..Default::default()
            };
            let cfg = load(cli.config.as_deref(), &cli.sets, &overrides)?;
            let address = resolve_server(a.address.or_else(|| cfg.view.address.clone()))?;
            let opts = ViewOptions {
                frames: a.frames,
                duration: seconds("--duration", a.duration)?,
                quiet: a.quiet,
                reconnect: cfg.view.reconnect && !a.no_reconnect,
                limits: cfg.view.limits,
                latency_log: a.latency_log,
            };
            view(cfg, &address, &opts, stop)
        }
        Command::List(a) => {
            let wait = seconds("--wait", Some(a.wait))?.unwrap_or(Duration::from_secs(3));
            let found = crate::net::discovery::browse(wait, None)
                .map_err(|e| Failure::Run(e.to_string()))?;
            if found.is_empty() {
                println!(
                    "no livestream server found on the network (mDNS, {:.1} s)",
                    wait.as_secs_f64()
                );
            }
            for f in &found {
                let addrs: Vec<String> = f.addrs.iter().map(|a| a.to_string()).collect();
                let field = |k: &str| f.txt.get(k).map_or("?", String::as_str);
                println!(
                    "{}  {}  codec {}, {}, pairing {}{}",
                    f.name,
                    addrs.join(" "),
                    field("codec"),
                    field("size"),
                    field("pairing"),
                    f.txt
                        .get("key")
                        .map_or(String::new(), |k| format!(", key {k}"))
                );
            }
            Ok(())
        }
        Command::Backends => {
            print!("{}", registry::report());
            Ok(())
        }
        Command::Devices(a) => {
            devices(&a);
            Ok(())
        }
        Command::Bench(a) => {
            let cfg = load(cli.config.as_deref(), &cli.sets, &Overrides::default())?;
            crate::bench::run(&cfg, &a, stop).map_err(Failure::Run)
        }
    }
}

fn serve(cfg: &Config, limits: ServeLimits, stop: &AtomicBool) -> Result<(), Failure> {
    let server = RunningServer::start(cfg, limits).map_err(|e| match e {
        crate::server::ServeError::Backend(crate::error::BackendError::Config(c)) => {
            Failure::Config(c)
        }
        e => Failure::Run(e.to_string()),
    })?;
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
        cfg.serve.codec
    );
    let token = server
        .auth()
        .map_or(String::new(), |a| format!("?token={}", a.http_token()));
    for ip in view_addresses(addr) {
        let at = SocketAddr::new(ip, addr.port());
        let _ = writeln!(out, "  watch with: livestream view {at}");
        let _ = writeln!(out, "  or open:    http://{at}/{token}");
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
    drop(out);
    let mut last_report = (std::time::Instant::now(), server.frames_captured());
    while !stop.load(Ordering::Relaxed) && !server.finished() {
        std::thread::sleep(Duration::from_millis(50));
        let (at, frames) = last_report;
        if at.elapsed() >= Duration::from_secs(10) {
            let now = (std::time::Instant::now(), server.frames_captured());
            let fps = (now.1 - frames) as f64 / at.elapsed().as_secs_f64();
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
            last_report = now;
        }
    }
    server.stop().map_err(|e| Failure::Run(e.to_string()))
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

fn view(
    mut cfg: Config,
    address: &str,
    opts: &ViewOptions,
    stop: &AtomicBool,
) -> Result<(), Failure> {
    let backend = registry::sink(&cfg.view.sink).map_err(|e| Failure::Run(e.to_string()))?;
    let mut sink =
        (backend.open)(&cfg.backend(Kind::Sink, &cfg.view.sink)).map_err(|e| match e {
            crate::error::BackendError::Config(c) => Failure::Config(c),
            e => Failure::Run(format!("sink {}: {e}", cfg.view.sink)),
        })?;
    let report = loop {
        match viewer::run(address, sink.as_mut(), &cfg, opts, stop) {
            Ok(report) => break report,
            // Not paired yet, and a person at the terminal: ask for the code.
            Err(viewer::ViewError::Connection {
                source:
                    viewer::ConnectionError::Secure(e @ crate::secure::SecureError::NotPaired { .. }),
                ..
            }) if cfg.view.pair.is_none()
                && std::io::IsTerminal::is_terminal(&std::io::stdin()) =>
            {
                eprintln!("{e}");
                eprint!("pairing code (from the `livestream serve` output, empty to give up): ");
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                if line.trim().is_empty() {
                    return Err(Failure::Run("not paired".into()));
                }
                cfg.view.pair = Some(
                    crate::secure::trust::PairingCode::parse(line.trim())
                        .map_err(|e| Failure::Config(ConfigError::flag("the pairing code", e)))?,
                );
            }
            Err(e) => return Err(Failure::Run(e.to_string())),
        }
    };
    let why = match &report.end {
        ViewEnd::FrameLimit => "frame limit reached".to_string(),
        ViewEnd::Duration => "duration reached".into(),
        ViewEnd::Stopped => "stopped".into(),
        ViewEnd::SinkClosed => "window closed".into(),
        ViewEnd::StreamEnded(m) => format!("stream ended: {m}"),
    };
    let ms = |p: f64| {
        report
            .latency
            .percentile(p)
            .map_or("-".into(), |us| format!("{:.1} ms", us / 1000.0))
    };
    log::info!(
        "{why}: {} frames, dropped {} (server {}, here {}), {:.1} MB, latency p50 {} p99 {}",
        report.frames,
        report.dropped_upstream + report.dropped_here,
        report.dropped_upstream,
        report.dropped_here,
        report.bytes as f64 / 1e6,
        ms(0.5),
        ms(0.99)
    );
    Ok(())
}

/// Where `view` connects: HOST:PORT as given, or a server found on the network
/// by name, or the only one found, or the one the user picks.
fn resolve_server(target: Option<String>) -> Result<String, Failure> {
    if let Some(t) = &target {
        if t.contains(':') {
            return Ok(t.clone());
        }
    }
    let wait = Duration::from_secs(3);
    let found = crate::net::discovery::browse(wait, target.is_none().then_some(2))
        .map_err(|e| Failure::Run(format!("looking for servers: {e}")))?;
    let listing = |found: &[crate::net::discovery::Found]| -> String {
        found
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let at = f.address().map_or("?".into(), |a| a.to_string());
                format!("  {}. {} at {at}", i + 1, f.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let pick = |f: &crate::net::discovery::Found| -> Result<String, Failure> {
        let at = f
            .address()
            .ok_or_else(|| Failure::Run(format!("{} announced no address", f.name)))?;
        log::info!("found \"{}\" at {at}", f.name);
        Ok(at.to_string())
    };
    match target {
        Some(name) => match found.iter().find(|f| f.name.eq_ignore_ascii_case(&name)) {
            Some(f) => pick(f),
            None if found.is_empty() => Err(Failure::Run(format!(
                "no server named \"{name}\" found on the network (mDNS, 3 s), and none other"
            ))),
            None => Err(Failure::Run(format!(
                "no server named \"{name}\" found on the network; found:\n{}",
                listing(&found)
            ))),
        },
        None => match found.len() {
            0 => Err(Failure::Run(
                "no livestream server found on the network (mDNS, 3 s): give HOST:PORT, \
                 or set [view] address"
                    .into(),
            )),
            1 => pick(&found[0]),
            _ => {
                if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    return Err(Failure::Run(format!(
                        "several servers found; give a name or HOST:PORT:\n{}",
                        listing(&found)
                    )));
                }
                eprintln!("several servers found:\n{}", listing(&found));
                eprint!("which one (1-{})? ", found.len());
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                match line.trim().parse::<usize>() {
                    Ok(n) if (1..=found.len()).contains(&n) => pick(&found[n - 1]),
                    _ => Err(Failure::Run(format!("no such choice: {:?}", line.trim()))),
                }
            }
        },
    }
}

fn devices(args: &DevicesArgs) {
    let backends: Vec<_> = crate::sources::cameras()
        .into_iter()
        .filter_map(|b| Some((b.name, b.devices?)))
        .collect();
    for out in registry::compiled_out() {
        if out.kind == Kind::Source {
            println!(
                "camera backend {} is not in this build: rebuild with --features {} (needs {})",
                out.name, out.feature, out.package
            );
        }
    }
    let mut found = 0;
    for (backend, list) in backends {
        for cam in list(args.controls) {
            found += 1;
            print_camera(backend, &cam, args.controls);
        }
    }
    if found == 0 {
        let nodes: Vec<String> = std::fs::read_dir("/dev")
            .map(|d| {
                let mut n: Vec<String> = d
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("video"))
                    .map(|n| format!("/dev/{n}"))
                    .collect();
                n.sort();
                n
            })
            .unwrap_or_default();
        if nodes.is_empty() {
            println!("no cameras found (no /dev/video* device)");
        } else {
            println!(
                "no cameras found: {} exist but none captures video here (in use, no permission, \
                 or metadata nodes)",
                nodes.join(", ")
            );
        }
        println!("`livestream serve` streams the test pattern when there is no camera");
    }
}

fn print_camera(backend: &str, cam: &crate::sources::camera::CameraInfo, controls: bool) {
    println!(
        "{}: \"{}\" ({}), backend {backend}",
        cam.node, cam.name, cam.detail
    );
    // Suggest the largest mode of the preferred format that keeps 25 fps or more.
    let smooth = cam
        .modes
        .iter()
        .filter(|m| cam.modes.first().is_some_and(|f| f.format == m.format))
        .filter(|m| m.fps.first().is_some_and(|&f| f >= 24.9))
        .max_by_key(|m| m.width as u64 * m.height as u64);
    if let Some(best) = smooth.or(cam.modes.first()) {
        let fps = best
            .fps
            .first()
            .map_or(String::new(), |f| format!(" --fps {}", fmt_fps(*f)));
        println!(
            "  select with: livestream serve --source {backend} --set 'sources.{backend}.{}={}' \
             --format {} --width {} --height {}{fps}",
            cam.option, cam.stable_id, best.format, best.width, best.height
        );
        let value = if cam.stable_id.parse::<u32>().is_ok() {
            cam.stable_id.clone()
        } else {
            format!("{:?}", cam.stable_id)
        };
        println!(
            "  or in livestream.toml:  [serve] source = \"{backend}\"   [sources.{backend}] {} = {value}",
            cam.option
        );
    }
    let mut formats: Vec<crate::media::frame::PixelFormat> = Vec::new();
    for m in &cam.modes {
        if !formats.contains(&m.format) {
            formats.push(m.format);
        }
    }
    for format in formats {
        let sizes: Vec<String> = cam
            .modes
            .iter()
            .filter(|m| m.format == format)
            .map(|m| {
                let rates: Vec<String> = m.fps.iter().map(|f| fmt_fps(*f)).collect();
                if rates.is_empty() {
                    format!("{}x{}", m.width, m.height)
                } else {
                    format!("{}x{} @ {}", m.width, m.height, rates.join("/"))
                }
            })
            .collect();
        println!("  {:<7} {}", format.name(), sizes.join(", "));
    }
    if !cam.other_formats.is_empty() {
        println!(
            "  also offered, not taken by livestream: {}",
            cam.other_formats.join(" ")
        );
    }
    if controls {
        println!("  controls ([sources.{backend}.controls] NAME = VALUE):");
        for c in &cam.controls {
            let mut line = format!("    {:<34} {:<6} {}..{}", c.key, c.kind, c.min, c.max);
            if c.step > 1 {
                line += &format!(" step {}", c.step);
            }
            line += &format!(" default {}", c.default);
            if let Some(v) = c.current {
                line += &format!(" now {v}");
            }
            if c.read_only {
                line += " (read-only)";
            }
            if c.inactive {
                line += " (inactive)";
            }
            println!("{line}");
            if !c.menu.is_empty() {
                let entries: Vec<String> = c.menu.iter().map(|(i, n)| format!("{i}={n}")).collect();
                println!("      {}", entries.join(", "));
            }
        }
    }
}

fn fmt_fps(f: f64) -> String {
    if (f - f.round()).abs() < 0.005 {
        format!("{}", f.round())
    } else {
        format!("{f:.2}")
    }
}
