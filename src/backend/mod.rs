//! The words every backend imports, and nothing else: the three roles, whether a
//! backend works on this machine, the entry a backend that cargo features left
//! out registers instead, and (in [`table`]) a backend's own part of the
//! configuration. A leaf: it imports nothing of the crate but `media::frame`,
//! so backends, the config and the registry can all use it without circles.

use std::fmt;

pub mod table;

/// The three roles a backend can play.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Source,
    Codec,
    Sink,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Codec => "codec",
            Kind::Sink => "sink",
        }
    }

    /// The name of the table that holds backend options in `livestream.toml`.
    pub fn table(self) -> &'static str {
        match self {
            Kind::Source => "sources",
            Kind::Codec => "codecs",
            Kind::Sink => "sinks",
        }
    }
}

/// Whether a compiled-in backend can work on this machine right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Why not, in words a user can act on ("no /dev/video* found").
    Unavailable(String),
}

/// Always available: for backends that need nothing from the machine.
pub fn always() -> Availability {
    Availability::Available
}

/// A backend known to this build but left out by cargo features.
pub struct CompiledOut {
    pub kind: Kind,
    pub name: &'static str,
    pub feature: &'static str,
    /// The Debian package the feature needs at build time.
    pub package: &'static str,
}

inventory::collect!(CompiledOut);

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Availability::Available => f.write_str("available"),
            Availability::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}
