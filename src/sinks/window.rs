//! `window`: the best window sink this build has that works here: x11 when an X
//! server answers (it hands pictures over in shared memory, the cheapest way
//! under X), else minifb (which also speaks Wayland), else sdl2.

use super::{FrameSink, SinkBackend};
use crate::backend::table::BackendConfig;
use crate::backend::Availability;
use crate::error::BackendError;

/// A window sink needs a display server to talk to.
pub fn display_probe() -> Availability {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    if set("DISPLAY") || set("WAYLAND_DISPLAY") {
        Availability::Available
    } else {
        Availability::Unavailable(NO_DISPLAY.into())
    }
}

/// For a window sink's constructor: a clear error when there is no display.
pub fn require_display(sink: &str) -> Result<(), crate::error::BackendError> {
    match display_probe() {
        Availability::Available => Ok(()),
        Availability::Unavailable(why) => Err(crate::error::BackendError::Invalid {
            what: format!("the {sink} window"),
            why,
        }),
    }
}

pub const NO_DISPLAY: &str = "no display found: set DISPLAY, or use --sink null / file";

/// Window sinks, best first. sdl2 comes last: without a GPU its software renderer
/// takes about 10 ms a 1080p frame (docs/benchmarks.md).
const PREFERENCE: [&str; 3] = ["x11", "minifb", "sdl2"];

inventory::submit! {
    SinkBackend {
        name: "window",
        summary: "the best window sink here (x11, else minifb, else sdl2)",
        probe,
        open,
    }
}

/// A window sink of this build, by name (straight from the inventory: the
/// registry imports the sinks, so the sinks do not import it).
fn compiled_in(name: &str) -> Option<&'static SinkBackend> {
    inventory::iter::<SinkBackend>
        .into_iter()
        .find(|b| b.name == name)
}

fn probe() -> Availability {
    let mut why =
        "no window sink in this build: rebuild with --features x11, minifb or sdl2".to_string();
    for name in PREFERENCE {
        if let Some(b) = compiled_in(name) {
            match (b.probe)() {
                Availability::Available => return Availability::Available,
                Availability::Unavailable(w) => why = w,
            }
        }
    }
    Availability::Unavailable(why)
}

fn open(table: &BackendConfig) -> Result<Box<dyn FrameSink>, BackendError> {
    let compiled: Vec<_> = PREFERENCE.iter().filter_map(|n| compiled_in(n)).collect();
    let Some(backend) = compiled
        .iter()
        .find(|b| (b.probe)() == Availability::Available)
        .or(compiled.last())
    else {
        return Err(BackendError::Unsupported {
            backend: "window",
            what: "this build (no window sink: rebuild with --features x11, minifb or sdl2)".into(),
        });
    };
    log::info!("window sink: {}", backend.name);
    (backend.open)(&table.sibling(backend.name))
}
