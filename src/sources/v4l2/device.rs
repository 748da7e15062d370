//! Finding V4L2 capture devices and opening their nodes: by node, by udev link
//! or by identity (card name, bus), and again by the same identity after the
//! camera was re-plugged under another node.
//!
//! Everything a device says is untrusted: its names are fixed-size byte arrays
//! that may not be UTF-8 or NUL-terminated. Used by the thread that opens or
//! lists cameras (the capture thread, when it reopens one).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use v4l::v4l_sys as sys;

use crate::error::BackendError;
use crate::media::frame::PixelFormat;
use crate::v4l2::ioctl::{ioctl, zeroed, Ioctl, QueryCap};
pub(super) use crate::v4l2::{c_text, fourcc_text};

/// An open V4L2 capture node.
pub(super) struct Node {
    fd: OwnedFd,
    /// The node's canonical path (`/dev/video0`, udev links followed).
    pub(super) path: PathBuf,
    /// The driver's card name, which tells cameras apart.
    pub(super) card: String,
    /// The bus it sits on, which tells identical cameras apart.
    pub(super) bus: String,
    pub(super) driver: String,
}

impl Node {
    /// Opens `path` non-blocking and checks that it captures video by streaming.
    pub(super) fn open(path: &Path) -> io::Result<Node> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in device path"))?;
        // SAFETY: a valid C string; the flags ask for nothing unusual.
        let raw = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut cap: sys::v4l2_capability = zeroed();
        ioctl(fd.as_fd(), QueryCap, &mut cap)?;
        let caps = if cap.capabilities & sys::V4L2_CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        if caps & sys::V4L2_CAP_VIDEO_CAPTURE == 0 || caps & sys::V4L2_CAP_STREAMING == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "not a streaming video capture device (a metadata or output node?)",
            ));
        }
        Ok(Node {
            fd,
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            card: c_text(&cap.card),
            bus: c_text(&cap.bus_info),
            driver: c_text(&cap.driver),
        })
    }

    /// Makes `request` on this node (see [`super::ioctl`]).
    pub(super) fn ioctl<I: Ioctl>(&self, request: I, arg: &mut I::Arg) -> io::Result<()> {
        ioctl(self.fd.as_fd(), request, arg)
    }

    /// The fd, for poll and mmap.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `/dev/videoN` nodes, in the order of N.
pub(super) fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir("/dev")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name();
                    let n = name.to_str()?.strip_prefix("video")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// Every node that opens as a capture device, in the order of N.
pub(super) fn capture_nodes() -> impl Iterator<Item = Node> {
    video_nodes()
        .into_iter()
        .filter_map(|p| Node::open(&p).ok())
}

/// Resolves a `device` option to an open capture node. `identity` (card, bus),
/// when given, is the camera first opened: a plain `/dev/videoN` may belong to
/// another device after re-plugging, so it is found again by identity.
pub(super) fn find(
    spec: Option<&str>,
    identity: Option<&(String, String)>,
) -> Result<Node, BackendError> {
    let by_identity = |card: &str, bus: Option<&str>| -> Result<Node, BackendError> {
        capture_nodes()
            .find(|n| n.card == card && bus.is_none_or(|b| n.bus == b))
            .ok_or_else(|| BackendError::Invalid {
                what: "V4L2 camera".into(),
                why: match bus {
                    Some(b) => format!("no capture device named {card:?} on bus {b:?}"),
                    None => format!("no capture device named {card:?}"),
                },
            })
    };
    match spec {
        Some(s) if s.starts_with("name:") => by_identity(&s[5..], None),
        Some(s) if s.starts_with("bus:") => {
            capture_nodes()
                .find(|n| n.bus == s[4..])
                .ok_or_else(|| BackendError::Invalid {
                    what: "V4L2 camera".into(),
                    why: format!("no capture device on bus {:?}", &s[4..]),
                })
        }
        // A udev link names the camera, not the slot: follow it.
        Some(s) if !is_plain_node(s) || identity.is_none() => {
            Node::open(Path::new(s)).map_err(|e| BackendError::io(format!("cannot open {s}"), e))
        }
        None if identity.is_none() => capture_nodes().next().ok_or_else(|| BackendError::Invalid {
            what: "V4L2 camera".into(),
            why: "no capture device found (/dev/video*)".into(),
        }),
        _ => {
            let (card, bus) = identity.expect("checked above");
            by_identity(card, Some(bus))
        }
    }
}

fn is_plain_node(s: &str) -> bool {
    s.strip_prefix("/dev/video")
        .is_some_and(|n| n.parse::<u32>().is_ok())
}

/// What to write as `device` to get this node back after re-plugging: its udev
/// link by id (or by path), else its bus, else the node itself.
pub(super) fn stable_id(node: &Node) -> String {
    for dir in ["/dev/v4l/by-id", "/dev/v4l/by-path"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut links: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        links.sort();
        for link in links {
            if std::fs::canonicalize(&link).is_ok_and(|t| t == node.path) {
                return link.display().to_string();
            }
        }
    }
    if node.bus.is_empty() {
        node.path.display().to_string()
    } else {
        format!("bus:{}", node.bus)
    }
}

/// The pixel format of a V4L2 four-character code, if livestream takes it.
pub(super) fn to_format(code: u32) -> Option<PixelFormat> {
    match &code.to_le_bytes() {
        b"JPEG" => Some(PixelFormat::Jpeg),
        c => PixelFormat::from_fourcc(*c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings_are_never_trusted() {
        assert_eq!(c_text(b"vivid\0\0garbage"), "vivid");
        assert_eq!(c_text(&[0xFF, b'a', 0]), "\u{FFFD}a");
        assert_eq!(c_text(b"no terminator"), "no terminator");
        assert_eq!(fourcc_text(u32::from_le_bytes(*b"YUYV")), "YUYV");
        assert_eq!(
            fourcc_text(u32::from_le_bytes([b'Y', 0, 0xFF, b' '])),
            "Y???"
        );
    }

    #[test]
    fn formats_map_from_fourcc() {
        assert_eq!(
            to_format(u32::from_le_bytes(*b"MJPG")),
            Some(PixelFormat::Jpeg)
        );
        assert_eq!(
            to_format(u32::from_le_bytes(*b"JPEG")),
            Some(PixelFormat::Jpeg)
        );
        assert_eq!(
            to_format(u32::from_le_bytes(*b"YU12")),
            Some(PixelFormat::I420)
        );
        assert_eq!(to_format(u32::from_le_bytes(*b"BA81")), None);
    }

    #[test]
    fn plain_nodes_are_told_from_stable_names() {
        assert!(is_plain_node("/dev/video0"));
        assert!(is_plain_node("/dev/video12"));
        assert!(!is_plain_node("/dev/v4l/by-id/usb-Logitech-video-index0"));
        assert!(!is_plain_node("/dev/videox"));
    }
}
