//! Streaming from a node through mmap buffers: asking the driver for them,
//! mapping them, taking filled ones (VIDIOC_DQBUF) and giving them back
//! (VIDIOC_QBUF), and everything a dequeued buffer may not be trusted for (its
//! index, its length, its timestamp, whether it holds a whole frame).
//!
//! A [`Stream`] owns the mappings: they are unmapped, and the driver's buffers
//! freed, when it drops, also after a failed start. It lives on the capture
//! thread.

use std::ffi::c_void;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use v4l::v4l_sys as sys;

use super::device::Node;
use crate::error::BackendError;
use crate::media::frame::{FrameInfo, PixelFormat};
use crate::v4l2::ioctl::{zeroed, DQBuf, QBuf, QueryBuf, ReqBufs, StreamOff, StreamOn};

/// One mmap'd driver buffer.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

/// A node that streams: its mapped buffers, and whether the driver was told to
/// start.
pub(super) struct Stream {
    node: Node,
    maps: Vec<Mapping>,
    streaming: bool,
}

// SAFETY: the mappings are owned by this value alone (nothing else holds their
// pointers) and are only read through a `Dequeued` borrowed from it.
unsafe impl Send for Stream {}

/// A buffer the driver has handed over: it is ours, and its bytes stay as they
/// are, until it goes back with [`Stream::requeue`]. Not `Clone`: each dequeued
/// buffer is given back at most once.
pub(super) struct Dequeued(sys::v4l2_buffer);

impl Dequeued {
    /// The driver's description of the buffer: bytes used, flags, timestamp.
    pub(super) fn buffer(&self) -> &sys::v4l2_buffer {
        &self.0
    }
}

/// A capture buffer description with the given index, for the buffer ioctls.
fn buffer(index: u32) -> sys::v4l2_buffer {
    let mut b: sys::v4l2_buffer = zeroed();
    b.index = index;
    b.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
    b.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
    b
}

impl Stream {
    /// Asks the driver for `count` mmap buffers, maps and queues them, and starts
    /// streaming.
    pub(super) fn start(node: Node, count: u32) -> Result<Stream, BackendError> {
        // Made first, so that Drop releases whatever a failure leaves behind.
        let mut stream = Stream {
            node,
            maps: Vec::new(),
            streaming: false,
        };
        let path = stream.node.path.display().to_string();
        let io = |what: &str, e| BackendError::io(format!("{path}: {what}"), e);
        let mut rb: sys::v4l2_requestbuffers = zeroed();
        rb.count = count;
        rb.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        rb.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        stream
            .node
            .ioctl(ReqBufs, &mut rb)
            .map_err(|e| io("asking for mmap buffers (VIDIOC_REQBUFS)", e))?;
        if rb.count < 2 {
            return Err(BackendError::Invalid {
                what: path,
                why: format!("the driver gave {} buffers; streaming needs 2", rb.count),
            });
        }
        for index in 0..rb.count.min(32) {
            stream.map(index).map_err(|(what, e)| io(what, e))?;
        }
        let mut kind = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        stream
            .node
            .ioctl(StreamOn, &mut kind)
            .map_err(|e| io("starting the stream (VIDIOC_STREAMON)", e))?;
        stream.streaming = true;
        Ok(stream)
    }

    /// Maps buffer `index` and queues it. An error says which step failed.
    fn map(&mut self, index: u32) -> Result<(), (&'static str, io::Error)> {
        let mut b = buffer(index);
        self.node
            .ioctl(QueryBuf, &mut b)
            .map_err(|e| ("VIDIOC_QUERYBUF", e))?;
        // SAFETY: mapping the buffer the driver just described, at its offset
        // and length; the mapping is released in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                b.length as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.node.fd().as_raw_fd(),
                b.m.offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(("mapping a buffer", io::Error::last_os_error()));
        }
        self.maps.push(Mapping {
            ptr: ptr as *mut u8,
            len: b.length as usize,
        });
        self.node
            .ioctl(QBuf, &mut b)
            .map_err(|e| ("VIDIOC_QBUF", e))
    }

    pub(super) fn node(&self) -> &Node {
        &self.node
    }

    /// How many buffers are mapped.
    pub(super) fn buffers(&self) -> usize {
        self.maps.len()
    }

    /// Waits up to `wait` for the fd to be readable (or in error).
    pub(super) fn poll(&self, wait: Duration) -> io::Result<bool> {
        let mut p = libc::pollfd {
            fd: self.node.fd().as_raw_fd(),
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
    pub(super) fn dequeue(&mut self) -> io::Result<Option<Dequeued>> {
        let mut b = buffer(0);
        match self.node.ioctl(DQBuf, &mut b) {
            Ok(()) if (b.index as usize) < self.maps.len() => Ok(Some(Dequeued(b))),
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

    /// The whole mapping of a buffer this stream dequeued. [`Stream::requeue`]
    /// takes `&mut self`, so the slice is gone before the driver may write there
    /// again.
    pub(super) fn bytes(&self, d: &Dequeued) -> &[u8] {
        let map = &self.maps[d.0.index as usize];
        // SAFETY: `dequeue` checked the index; the driver has handed this buffer
        // over and does not write it until `requeue`, which cannot run while the
        // slice (borrowed from `self`) lives. The mapping is `len` bytes long.
        unsafe { std::slice::from_raw_parts(map.ptr, map.len) }
    }

    /// Gives a buffer back to the driver to fill again.
    pub(super) fn requeue(&mut self, d: Dequeued) -> io::Result<()> {
        let mut b = d.0;
        self.node.ioctl(QBuf, &mut b)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Errors are ignored: a camera that went away answers ENODEV to all of it,
        // and closing the fd releases everything anyway.
        if self.streaming {
            let mut kind = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
            let _ = self.node.ioctl(StreamOff, &mut kind);
        }
        for m in self.maps.drain(..) {
            // SAFETY: each mapping was made by mmap with this length, once.
            unsafe { libc::munmap(m.ptr as *mut c_void, m.len) };
        }
        let mut rb: sys::v4l2_requestbuffers = zeroed();
        rb.type_ = sys::v4l2_buf_type_V4L2_BUF_TYPE_VIDEO_CAPTURE;
        rb.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        let _ = self.node.ioctl(ReqBufs, &mut rb);
    }
}

/// The buffer's capture time on our clock when the driver stamps with
/// CLOCK_MONOTONIC (our clock too) and the stamp is plausible; else now.
pub(super) fn capture_time(b: &sys::v4l2_buffer) -> u64 {
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

/// How many bytes of a dequeued buffer make the frame, or `None` for a frame to
/// skip: flagged by the driver, shorter than its geometry, or (MJPEG) not a whole
/// JPEG (no start marker, or cut before its end marker, as USB cameras do when
/// they lose data; padding after the end marker is left out).
pub(super) fn usable_len(
    info: FrameInfo,
    mapped: &[u8],
    bytesused: usize,
    flags: u32,
) -> Option<usize> {
    if flags & sys::V4L2_BUF_FLAG_ERROR != 0 {
        return None;
    }
    if info.format == PixelFormat::Jpeg {
        let data = &mapped[..bytesused.min(mapped.len())];
        let end = data.len() - data.iter().rev().take_while(|&&b| b == 0).count();
        let whole = end >= 4 && data[..2] == [0xFF, 0xD8] && data[end - 2..end] == [0xFF, 0xD9];
        return whole.then_some(end);
    }
    if info.format == PixelFormat::H264 {
        // An access unit: what the driver filled, starting with a start code
        // (its NAL units are checked before they are sent).
        let data = &mapped[..bytesused.min(mapped.len())];
        let starts = data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1]);
        return starts.then_some(data.len());
    }
    // Some drivers leave `bytesused` unset for raw formats.
    let used = if bytesused == 0 {
        mapped.len()
    } else {
        bytesused.min(mapped.len())
    };
    (used >= info.byte_len()).then_some(info.byte_len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_access_units_are_taken_as_filled() {
        let info = FrameInfo {
            format: PixelFormat::H264,
            width: 64,
            height: 48,
            stride: 0,
        };
        let buf = [0, 0, 0, 1, 0x65, 0x88, 0x84, 0, 0, 0];
        assert_eq!(usable_len(info, &buf, 7, 0), Some(7));
        assert_eq!(usable_len(info, &buf, 0, 0), None, "nothing filled");
        assert_eq!(
            usable_len(info, &buf[1..], 6, 0),
            Some(6),
            "3-byte start code"
        );
        assert_eq!(usable_len(info, &buf[4..], 3, 0), None, "no start code");
        assert_eq!(
            usable_len(info, &buf, 99, 0),
            Some(10),
            "bytesused past the mapping"
        );
        assert_eq!(usable_len(info, &buf, 7, sys::V4L2_BUF_FLAG_ERROR), None);
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
}
