//! Backends register themselves by name with `inventory`; this module finds them.
//!
//! A cargo feature decides what is compiled in; a backend's probe decides whether it
//! works on this machine. A backend that is compiled out registers a
//! [`CompiledOut`] entry instead, so its name still explains how to get it.

use crate::backend::{Availability, CompiledOut, Kind};
use crate::codecs::CodecBackend;
use crate::sinks::SinkBackend;
use crate::sources::SourceBackend;

/// What every registration has in common.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub kind: Kind,
    pub name: &'static str,
    pub summary: &'static str,
    pub probe: fn() -> Availability,
}

/// Every compiled-in backend, sorted by kind then name.
pub fn entries() -> Vec<Entry> {
    let mut all: Vec<Entry> = inventory::iter::<SourceBackend>
        .into_iter()
        .map(|b| Entry {
            kind: Kind::Source,
            name: b.name,
            summary: b.summary,
            probe: b.probe,
        })
        .chain(inventory::iter::<CodecBackend>.into_iter().map(|b| Entry {
            kind: Kind::Codec,
            name: b.name,
            summary: b.summary,
            probe: b.probe,
        }))
        .chain(inventory::iter::<SinkBackend>.into_iter().map(|b| Entry {
            kind: Kind::Sink,
            name: b.name,
            summary: b.summary,
            probe: b.probe,
        }))
        .collect();
    all.sort_by_key(|e| (e.kind as u8, e.name));
    all
}

/// Backends compiled out of this build.
pub fn compiled_out() -> Vec<&'static CompiledOut> {
    let mut all: Vec<_> = inventory::iter::<CompiledOut>.into_iter().collect();
    all.sort_by_key(|c| (c.kind as u8, c.name));
    all
}

/// The sorted names of compiled-in backends of one kind.
pub fn names(kind: Kind) -> Vec<&'static str> {
    entries()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.name)
        .collect()
}

pub fn exists(kind: Kind, name: &str) -> bool {
    names(kind).contains(&name)
}

/// The codec `codec = "auto"` stands for: `h264` (a tenth of JPEG's bitrate)
/// when this build has it, else `jpeg`.
pub fn auto_codec() -> &'static str {
    if exists(Kind::Codec, "h264") {
        "h264"
    } else {
        "jpeg"
    }
}

/// The sink `sink = "auto"` stands for: `window` when a window can open here,
/// else `null`, with why not (for the viewer to say).
pub fn auto_sink() -> (&'static str, Option<String>) {
    match sink("window").map(|b| (b.probe)()) {
        Ok(Availability::Available) => ("window", None),
        Ok(Availability::Unavailable(why)) => ("null", Some(why)),
        Err(_) => ("null", Some("this build has no window sink".into())),
    }
}

pub fn is_compiled_out(kind: Kind, name: &str) -> bool {
    compiled_out()
        .iter()
        .any(|c| c.kind == kind && c.name == name)
}

/// Names registered twice, which is a bug in the build (two files claim one name).
pub fn duplicates() -> Vec<(Kind, &'static str)> {
    let all = entries();
    let mut dups: Vec<_> = all
        .windows(2)
        .filter(|w| w[0].kind == w[1].kind && w[0].name == w[1].name)
        .map(|w| (w[0].kind, w[0].name))
        .collect();
    dups.dedup();
    dups
}

/// A name that names no backend of this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.headline())]
pub struct UnknownBackend {
    pub kind: Kind,
    pub name: String,
    pub known: Vec<&'static str>,
    /// Set when the name is a real backend that this build left out.
    pub feature: Option<(&'static str, &'static str)>,
}

impl UnknownBackend {
    pub fn headline(&self) -> String {
        match self.feature {
            Some(_) => format!(
                "{} `{}` is not available in this build",
                self.kind.name(),
                self.name
            ),
            None => format!("unknown {} `{}`", self.kind.name(), self.name),
        }
    }

    pub fn help(&self) -> String {
        match self.feature {
            Some((feature, package)) => format!(
                "rebuild with `--features {feature}` (needs the Debian package {package}), or `--features full`"
            ),
            None => format!("expected one of: {}", self.known.join(", ")),
        }
    }
}

pub fn unknown(kind: Kind, name: &str) -> UnknownBackend {
    UnknownBackend {
        kind,
        name: name.to_string(),
        known: names(kind),
        feature: compiled_out()
            .into_iter()
            .find(|c| c.kind == kind && c.name == name)
            .map(|c| (c.feature, c.package)),
    }
}

pub fn source(name: &str) -> Result<&'static SourceBackend, UnknownBackend> {
    inventory::iter::<SourceBackend>
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| unknown(Kind::Source, name))
}

pub fn codec(name: &str) -> Result<&'static CodecBackend, UnknownBackend> {
    inventory::iter::<CodecBackend>
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| unknown(Kind::Codec, name))
}

pub fn sink(name: &str) -> Result<&'static SinkBackend, UnknownBackend> {
    inventory::iter::<SinkBackend>
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| unknown(Kind::Sink, name))
}

/// The table `livestream backends` prints.
pub fn report() -> String {
    let mut out = String::new();
    for kind in [Kind::Source, Kind::Codec, Kind::Sink] {
        out.push_str(&format!("{}s:\n", kind.name()));
        for e in entries().into_iter().filter(|e| e.kind == kind) {
            out.push_str(&format!(
                "  {:<18} {}\n  {:<18} {}\n",
                e.name,
                (e.probe)(),
                "",
                e.summary
            ));
        }
        for c in compiled_out().into_iter().filter(|c| c.kind == kind) {
            out.push_str(&format!(
                "  {:<18} not in this build: rebuild with --features {} (needs {})\n",
                c.name, c.feature, c.package
            ));
        }
    }
    for (kind, name) in duplicates() {
        out.push_str(&format!(
            "error: {} `{name}` is registered twice\n",
            kind.name()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_kebab_case() {
        assert_eq!(duplicates(), vec![]);
        for e in entries() {
            assert!(
                e.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{} is not kebab-case",
                e.name
            );
        }
    }

    #[test]
    fn unknown_name_lists_known_sorted() {
        let e = unknown(Kind::Codec, "zip");
        assert_eq!(e.headline(), "unknown codec `zip`");
        if cfg!(feature = "h264") {
            assert_eq!(e.known, vec!["bincode", "h264", "jpeg", "lz4", "raw"]);
            assert_eq!(e.help(), "expected one of: bincode, h264, jpeg, lz4, raw");
        } else {
            assert_eq!(e.known, vec!["bincode", "jpeg", "lz4", "raw"]);
        }
    }

    // A stand-in for a backend that a cargo feature left out.
    inventory::submit! {
        CompiledOut { kind: Kind::Sink, name: "test-only-window", feature: "test-window", package: "libtest-dev" }
    }

    #[test]
    fn compiled_out_backend_names_its_feature_and_package() {
        assert!(!exists(Kind::Sink, "test-only-window"));
        assert!(is_compiled_out(Kind::Sink, "test-only-window"));
        let e = unknown(Kind::Sink, "test-only-window");
        assert_eq!(
            e.headline(),
            "sink `test-only-window` is not available in this build"
        );
        assert_eq!(
            e.help(),
            "rebuild with `--features test-window` (needs the Debian package libtest-dev), or `--features full`"
        );
        assert!(report().contains(
            "test-only-window   not in this build: rebuild with --features test-window (needs libtest-dev)"
        ));
    }

    #[test]
    fn core_backends_are_registered() {
        for (kind, name) in [
            (Kind::Source, "test-pattern"),
            (Kind::Source, "synthetic-camera"),
            (Kind::Source, "file"),
            (Kind::Codec, "raw"),
            (Kind::Codec, "bincode"),
            (Kind::Codec, "lz4"),
            (Kind::Sink, "null"),
            (Kind::Sink, "file"),
        ] {
            assert!(exists(kind, name), "{name}");
        }
    }
}
