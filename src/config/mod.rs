//! `livestream.toml`, as ripgrep reads its flags: parsed raw with spans
//! ([`raw`]), then each section checked and resolved ([`resolve`], with the
//! shared checks of [`check`]) into the [`Config`] the program runs with.
//! Flags given as [`Overrides`] take precedence over the file.
//!
//! Every error points at the spot: `file:line:col`, the line, a caret under the
//! value, and for names "expected one of ...". Unknown keys are errors. What
//! backends see of the configuration (a backend's own table, `[capture]`, and the
//! error that points into the file) is in [`crate::backend::table`], a leaf they
//! can import without importing this module.
//! Parsed on the main thread at start (and once per case by `bench`).

use std::path::{Path, PathBuf};

mod check;
mod raw;
mod resolve;

use crate::backend::table::toml_error;
pub use crate::backend::table::{BackendConfig, CaptureConfig, ConfigError, ConfigText, EMBEDDED};

use crate::backend::Kind;
use crate::media::frame::Limits;

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
    /// The UDP port of WebRTC (WHEP) sessions; 0 = the port number `listen` got.
    pub webrtc_port: u16,
    /// Candidates offered to browsers besides the machine's own addresses
    /// (NAT, containers).
    pub webrtc_candidates: Vec<crate::net::ice::ExtraCandidate>,
    /// Only the machine's addresses inside these are offered as host
    /// candidates; empty: every one.
    pub webrtc_networks: Vec<crate::net::ice::Network>,
    /// Answer HTTP (browsers, MJPEG, stats) on the same port.
    pub http: bool,
    /// Answer RTSP (VLC, ffmpeg, NVRs) on the same port.
    pub rtsp: bool,
    /// The even UDP port for RTSP clients' RTP (RTCP on the next); 0: any
    /// free pair.
    pub rtsp_udp_port: u16,
    /// Also take connections (RTSP clients, mostly) on this address, such as
    /// `0.0.0.0:8554`.
    pub rtsp_listen: Option<String>,
    /// An RTSP session (or connection before PLAY) with nothing from its
    /// client for this long ends.
    pub rtsp_session_timeout: std::time::Duration,
    /// Push the stream to this RTSP media server (`rtsp://...`).
    pub publish: Option<String>,
    /// Sinks fed on the server itself from the same capture (a preview window,
    /// a recording), each with its own newest-wins slot.
    pub sinks: Vec<String>,
    /// Announce the server with mDNS/DNS-SD (not when listening on loopback).
    pub discovery: bool,
    pub auth: Auth,
    /// Where the keys and pins live; `None`: the user's config directory.
    pub key_dir: Option<std::path::PathBuf>,
    /// Whether each native viewer is sent the rendition its link carries.
    pub adapt: Adapt,
    /// Whether the source stays open with no one watching.
    pub capture: CaptureMode,
}

/// `capture`: when the source is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMode {
    /// On demand for a camera, always for other sources: the default.
    Auto,
    /// Closed a few seconds after the last viewer or sink stops watching
    /// (a camera's light goes off, the machine idles), opened for the next.
    OnDemand,
    /// Open from start to end.
    Always,
}

/// `adapt`: whether native viewers of an H.264 stream are moved between
/// renditions by what their links carry (`server/adapt.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapt {
    /// Smaller renditions (720p, 480p, 240p below the stream) for viewers
    /// whose link cannot carry the stream: the default.
    Auto,
    /// Every viewer gets the stream; a slow link drops frames.
    Off,
}

/// Whether native viewers must pair and the stream is encrypted (`auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Pairing and encryption: the default.
    Pair,
    /// Plaintext and open to anyone on the network.
    None,
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

impl Config {
    /// Parses and validates `file`, with `overrides` from flags taking precedence.
    /// The first error found is returned: backend table names, then `[serve]`,
    /// `[capture]` and `[view]` in that order.
    ///
    /// ```
    /// use livestream::config::{Config, ConfigText, Overrides};
    ///
    /// let text = ConfigText { origin: "cam.toml".into(), text: "[capture]\nwidht = 640\n".into() };
    /// let err = Config::parse(text, &Overrides::default()).unwrap_err();
    /// assert!(err.to_string().starts_with("cam.toml:2:1: unknown field `widht`"));
    /// ```
    pub fn parse(file: ConfigText, overrides: &Overrides) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(&file.text).map_err(|e| toml_error(&file, e))?;
        check::backend_tables(&file, Kind::Source, raw.sources.keys())?;
        check::backend_tables(&file, Kind::Codec, raw.codecs.keys())?;
        check::backend_tables(&file, Kind::Sink, raw.sinks.keys())?;
        let serve = resolve::serve(&file, raw.serve, overrides)?;
        let capture = resolve::capture(&file, raw.capture, overrides)?;
        let view = resolve::view(&file, raw.view, overrides)?;
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
    use serde::Deserialize;

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
        let e = parse("[serve]\nrtsp-udp-port = 8001\n").unwrap_err();
        assert_eq!(e.position, Some((2, 17)), "{e}");
        assert!(e.message.contains("must be even"), "{e}");
        let e = parse("[serve]\nrtsp-udp-port = 70000\n").unwrap_err();
        assert_eq!(e.position, Some((2, 17)), "{e}");
        let c = parse("[serve]\nrtsp-udp-port = 8000\nrtsp = false\n").unwrap();
        assert_eq!((c.serve.rtsp_udp_port, c.serve.rtsp), (8000, false));
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

    /// One case per rule: the value at its edge is taken, the value past it is
    /// refused with an error at the value's line and column.
    #[test]
    fn every_range_rule_points_at_the_value() {
        let cases: [(&str, &str, &str, &str); 11] = [
            ("serve", "connections-per-second", "0.1", "0.09"),
            ("serve", "connections-per-second", "10000", "10000.5"),
            ("serve", "max-viewers", "1", "0"),
            ("serve", "handshake-timeout", "0.01", "0.005"),
            ("serve", "handshake-timeout", "3600", "3601"),
            ("serve", "encode-threads", "16", "17"),
            ("serve", "webrtc-port", "65535", "65536"),
            ("capture", "fps", "0", "-0.5"),
            ("capture", "fps", "1000", "1000.5"),
            ("view", "max-frame-bytes", "1024", "1023"),
            ("view", "max-frame-bytes", "4294967296", "4294967297"),
        ];
        for (section, key, edge, past) in cases {
            parse(&format!("[{section}]\n{key} = {edge}\n"))
                .unwrap_or_else(|e| panic!("{key} = {edge} is allowed: {e}"));
            let e = parse(&format!("[{section}]\n{key} = {past}\n")).unwrap_err();
            let col = key.len() + 4;
            assert_eq!(e.position, Some((2, col)), "{key} = {past}: {e}");
            assert!(e.message.starts_with(key), "{key} = {past}: {e}");
            let caret = format!(
                "{} | {}{}",
                " ",
                " ".repeat(col - 1),
                "^".repeat(past.len())
            );
            assert!(e.to_string().contains(&caret), "{key} = {past}: {e}");
        }
        let e = parse("[capture]\nfps = nan\n").unwrap_err();
        assert_eq!(e.position, Some((2, 7)), "{e}");
    }

    #[test]
    fn resolved_values_and_defaults() {
        let c = parse(
            "[serve]\nhandshake-timeout = 0.5\nmax-viewers = 3\n[view]\nmax-frame-bytes = 2048\n",
        )
        .unwrap();
        assert_eq!(
            c.serve.handshake_timeout,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(c.serve.max_viewers, 3);
        assert_eq!(c.view.limits.max_frame_bytes, 2048);
        let c = parse("").unwrap();
        assert_eq!(c.serve.listen, "0.0.0.0:7878");
        assert_eq!(c.serve.source, "test-pattern");
        assert_eq!(
            c.serve.codec,
            crate::registry::auto_codec(),
            "codec = \"auto\""
        );
        assert_eq!(c.serve.max_viewers, 16);
        assert_eq!(c.serve.connections_per_second, 10.0);
        assert_eq!(c.serve.handshake_timeout, std::time::Duration::from_secs(5));
        assert_eq!(c.serve.encode_threads, 0);
        assert_eq!(c.serve.auth, Auth::Pair);
        assert_eq!(c.serve.adapt, Adapt::Auto);
        assert_eq!(c.serve.capture, CaptureMode::Auto);
        assert_eq!(
            (c.capture.width, c.capture.height, c.capture.fps),
            (1280, 720, 30.0)
        );
        assert_eq!(c.view.sink, "auto");
        assert_eq!(c.view.limits, Limits::default());
        assert!(c.view.pair.is_none());
    }

    #[test]
    fn words_and_names_point_at_the_value() {
        let cases = [
            ("[serve]\nauth = \"open\"\n", (2, 8), "auth \"open\""),
            ("[view]\nauth = \"open\"\n", (2, 8), "auth \"open\""),
            ("[serve]\nadapt = \"on\"\n", (2, 9), "adapt \"on\""),
            ("[serve]\ncapture = \"lazy\"\n", (2, 11), "capture \"lazy\""),
            (
                "[serve]\nsinks = [\"null\", \"tv\"]\n",
                (2, 18),
                "unknown sink `tv`",
            ),
            ("[view]\nsink = \"tv\"\n", (2, 8), "unknown sink `tv`"),
            ("[codecs.zip]\n", (1, 9), "unknown codec `zip`"),
            ("[sinks.tv]\n", (1, 8), "unknown sink `tv`"),
            (
                "[capture]\nformat = \"rgb48\"\n",
                (2, 10),
                "unknown pixel format `rgb48`",
            ),
            (
                "[capture]\nheight = 0\n",
                (2, 10),
                "impossible capture size",
            ),
        ];
        for (text, position, message) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.position, Some(position), "{text}: {e}");
            assert!(e.message.starts_with(message), "{text}: {e}");
        }
        let e = parse("[view]\npair = \"12\"\n").unwrap_err();
        assert_eq!(e.position, Some((2, 8)), "{e}");
    }

    #[test]
    fn webrtc_candidates_and_networks_resolve_or_point_at_the_value() {
        let c = parse(
            "[serve]\nwebrtc-candidates = [\"203.0.113.7\", \"nas.lan:8555\"]\n\
             webrtc-networks = [\"192.168.0.0/16\", \"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let shown: Vec<String> = c
            .serve
            .webrtc_candidates
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(shown, ["203.0.113.7", "nas.lan:8555"]);
        let shown: Vec<String> = c
            .serve
            .webrtc_networks
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(shown, ["192.168.0.0/16", "10.0.0.0/8"]);
        let c = parse("").unwrap();
        assert!(c.serve.webrtc_candidates.is_empty() && c.serve.webrtc_networks.is_empty());
        // One bad value per rule, second in its list: the error points at it.
        let cases = [
            ("webrtc-candidates", "\"1.2.3.4:0\"", "port 0"),
            (
                "webrtc-candidates",
                "\"0.0.0.0\"",
                "no browser can reach it",
            ),
            (
                "webrtc-candidates",
                "\"nas_1\"",
                "neither an IP address nor a host name",
            ),
            ("webrtc-networks", "\"10.0.0.0/33\"", "0 to 32"),
            ("webrtc-networks", "\"lan\"", "not an IP address"),
            (
                "webrtc-networks",
                "\"10.1.0.0/8\"",
                "the network is 10.0.0.0/8",
            ),
        ];
        for (key, bad, why) in cases {
            let text = format!("[serve]\n{key} = [\"127.0.0.1\", {bad}]\n");
            let e = parse(&text).unwrap_err();
            let col = key.len() + 18;
            assert_eq!(e.position, Some((2, col)), "{text}: {e}");
            assert!(e.message.starts_with(key), "{text}: {e}");
            assert!(e.message.contains(why), "{text}: {e}");
        }
        let e = parse("[serve]\nwebrtc-networks = \"10.0.0.0/8\"\n").unwrap_err();
        assert!(
            e.message.contains("invalid type"),
            "a list, not a string: {e}"
        );
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let with = |overrides: Overrides| {
            Config::parse(
                ConfigText {
                    origin: "t.toml".into(),
                    text: "[capture]\nwidth = 640\n".into(),
                },
                &overrides,
            )
            .unwrap_err()
            .to_string()
        };
        let cases = [
            (
                Overrides {
                    fps: Some(1001.0),
                    ..Default::default()
                },
                "--fps: 1001 is not between 0 and 1000",
            ),
            (
                Overrides {
                    width: Some(0),
                    ..Default::default()
                },
                "--width/--height: impossible capture size",
            ),
            (
                Overrides {
                    local_sinks: vec!["tv".into()],
                    ..Default::default()
                },
                "--preview/--record: unknown sink `tv`",
            ),
            (
                Overrides {
                    source: Some("webcam".into()),
                    ..Default::default()
                },
                "--source: unknown source `webcam`",
            ),
            (
                Overrides {
                    format: Some("rgb48".into()),
                    ..Default::default()
                },
                "--format: unknown pixel format `rgb48`",
            ),
            (
                Overrides {
                    pair: Some("12".into()),
                    ..Default::default()
                },
                "--pair: ",
            ),
        ];
        for (overrides, start) in cases {
            let e = with(overrides);
            assert!(e.starts_with(start), "expected `{start}...`, got {e}");
        }
    }
}
