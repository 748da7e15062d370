//! Stateful memory-to-memory codecs: the kernel's encoder and decoder API
//! (Documentation/userspace-api/media/v4l/dev-encoder.rst, dev-decoder.rst).
//! A node has two queues: pictures go in on OUTPUT and come back compressed on
//! CAPTURE (an encoder), or the other way round (a decoder). The Raspberry Pi
//! 0-4's H.264 encoder (`bcm2835-codec`, `/dev/video11`) speaks it, with the
//! multi-planar variant of the buffer API; the kernel's `vicodec` speaks it
//! with either variant, for its FWHT codec, which is how it is tested without
//! a Pi (tests/integration/m2m.rs, in a VM).
//!
//! The coded format is a parameter ([`Fourcc`]); the picture side is always
//! YU12 (planar 4:2:0, which the h264 codec's pictures are). Everything the
//! driver answers is checked: buffer indices, lengths, offsets, the formats it
//! took. Each call waits for the driver with a deadline, never for ever.
//!
//! One [`Encoder`] or [`Decoder`] is owned by the thread that codes (the
//! capture or send thread, through the `h264` codec's `v4l2m2m` engine). After
//! set-up a frame allocates nothing: its bytes are copied into a mapped driver
//! buffer and out of one, which is the one copy each way the API asks for.
//!
//! The files: `device` (an open node, its formats and controls), `queue` (a
//! queue's mapped buffers), `encoder`, `decoder`; here what callers name, and
//! finding nodes.

mod decoder;
mod device;
mod encoder;
mod queue;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use decoder::Decoder;
use device::{Device, Side};
pub use encoder::{Encoder, EncoderSettings};

/// How long a call waits for the driver to finish a frame: hardware takes a
/// few milliseconds; a codec in an emulated kernel can take a hundred.
const DEADLINE: Duration = Duration::from_secs(3);
/// Buffers asked of the driver on each queue (it may give more).
const BUFFERS: u32 = 4;
/// A coded buffer the driver may size as it likes is at most this large.
const MAX_CODED_BUFFER: usize = 32 << 20;

/// A four-character code: the coded format (`H264`, `FWHT`), or a picture
/// format (`YU12`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fourcc(pub [u8; 4]);

impl Fourcc {
    pub const H264: Fourcc = Fourcc(*b"H264");
    /// vicodec's codec (the Fast Walsh-Hadamard Transform).
    pub const FWHT: Fourcc = Fourcc(*b"FWHT");
    /// Planar 4:2:0, Y then U then V: I420.
    pub const YU12: Fourcc = Fourcc(*b"YU12");

    fn code(self) -> u32 {
        u32::from_le_bytes(self.0)
    }

    /// A four-character code given as text (`"FWHT"`).
    pub fn parse(text: &str) -> Option<Fourcc> {
        let bytes: [u8; 4] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
            .then_some(Fourcc(bytes))
    }
}

impl fmt::Display for Fourcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::fourcc_text(self.code()))
    }
}

impl fmt::Debug for Fourcc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a memory-to-memory codec could not be set up or code a frame. Each
/// names the node and the step.
#[derive(Debug, thiserror::Error)]
pub enum M2mError {
    #[error("no V4L2 memory-to-memory {role} for {fourcc} (looked at every /dev/video*)")]
    NotFound { role: Role, fourcc: Fourcc },
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The node is not what was asked for, or refused a format or size.
    #[error("{}: {why}", path.display())]
    Refused { path: PathBuf, why: String },
    /// The driver answered with something impossible (an index or a length
    /// out of range).
    #[error("{}: the driver {why}", path.display())]
    Driver { path: PathBuf, why: String },
    #[error("{}: no {what} within {} s", path.display(), DEADLINE.as_secs())]
    Timeout { path: PathBuf, what: &'static str },
    /// The driver marked the frame's buffer as failed.
    #[error("{}: the driver could not {what} this frame", path.display())]
    Failed { path: PathBuf, what: &'static str },
    #[error("{}: a {len}-byte frame is larger than the driver's {room}-byte buffer", path.display())]
    TooLarge {
        path: PathBuf,
        len: usize,
        room: usize,
    },
}

/// Which way a node codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Pictures in, coded frames out.
    Encoder,
    /// Coded frames in, pictures out.
    Decoder,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Encoder => "encoder",
            Role::Decoder => "decoder",
        })
    }
}

/// A memory-to-memory node found on this machine.
#[derive(Clone, Debug)]
pub struct Found {
    pub path: PathBuf,
    pub card: String,
    pub driver: String,
    pub role: Role,
    pub fourcc: Fourcc,
    /// It uses the multi-planar buffer API.
    pub mplane: bool,
}

/// Every encoder and decoder on this machine that takes or gives YU12
/// pictures: one entry per node, role and coded format.
pub fn list() -> Vec<Found> {
    let mut all = Vec::new();
    for path in video_nodes() {
        let Ok(device) = Device::open(&path) else {
            continue;
        };
        for (role, coded, pictures) in [
            (Role::Encoder, Side::Capture, Side::Output),
            (Role::Decoder, Side::Output, Side::Capture),
        ] {
            if !device.formats(pictures).contains(&Fourcc::YU12) {
                continue;
            }
            for (fourcc, compressed) in device.described_formats(coded) {
                if compressed {
                    all.push(device.found(role, fourcc));
                }
            }
        }
    }
    all
}

/// The first node that is a `role` for `fourcc` with YU12 pictures.
pub fn find(role: Role, fourcc: Fourcc) -> Option<Found> {
    open_node(None, role, fourcc)
        .ok()
        .map(|d| d.found(role, fourcc))
}

/// The node at `path` as a `role` for `fourcc`: an error says what it lacks.
pub fn check(path: &Path, role: Role, fourcc: Fourcc) -> Result<Found, M2mError> {
    open_node(Some(path), role, fourcc).map(|d| d.found(role, fourcc))
}

/// Opens the node at `path`, or else the first that is a `role` for
/// `fourcc`, once: what the encoder and decoder code with.
fn open_node(path: Option<&Path>, role: Role, fourcc: Fourcc) -> Result<Device, M2mError> {
    let Some(path) = path else {
        return video_nodes()
            .into_iter()
            .filter_map(|p| Device::open(&p).ok())
            .find(|d| d.codes(role, fourcc))
            .ok_or(M2mError::NotFound { role, fourcc });
    };
    let device = Device::open(path)?;
    if !device.codes(role, fourcc) {
        return Err(M2mError::Refused {
            path: device.path.clone(),
            why: format!(
                "{} ({}) is not a {fourcc} {role} with YU12 pictures",
                device.card, device.driver
            ),
        });
    }
    Ok(device)
}

/// `/dev/video*`, in number order.
fn video_nodes() -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut nodes: Vec<(u32, PathBuf)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix("video")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// Borrowed I420 planes of one picture.
#[derive(Clone, Copy)]
pub struct Planes<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub y_stride: usize,
    pub c_stride: usize,
}

#[cfg(test)]
mod tests;
