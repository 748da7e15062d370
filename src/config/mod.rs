//! `livestream.toml`: parsed raw with spans, then validated and resolved.
//!
//! Every error points at the spot: `file:line:col`, the line, a caret under the
//! value, and for names "expected one of ...". Unknown keys are errors.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

pub mod table;

use table::toml_error;
pub use table::{BackendConfig, CaptureConfig, ConfigError, ConfigText, EMBEDDED};

use crate::backend::Kind;
use crate::media::frame::{FrameInfo, Limits, PixelFormat};
use crate::registry;

// ---- raw, as written ------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    serve: RawServe,
    #[serde(default)]
    capture: RawCapture,
    #[serde(default)]
    view: RawView,
    #[serde(default)]
    sources: BTreeMap<Spanned<String>, IgnoredAny>,
    #[serde(default)]
    codecs: BTreeMap<Spanned<String>, IgnoredAny>,
    #[serde(default)]
    sinks: BTreeMap<Spanned<String>, IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawServe {
    listen: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    codec: Option<Spanned<String>>,
    max_viewers: Option<Spanned<u32>>,
    name: Option<Spanned<String>>,
    handshake_timeout: Option<Spanned<f64>>,
    encode_threads: Option<Spanned<u32>>,
    http: Option<bool>,
    sinks: Option<Vec<Spanned<String>>>,
    discovery: Option<bool>,
    connections_per_second: Option<Spanned<f64>>,
    auth: Option<Spanned<String>>,
    key_dir: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCapture {
    width: Option<Spanned<u32>>,
    height: Option<Spanned<u32>>,
    fps: Option<Spanned<f64>>,
    format: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawView {
    address: Option<Spanned<String>>,
    sink: Option<Spanned<String>>,
    max_frame_bytes: Option<Spanned<u64>>,
    reconnect: Option<bool>,
    auth: Option<Spanned<String>>,
    key_dir: Option<String>,
    pair: Option<Spanned<String>>,
}

// ---- resolved -------------------------------------------------------------------

/// `[serve]`
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub source: String,
    pub codec: String,
    pub max_viewers: usize,
    /// New connections a second from one address (twice that in a burst);
    /// loopback is not limited.
    pub connections_per_second: f64,
    pub name: String,
    pub handshake_timeout: std::time::Duration,
    /// Encoder threads; 0 = one for cheap codecs, one per core (up to 4) for JPEG.
    pub encode_threads: usize,
    /// Answer HTTP (browsers, MJPEG, stats) on the same port.
    pub http: bool,
    /// Sinks fed on the server itself from the same capture (a preview window,
    /// a recording), each with its own newest-wins slot.
    pub sinks: Vec<String>,
    /// Announce the server with mDNS/DNS-SD (not when listening on loopback).
    pub discovery: bool,
    pub auth: Auth,
    /// Where the keys and pins live; `None`: the user's config directory.
    pub key_dir: Option<std::path::PathBuf>,
}

/// Whether native viewers must pair and the stream is encrypted (`auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Pairing and encryption: the default.
    Pair,
    /// Plaintext and open to anyone on the network.
    None,
}

fn parse_auth(file: &ConfigText, v: Option<Spanned<String>>) -> Result<Auth, ConfigError> {
    match v {
        None => Ok(Auth::Pair),
        Some(v) => match v.get_ref().as_str() {
            "pair" => Ok(Auth::Pair),
            "none" => Ok(Auth::None),
            other => Err(ConfigError::at(
                file,
                Some(v.span()),
                format!("auth {other:?}: expected \"pair\" (the default) or \"none\""),
            )),
        },
    }
}

/// `[view]`
#[derive(Debug, Clone)]
pub struct ViewConfig {
    pub address: Option<String>,
    pub sink: String,
    pub limits: Limits,
    pub reconnect: bool,
    pub auth: Auth,
    pub key_dir: Option<std::path::PathBuf>,
    /// A pairing code to pair with (`--pair` or `pair`).
    pub pair: Option<crate::secure::trust::PairingCode>,
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub text: ConfigText,
    pub serve: ServeConfig,
    pub capture: CaptureConfig,
    pub view: ViewConfig,
}

/// Values from command-line flags that replace what the file says.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub source: Option<String>,
    pub codec: Option<String>,
    pub sink: Option<String>,
    /// Local sinks `serve` adds to `[serve] sinks` (`--preview`, `--record`).
    pub local_sinks: Vec<String>,
    pub listen: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
    pub format: Option<String>,
    /// `view --pair CODE`.
    pub pair: Option<String>,
}

fn unknown_name(
    file: &ConfigText,
    span: Option<Range<usize>>,
    kind: Kind,
    name: &str,
) -> ConfigError {
    let err = registry::unknown(kind, name);
    ConfigError::at(file, span, err.headline()).with_help(err.help())
}

fn check_name(
    file: &ConfigText,
    kind: Kind,
    value: Option<Spanned<String>>,
    flag: Option<&String>,
    flag_name: &str,
    default: &str,
) -> Result<String, ConfigError> {
    if let Some(name) = flag {
        if !registry::exists(kind, name) {
            let err = registry::unknown(kind, name);
            return Err(ConfigError::flag(flag_name, err.headline()).with_help(err.help()));
        }
        return Ok(name.clone());
    }
    match value {
        Some(v) => {
            let auto = kind == Kind::Source && v.get_ref() == "auto";
            if !(auto || registry::exists(kind, v.get_ref())) {
                return Err(unknown_name(file, Some(v.span()), kind, v.get_ref()));
            }
            Ok(v.into_inner())
        }
        None => Ok(default.to_string()),
    }
}

fn parse_format(
    file: &ConfigText,
    value: Option<Spanned<String>>,
    flag: Option<&String>,
) -> Result<PixelFormat, ConfigError> {
    let expected = || {
        let names: Vec<&str> = PixelFormat::ALL.iter().map(|f| f.name()).collect();
        format!("expected one of: {}", names.join(", "))
    };
    if let Some(name) = flag {
        return PixelFormat::from_name(name).ok_or_else(|| {
            ConfigError::flag("--format", format!("unknown pixel format `{name}`"))
                .with_help(expected())
        });
    }
    match value {
        Some(v) => PixelFormat::from_name(v.get_ref()).ok_or_else(|| {
            ConfigError::at(
                file,
                Some(v.span()),
                format!("unknown pixel format `{}`", v.get_ref()),
            )
            .with_help(expected())
        }),
        None => Ok(PixelFormat::Rgb24),
    }
}

impl Config {
    /// Parses and validates `file`, with `overrides` from flags taking precedence.
    ///
    /// ```
    /// use livestream::config::{Config, ConfigText, Overrides};
    ///
    /// let text = ConfigText { origin: "cam.toml".into(), text: "[capture]\nwidht = 640\n".into() };
    /// let err = Config::parse(text, &Overrides::default()).unwrap_err();
    /// assert!(err.to_string().starts_with("cam.toml:2:1: unknown field `widht`"));
    /// ```
    pub fn parse(file: ConfigText, overrides: &Overrides) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(&file.text).map_err(|e| toml_error(&file, e))?;

        for (kind, tables) in [
            (Kind::Source, &raw.sources),
            (Kind::Codec, &raw.codecs),
            (Kind::Sink, &raw.sinks),
        ] {
            for name in tables.keys() {
                if !registry::exists(kind, name.get_ref())
                    && !registry::is_compiled_out(kind, name.get_ref())
                {
                    return Err(unknown_name(&file, Some(name.span()), kind, name.get_ref()));
                }
            }
        }

        let s = raw.serve;
        let serve = ServeConfig {
            listen: match (&overrides.listen, s.listen) {
                (Some(l), _) => l.clone(),
                (None, Some(l)) => l.into_inner(),
                (None, None) => "0.0.0.0:7878".into(),
            },
            source: check_name(
                &file,
                Kind::Source,
                s.source,
                overrides.source.as_ref(),
                "--source",
                "test-pattern",
            )?,
            codec: check_name(
                &file,
                Kind::Codec,
                s.codec,
                overrides.codec.as_ref(),
                "--codec",
                "lz4",
            )?,
            connections_per_second: match s.connections_per_second {
                Some(v) if !(0.1..=10_000.0).contains(v.get_ref()) => {
                    return Err(ConfigError::at(
                        &file,
                        Some(v.span()),
                        "connections-per-second must be between 0.1 and 10000".into(),
                    ))
                }
                Some(v) => v.into_inner(),
                None => 10.0,
            },
            max_viewers: match s.max_viewers {
                Some(v) if *v.get_ref() == 0 => {
                    return Err(ConfigError::at(
                        &file,
                        Some(v.span()),
                        "max-viewers must be at least 1".into(),
                    ))
                }
                Some(v) => v.into_inner() as usize,
                None => 16,
            },
            name: s.name.map_or_else(default_stream_name, Spanned::into_inner),
            handshake_timeout: match s.handshake_timeout {
                Some(t) if !(0.01..=3600.0).contains(t.get_ref()) => {
                    return Err(ConfigError::at(
                        &file,
                        Some(t.span()),
                        "handshake-timeout must be between 0.01 and 3600 seconds".into(),
                    ))
                }
                Some(t) => std::time::Duration::from_secs_f64(t.into_inner()),
                None => std::time::Duration::from_secs(5),
            },
            encode_threads: match s.encode_threads {
                Some(n) if *n.get_ref() > 16 => {
                    return Err(ConfigError::at(
                        &file,
                        Some(n.span()),
                        "encode-threads must be from 0 (auto) to 16".into(),
                    ))
                }
                Some(n) => n.into_inner() as usize,
                None => 0,
            },
            http: s.http.unwrap_or(true),
            discovery: s.discovery.unwrap_or(true),
            auth: parse_auth(&file, s.auth)?,
            key_dir: s.key_dir.map(Into::into),
            sinks: {
                let mut names = Vec::new();
                for name in s.sinks.unwrap_or_default() {
                    if !registry::exists(Kind::Sink, name.get_ref()) {
                        return Err(unknown_name(
                            &file,
                            Some(name.span()),
                            Kind::Sink,
                            name.get_ref(),
                        ));
                    }
                    if !names.contains(name.get_ref()) {
                        names.push(name.into_inner());
                    }
                }
                for name in &overrides.local_sinks {
                    if !registry::exists(Kind::Sink, name) {
                        let err = registry::unknown(Kind::Sink, name);
                        return Err(ConfigError::flag("--preview/--record", err.headline())
                            .with_help(err.help()));
                    }
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
                names
            },
        };

        let c = raw.capture;
        let format = parse_format(&file, c.format, overrides.format.as_ref())?;
        let dim = |v: Option<Spanned<u32>>,
                   flag: Option<u32>,
                   default: u32|
         -> (u32, Option<Range<usize>>) {
            match (flag, v) {
                (Some(f), _) => (f, None),
                (None, Some(v)) => (*v.get_ref(), Some(v.span())),
                (None, None) => (default, None),
            }
        };
        let (width, wspan) = dim(c.width, overrides.width, 1280);
        let (height, hspan) = dim(c.height, overrides.height, 720);
        let fps = match (overrides.fps, c.fps) {
            (Some(f), _) if !(0.0..=1000.0).contains(&f) => {
                return Err(ConfigError::flag(
                    "--fps",
                    format!("{f} is not between 0 and 1000"),
                ))
            }
            (Some(f), _) => f,
            (None, Some(f)) if !(0.0..=1000.0).contains(f.get_ref()) => {
                return Err(ConfigError::at(
                    &file,
                    Some(f.span()),
                    format!("fps {} is not between 0 (unpaced) and 1000", f.get_ref()),
                ))
            }
            (None, Some(f)) => f.into_inner(),
            (None, None) => 30.0,
        };
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
        if let Err(e) = geometry {
            let message = format!("impossible capture size: {e}");
            return Err(
                match (wspan.or(hspan), overrides.width.or(overrides.height)) {
                    (_, Some(_)) => ConfigError::flag("--width/--height", message),
                    (span, None) => ConfigError::at(&file, span, message),
                }
                .with_help(format!(
                    "width and height from 1 to {}, even for 4:2:x formats",
                    Limits::default().max_width
                )),
            );
        }
        let capture = CaptureConfig {
            width,
            height,
            fps,
            format,
        };

        let v = raw.view;
        let max_frame_bytes = match v.max_frame_bytes {
            Some(m) if *m.get_ref() < 1024 || *m.get_ref() > (1 << 32) => {
                return Err(ConfigError::at(
                    &file,
                    Some(m.span()),
                    "max-frame-bytes must be between 1024 and 4294967296".into(),
                ))
            }
            Some(m) => m.into_inner() as usize,
            None => Limits::default().max_frame_bytes,
        };
        let view = ViewConfig {
            address: v.address.map(Spanned::into_inner),
            sink: check_name(
                &file,
                Kind::Sink,
                v.sink,
                overrides.sink.as_ref(),
                "--sink",
                "null",
            )?,
            limits: Limits {
                max_frame_bytes,
                ..Limits::default()
            },
            reconnect: v.reconnect.unwrap_or(true),
            auth: parse_auth(&file, v.auth)?,
            key_dir: v.key_dir.map(Into::into),
            pair: match (&overrides.pair, v.pair) {
                (Some(code), _) => Some(
                    crate::secure::trust::PairingCode::parse(code)
                        .map_err(|e| ConfigError::flag("--pair", e))?,
                ),
                (None, Some(code)) => Some(
                    crate::secure::trust::PairingCode::parse(code.get_ref())
                        .map_err(|e| ConfigError::at(&file, Some(code.span()), e))?,
                ),
                (None, None) => None,
            },
        };

        Ok(Config {
            text: file,
            serve,
            capture,
            view,
        })
    }

    /// The options table of one backend, `[sources.NAME]` and so on.
    pub fn backend(&self, kind: Kind, name: &str) -> BackendConfig<'_> {
        BackendConfig {
            text: &self.text,
            kind,
            name: name.to_string(),
        }
    }
}

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

/// The default configuration file: `--config`, else `./livestream.toml` if present,
/// else the embedded one.
pub fn locate(explicit: Option<&Path>) -> Result<ConfigText, ConfigError> {
    match explicit {
        Some(path) => ConfigText::read(path),
        None => {
            let local = PathBuf::from("livestream.toml");
            if local.is_file() {
                ConfigText::read(&local)
            } else {
                Ok(ConfigText::embedded())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            ConfigText {
                origin: "t.toml".into(),
                text: text.into(),
            },
            &Overrides::default(),
        )
    }

    #[test]
    fn embedded_config_is_valid() {
        let c = Config::parse(ConfigText::embedded(), &Overrides::default()).unwrap();
        assert_eq!(c.serve.source, "auto");
    }

    #[test]
    fn unknown_key_points_at_it() {
        let e = parse("[capture]\nwidth = 640\nwidht = 480\n").unwrap_err();
        assert_eq!(e.position, Some((3, 1)), "{e}");
        let text = e.to_string();
        assert!(text.contains("t.toml:3:1: unknown field `widht`"), "{text}");
        assert!(text.contains("expected one of `width`, `height`"), "{text}");
        assert!(text.contains("3 | widht = 480\n  | ^^^^^"), "{text}");
    }

    #[test]
    fn unknown_backend_lists_known_ones() {
        let e = parse("[serve]\nsource = \"tset-pattern\"\n").unwrap_err();
        assert_eq!(e.position, Some((2, 10)));
        let text = e.to_string();
        assert!(text.contains("unknown source `tset-pattern`"), "{text}");
        // Sorted; camera backends appear in builds that have them.
        assert!(text.contains("expected one of: file, "), "{text}");
        assert!(text.contains("synthetic-camera, test-pattern"), "{text}");
    }

    #[test]
    fn wrong_type_and_impossible_size() {
        let e = parse("[capture]\nwidth = \"wide\"\n").unwrap_err();
        assert_eq!(e.position, Some((2, 9)), "{e}");
        assert!(e.message.contains("invalid type"), "{e}");
        let e = parse("[capture]\nwidth = 0\nheight = 480\n").unwrap_err();
        assert_eq!(e.position, Some((2, 9)), "{e}");
        assert!(e.message.contains("impossible capture size"), "{e}");
        let e = parse("[capture]\nformat = \"nv12\"\nwidth = 641\n").unwrap_err();
        assert!(e.message.contains("even width"), "{e}");
        let e = parse("[capture]\nformat = \"rgb48\"\n").unwrap_err();
        assert!(e.help.as_deref().unwrap().contains("rgb24"), "{e}");
        let e = parse("[capture]\nfps = -1\n").unwrap_err();
        assert_eq!(e.position, Some((2, 7)), "{e}");
    }

    #[test]
    fn backend_table_errors_point_into_file() {
        #[derive(Deserialize, Default, Debug)]
        #[serde(deny_unknown_fields)]
        struct Opts {
            #[allow(dead_code)]
            speed: Option<u32>,
        }
        let c = parse("[serve]\nname = \"x\"\n\n[sources.test-pattern]\nsped = 3\n").unwrap();
        let e = c
            .backend(Kind::Source, "test-pattern")
            .parse::<Opts>()
            .unwrap_err();
        assert_eq!(e.position, Some((5, 1)), "{e}");
        let e = parse("[sources.nope]\n").unwrap_err();
        assert!(e.message.contains("unknown source `nope`"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let c = Config::parse(
            ConfigText {
                origin: "t.toml".into(),
                text: "[capture]\nwidth = 640\n".into(),
            },
            &Overrides {
                width: Some(320),
                codec: Some("raw".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.capture.width, 320);
        assert_eq!(c.serve.codec, "raw");
        let e = Config::parse(
            ConfigText {
                origin: "t.toml".into(),
                text: String::new(),
            },
            &Overrides {
                codec: Some("zip".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("--codec: unknown codec `zip`"),
            "{e}"
        );
    }

    #[test]
    fn set_overrides_edit_the_document() {
        let t = ConfigText {
            origin: "t.toml".into(),
            text: "# c\n[capture]\nwidth = 640\n".into(),
        }
        .with_overrides(&[
            "capture.width=320".into(),
            "sinks.file.path=/tmp/x.lsr".into(),
        ])
        .unwrap();
        let c = Config::parse(t, &Overrides::default()).unwrap();
        assert_eq!(c.capture.width, 320);
        #[derive(Deserialize, Default)]
        struct P {
            path: String,
        }
        let p: P = c.backend(Kind::Sink, "file").parse().unwrap();
        assert_eq!(p.path, "/tmp/x.lsr");
    }
}
