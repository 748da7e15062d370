//! An open memory-to-memory node: its capabilities, formats, controls, and
//! waiting on it; the layouts of the formats it takes.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use v4l::v4l_sys as sys;

use super::*;
use crate::v4l2::c_text;
use crate::v4l2::ioctl::{
    ioctl, zeroed, EnumFmt, GetCtrl, GetFormat, Ioctl, QueryCap, QueryExtCtrl, SetCtrl, SetFormat,
};

/// An open memory-to-memory node.
pub(super) struct Device {
    pub(super) fd: OwnedFd,
    pub(super) path: PathBuf,
    pub(super) card: String,
    pub(super) driver: String,
    pub(super) mplane: bool,
}

impl Device {
    /// Opens `path` non-blocking and checks it is a streaming M2M node.
    pub(super) fn open(path: &Path) -> Result<Device, M2mError> {
        let io_err = |what, source| M2mError::Io {
            path: path.to_path_buf(),
            what,
            source,
        };
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            io_err(
                "opening",
                io::Error::new(io::ErrorKind::InvalidInput, "NUL in the path"),
            )
        })?;
        // SAFETY: a valid C string; the flags ask for nothing unusual.
        let raw = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io_err("opening", io::Error::last_os_error()));
        }
        // SAFETY: `raw` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut cap: sys::v4l2_capability = zeroed();
        ioctl(fd.as_fd(), QueryCap, &mut cap).map_err(|e| io_err("VIDIOC_QUERYCAP", e))?;
        let caps = if cap.capabilities & sys::V4L2_CAP_DEVICE_CAPS != 0 {
            cap.device_caps
        } else {
            cap.capabilities
        };
        let mplane = caps & sys::V4L2_CAP_VIDEO_M2M_MPLANE != 0;
        if !mplane && caps & sys::V4L2_CAP_VIDEO_M2M == 0 || caps & sys::V4L2_CAP_STREAMING == 0 {
            return Err(M2mError::Refused {
                path: path.to_path_buf(),
                why: format!(
                    "{} is not a streaming memory-to-memory device",
                    c_text(&cap.card)
                ),
            });
        }
        Ok(Device {
            fd,
            path: path.to_path_buf(),
            card: c_text(&cap.card),
            driver: c_text(&cap.driver),
            mplane,
        })
    }

    pub(super) fn ioctl<I: Ioctl>(&self, request: I, arg: &mut I::Arg) -> io::Result<()> {
        ioctl(self.fd.as_fd(), request, arg)
    }

    pub(super) fn io(&self, what: &'static str) -> impl FnOnce(io::Error) -> M2mError + '_ {
        move |source| M2mError::Io {
            path: self.path.clone(),
            what,
            source,
        }
    }

    pub(super) fn refused(&self, why: String) -> M2mError {
        M2mError::Refused {
            path: self.path.clone(),
            why,
        }
    }

    pub(super) fn driver(&self, why: String) -> M2mError {
        M2mError::Driver {
            path: self.path.clone(),
            why,
        }
    }

    pub(super) fn found(&self, role: Role, fourcc: Fourcc) -> Found {
        Found {
            path: self.path.clone(),
            card: self.card.clone(),
            driver: self.driver.clone(),
            role,
            fourcc,
            mplane: self.mplane,
        }
    }

    /// The buffer type of the picture-in side (OUTPUT) or the out side (CAPTURE).
    pub(super) fn kind(&self, side: Side) -> u32 {
        match (side, self.mplane) {
            (Side::Output, false) => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT,
            (Side::Output, true) => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE,
            (Side::Capture, false) => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE,
            (Side::Capture, true) => sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE,
        }
    }

    /// The formats a queue offers (at most 64: a driver's list is short).
    pub(super) fn formats(&self, side: Side) -> Vec<Fourcc> {
        self.described_formats(side)
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    /// The formats a queue offers, each with whether it is compressed.
    pub(super) fn described_formats(&self, side: Side) -> Vec<(Fourcc, bool)> {
        let mut found = Vec::new();
        for index in 0..64 {
            let mut d: sys::v4l2_fmtdesc = zeroed();
            d.index = index;
            d.type_ = self.kind(side);
            if self.ioctl(EnumFmt, &mut d).is_err() {
                break;
            }
            let compressed = d.flags & sys::V4L2_FMT_FLAG_COMPRESSED != 0;
            found.push((Fourcc(d.pixelformat.to_le_bytes()), compressed));
        }
        found
    }

    /// Whether this node is a `role` for `fourcc` with YU12 pictures.
    pub(super) fn codes(&self, role: Role, fourcc: Fourcc) -> bool {
        let (coded, pictures) = match role {
            Role::Encoder => (Side::Capture, Side::Output),
            Role::Decoder => (Side::Output, Side::Capture),
        };
        self.formats(coded).contains(&fourcc) && self.formats(pictures).contains(&Fourcc::YU12)
    }

    /// Sets a queue's format and reads back the one the driver took.
    pub(super) fn set_format(
        &self,
        side: Side,
        fourcc: Fourcc,
        (width, height): (u32, u32),
        sizeimage: u32,
    ) -> Result<Layout, M2mError> {
        let mut f: sys::v4l2_format = zeroed();
        f.type_ = self.kind(side);
        // SAFETY (each union access below): `type_` says which member the
        // kernel reads and writes, and every member is plain data.
        unsafe {
            if self.mplane {
                let p = &mut f.fmt.pix_mp;
                p.width = width;
                p.height = height;
                p.pixelformat = fourcc.code();
                p.field = sys::v4l2_field_V4L2_FIELD_NONE;
                p.num_planes = 1;
                p.plane_fmt[0].sizeimage = sizeimage;
            } else {
                let p = &mut f.fmt.pix;
                p.width = width;
                p.height = height;
                p.pixelformat = fourcc.code();
                p.field = sys::v4l2_field_V4L2_FIELD_NONE;
                p.sizeimage = sizeimage;
            }
        }
        self.ioctl(SetFormat, &mut f)
            .map_err(self.io("setting a format (VIDIOC_S_FMT)"))?;
        self.layout(&f)
    }

    /// A queue's current format.
    pub(super) fn get_format(&self, side: Side) -> Result<Layout, M2mError> {
        let mut f: sys::v4l2_format = zeroed();
        f.type_ = self.kind(side);
        self.ioctl(GetFormat, &mut f)
            .map_err(self.io("reading a format (VIDIOC_G_FMT)"))?;
        self.layout(&f)
    }

    pub(super) fn layout(&self, f: &sys::v4l2_format) -> Result<Layout, M2mError> {
        // SAFETY: as in `set_format`: the member `type_` names, plain data.
        let layout = unsafe {
            if self.mplane {
                let p = &f.fmt.pix_mp;
                if p.num_planes != 1 {
                    return Err(self.refused(format!(
                        "{} in {} planes: only one-plane formats are taken",
                        Fourcc(p.pixelformat.to_le_bytes()),
                        p.num_planes
                    )));
                }
                Layout {
                    fourcc: Fourcc(p.pixelformat.to_le_bytes()),
                    width: p.width,
                    height: p.height,
                    bytesperline: p.plane_fmt[0].bytesperline,
                    sizeimage: p.plane_fmt[0].sizeimage,
                }
            } else {
                let p = &f.fmt.pix;
                Layout {
                    fourcc: Fourcc(p.pixelformat.to_le_bytes()),
                    width: p.width,
                    height: p.height,
                    bytesperline: p.bytesperline,
                    sizeimage: p.sizeimage,
                }
            }
        };
        Ok(layout)
    }

    /// A control's description, or `None` when the driver does not offer it
    /// (or has it disabled).
    pub(super) fn control(&self, id: u32) -> Option<sys::v4l2_query_ext_ctrl> {
        let mut q: sys::v4l2_query_ext_ctrl = zeroed();
        q.id = id;
        self.ioctl(QueryExtCtrl, &mut q).ok()?;
        (q.id == id && q.flags & sys::V4L2_CTRL_FLAG_DISABLED == 0).then_some(q)
    }

    /// Sets control `id` to `value`, clamped to the driver's range. `Ok(None)`:
    /// not offered; `Ok(Some(v))`: the value the driver now holds.
    pub(super) fn set_control(&self, id: u32, value: i64) -> io::Result<Option<i64>> {
        let Some(q) = self.control(id) else {
            return Ok(None);
        };
        let value = value.clamp(q.minimum, q.maximum);
        let mut c: sys::v4l2_control = zeroed();
        c.id = id;
        c.value = value.clamp(i32::MIN.into(), i32::MAX.into()) as i32;
        self.ioctl(SetCtrl, &mut c)?;
        let mut back: sys::v4l2_control = zeroed();
        back.id = id;
        Ok(Some(if self.ioctl(GetCtrl, &mut back).is_ok() {
            back.value.into()
        } else {
            value
        }))
    }

    /// Waits until `events` (poll flags) are ready or `until` passes.
    pub(super) fn wait(&self, events: i16, until: Instant) -> io::Result<i16> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let mut p = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if n >= 0 {
                return Ok(p.revents);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The two queues of a node, named as the API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Output,
    Capture,
}

/// A format a queue took.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    pub(super) fourcc: Fourcc,
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) bytesperline: u32,
    pub(super) sizeimage: u32,
}

impl Layout {
    /// Where the planes of a YU12 picture of `width`x`height` lie in a buffer
    /// of `len` bytes laid out like this: (y stride, y rows, chroma stride,
    /// chroma rows), checked to fit.
    pub(super) fn yu12_planes(&self, (width, height): (u32, u32), len: usize) -> Option<Yu12> {
        let (bpl, rows) = (self.bytesperline as usize, self.height as usize);
        let (w, h) = (width as usize, height as usize);
        if self.fourcc != Fourcc::YU12
            || bpl < w
            || bpl % 2 != 0
            || rows < h
            || self.width < width
            || w % 2 != 0
            || h % 2 != 0
        {
            return None;
        }
        let y_len = bpl.checked_mul(rows)?;
        let c_len = (bpl / 2).checked_mul(rows / 2)?;
        (y_len.checked_add(c_len * 2)? <= len).then_some(Yu12 {
            y_stride: bpl,
            rows,
            width: w,
            height: h,
        })
    }
}

/// A YU12 picture's geometry in a driver buffer (checked against its length).
#[derive(Clone, Copy, Debug)]
pub(super) struct Yu12 {
    pub(super) y_stride: usize,
    /// Rows of luma the buffer holds (the driver may round the height up).
    pub(super) rows: usize,
    pub(super) width: usize,
    pub(super) height: usize,
}

impl Yu12 {
    /// The offsets of the U and V planes.
    pub(super) fn chroma(&self) -> (usize, usize) {
        let u = self.y_stride * self.rows;
        (u, u + self.y_stride / 2 * (self.rows / 2))
    }
}
