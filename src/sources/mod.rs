//! Frame sources: where pictures come from.
//!
//! Each backend lives in one file here, registers itself with
//! `inventory::submit!` and is compiled in by the single `#[cfg]` on its `mod` line.

use crate::backend::table::{BackendConfig, CaptureConfig};
use crate::backend::Availability;
use crate::error::{BackendError, SourceError};
use crate::media::frame::{Frame, StreamInfo};

pub mod camera;
pub mod file;
#[cfg(feature = "nokhwa")]
pub mod nokhwa;
pub mod synthetic_camera;
pub mod test_pattern;
#[cfg(feature = "v4l2")]
pub mod v4l2;

// Camera backends a build can leave out say how to get them back.
#[cfg(not(feature = "nokhwa"))]
inventory::submit! {
    crate::backend::CompiledOut {
        kind: crate::backend::Kind::Source,
        name: "nokhwa",
        feature: "nokhwa",
        package: "libclang-dev",
    }
}
#[cfg(not(feature = "v4l2"))]
inventory::submit! {
    crate::backend::CompiledOut {
        kind: crate::backend::Kind::Source,
        name: "v4l2",
        feature: "v4l2",
        package: "libclang-dev",
    }
}

/// Produces frames, one at a time, into a buffer the caller owns.
///
/// Call order: the registration's `open` builds the source (and negotiates the mode
/// with the device); then `stream_info` any time; then `next_frame` repeatedly.
/// Dropping the source releases the device.
pub trait FrameSource: Send {
    /// What every frame of this source looks like. Fixed once opened.
    fn stream_info(&self) -> StreamInfo;

    /// Blocks until the next frame is captured and writes it into `frame`: geometry,
    /// `seq`, `capture_us` (see [`crate::media::clock`]) and pixels, reusing `frame.data`.
    ///
    /// Blocks for at most about one frame interval (or one second), so a caller that
    /// wants to stop is never held up for long.
    ///
    /// Errors: [`SourceError::EndOfStream`] when a finite source is done; `Io` or
    /// `Corrupt` when the device or file fails.
    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError>;

    /// A source of inter-frame compressed video (a camera's H.264 mode) is
    /// asked for a keyframe soon: a viewer joined or lost the chain. Returns
    /// false when it cannot make one on request (a recording, a camera without
    /// the control): viewers then wait for its next one.
    fn request_keyframe(&mut self) -> bool {
        false
    }

    /// False for a source that delivers frames as fast as it is asked (a
    /// recording replayed with `pace = "fast"`, a generator at `fps = 0`): the
    /// capture thread then reads a frame only when someone will take it.
    fn paces_itself(&self) -> bool {
        true
    }
}

/// A source backend's registration.
pub struct SourceBackend {
    pub name: &'static str,
    pub summary: &'static str,
    pub probe: fn() -> Availability,
    /// Opens the source for the `[capture]` request and its own `[sources.NAME]` table.
    pub open: OpenSource,
    /// Cameras only: lists the devices this backend can open (with their controls
    /// when asked), for `livestream devices`. Camera backends are tried, in
    /// registration order, by `source = "auto"`.
    pub devices: Option<ListDevices>,
}

/// Camera backends, in the order `source = "auto"` tries them: the ones named in
/// [`CAMERA_ORDER`] first, then any other by name.
pub fn cameras() -> Vec<&'static SourceBackend> {
    let mut all: Vec<_> = inventory::iter::<SourceBackend>
        .into_iter()
        .filter(|b| b.devices.is_some())
        .collect();
    let rank = |b: &SourceBackend| CAMERA_ORDER.iter().position(|&n| n == b.name);
    all.sort_by_key(|b| (rank(b).unwrap_or(usize::MAX), b.name));
    all
}

/// The direct V4L2 backend before nokhwa (which wraps V4L2 on Linux).
pub const CAMERA_ORDER: [&str; 2] = ["v4l2", "nokhwa"];

/// Lists a camera backend's devices; `true` asks for their controls too.
pub type ListDevices = fn(bool) -> Vec<camera::CameraInfo>;

/// Opens a source for the `[capture]` request and its `[sources.NAME]` table.
pub type OpenSource =
    fn(&CaptureConfig, &BackendConfig) -> Result<Box<dyn FrameSource>, BackendError>;

inventory::collect!(SourceBackend);

/// Sleeps until `deadline_us` on [`crate::media::clock`]: frame pacing for sources that
/// generate frames. Deadlines advance by a fixed interval, so pacing does not drift.
pub(crate) fn pace_until(deadline_us: u64) {
    let now = crate::media::clock::now_us();
    if deadline_us > now {
        std::thread::sleep(std::time::Duration::from_micros(deadline_us - now));
    }
}

/// Keeps frame times on a fixed grid of `1/fps`; `fps == 0` means unpaced.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    interval_us: u64,
    next_us: u64,
}

impl Pacer {
    pub fn new(fps: f64) -> Pacer {
        Pacer {
            interval_us: if fps > 0.0 { (1e6 / fps) as u64 } else { 0 },
            next_us: 0,
        }
    }

    /// Waits for the next slot and returns the time to stamp the frame with.
    pub fn wait(&mut self) -> u64 {
        if self.interval_us == 0 {
            return crate::media::clock::now_us();
        }
        let now = crate::media::clock::now_us();
        if self.next_us == 0 || now > self.next_us + self.interval_us * 4 {
            // First frame, or we fell far behind (a stall): restart the grid.
            self.next_us = now;
        }
        pace_until(self.next_us);
        let stamp = crate::media::clock::now_us();
        self.next_us += self.interval_us;
        stamp
    }
}
