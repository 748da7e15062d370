//! How pictures reach the X server. With MIT-SHM: two memfd segments, mapped
//! here and attached there, taking turns; one is written again only after the
//! server has reported (ShmCompletion) that it is done reading it. Without (a
//! display across the network, or `shm = false`): PutImage requests in the X
//! connection, cut under the server's maximum request length.
//!
//! Used on the thread that owns the sink.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ConnectionExt as _, ImageFormat};
use x11rb::rust_connection::RustConnection;

use super::display::{i16_of, u16_of, x_error, Display};
use super::paint::Rect;
use crate::error::SinkError;

/// Memory shared with the X server: a memfd mapped here, attached there.
pub(super) struct Segment {
    pub(super) seg: shm::Seg,
    map: NonNull<u8>,
    len: usize,
    /// ShmPutImage requests from this segment the server has not completed.
    pub(super) pending: u32,
}

impl Segment {
    /// A segment of at least `len` bytes (which must be more than 0), attached.
    fn new(conn: &RustConnection, len: usize) -> Result<Segment, SinkError> {
        let os = |what: &'static str| {
            move |e: io::Error| SinkError::Io {
                what: format!("the x11 window: shared memory: {what}"),
                source: e,
            }
        };
        // SAFETY: memfd_create with a valid C string; the fd is owned from here.
        let fd = unsafe { libc::memfd_create(c"livestream-x11".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os("memfd_create")(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = libc::off_t::try_from(len)
            .map_err(|_| os("size")(io::Error::other(format!("{len} bytes"))))?;
        // SAFETY: plain syscall on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(os("ftruncate")(io::Error::last_os_error()));
        }
        // SAFETY: a new shared mapping of the whole file; unmapped in Drop only.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os("mmap")(io::Error::last_os_error()));
        }
        let map = NonNull::new(ptr.cast::<u8>()).expect("mmap does not return null on success");
        let mut segment = Segment {
            seg: 0,
            map,
            len,
            pending: 0,
        };
        // The server maps the file itself (read-only); ours stays valid after the
        // descriptor is sent and closed.
        segment.seg = conn.generate_id().map_err(x_error("shared memory id"))?;
        conn.shm_attach_fd(segment.seg, fd, true)
            .map_err(x_error("attaching shared memory"))?
            .check()
            .map_err(x_error("attaching shared memory"))?;
        Ok(segment)
    }

    /// The first `n` pixels of the segment (`n * 4 <= len`).
    pub(super) fn pixels(&mut self, n: usize) -> &mut [u32] {
        assert!(
            n * 4 <= self.len,
            "{n} pixels in a {}-byte segment",
            self.len
        );
        // SAFETY: the mapping is `len` bytes, page-aligned (so u32-aligned), lives
        // as long as `self`, and this is the only reference into it here. The X
        // server reads it only while `pending > 0`, which the caller waits out.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().cast::<u32>(), n) }
    }

    pub(super) fn detach(&self, conn: &RustConnection) {
        // Best effort: a connection that is gone has dropped the segment anyway.
        let _ = conn.shm_detach(self.seg);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`, which nothing uses after this.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.len) };
    }
}

/// Segment `slot`, at least `bytes` long: the one there, or a new one. The
/// server must be done reading it (`pending == 0`).
pub(super) fn segment<'a>(
    x: &Display,
    slot: &'a mut Option<Segment>,
    bytes: usize,
) -> Result<&'a mut Segment, SinkError> {
    if slot.as_ref().is_some_and(|s| s.len < bytes) {
        if let Some(old) = slot.take() {
            old.detach(&x.conn);
        }
    }
    match slot {
        Some(s) => Ok(s),
        None => {
            // Room for a picture as large as the screen, so resizing the window
            // rarely needs a new segment (memory is touched only where written).
            let (sw, sh) = x.screen_size;
            let len = bytes.max(sw as usize * sh as usize * 4).max(4);
            Ok(slot.insert(Segment::new(&x.conn, len)?))
        }
    }
}

/// Where the pictures go before the server takes them.
pub(super) enum Store {
    /// Two shared segments taking turns: `next` is written while the server may
    /// still read the other one.
    Shm {
        segments: [Option<Segment>; 2],
        next: usize,
    },
    /// The picture, sent in the X connection (no MIT-SHM).
    Plain(Vec<u32>),
}

impl Store {
    /// Shared segments when the server offered MIT-SHM and takes the first one (a
    /// screenful); else, said once, the X connection (and `x.shm` is turned off).
    pub(super) fn new(x: &mut Display) -> Store {
        if !x.shm {
            return Store::Plain(Vec::new());
        }
        let (sw, sh) = x.screen_size;
        match Segment::new(&x.conn, (sw as usize * sh as usize * 4).max(4)) {
            Ok(first) => Store::Shm {
                segments: [Some(first), None],
                next: 0,
            },
            Err(e) => {
                x.shm = false;
                log::warn!(
                    "x11: no shared memory ({e}); pictures go in the X connection, which costs more"
                );
                Store::Plain(Vec::new())
            }
        }
    }
}

/// Asks the server to copy the `rect.w` x `rect.h` picture at the start of
/// segment `s` to `rect` in the window, and to say when it is done reading.
pub(super) fn put_shm(
    x: &Display,
    window: xproto::Window,
    gc: xproto::Gcontext,
    s: &mut Segment,
    rect: Rect,
) -> Result<(), SinkError> {
    let (w, h) = (u16_of(rect.w), u16_of(rect.h));
    x.conn
        .shm_put_image(
            window,
            gc,
            w,
            h,
            0,
            0,
            w,
            h,
            i16_of(rect.x),
            i16_of(rect.y),
            x.depth,
            ImageFormat::Z_PIXMAP.into(),
            true,
            s.seg,
            0,
        )
        .map_err(x_error("ShmPutImage"))?;
    s.pending += 1;
    Ok(())
}

/// Sends the picture in the X connection, in PutImage requests of whole rows
/// that each fit the server's maximum request length.
pub(super) fn put_plain(
    x: &Display,
    window: xproto::Window,
    gc: xproto::Gcontext,
    pixels: &[u32],
    rect: Rect,
) -> Result<(), SinkError> {
    let (w, h) = (rect.w as usize, rect.h as usize);
    if w == 0 || h == 0 || pixels.len() < w * h {
        return Ok(());
    }
    // A PutImage request's header is 24 bytes.
    let rows = (x.conn.maximum_request_bytes().saturating_sub(24) / (w * 4)).clamp(1, h);
    for (i, chunk) in pixels[..w * h].chunks(rows * w).enumerate() {
        x.conn
            .put_image(
                ImageFormat::Z_PIXMAP,
                window,
                gc,
                u16_of(w as u32),
                u16_of((chunk.len() / w) as u32),
                i16_of(rect.x),
                i16_of(rect.y + (i * rows) as i32),
                0,
                x.depth,
                bytemuck::cast_slice(chunk),
            )
            .map_err(x_error("PutImage"))?;
    }
    Ok(())
}
