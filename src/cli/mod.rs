//! The command line: parse flags, load the configuration, run a command, and map
//! the outcome to an exit status (0 done, 1 failed, 2 bad configuration or usage).
//! The flags of every command are here; what each command does is in its own
//! file: [`serve`], [`view`], [`list`], [`backends`], [`devices`], [`bench`].
//! Runs on the main thread; `serve` and `view` start the threads they need.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigError, Overrides};

mod backends;
mod bench;
mod devices;
mod list;
mod serve;
mod view;

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
    /// Also record into DIR (.mp4 for H.264, .mjpeg for JPEG streams, else
    /// .y4m; see [sinks.record]).
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Also push the stream to a media server (MediaMTX, go2rtc...) at
    /// rtsp://[user:password@]host[:port]/path, reconnecting when it goes away.
    #[arg(long, value_name = "URL")]
    publish: Option<String>,
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

/// Why a command failed, which decides the exit status.
enum Failure {
    /// Bad configuration or usage: status 2.
    Config(ConfigError),
    /// The command could not do its work: status 1. The error keeps its own
    /// type (and cause); only its message is printed.
    Run(Box<dyn std::error::Error>),
}

impl Failure {
    /// A command's failure for `e`'s reason (status 1).
    fn failed(e: impl std::error::Error + 'static) -> Failure {
        Failure::Run(Box::new(e))
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

/// The configuration file (`--config`, else the usual places) with `--set`
/// applied, then `overrides` from the command's flags.
fn load(
    cli_config: Option<&Path>,
    sets: &[String],
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let text = config::locate(cli_config)?.with_overrides(sets)?;
    Config::parse(text, overrides)
}

/// A `--flag SECONDS` value as a duration.
fn seconds(flag: &str, v: Option<f64>) -> Result<Option<Duration>, ConfigError> {
    v.map(|s| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| ConfigError::flag(flag, format!("{s} is not a number of seconds")))
    })
    .transpose()
}

fn run(cli: Cli, stop: &Arc<AtomicBool>) -> Result<(), Failure> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve(args) => serve::run(args, config, &cli.sets, stop),
        Command::View(args) => view::run(args, config, &cli.sets, stop),
        Command::List(args) => list::run(&args),
        Command::Backends => {
            backends::run();
            Ok(())
        }
        Command::Devices(args) => {
            devices::run(&args);
            Ok(())
        }
        Command::Bench(args) => bench::run(&args, config, &cli.sets, stop),
    }
}
