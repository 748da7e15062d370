//! A worked example of a livestream backend: a source that draws a moving diagonal
//! gradient. `docs/backends.md` walks through it. A backend is one file like this:
//! an options type, a struct that implements the role's trait, and one
//! `inventory::submit!` that registers it by name. Nothing else names it.
//!
//! `cargo run --example custom_source -- backends` lists it beside the built-in
//! backends; `cargo run --example custom_source -- serve --source gradient` serves
//! it; `cargo test --example custom_source` streams it end to end.

use livestream::backend::always;
use livestream::backend::table::{BackendConfig, CaptureConfig};
use livestream::error::{BackendError, SourceError};
use livestream::media::frame::{Frame, FrameInfo, PixelFormat, StreamInfo};
use livestream::sources::{FrameSource, Pacer, SourceBackend};

// 1. Register: a name, a one-line summary, an availability probe, a constructor.
livestream::inventory::submit! {
    SourceBackend {
        name: "gradient",
        summary: "a moving diagonal gradient (the worked example in docs/backends.md)",
        probe: always,
        devices: None,
        open,
    }
}

// 2. Options: the `[sources.gradient]` table. Unknown keys are errors that point
//    at the line, like every other table.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// Pixels the gradient moves per frame.
    speed: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { speed: 2 }
    }
}

// 3. The constructor: validate what was asked for, and say clearly what is wrong.
fn open(
    capture: &CaptureConfig,
    table: &BackendConfig,
) -> Result<Box<dyn FrameSource>, BackendError> {
    let opts: Options = table.parse()?;
    if capture.format != PixelFormat::Rgb24 {
        return Err(BackendError::Unsupported {
            backend: "gradient",
            what: format!("{} output (it draws rgb24)", capture.format),
        });
    }
    let frame = FrameInfo::packed(PixelFormat::Rgb24, capture.width, capture.height)?;
    Ok(Box::new(GradientSource {
        info: StreamInfo {
            frame,
            fps: capture.fps,
        },
        pacer: Pacer::new(capture.fps),
        speed: opts.speed,
        seq: 0,
    }))
}

struct GradientSource {
    info: StreamInfo,
    pacer: Pacer,
    speed: u32,
    seq: u64,
}

// 4. The trait: fill the caller's frame, reusing its buffer (no allocation once
//    it has grown), and stamp it.
impl FrameSource for GradientSource {
    fn stream_info(&self) -> StreamInfo {
        self.info
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        frame.capture_us = self.pacer.wait();
        frame.reset(self.info.frame);
        let shift = (self.seq as u32).wrapping_mul(self.speed);
        let width = self.info.frame.width as usize;
        for (y, row) in frame.data.chunks_exact_mut(width * 3).enumerate() {
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let v = (x as u32 + y as u32).wrapping_add(shift) as u8;
                px.copy_from_slice(&[v, 255 - v, 128]);
            }
        }
        frame.seq = self.seq;
        self.seq += 1;
        Ok(())
    }
}

fn main() {
    // The whole livestream command line, with this backend compiled in.
    std::process::exit(livestream::cli::main());
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use livestream::backend::table::ConfigText;

    use livestream::backend::Kind;
    use livestream::config::{Config, Overrides};
    use livestream::registry;
    use livestream::server::{RunningServer, ServeLimits};
    use livestream::sinks::null::NullSink;
    use livestream::viewer::{self, ViewEnd, ViewOptions};

    #[test]
    fn gradient_is_registered_and_streams_end_to_end() {
        assert!(registry::exists(Kind::Source, "gradient"));
        assert!(registry::report().contains("gradient"));
        let overrides = Overrides {
            source: Some("gradient".into()),
            listen: Some("127.0.0.1:0".into()),
            width: Some(64),
            height: Some(48),
            fps: Some(100.0),
            ..Default::default()
        };
        let mut cfg = Config::parse(ConfigText::embedded(), &overrides).unwrap();
        // Paired and encrypted, as by default; keys in a directory of the test's.
        let keys = tempfile::tempdir().unwrap();
        cfg.serve.key_dir = Some(keys.path().join("server"));
        cfg.view.key_dir = Some(keys.path().join("viewer"));
        let server = RunningServer::start(&cfg, ServeLimits::default()).unwrap();
        cfg.view.pair = server.auth().map(|a| a.code());
        let opts = ViewOptions {
            frames: Some(10),
            duration: None,
            quiet: true,
            reconnect: false,
            limits: cfg.view.limits,
            latency_log: None,
        };
        let mut sink = NullSink::default();
        let report = viewer::run(
            &server.local_addr().to_string(),
            &mut sink,
            &cfg,
            &opts,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(report.end, ViewEnd::FrameLimit);
        assert_eq!(sink.frames, 10);
        assert_eq!(report.stream.unwrap().frame.width, 64);
        server.stop().unwrap();
    }

    #[test]
    fn options_are_checked() {
        let text = ConfigText {
            origin: "t.toml".into(),
            text: "[sources.gradient]\nsped = 3\n".into(),
        };
        let cfg = Config::parse(text, &Overrides::default()).unwrap();
        let err = (registry::source("gradient").unwrap().open)(
            &cfg.capture,
            &cfg.backend(Kind::Source, "gradient"),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("t.toml:2:1: unknown field `sped`"),
            "{err}"
        );
    }
}
