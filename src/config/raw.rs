//! `livestream.toml` as written: the serde structs the file deserializes into,
//! before anything is checked. Every value that is checked later (a name, a
//! range) is `Spanned`, so its error can point at it; unknown keys are refused
//! here already, by serde. Read only on the thread that parses the
//! configuration (`main`, or a bench case).

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub serve: RawServe,
    #[serde(default)]
    pub capture: RawCapture,
    #[serde(default)]
    pub view: RawView,
    /// Backend tables are parsed by their backends when used; here only their
    /// names are kept, to catch a misspelt one.
    #[serde(default)]
    pub sources: BTreeMap<Spanned<String>, IgnoredAny>,
    #[serde(default)]
    pub codecs: BTreeMap<Spanned<String>, IgnoredAny>,
    #[serde(default)]
    pub sinks: BTreeMap<Spanned<String>, IgnoredAny>,
}

/// `[serve]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawServe {
    pub listen: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
    pub codec: Option<Spanned<String>>,
    pub max_viewers: Option<Spanned<u32>>,
    pub name: Option<Spanned<String>>,
    pub handshake_timeout: Option<Spanned<f64>>,
    pub encode_threads: Option<Spanned<u32>>,
    pub http: Option<bool>,
    pub rtsp: Option<bool>,
    pub rtsp_udp_port: Option<Spanned<u16>>,
    pub rtsp_listen: Option<Spanned<String>>,
    pub rtsp_session_timeout: Option<Spanned<f64>>,
    pub publish: Option<Spanned<String>>,
    pub sinks: Option<Vec<Spanned<String>>>,
    pub discovery: Option<bool>,
    pub connections_per_second: Option<Spanned<f64>>,
    pub auth: Option<Spanned<String>>,
    pub adapt: Option<Spanned<String>>,
    pub capture: Option<Spanned<String>>,
    pub key_dir: Option<String>,
    pub webrtc_port: Option<Spanned<u32>>,
    pub webrtc_candidates: Option<Vec<Spanned<String>>>,
    pub webrtc_networks: Option<Vec<Spanned<String>>>,
}

/// `[capture]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCapture {
    pub width: Option<Spanned<u32>>,
    pub height: Option<Spanned<u32>>,
    pub fps: Option<Spanned<f64>>,
    pub format: Option<Spanned<String>>,
}

/// `[view]`
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawView {
    pub address: Option<Spanned<String>>,
    pub sink: Option<Spanned<String>>,
    pub max_frame_bytes: Option<Spanned<u64>>,
    pub reconnect: Option<bool>,
    pub auth: Option<Spanned<String>>,
    pub key_dir: Option<String>,
    pub pair: Option<Spanned<String>>,
}
