//! `livestream view`: find the server (an address, a name looked up with mDNS,
//! or the only one on the network), open the sink, watch until told to stop,
//! and log what was seen. At a terminal it asks for the pairing code when the
//! server does not know this viewer yet, and which server when several answer.
//! On the main thread; [`viewer::run`] starts the network reader.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::{load, seconds, Failure, ViewArgs};
use crate::backend::Kind;
use crate::config::{Config, ConfigError, Overrides};
use crate::error::BackendError;
use crate::net::discovery::{self, DiscoveryError, Found};
use crate::registry;
use crate::secure::trust::PairingCode;
use crate::secure::SecureError;
use crate::viewer::{self, ViewEnd, ViewError, ViewOptions, ViewReport};

/// How long `view` listens for servers announcing themselves.
const BROWSE: Duration = Duration::from_secs(3);

/// Why `view` could not start watching.
#[derive(Debug, thiserror::Error)]
enum ViewFailure {
    #[error("sink {name}: {source}")]
    Sink {
        name: String,
        #[source]
        source: BackendError,
    },
    /// The user gave no pairing code when asked.
    #[error("not paired")]
    NotPaired,
}

/// Why `view` found no server to connect to.
#[derive(Debug, thiserror::Error)]
enum FindError {
    #[error("looking for servers: {0}")]
    Browse(#[source] DiscoveryError),
    #[error("{0} announced no address")]
    NoAddress(String),
    #[error("no server named \"{0}\" found on the network (mDNS, 3 s), and none other")]
    NameNotFound(String),
    #[error("no server named \"{name}\" found on the network; found:\n{listing}")]
    NameNotAmong { name: String, listing: String },
    #[error(
        "no livestream server found on the network (mDNS, 3 s): give HOST:PORT, or set [view] address"
    )]
    NoneFound,
    #[error("several servers found; give a name or HOST:PORT:\n{0}")]
    Several(String),
    #[error("no such choice: {0:?}")]
    NoSuchChoice(String),
}

impl From<ViewFailure> for Failure {
    fn from(e: ViewFailure) -> Failure {
        Failure::failed(e)
    }
}

impl From<FindError> for Failure {
    fn from(e: FindError) -> Failure {
        Failure::failed(e)
    }
}

pub(super) fn run(
    args: ViewArgs,
    config: Option<&Path>,
    sets: &[String],
    stop: &AtomicBool,
) -> Result<(), Failure> {
    let overrides = Overrides {
        sink: args.sink,
        pair: args.pair,
        ..Default::default()
    };
    let cfg = load(config, sets, &overrides)?;
    let address = find_server(args.address.or_else(|| cfg.view.address.clone()))?;
    let opts = ViewOptions {
        frames: args.frames,
        duration: seconds("--duration", args.duration)?,
        quiet: args.quiet,
        reconnect: cfg.view.reconnect && !args.no_reconnect,
        limits: cfg.view.limits,
        latency_log: args.latency_log,
    };
    let report = watch(cfg, &address, &opts, stop)?;
    log_report(&report);
    Ok(())
}

/// Opens the sink and watches `address`. Not paired yet, with a person at the
/// terminal: asks for the code and tries again with it.
fn watch(
    mut cfg: Config,
    address: &str,
    opts: &ViewOptions,
    stop: &AtomicBool,
) -> Result<ViewReport, Failure> {
    if cfg.view.sink == "auto" {
        let (name, why_not_window) = registry::auto_sink();
        if let Some(why) = why_not_window {
            eprintln!(
                "no window here ({why}): only counting frames. Choose where they go with \
                 --sink: window (on a machine with a display), record (files ffmpeg plays) \
                 or file, or sink = \"...\" in [view] of livestream.toml"
            );
        }
        cfg.view.sink = name.to_string();
    }
    let backend = registry::sink(&cfg.view.sink).map_err(Failure::failed)?;
    let mut sink =
        (backend.open)(&cfg.backend(Kind::Sink, &cfg.view.sink)).map_err(|e| match e {
            BackendError::Config(c) => Failure::Config(c),
            source => Failure::from(ViewFailure::Sink {
                name: cfg.view.sink.clone(),
                source,
            }),
        })?;
    loop {
        match viewer::run(address, sink.as_mut(), &cfg, opts, stop) {
            Ok(report) => return Ok(report),
            Err(ViewError::Connection {
                source: viewer::Lost::Secure(e @ SecureError::NotPaired { .. }),
                ..
            }) if cfg.view.pair.is_none() && std::io::stdin().is_terminal() => {
                eprintln!("{e}");
                cfg.view.pair = Some(ask_pairing_code()?);
            }
            Err(e) => return Err(Failure::failed(e)),
        }
    }
}

/// The pairing code typed at the terminal; nothing typed gives up.
fn ask_pairing_code() -> Result<PairingCode, Failure> {
    eprint!("pairing code (from the `livestream serve` output, empty to give up): ");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if line.trim().is_empty() {
        return Err(ViewFailure::NotPaired.into());
    }
    PairingCode::parse(line.trim())
        .map_err(|e| Failure::Config(ConfigError::flag("the pairing code", e.to_string())))
}

/// Why the viewer ended and what it saw, in the log.
fn log_report(report: &ViewReport) {
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
    if let Some(first) = report.first_picture {
        log::info!(
            "first picture {:.1} ms after connecting; longest gap between pictures {:.1} ms",
            first.as_secs_f64() * 1000.0,
            report.longest_gap.as_secs_f64() * 1000.0
        );
    }
}

/// Where `view` connects: HOST:PORT as given, or a server found on the network
/// by name, or the only one found, or the one the user picks.
fn find_server(target: Option<String>) -> Result<String, FindError> {
    if let Some(t) = &target {
        if t.contains(':') {
            return Ok(t.clone());
        }
    }
    let found =
        discovery::browse(BROWSE, target.is_none().then_some(2)).map_err(FindError::Browse)?;
    match target {
        Some(name) => match found.iter().find(|f| f.name.eq_ignore_ascii_case(&name)) {
            Some(f) => address_of(f),
            None if found.is_empty() => Err(FindError::NameNotFound(name)),
            None => Err(FindError::NameNotAmong {
                name,
                listing: listing(&found),
            }),
        },
        None => match found.len() {
            0 => Err(FindError::NoneFound),
            1 => address_of(&found[0]),
            _ if !std::io::stdin().is_terminal() => Err(FindError::Several(listing(&found))),
            _ => address_of(ask_which(&found)?),
        },
    }
}

/// Several servers answered and a person is at the terminal: which one.
fn ask_which(found: &[Found]) -> Result<&Found, FindError> {
    eprintln!("several servers found:\n{}", listing(found));
    eprint!("which one (1-{})? ", found.len());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    match line.trim().parse::<usize>() {
        Ok(n) if (1..=found.len()).contains(&n) => Ok(&found[n - 1]),
        _ => Err(FindError::NoSuchChoice(line.trim().to_string())),
    }
}

/// The servers found, numbered, one a line.
fn listing(found: &[Found]) -> String {
    found
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let at = f.address().map_or("?".into(), |a| a.to_string());
            format!("  {}. {} at {at}", i + 1, f.name)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The address to connect to for a server found on the network.
fn address_of(f: &Found) -> Result<String, FindError> {
    let at = f
        .address()
        .ok_or_else(|| FindError::NoAddress(f.name.clone()))?;
    log::info!("found \"{}\" at {at}", f.name);
    Ok(at.to_string())
}
