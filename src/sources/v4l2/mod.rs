//! `v4l2`: Linux cameras (USB webcams, CSI cameras, capture cards) through the
//! kernel's Video4Linux2 API.
//!
//! Built on the `v4l` crate's kernel bindings and ioctl wrapper; the device
//! handling itself is here, because everything a device says is untrusted input:
//! names that are not UTF-8, control types newer than the bindings, steps of zero.
//! Nothing a device answers can panic this code.
//!
//! - opens by node (`/dev/video0`), by a udev link (`/dev/v4l/by-id/...`), or by
//!   identity (`name:CARD`, `bus:BUS-INFO`), and reopens by the same identity;
//! - negotiates format, size and frame rate (VIDIOC_S_FMT, VIDIOC_S_PARM) and
//!   takes the nearest offered mode when the asked one is not;
//! - streams through mmap buffers, polls with a timeout (the fd is non-blocking,
//!   so no ioctl can hang), and always hands over the newest frame: when several
//!   are waiting, the older ones go straight back to the driver;
//! - MJPEG frames pass through as JPEG frames, undecoded.

use std::collections::BTreeMap;
use std::ffi::{c_void, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use toml::Spanned;
use v4l::v4l2::vidioc;
use v4l::v4l_sys as sys;

use super::camera::{
    control_key, nearest_size, CameraInfo, CameraMode, ControlInfo, ControlKind, Reopen, Supervised,
};
use super::{FrameSource, SourceBackend};
use crate::backend::Availability;
use crate::config::table::{BackendConfig, CaptureConfig};
use crate::error::{BackendError, SourceError};
use crate::media::frame::{Frame, FrameInfo, Limits, PixelFormat, StreamInfo};

inventory::submit! {
    SourceBackend {
        name: "v4l2",
        summary: "Linux cameras (USB, CSI, capture cards) through V4L2",
        probe,
        open,
        devices: Some(list),
    }
}

/// Buffers asked of the driver when the config does not say.
const DEFAULT_BUFFERS: u32 = 4;
/// Formats in the order a camera's offer is taken when the asked one is missing:
/// cheap to convert first, JPEG (small, but lossy and costly to decode) after them.
const PREFERENCE: [PixelFormat; 10] = [
    PixelFormat::Yuyv,
    PixelFormat::Nv12,
    PixelFormat::Uyvy,
    PixelFormat::I420,
    PixelFormat::Jpeg,
    PixelFormat::Rgb24,
    PixelFormat::Bgr24,
    PixelFormat::Xrgb32,
    PixelFormat::Rgba32,
    PixelFormat::Grey,
];

fn probe() -> Availability {
    if video_nodes().iter().any(|p| Node::open(p).is_ok()) {
        Availability::Available
    } else {
        Availability::Unavailable("no V4L2 capture device (/dev/video*) found".into())
    }
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// "/dev/video0", "/dev/v4l/by-id/...", "name:CARD" or "bus:BUS-INFO";
    /// default: the first capture device.
    device: Option<Spanned<String>>,
    /// A pixel format the camera must give, or "auto" (default): [capture]
    /// format when the camera offers it, else its best offer.
    format: Option<Spanned<String>>,
    /// mmap buffers (2 to 32).
    buffers: Option<Spanned<u32>>,
    /// Seconds without a frame before the camera counts as lost (default 3).
    timeout: Option<Spanned<f64>>,
    /// Controls by name, set when the camera opens.
    controls: BTreeMap<Spanned<String>, Spanned<ControlValue>>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
enum ControlValue {
    Bool(bool),
    Int(i64),
    /// A menu entry by its label.
    Label(String),
}

/// The validated options, kept to reopen the camera exactly as it was opened.
#[derive(Debug, Clone)]
struct Request {
    device: Option<String>,
    format: Option<PixelFormat>,
    buffers: u32,
    timeout: Duration,
    controls: Vec<(String, ControlValue)>,
    capture: CaptureConfig,
}

fn request(capture: &CaptureConfig, table: &BackendConfig) -> Result<Request, BackendError> {
    let opts: Options = table.parse()?;
    let format = match &opts.format {
        None => None,
        Some(f) if f.get_ref() == "auto" => None,
        Some(f) => Some(PixelFormat::from_name(f.get_ref()).ok_or_else(|| {
            let names: Vec<_> = PixelFormat::ALL.iter().map(|f| f.name()).collect();
            table.error_at(
                f.span(),
                format!(
                    "unknown pixel format; expected one of: auto, {}",
                    names.join(", ")
                ),
            )
        })?),
    };
    let buffers = match &opts.buffers {
        None => DEFAULT_BUFFERS,
        Some(b) if (2..=32).contains(b.get_ref()) => *b.get_ref(),
        Some(b) => {
            return Err(table
                .error_at(b.span(), "buffers must be 2 to 32".into())
                .into())
        }
    };
    let timeout = super::camera::timeout_option(table, &opts.timeout)?;
    Ok(Request {
        device: opts.device.map(Spanned::into_inner),
        format,
        buffers,
        timeout,
        controls: opts
            .controls
            .into_iter()
            .map(|(k, v)| (k.into_inner(), v.into_inner()))
            .collect(),
        capture: *capture,
    })
}

fn open(
    capture: &CaptureConfig,
    table: &BackendConfig,
) -> Result<Box<dyn FrameSource>, BackendError> {
    let req = request(capture, table)?;
    let node = find(req.device.as_deref(), None)?;
    let identity = (node.card.clone(), node.bus.clone());
    let name = format!("{} ({})", node.path.display(), node.card);
    let camera = Camera::start(node, &req)?;
    let reopen: Reopen = Box::new(move || {
        let node = find(req.device.as_deref(), Some(&identity))?;
        Ok(Box::new(Camera::start(node, &req)?) as Box<dyn FrameSource>)
    });
    Ok(Box::new(Supervised::new(name, Box::new(camera), reopen)?))
}

// ---- finding devices -------------------------------------------------------------

/// `/dev/videoN` nodes, in the order of N.
fn video_nodes() -> Vec<PathBuf> {
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

/// Resolves a `device` option to an open capture node. `identity` (card, bus),
/// when given, is the camera first opened: a plain `/dev/videoN` may belong to
/// another device after re-plugging, so it is found again by identity.
fn find(spec: Option<&str>, identity: Option<&(String, String)>) -> Result<Node, BackendError> {
    let by_identity = |card: &str, bus: Option<&str>| -> Result<Node, BackendError> {
        video_nodes()
            .iter()
            .filter_map(|p| Node::open(p).ok())
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
        Some(s) if s.starts_with("bus:") => video_nodes()
            .iter()
            .filter_map(|p| Node::open(p).ok())
            .find(|n| n.bus == s[4..])
            .ok_or_else(|| BackendError::Invalid {
                what: "V4L2 camera".into(),
                why: format!("no capture device on bus {:?}", &s[4..]),
            }),
        // A udev link names the camera, not the slot: follow it.
        Some(s) if !is_plain_node(s) || identity.is_none() => {
            Node::open(Path::new(s)).map_err(|e| BackendError::io(format!("cannot open {s}"), e))
        }
        None if identity.is_none() => video_nodes()
            .iter()
            .find_map(|p| Node::open(p).ok())
            .ok_or_else(|| BackendError::Invalid {
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
fn stable_id(node: &Node) -> String {
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

// ---- a device node and its ioctls ---------------------------------------------------

/// An open V4L2 capture node.
struct Node {
    fd: OwnedFd,
    path: PathBuf,
    card: String,
    bus: String,
    driver: String,
}

/// A fixed-size, NUL-padded string from the kernel, never trusted to be UTF-8.
fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

fn fourcc_text(code: u32) -> String {
    code.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

fn to_format(code: u32) -> Option<PixelFormat> {
    match &code.to_le_bytes() {
        b"JPEG" => Some(PixelFormat::Jpeg),
        c => PixelFormat::from_fourcc(*c),
    }
}

fn zeroed<T>() -> T {
    // SAFETY: only used for the kernel's plain C structs (integers, arrays, unions
    // of those), for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Offered sizes of one format.
#[derive(Debug, Clone, PartialEq)]
enum Sizes {
    Discrete(Vec<(u32, u32)>),
    /// Any size from min to max in steps (continuous: steps of 1).
    Range {
        min: (u32, u32),
        max: (u32, u32),
        step: (u32, u32),
    },
}

impl Sizes {
    fn nearest(&self, width: u32, height: u32) -> Option<(u32, u32)> {
        match self {
            Sizes::Discrete(list) => nearest_size(list, width, height),
            Sizes::Range { min, max, step } => {
                let fit = |v: u32, lo: u32, hi: u32, st: u32| {
                    let v = v.clamp(lo, hi);
                    let st = st.max(1);
                    lo + (v - lo) / st * st
                };
                Some((
                    fit(width, min.0, max.0, step.0),
                    fit(height, min.1, max.1, step.1),
                ))
            }
        }
    }

    /// Sizes to list: every discrete one, or the ends of a range and the common
    /// sizes inside it.
    fn listed(&self) -> Vec<(u32, u32)> {
        match self {
            Sizes::Discrete(list) => list.clone(),
            Sizes::Range { min, max, .. } => {
                let mut out = vec![*max];
                for common in [(1920, 1080), (1280, 720), (640, 480)] {
                    if (min.0..=max.0).contains(&common.0)
                        && (min.1..=max.1).contains(&common.1)
                        && !out.contains(&common)
                    {
                        out.push(common);
                    }
                }
                if !out.contains(min) {
                    out.push(*min);
                }
                out
            }
        }
    }
}

impl Node {
    /// Opens `path` non-blocking and checks that it captures video by streaming.
    fn open(path: &Path) -> io::Result<Node> {
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
        xioctl(fd.as_raw_fd(), vidioc::VIDIOC_QUERYCAP, &mut cap)?;
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

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Four-character codes of every capture format offered.
    fn formats(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for index in 0..256 {
            let mut d: sys::v4l2_fmtdesc = zeroed();
            d.index = index;
            d.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
            if xioctl(self.raw(), vidioc::VIDIOC_ENUM_FMT, &mut d).is_err() {
                break;
            }
            if !out.contains(&d.pixelformat) {
                out.push(d.pixelformat);
            }
        }
        out
    }

    fn sizes(&self, code: u32) -> Sizes {
        let mut list = Vec::new();
        for index in 0..256 {
            let mut e: sys::v4l2_frmsizeenum = zeroed();
            e.index = index;
            e.pixel_format = code;
            if xioctl(self.raw(), vidioc::VIDIOC_ENUM_FRAMESIZES, &mut e).is_err() {
                break;
            }
            if e.type_ == sys::v4l2_frmsizetypes_V4L2_FRMSIZE_TYPE_DISCRETE {
                // SAFETY: the kernel filled the union member its type names.
                let d = unsafe { e.__bindgen_anon_1.discrete };
                if d.width > 0 && d.height > 0 && !list.contains(&(d.width, d.height)) {
                    list.push((d.width, d.height));
                }
            } else {
                // SAFETY: as above (continuous uses the stepwise member with step 1).
                let s = unsafe { e.__bindgen_anon_1.stepwise };
                if s.min_width > 0
                    && s.min_height > 0
                    && s.max_width >= s.min_width
                    && s.max_height >= s.min_height
                {
                    return Sizes::Range {
                        min: (s.min_width, s.min_height),
                        max: (s.max_width, s.max_height),
                        step: (s.step_width.max(1), s.step_height.max(1)),
                    };
                }
                break;
            }
        }
        list.sort_by_key(|&(w, h)| std::cmp::Reverse(w as u64 * h as u64));
        Sizes::Discrete(list)
    }

    /// Frame rates offered at one size, highest first (a range gives its ends).
    fn rates(&self, code: u32, width: u32, height: u32) -> Vec<f64> {
        let fps = |f: sys::v4l2_fract| {
            (f.numerator > 0 && f.denominator > 0)
                .then(|| f.denominator as f64 / f.numerator as f64)
        };
        let mut out = Vec::new();
        for index in 0..256 {
            let mut e: sys::v4l2_frmivalenum = zeroed();
            e.index = index;
            e.pixel_format = code;
            e.width = width;
            e.height = height;
            if xioctl(self.raw(), vidioc::VIDIOC_ENUM_FRAMEINTERVALS, &mut e).is_err() {
                break;
            }
            if e.type_ == sys::v4l2_frmivaltypes_V4L2_FRMIVAL_TYPE_DISCRETE {
                // SAFETY: the kernel filled the member its type names.
                out.extend(fps(unsafe { e.__bindgen_anon_1.discrete }));
            } else {
                // SAFETY: as above.
                let s = unsafe { e.__bindgen_anon_1.stepwise };
                out.extend(fps(s.min));
                out.extend(fps(s.max));
                break;
            }
        }
        out.sort_by(|a, b| b.total_cmp(a));
        out.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
        out
    }

    fn set_format(&self, code: u32, width: u32, height: u32) -> io::Result<sys::v4l2_pix_format> {
        let mut f: sys::v4l2_format = zeroed();
        f.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        f.fmt.pix = sys::v4l2_pix_format {
            pixelformat: code,
            width,
            height,
            field: sys::v4l2_field_V4L2_FIELD_NONE,
            ..zeroed()
        };
        xioctl(self.raw(), vidioc::VIDIOC_S_FMT, &mut f)?;
        // SAFETY: VIDEO_CAPTURE formats live in the `pix` member.
        Ok(unsafe { f.fmt.pix })
    }

    /// Asks for `fps` (0: the fastest) and returns the rate the driver chose, or
    /// `None` when the device has no frame rate setting.
    fn set_rate(&self, fps: f64) -> Option<f64> {
        let mut p: sys::v4l2_streamparm = zeroed();
        p.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        xioctl(self.raw(), vidioc::VIDIOC_G_PARM, &mut p).ok()?;
        // SAFETY: the capture member, the one VIDEO_CAPTURE uses.
        let cap = unsafe { &mut p.parm.capture };
        if cap.capability & sys::V4L2_CAP_TIMEPERFRAME == 0 {
            return None;
        }
        cap.timeperframe = if fps > 0.0 {
            sys::v4l2_fract {
                numerator: 1000,
                denominator: (fps * 1000.0).round().clamp(1.0, u32::MAX as f64) as u32,
            }
        } else {
            // The shortest interval there is: the driver clamps it to its fastest.
            sys::v4l2_fract {
                numerator: 1,
                denominator: 1000,
            }
        };
        xioctl(self.raw(), vidioc::VIDIOC_S_PARM, &mut p).ok()?;
        // SAFETY: as above.
        let t = unsafe { p.parm.capture.timeperframe };
        (t.numerator > 0 && t.denominator > 0).then(|| t.denominator as f64 / t.numerator as f64)
    }

    /// Every control with its id, as the device describes them.
    fn controls(&self) -> Vec<(u32, ControlInfo)> {
        let mut out = Vec::new();
        let mut id = 0u32;
        for _ in 0..1024 {
            let mut q: sys::v4l2_query_ext_ctrl = zeroed();
            q.id = id | sys::V4L2_CTRL_FLAG_NEXT_CTRL;
            if xioctl(self.raw(), vidioc::VIDIOC_QUERY_EXT_CTRL, &mut q).is_err() || q.id == id {
                break;
            }
            id = q.id;
            let kind = match q.type_ {
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER => ControlKind::Integer,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_BOOLEAN => ControlKind::Boolean,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU
                | sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_INTEGER_MENU => ControlKind::Menu,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_BUTTON => ControlKind::Button,
                sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_CTRL_CLASS => continue,
                _ => ControlKind::Other,
            };
            if q.flags & sys::V4L2_CTRL_FLAG_DISABLED != 0 {
                continue;
            }
            let name: Vec<u8> = q.name.iter().map(|&c| c as u8).collect();
            let mut menu = Vec::new();
            if kind == ControlKind::Menu && q.minimum >= 0 && q.maximum >= q.minimum {
                for index in q.minimum..=q.maximum.min(q.minimum + 64) {
                    let mut m: sys::v4l2_querymenu = zeroed();
                    m.id = q.id;
                    m.index = index as u32;
                    if xioctl(self.raw(), vidioc::VIDIOC_QUERYMENU, &mut m).is_err() {
                        continue; // drivers may leave holes in a menu
                    }
                    // SAFETY: a menu has names, an integer menu has values.
                    let label = if q.type_ == sys::v4l2_ctrl_type_V4L2_CTRL_TYPE_MENU {
                        c_text(unsafe { &m.__bindgen_anon_1.name })
                    } else {
                        unsafe { m.__bindgen_anon_1.value }.to_string()
                    };
                    menu.push((index, label));
                }
            }
            let simple = matches!(
                kind,
                ControlKind::Integer | ControlKind::Boolean | ControlKind::Menu
            );
            let current = (simple && q.flags & sys::V4L2_CTRL_FLAG_WRITE_ONLY == 0)
                .then(|| self.control(q.id).ok())
                .flatten();
            out.push((
                q.id,
                ControlInfo {
                    key: control_key(&c_text(&name)),
                    kind,
                    min: q.minimum,
                    max: q.maximum,
                    step: q.step,
                    default: q.default_value,
                    current,
                    menu,
                    read_only: q.flags & sys::V4L2_CTRL_FLAG_READ_ONLY != 0,
                    inactive: q.flags & sys::V4L2_CTRL_FLAG_INACTIVE != 0,
                },
            ));
        }
        out
    }

    fn control(&self, id: u32) -> io::Result<i64> {
        let mut c = sys::v4l2_control { id, value: 0 };
        xioctl(self.raw(), vidioc::VIDIOC_G_CTRL, &mut c)?;
        Ok(c.value as i64)
    }

    fn set_control(&self, id: u32, value: i64) -> io::Result<()> {
        let value = i32::try_from(value)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "value out of range"))?;
        let mut c = sys::v4l2_control { id, value };
        xioctl(self.raw(), vidioc::VIDIOC_S_CTRL, &mut c)
    }

    /// Sets the configured controls, each checked against what the device says
    /// about it first.
    fn apply_controls(&self, wanted: &[(String, ControlValue)]) -> Result<(), BackendError> {
        if wanted.is_empty() {
            return Ok(());
        }
        let controls = self.controls();
        let invalid = |why: String| BackendError::Invalid {
            what: format!("[sources.v4l2.controls] for {}", self.path.display()),
            why,
        };
        for (key, value) in wanted {
            let Some((id, c)) = controls.iter().find(|(_, c)| &c.key == key) else {
                let mut names: Vec<_> = controls.iter().map(|(_, c)| c.key.as_str()).collect();
                names.sort();
                return Err(invalid(format!(
                    "{} has no control `{key}`; it has: {}",
                    self.card,
                    names.join(", ")
                )));
            };
            if c.read_only {
                return Err(invalid(format!("control `{key}` is read-only")));
            }
            let v = match (value, c.kind) {
                (ControlValue::Bool(b), ControlKind::Boolean) => *b as i64,
                (ControlValue::Int(n), ControlKind::Integer | ControlKind::Boolean) => *n,
                (ControlValue::Int(n), ControlKind::Menu) if c.menu.iter().any(|(i, _)| i == n) => {
                    *n
                }
                (ControlValue::Label(l), ControlKind::Menu) => {
                    match c.menu.iter().find(|(_, name)| name.eq_ignore_ascii_case(l)) {
                        Some((i, _)) => *i,
                        None => {
                            let labels: Vec<_> =
                                c.menu.iter().map(|(_, n)| format!("{n:?}")).collect();
                            return Err(invalid(format!(
                                "control `{key}` has no entry {l:?}; expected one of: {}",
                                labels.join(", ")
                            )));
                        }
                    }
                }
                (ControlValue::Int(_), ControlKind::Menu) => {
                    let entries: Vec<_> =
                        c.menu.iter().map(|(i, n)| format!("{i} ({n})")).collect();
                    return Err(invalid(format!(
                        "control `{key}` is a menu; expected one of: {}",
                        entries.join(", ")
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "control `{key}` is a {} control: {value:?} does not fit it",
                        c.kind
                    )))
                }
            };
            if v < c.min || v > c.max {
                return Err(invalid(format!(
                    "control `{key}` = {v} is outside its range {} to {}",
                    c.min, c.max
                )));
            }
            if c.kind == ControlKind::Integer && c.step > 1 && (v - c.min) as u64 % c.step != 0 {
                return Err(invalid(format!(
                    "control `{key}` = {v} is not on its steps of {} from {}",
                    c.step, c.min
                )));
            }
            if c.inactive {
                log::warn!("control `{key}` is inactive now (another control overrides it); setting it anyway");
            }
            self.set_control(*id, v)
                .map_err(|e| BackendError::io(format!("setting control `{key}` = {v}"), e))?;
            log::info!("{}: control {key} = {v}", self.path.display());
        }
        Ok(())
    }

    /// Everything `livestream devices` shows about this camera.
    fn describe(&self, with_controls: bool) -> CameraInfo {
        let mut modes = Vec::new();
        let mut other = Vec::new();
        for code in self.formats() {
            let Some(format) = to_format(code) else {
                other.push(fourcc_text(code));
                continue;
            };
            if modes.iter().any(|m: &CameraMode| m.format == format) {
                continue;
            }
            for (width, height) in self.sizes(code).listed() {
                modes.push(CameraMode {
                    format,
                    width,
                    height,
                    fps: self.rates(code, width, height),
                });
            }
        }
        let rank = |f: PixelFormat| PREFERENCE.iter().position(|&p| p == f).unwrap_or(99);
        modes.sort_by_key(|m| rank(m.format));
        CameraInfo {
            backend: "v4l2",
            node: self.path.display().to_string(),
            option: "device",
            stable_id: stable_id(self),
            name: self.card.clone(),
            detail: format!("driver {}, bus {}", self.driver, self.bus),
            modes,
            other_formats: other,
            controls: if with_controls {
                self.controls().into_iter().map(|(_, c)| c).collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// An ioctl, retried when a signal interrupts it. The fd is non-blocking, so none
/// of them waits for a frame.
fn xioctl<T>(fd: RawFd, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    loop {
        // SAFETY: `arg` is the kernel struct that `request` is defined with (each
        // call site pairs them as the V4L2 API does), valid and writable.
        match unsafe { v4l::v4l2::ioctl(fd, request, arg as *mut T as *mut c_void) } {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn list(with_controls: bool) -> Vec<CameraInfo> {
    video_nodes()
        .iter()
        .filter_map(|p| Node::open(p).ok())
        .map(|n| n.describe(with_controls))
        .collect()
}

// ---- choosing a mode ---------------------------------------------------------------

/// The mode to ask the driver for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Choice {
    code: u32,
    format: PixelFormat,
    width: u32,
    height: u32,
}

/// Picks format and size. With a required format: that one, at its nearest size.
/// Otherwise the format and size nearest to the request, preferring a mode that
/// reaches the asked frame rate, then the asked format, then [`PREFERENCE`].
fn choose(node: &Node, req: &Request) -> Result<Choice, BackendError> {
    let offered: Vec<(u32, PixelFormat)> = node
        .formats()
        .into_iter()
        .filter_map(|c| Some((c, to_format(c)?)))
        .collect();
    let offered_names = || {
        let mut all: Vec<String> = node.formats().into_iter().map(fourcc_text).collect();
        all.dedup();
        all.join(", ")
    };
    if offered.is_empty() {
        return Err(BackendError::Unsupported {
            backend: "v4l2",
            what: format!(
                "any format {} offers ({}); livestream takes: {}",
                node.card,
                offered_names(),
                PREFERENCE
                    .map(|f| f.fourcc().map(char::from).iter().collect::<String>())
                    .join(", ")
            ),
        });
    }
    let cap = &req.capture;
    let candidates: Vec<(u32, PixelFormat)> = match req.format {
        Some(f) => {
            let found: Vec<_> = offered.iter().copied().filter(|&(_, o)| o == f).collect();
            if found.is_empty() {
                return Err(BackendError::Unsupported {
                    backend: "v4l2",
                    what: format!("{f} on {} (it offers {})", node.card, offered_names()),
                });
            }
            found
        }
        None => offered.clone(),
    };
    let want_area = (cap.width as f64 * cap.height as f64).max(1.0);
    let mut best: Option<((u64, u8, usize), Choice)> = None;
    for (code, format) in candidates {
        let Some((width, height)) = node.sizes(code).nearest(cap.width, cap.height) else {
            continue;
        };
        let size_cost = ((width as f64 * height as f64 / want_area).ln().abs() * 1000.0) as u64;
        let fastest = node.rates(code, width, height).first().copied();
        let too_slow = u8::from(cap.fps > 0.0 && fastest.is_some_and(|f| f + 0.01 < cap.fps));
        let rank = if format == cap.format {
            0
        } else {
            1 + PREFERENCE.iter().position(|&p| p == format).unwrap_or(99)
        };
        let key = (size_cost, too_slow, rank);
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((
                key,
                Choice {
                    code,
                    format,
                    width,
                    height,
                },
            ));
        }
    }
    best.map(|(_, c)| c)
        .ok_or_else(|| BackendError::Unsupported {
            backend: "v4l2",
            what: format!("any frame size of {} (it lists none)", node.card),
        })
}

// ---- streaming -----------------------------------------------------------------------

/// One mmap'd driver buffer.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

/// A streaming camera: the node, its mapped buffers and the negotiated mode.
struct Camera {
    node: Node,
    maps: Vec<Mapping>,
    streaming: bool,
    info: StreamInfo,
    timeout: Duration,
    last_frame: Instant,
    /// Frames the driver flagged as broken, or too short: skipped.
    broken: u64,
    /// Older frames given back unread because a newer one was waiting.
    skipped: u64,
}

// SAFETY: the mappings are owned by this value alone (nothing else holds their
// pointers) and are only touched through `&mut self`.
unsafe impl Send for Camera {}

impl Camera {
    /// Negotiates the mode, sets controls, maps buffers and starts streaming.
    fn start(node: Node, req: &Request) -> Result<Camera, BackendError> {
        let choice = choose(&node, req)?;
        let cap = &req.capture;
        let io = |what: &str, e| BackendError::io(format!("{}: {what}", node.path.display()), e);
        let pix = node
            .set_format(choice.code, choice.width, choice.height)
            .map_err(|e| io("setting the format (VIDIOC_S_FMT)", e))?;
        let format = to_format(pix.pixelformat).ok_or_else(|| BackendError::Unsupported {
            backend: "v4l2",
            what: format!(
                "{} (the driver answered it for {})",
                fourcc_text(pix.pixelformat),
                fourcc_text(choice.code)
            ),
        })?;
        let fps = node.set_rate(cap.fps).unwrap_or(cap.fps);
        let info = FrameInfo {
            format,
            width: pix.width,
            height: pix.height,
            stride: if format == PixelFormat::Jpeg {
                0
            } else {
                pix.bytesperline
            },
        };
        let len = info.validate(&Limits::default())?;
        if format != PixelFormat::Jpeg && (pix.sizeimage as usize) < len {
            return Err(BackendError::Invalid {
                what: node.path.display().to_string(),
                why: format!(
                    "the driver's image size {} is less than {info} needs ({len})",
                    pix.sizeimage
                ),
            });
        }
        if (info.width, info.height) != (cap.width, cap.height) || format != cap.format {
            log::info!(
                "{} offers no {}x{} {}: using the nearest it has, {info}",
                node.card,
                cap.width,
                cap.height,
                cap.format
            );
        }
        if cap.fps > 0.0 && (fps - cap.fps).abs() > 0.01 {
            log::info!("{} runs {info} at {fps:.2} fps, not {}", node.card, cap.fps);
        }
        node.apply_controls(&req.controls)?;
        let mut camera = Camera {
            node,
            maps: Vec::new(),
            streaming: false,
            info: StreamInfo { frame: info, fps },
            timeout: req.timeout,
            last_frame: Instant::now(),
            broken: 0,
            skipped: 0,
        };
        camera.map_and_stream(req.buffers)?;
        log::info!(
            "v4l2: {} \"{}\" ({}): {info} at {fps:.2} fps, {} buffers",
            camera.node.path.display(),
            camera.node.card,
            camera.node.bus,
            camera.maps.len()
        );
        Ok(camera)
    }

    fn buffer(&self, index: u32) -> sys::v4l2_buffer {
        let mut b: sys::v4l2_buffer = zeroed();
        b.index = index;
        b.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        b
    }

    fn map_and_stream(&mut self, count: u32) -> Result<(), BackendError> {
        let path = self.node.path.display().to_string();
        let io = |what: &str, e| BackendError::io(format!("{path}: {what}"), e);
        let mut rb: sys::v4l2_requestbuffers = zeroed();
        rb.count = count;
        rb.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        rb.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        xioctl(self.node.raw(), vidioc::VIDIOC_REQBUFS, &mut rb)
            .map_err(|e| io("asking for mmap buffers (VIDIOC_REQBUFS)", e))?;
        if rb.count < 2 {
            return Err(BackendError::Invalid {
                what: path,
                why: format!("the driver gave {} buffers; streaming needs 2", rb.count),
            });
        }
        for index in 0..rb.count.min(32) {
            let mut b = self.buffer(index);
            xioctl(self.node.raw(), vidioc::VIDIOC_QUERYBUF, &mut b)
                .map_err(|e| io("VIDIOC_QUERYBUF", e))?;
            // SAFETY: mapping the buffer the driver just described, at its offset
            // and length; the mapping is released in Drop.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    b.length as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    self.node.raw(),
                    b.m.offset as libc::off_t,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io("mapping a buffer", io::Error::last_os_error()));
            }
            self.maps.push(Mapping {
                ptr: ptr as *mut u8,
                len: b.length as usize,
            });
            xioctl(self.node.raw(), vidioc::VIDIOC_QBUF, &mut b)
                .map_err(|e| io("VIDIOC_QBUF", e))?;
        }
        let mut kind = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        xioctl(self.node.raw(), vidioc::VIDIOC_STREAMON, &mut kind)
            .map_err(|e| io("starting the stream (VIDIOC_STREAMON)", e))?;
        self.streaming = true;
        self.last_frame = Instant::now();
        Ok(())
    }

    fn lost(&self, what: &str, e: io::Error) -> SourceError {
        SourceError::Io {
            what: format!("{} ({}): {what}", self.node.path.display(), self.node.card),
            source: e,
        }
    }

    /// Waits up to `wait` for the fd to be readable (or in error).
    fn poll(&self, wait: Duration) -> io::Result<bool> {
        let mut p = libc::pollfd {
            fd: self.node.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, wait.as_millis().min(i32::MAX as u128) as i32) };
            if n >= 0 {
                return Ok(n > 0);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Takes a filled buffer, or `None` when none is ready.
    fn dequeue(&self) -> io::Result<Option<sys::v4l2_buffer>> {
        let mut b = self.buffer(0);
        match xioctl(self.node.raw(), vidioc::VIDIOC_DQBUF, &mut b) {
            Ok(()) if (b.index as usize) < self.maps.len() => Ok(Some(b)),
            Ok(()) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the driver returned buffer {} of {}",
                    b.index,
                    self.maps.len()
                ),
            )),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn requeue(&self, mut b: sys::v4l2_buffer) -> io::Result<()> {
        xioctl(self.node.raw(), vidioc::VIDIOC_QBUF, &mut b)
    }

    /// The buffer's capture time on our clock when the driver stamps with
    /// CLOCK_MONOTONIC (our clock too) and the stamp is plausible; else now.
    fn capture_time(b: &sys::v4l2_buffer) -> u64 {
        let now = crate::media::clock::now_us();
        if b.flags & sys::V4L2_BUF_FLAG_TIMESTAMP_MASK != sys::V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC {
            return now;
        }
        let (s, us) = (b.timestamp.tv_sec, b.timestamp.tv_usec);
        if s < 0 || !(0..1_000_000).contains(&us) {
            return now;
        }
        let t = s as u64 * 1_000_000 + us as u64;
        if t <= now && now - t < 1_000_000 {
            t
        } else {
            now
        }
    }
}

/// How many bytes of a dequeued buffer make the frame, or `None` for a frame to
/// skip: flagged by the driver, shorter than its geometry, or (MJPEG) not a whole
/// JPEG (no start marker, or cut before its end marker, as USB cameras do when
/// they lose data; padding after the end marker is left out).
fn usable_len(info: FrameInfo, mapped: &[u8], bytesused: usize, flags: u32) -> Option<usize> {
    if flags & sys::V4L2_BUF_FLAG_ERROR != 0 {
        return None;
    }
    if info.format == PixelFormat::Jpeg {
        let data = &mapped[..bytesused.min(mapped.len())];
        let end = data.len() - data.iter().rev().take_while(|&&b| b == 0).count();
        let whole = end >= 4 && data[..2] == [0xFF, 0xD8] && data[end - 2..end] == [0xFF, 0xD9];
        return whole.then_some(end);
    }
    // Some drivers leave `bytesused` unset for raw formats.
    let used = if bytesused == 0 {
        mapped.len()
    } else {
        bytesused.min(mapped.len())
    };
    (used >= info.byte_len()).then_some(info.byte_len())
}

impl FrameSource for Camera {
    fn stream_info(&self) -> StreamInfo {
        self.info
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), SourceError> {
        let info = self.info.frame;
        loop {
            let since = self.last_frame.elapsed();
            if since >= self.timeout {
                return Err(self.lost(
                    &format!("no frame for {:.1} s", since.as_secs_f64()),
                    io::ErrorKind::TimedOut.into(),
                ));
            }
            let wait = (self.timeout - since).min(Duration::from_secs(1));
            if !self.poll(wait).map_err(|e| self.lost("poll", e))? {
                if self.last_frame.elapsed() >= self.timeout {
                    continue; // reported above
                }
                return Err(SourceError::Timeout(wait));
            }
            let Some(mut b) = self.dequeue().map_err(|e| self.lost("VIDIOC_DQBUF", e))? else {
                continue;
            };
            // Newest wins: older frames go back to the driver unread.
            while let Some(newer) = self.dequeue().map_err(|e| self.lost("VIDIOC_DQBUF", e))? {
                self.requeue(b).map_err(|e| self.lost("VIDIOC_QBUF", e))?;
                self.skipped += 1;
                b = newer;
            }
            let map = &self.maps[b.index as usize];
            // SAFETY: the driver has handed this buffer to us (dequeued) until it
            // is queued again below; the mapping is `len` bytes long.
            let bytes = unsafe { std::slice::from_raw_parts(map.ptr, map.len) };
            let usable = usable_len(info, bytes, b.bytesused as usize, b.flags);
            if let Some(n) = usable {
                frame.info = info;
                frame.data.clear();
                frame.data.extend_from_slice(&bytes[..n]);
                frame.capture_us = Self::capture_time(&b);
            } else {
                self.broken += 1;
                if self.broken.is_power_of_two() {
                    log::warn!(
                        "{}: {} broken frames skipped (flagged by the driver, short, or not a whole JPEG)",
                        self.node.path.display(),
                        self.broken
                    );
                }
            }
            self.requeue(b).map_err(|e| self.lost("VIDIOC_QBUF", e))?;
            if usable.is_some() {
                self.last_frame = Instant::now();
                return Ok(());
            }
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        // Errors are ignored: a camera that went away answers ENODEV to all of it,
        // and closing the fd releases everything anyway.
        if self.streaming {
            let mut kind = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
            let _ = xioctl(self.node.raw(), vidioc::VIDIOC_STREAMOFF, &mut kind);
        }
        for m in self.maps.drain(..) {
            // SAFETY: each mapping was made by mmap with this length, once.
            unsafe { libc::munmap(m.ptr as *mut c_void, m.len) };
        }
        let mut rb: sys::v4l2_requestbuffers = zeroed();
        rb.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        rb.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        let _ = xioctl(self.node.raw(), vidioc::VIDIOC_REQBUFS, &mut rb);
        if self.skipped > 0 || self.broken > 0 {
            log::info!(
                "{}: {} older frames skipped for newer ones, {} broken",
                self.node.path.display(),
                self.skipped,
                self.broken
            );
        }
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
    fn only_whole_frames_are_taken() {
        let raw = FrameInfo::packed(PixelFormat::Yuyv, 4, 2).unwrap();
        let buf = [7u8; 32];
        assert_eq!(usable_len(raw, &buf, 16, 0), Some(16));
        assert_eq!(usable_len(raw, &buf, 0, 0), Some(16), "bytesused unset");
        assert_eq!(usable_len(raw, &buf, 15, 0), None, "short");
        assert_eq!(
            usable_len(raw, &buf[..10], 16, 0),
            None,
            "mapping too small"
        );
        assert_eq!(usable_len(raw, &buf, 16, sys::V4L2_BUF_FLAG_ERROR), None);
        let jpeg = FrameInfo {
            format: PixelFormat::Jpeg,
            width: 4,
            height: 2,
            stride: 0,
        };
        let mut j = vec![0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9, 0, 0, 0];
        assert_eq!(
            usable_len(jpeg, &j, 10, 0),
            Some(7),
            "padding after EOI left out"
        );
        assert_eq!(usable_len(jpeg, &j, 5, 0), None, "cut before EOI");
        assert_eq!(usable_len(jpeg, &j, 0, 0), None, "empty");
        j[0] = 0;
        assert_eq!(usable_len(jpeg, &j, 10, 0), None, "no SOI");
        assert_eq!(usable_len(jpeg, &[0xFF, 0xD9], 2, 0), None);
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
    fn sizes_in_a_range_snap_to_the_steps() {
        let r = Sizes::Range {
            min: (16, 16),
            max: (1920, 1080),
            step: (16, 8),
        };
        assert_eq!(r.nearest(1000, 700), Some((992, 696)));
        assert_eq!(r.nearest(4000, 4000), Some((1920, 1080)));
        assert_eq!(r.nearest(1, 1), Some((16, 16)));
        assert!(r.listed().contains(&(1280, 720)));
        // A step of zero from a confused driver does not divide by zero.
        let z = Sizes::Range {
            min: (2, 2),
            max: (64, 64),
            step: (0, 0),
        };
        assert_eq!(z.nearest(33, 31), Some((33, 31)));
    }

    fn options(text: &str) -> Result<Request, String> {
        let cfg = crate::config::Config::parse(
            crate::config::table::ConfigText {
                origin: "cam.toml".into(),
                text: text.into(),
            },
            &Default::default(),
        )
        .map_err(|e| e.to_string())?;
        request(
            &cfg.capture,
            &cfg.backend(crate::backend::Kind::Source, "v4l2"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn options_are_checked_and_errors_point_at_the_value() {
        let ok = options(
            "[sources.v4l2]\ndevice = \"name:vivid\"\nformat = \"nv12\"\nbuffers = 6\n\
             [sources.v4l2.controls]\nbrightness = 140\nexposure_auto = false\n\
             power_line_frequency = \"50 Hz\"\n",
        )
        .unwrap();
        assert_eq!(ok.device.as_deref(), Some("name:vivid"));
        assert_eq!(ok.format, Some(PixelFormat::Nv12));
        assert_eq!(ok.buffers, 6);
        assert_eq!(
            ok.controls,
            vec![
                ("brightness".into(), ControlValue::Int(140)),
                ("exposure_auto".into(), ControlValue::Bool(false)),
                (
                    "power_line_frequency".into(),
                    ControlValue::Label("50 Hz".into())
                ),
            ]
        );
        let auto = options("[sources.v4l2]\nformat = \"auto\"\n").unwrap();
        assert_eq!((auto.format, auto.buffers), (None, DEFAULT_BUFFERS));

        let bad = options("[sources.v4l2]\nbuffers = 99\n").unwrap_err();
        assert!(
            bad.contains("cam.toml:2:11") && bad.contains("buffers must be 2 to 32"),
            "{bad}"
        );
        let bad = options("[sources.v4l2]\nformat = \"mjpeg\"\n").unwrap_err();
        assert!(
            bad.contains("cam.toml:2:10") && bad.contains("expected one of: auto, rgb24"),
            "{bad}"
        );
        let bad = options("[sources.v4l2]\ntimeout = 0.0\n").unwrap_err();
        assert!(bad.contains("cam.toml:2:11"), "{bad}");
        let bad = options("[sources.v4l2]\ndevic = \"/dev/video0\"\n").unwrap_err();
        assert!(
            bad.contains("cam.toml:2:1") && bad.contains("unknown field `devic`"),
            "{bad}"
        );
        let bad = options("[sources.v4l2.controls]\nbrightness = [1]\n").unwrap_err();
        assert!(bad.contains("cam.toml:2:14"), "{bad}");
    }

    #[test]
    fn plain_nodes_are_told_from_stable_names() {
        assert!(is_plain_node("/dev/video0"));
        assert!(is_plain_node("/dev/video12"));
        assert!(!is_plain_node("/dev/v4l/by-id/usb-Logitech-video-index0"));
        assert!(!is_plain_node("/dev/videox"));
    }
}
