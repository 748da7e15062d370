//! One queue of a node and its mmap'd buffers: asking for them, queueing and
//! taking them back, and checking every index and length the driver gives.

use std::ffi::c_void;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Instant;

use v4l::v4l_sys as sys;

use super::device::{Device, Side};

use super::*;
use crate::v4l2::ioctl::{zeroed, DQBuf, Ioctl, QBuf, QueryBuf, ReqBufs, StreamOff, StreamOn};

/// One mmap'd driver buffer.
pub(super) struct Mapping {
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
}

/// One queue's buffers.
pub(super) struct Queue {
    pub(super) side: Side,
    pub(super) kind: u32,
    pub(super) maps: Vec<Mapping>,
    /// The buffers we hold (not queued with the driver), by index.
    pub(super) idle: Vec<u32>,
    pub(super) streaming: bool,
}

/// A buffer description for the buffer ioctls, with the one plane the
/// multi-planar API points at.
pub(super) struct Desc {
    pub(super) buffer: sys::v4l2_buffer,
    pub(super) plane: sys::v4l2_plane,
    pub(super) mplane: bool,
}

impl Desc {
    pub(super) fn new(queue: &Queue, mplane: bool, index: u32) -> Desc {
        let mut buffer: sys::v4l2_buffer = zeroed();
        buffer.index = index;
        buffer.type_ = queue.kind;
        buffer.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        Desc {
            buffer,
            plane: zeroed(),
            mplane,
        }
    }

    /// Makes a buffer request with this description; the plane pointer is set
    /// here, so it points at this value as it is now.
    pub(super) fn ioctl<I: Ioctl<Arg = sys::v4l2_buffer>>(
        &mut self,
        device: &Device,
        request: I,
    ) -> io::Result<()> {
        if self.mplane {
            self.buffer.m.planes = &raw mut self.plane;
            self.buffer.length = 1;
        }
        let result = device.ioctl(request, &mut self.buffer);
        if self.mplane {
            self.buffer.m.planes = std::ptr::null_mut();
        }
        result
    }

    pub(super) fn length(&self) -> u32 {
        if self.mplane {
            self.plane.length
        } else {
            self.buffer.length
        }
    }

    pub(super) fn offset(&self) -> u32 {
        // SAFETY: the driver filled the offset member for MMAP buffers; both
        // are plain integers.
        unsafe {
            if self.mplane {
                self.plane.m.mem_offset
            } else {
                self.buffer.m.offset
            }
        }
    }

    /// The bytes of a dequeued buffer that hold data: (start, end).
    pub(super) fn used(&self) -> (usize, usize) {
        if self.mplane {
            (
                self.plane.data_offset as usize,
                self.plane.bytesused as usize,
            )
        } else {
            (0, self.buffer.bytesused as usize)
        }
    }

    pub(super) fn set_used(&mut self, len: u32) {
        if self.mplane {
            self.plane.bytesused = len;
            self.plane.data_offset = 0;
        } else {
            self.buffer.bytesused = len;
        }
    }
}

impl Queue {
    pub(super) fn new(device: &Device, side: Side) -> Queue {
        Queue {
            side,
            kind: device.kind(side),
            maps: Vec::new(),
            idle: Vec::new(),
            streaming: false,
        }
    }

    /// Asks for buffers and maps them; all start idle.
    pub(super) fn allocate(&mut self, device: &Device, count: u32) -> Result<(), M2mError> {
        let mut rb: sys::v4l2_requestbuffers = zeroed();
        rb.count = count;
        rb.type_ = self.kind;
        rb.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        device
            .ioctl(ReqBufs, &mut rb)
            .map_err(device.io("asking for mmap buffers (VIDIOC_REQBUFS)"))?;
        if rb.count == 0 || rb.count > 32 {
            return Err(device.driver(format!("gave {} buffers (1 to 32 expected)", rb.count)));
        }
        for index in 0..rb.count {
            let mut d = Desc::new(self, device.mplane, index);
            d.ioctl(device, QueryBuf)
                .map_err(device.io("describing a buffer (VIDIOC_QUERYBUF)"))?;
            let len = d.length() as usize;
            if len == 0 || len > MAX_CODED_BUFFER {
                return Err(device.driver(format!("described a buffer of {len} bytes")));
            }
            // SAFETY: mapping the buffer the driver just described, at its
            // offset and length; unmapped in `release`.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    device.fd.as_raw_fd(),
                    d.offset() as libc::off_t,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(device.io("mapping a buffer")(io::Error::last_os_error()));
            }
            self.maps.push(Mapping {
                ptr: ptr.cast(),
                len,
            });
            self.idle.push(index);
        }
        Ok(())
    }

    pub(super) fn stream_on(&mut self, device: &Device) -> Result<(), M2mError> {
        let mut kind = self.kind;
        device
            .ioctl(StreamOn, &mut kind)
            .map_err(device.io("starting a queue (VIDIOC_STREAMON)"))?;
        self.streaming = true;
        Ok(())
    }

    /// The mapping of buffer `index`, which we hold (idle or dequeued).
    pub(super) fn bytes_mut(&mut self, index: u32) -> &mut [u8] {
        let map = &self.maps[index as usize];
        // SAFETY: the index is one of ours (from `idle` or checked by
        // `dequeue`); the driver does not touch a buffer we hold, and the
        // slice borrows `self`, so it is gone before the buffer is queued.
        unsafe { std::slice::from_raw_parts_mut(map.ptr, map.len) }
    }

    /// Queues buffer `index` with `len` bytes of data (0 for a buffer to fill).
    pub(super) fn queue(&mut self, device: &Device, index: u32, len: u32) -> Result<(), M2mError> {
        let mut d = Desc::new(self, device.mplane, index);
        d.set_used(len);
        d.ioctl(device, QBuf)
            .map_err(device.io("queueing a buffer (VIDIOC_QBUF)"))?;
        self.idle.retain(|&i| i != index);
        Ok(())
    }

    /// Takes a buffer the driver is done with, or `None` when none is.
    pub(super) fn dequeue(&mut self, device: &Device) -> Result<Option<Desc>, M2mError> {
        let mut d = Desc::new(self, device.mplane, 0);
        match d.ioctl(device, DQBuf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            // A queue that is not streaming (a decoder's CAPTURE before it
            // knows the picture) has nothing to give.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.streaming => return Ok(None),
            Err(e) => return Err(device.io("taking a buffer (VIDIOC_DQBUF)")(e)),
        }
        let index = d.buffer.index;
        if index as usize >= self.maps.len() || self.idle.contains(&index) {
            return Err(device.driver(format!(
                "returned buffer {index}, which is not one it holds ({} mapped)",
                self.maps.len()
            )));
        }
        Ok(Some(d))
    }

    /// The data of a dequeued buffer, checked against its mapping.
    pub(super) fn data(&self, device: &Device, d: &Desc) -> Result<&[u8], M2mError> {
        let map = &self.maps[d.buffer.index as usize];
        let (start, end) = d.used();
        if start > end || end > map.len {
            return Err(device.driver(format!(
                "said bytes {start}..{end} of a {}-byte buffer hold data",
                map.len
            )));
        }
        // SAFETY: the driver handed this buffer over (dequeued, checked) and
        // does not write it until it is queued again, which takes `&mut self`.
        Ok(unsafe { std::slice::from_raw_parts(map.ptr.add(start), end - start) })
    }

    /// Stops the queue and frees its buffers; errors are ignored (a device
    /// that went away answers ENODEV to all of it; closing the fd frees it).
    pub(super) fn release(&mut self, device: &Device) {
        if self.streaming {
            let mut kind = self.kind;
            let _ = device.ioctl(StreamOff, &mut kind);
            self.streaming = false;
        }
        for m in self.maps.drain(..) {
            // SAFETY: each mapping was made by mmap with this length, once.
            unsafe { libc::munmap(m.ptr.cast::<c_void>(), m.len) };
        }
        self.idle.clear();
        let mut rb: sys::v4l2_requestbuffers = zeroed();
        rb.type_ = self.kind;
        rb.memory = sys::v4l2_memory_V4L2_MEMORY_MMAP;
        let _ = device.ioctl(ReqBufs, &mut rb);
    }

    /// An idle buffer; when there is none, one the driver is done with,
    /// waiting up to the deadline (an OUTPUT queue's buffers come back once
    /// their frame is coded).
    pub(super) fn take_idle(&mut self, device: &Device) -> Result<u32, M2mError> {
        let until = Instant::now() + DEADLINE;
        loop {
            while let Some(d) = self.dequeue(device)? {
                self.idle.push(d.buffer.index);
            }
            if let Some(&index) = self.idle.last() {
                return Ok(index);
            }
            let ready = device
                .wait(libc::POLLOUT, until)
                .map_err(device.io("waiting for a buffer (poll)"))?;
            if ready == 0 && Instant::now() >= until {
                return Err(M2mError::Timeout {
                    path: device.path.clone(),
                    what: "free input buffer",
                });
            }
        }
    }

    /// Waits for the driver to hand over a filled buffer.
    pub(super) fn next_filled(
        &mut self,
        device: &Device,
        until: Instant,
    ) -> Result<Desc, M2mError> {
        loop {
            if let Some(d) = self.dequeue(device)? {
                return Ok(d);
            }
            let ready = device
                .wait(libc::POLLIN, until)
                .map_err(device.io("waiting for a frame (poll)"))?;
            if ready & libc::POLLERR != 0 {
                return Err(device.driver("signalled an error on its queue (POLLERR)".into()));
            }
            if ready == 0 && Instant::now() >= until {
                return Err(M2mError::Timeout {
                    path: device.path.clone(),
                    what: match self.side {
                        Side::Capture => "coded or decoded frame",
                        Side::Output => "frame",
                    },
                });
            }
        }
    }
}
