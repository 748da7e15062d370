//! The V4L2 ioctls this source makes, each tied to the one kernel struct it
//! takes, so that no safe function can hand the kernel a struct of the wrong
//! type or size; and the all-zero values those structs start from.
//!
//! The pairing of request and struct is the whole of the contract: it is written
//! once per request here (`requests!`), and checked at compile time against the
//! argument size the request number encodes. The rest of the v4l2 source calls
//! [`ioctl`] safely. Used by whichever thread holds the device node: the one
//! opening or listing cameras, then the capture thread (`sources::v4l2`); the
//! thread that encodes or decodes through a memory-to-memory codec ([`super::m2m`]).

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use v4l::v4l2::vidioc;
use v4l::v4l_sys as sys;

/// A kernel struct of plain C data: any bytes make a valid value, all-zero ones
/// included.
///
/// # Safety
///
/// Implement only for `#[repr(C)]` types made of integers, arrays, raw pointers
/// and unions or structs of those. Not for anything holding a reference,
/// `NonNull`, a function pointer, a `bool` or a Rust enum, for which some bytes
/// (zeros among them) are not a value.
pub(crate) unsafe trait Plain: Sized {}

/// The all-zero value of a kernel struct: what V4L2 expects in every field the
/// caller does not set (`reserved` ones included).
pub(crate) fn zeroed<T: Plain>() -> T {
    // SAFETY: `Plain`'s contract is that all-zero bytes are a valid `T`.
    unsafe { std::mem::zeroed() }
}

/// One V4L2 request and the kernel struct it reads and writes.
///
/// # Safety
///
/// `REQUEST` must be the request the kernel defines with `Arg` as its argument:
/// the kernel reads and writes `size_of::<Arg>()` bytes through the pointer, and
/// whatever it writes there is a valid `Arg` (`Plain`: any bytes are).
pub(crate) unsafe trait Ioctl {
    const REQUEST: vidioc::_IOC_TYPE;
    type Arg: Plain;
}

/// The argument size encoded in a request number (`_IOC_SIZE` in the kernel's
/// `ioctl.h`: 14 bits from bit 16).
const fn size_field(request: vidioc::_IOC_TYPE) -> usize {
    ((request >> 16) & 0x3FFF) as usize
}

/// A request number as the kernel's `_IOC` makes it on x86 and ARM: the
/// direction in bits 30-31 (1 write, 2 read, 3 both), the argument's size in
/// bits 16-29, the type letter `'V'` in bits 8-15 and the number below.
const fn request(
    direction: vidioc::_IOC_TYPE,
    number: vidioc::_IOC_TYPE,
    size: usize,
) -> vidioc::_IOC_TYPE {
    (direction << 30)
        | ((size as vidioc::_IOC_TYPE) << 16)
        | ((b'V' as vidioc::_IOC_TYPE) << 8)
        | number
}

// The requests the `v4l` crate does not define, as videodev2.h does:
// `_IOR('V', 89, struct v4l2_event)`, `_IOW('V', 90, struct
// v4l2_event_subscription)`, `_IOWR('V', 94/95, struct v4l2_selection)`.
const VIDIOC_DQEVENT: vidioc::_IOC_TYPE = request(2, 89, std::mem::size_of::<sys::v4l2_event>());
const VIDIOC_SUBSCRIBE_EVENT: vidioc::_IOC_TYPE =
    request(1, 90, std::mem::size_of::<sys::v4l2_event_subscription>());
const VIDIOC_S_SELECTION: vidioc::_IOC_TYPE =
    request(3, 95, std::mem::size_of::<sys::v4l2_selection>());

/// Declares one unit type per request, implements [`Ioctl`] for it, and fails the
/// build when the argument's size is not the one the request number encodes.
macro_rules! requests {
    ($($(#[$doc:meta])* $name:ident = $request:ident($arg:ty);)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct $name;

        // SAFETY: the v4l crate (or the constants above) define `$request`
        // with this argument, as the kernel's videodev2.h does; the assertion
        // below checks the size the request number carries against it.
        unsafe impl Ioctl for $name {
            const REQUEST: vidioc::_IOC_TYPE = $request;
            type Arg = $arg;
        }

        const _: () = assert!(size_field($request) == std::mem::size_of::<$arg>());
    )*};
}

use vidioc::{
    VIDIOC_DQBUF, VIDIOC_ENUM_FMT, VIDIOC_ENUM_FRAMEINTERVALS, VIDIOC_ENUM_FRAMESIZES,
    VIDIOC_G_CTRL, VIDIOC_G_FMT, VIDIOC_G_PARM, VIDIOC_QBUF, VIDIOC_QUERYBUF, VIDIOC_QUERYCAP,
    VIDIOC_QUERYMENU, VIDIOC_QUERY_EXT_CTRL, VIDIOC_REQBUFS, VIDIOC_STREAMOFF, VIDIOC_STREAMON,
    VIDIOC_S_CTRL, VIDIOC_S_FMT, VIDIOC_S_PARM,
};

requests! {
    /// What the node is: driver, card, bus and capabilities.
    QueryCap = VIDIOC_QUERYCAP(sys::v4l2_capability);
    /// One offered pixel format, by index.
    EnumFmt = VIDIOC_ENUM_FMT(sys::v4l2_fmtdesc);
    /// One offered frame size of a format, by index.
    EnumFrameSizes = VIDIOC_ENUM_FRAMESIZES(sys::v4l2_frmsizeenum);
    /// One offered frame interval of a format and size, by index.
    EnumFrameIntervals = VIDIOC_ENUM_FRAMEINTERVALS(sys::v4l2_frmivalenum);
    /// Sets a queue's format; the driver answers with the one it took.
    SetFormat = VIDIOC_S_FMT(sys::v4l2_format);
    /// Reads a queue's format (a decoder's picture, once it has parsed the stream).
    GetFormat = VIDIOC_G_FMT(sys::v4l2_format);
    /// Sets a rectangle of a queue: the visible part of an encoder's input.
    SetSelection = VIDIOC_S_SELECTION(sys::v4l2_selection);
    /// Asks to be told of an event (a decoder's "the stream's size is known").
    SubscribeEvent = VIDIOC_SUBSCRIBE_EVENT(sys::v4l2_event_subscription);
    /// Takes the next pending event (`WouldBlock`-like `ENOENT` when none is).
    DqEvent = VIDIOC_DQEVENT(sys::v4l2_event);
    /// Reads the streaming parameters (the frame interval).
    GetParm = VIDIOC_G_PARM(sys::v4l2_streamparm);
    /// Sets the streaming parameters; the driver answers with the ones it took.
    SetParm = VIDIOC_S_PARM(sys::v4l2_streamparm);
    /// Describes the control after a given id (with `V4L2_CTRL_FLAG_NEXT_CTRL`).
    QueryExtCtrl = VIDIOC_QUERY_EXT_CTRL(sys::v4l2_query_ext_ctrl);
    /// One entry of a menu control, by index.
    QueryMenu = VIDIOC_QUERYMENU(sys::v4l2_querymenu);
    /// Reads a control's value.
    GetCtrl = VIDIOC_G_CTRL(sys::v4l2_control);
    /// Sets a control's value.
    SetCtrl = VIDIOC_S_CTRL(sys::v4l2_control);
    /// Asks for (or, with a count of 0, frees) the driver's buffers.
    ReqBufs = VIDIOC_REQBUFS(sys::v4l2_requestbuffers);
    /// Where a buffer is, to map it.
    QueryBuf = VIDIOC_QUERYBUF(sys::v4l2_buffer);
    /// Gives a buffer to the driver to fill.
    QBuf = VIDIOC_QBUF(sys::v4l2_buffer);
    /// Takes a filled buffer back (`WouldBlock` when none is: the fd is non-blocking).
    DQBuf = VIDIOC_DQBUF(sys::v4l2_buffer);
    /// Starts streaming. The kernel's argument is an `int` holding a buffer type,
    /// which `v4l2_buf_type` (a C unsigned int) is in size and layout.
    StreamOn = VIDIOC_STREAMON(sys::v4l2_buf_type);
    /// Stops streaming and takes every buffer back from the driver.
    StreamOff = VIDIOC_STREAMOFF(sys::v4l2_buf_type);
}

/// Makes `request` on `fd`, again when a signal interrupts it. The source's fds
/// are non-blocking, so no request waits for a frame.
pub(crate) fn ioctl<I: Ioctl>(fd: BorrowedFd<'_>, _request: I, arg: &mut I::Arg) -> io::Result<()> {
    loop {
        let pointer = arg as *mut I::Arg as *mut c_void;
        // SAFETY: `I::Arg` is the struct the kernel expects for `I::REQUEST`
        // (`Ioctl`'s contract), and `pointer` is valid and writable for all of it.
        match unsafe { v4l::v4l2::ioctl(fd.as_raw_fd(), I::REQUEST, pointer) } {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

// SAFETY (every impl below): bindgen's `#[repr(C)]` copies of the kernel's
// structs, made of integers, arrays, raw pointers and unions or structs of those
// (checked against the generated bindings), so any bytes are a value of each.
unsafe impl Plain for sys::v4l2_capability {}
unsafe impl Plain for sys::v4l2_fmtdesc {}
unsafe impl Plain for sys::v4l2_frmsizeenum {}
unsafe impl Plain for sys::v4l2_frmivalenum {}
unsafe impl Plain for sys::v4l2_format {}
unsafe impl Plain for sys::v4l2_pix_format {}
unsafe impl Plain for sys::v4l2_streamparm {}
unsafe impl Plain for sys::v4l2_query_ext_ctrl {}
unsafe impl Plain for sys::v4l2_querymenu {}
unsafe impl Plain for sys::v4l2_control {}
unsafe impl Plain for sys::v4l2_requestbuffers {}
unsafe impl Plain for sys::v4l2_buffer {}
unsafe impl Plain for sys::v4l2_plane {}
unsafe impl Plain for sys::v4l2_selection {}
unsafe impl Plain for sys::v4l2_event_subscription {}
unsafe impl Plain for sys::v4l2_event {}
// SAFETY: a C unsigned int.
unsafe impl Plain for sys::v4l2_buf_type {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_carry_their_argument_size() {
        assert_eq!(
            size_field(vidioc::VIDIOC_QUERYCAP),
            std::mem::size_of::<sys::v4l2_capability>()
        );
        assert_eq!(size_field(vidioc::VIDIOC_STREAMON), 4);
        // A request whose size differs from a struct is told apart: the check in
        // `requests!` can fail.
        // The requests made here agree with the v4l crate's where both exist.
        assert_eq!(
            request(3, 4, std::mem::size_of::<sys::v4l2_format>()),
            vidioc::VIDIOC_G_FMT
        );
        assert_eq!(
            request(1, 18, std::mem::size_of::<sys::v4l2_buf_type>()),
            vidioc::VIDIOC_STREAMON
        );
        assert_ne!(
            size_field(vidioc::VIDIOC_QBUF),
            std::mem::size_of::<sys::v4l2_capability>()
        );
    }

    /// The layout lines of tests/arm/v4l2_layout.c (sizes, alignments, field
    /// offsets, request numbers), from bindgen's structs and the v4l crate's
    /// requests as this target's build has them.
    fn layout_lines() -> String {
        use std::mem::{align_of, offset_of, size_of};
        let mut lines = Vec::new();
        // The field's name in C: bindgen names `type` `type_`, and an anonymous
        // union `__bindgen_anon_1` (`field = c_name` below).
        macro_rules! c_name {
            ($f:ident) => {
                stringify!($f).trim_end_matches('_')
            };
            ($f:ident $c:ident) => {
                stringify!($c)
            };
        }
        macro_rules! structs {
            ($($t:ident [$($f:ident $(= $c:ident)?),*])*) => {$(
                lines.push(format!("size {} {}", stringify!($t), size_of::<sys::$t>()));
                lines.push(format!("align {} {}", stringify!($t), align_of::<sys::$t>()));
                $(lines.push(format!("offset {}.{} {}", stringify!($t),
                    c_name!($f $($c)?), offset_of!(sys::$t, $f)));)*
            )*};
        }
        structs! {
            v4l2_buffer [bytesused, flags, timestamp, sequence, memory, m, length, __bindgen_anon_1 = request_fd]
            v4l2_capability [capabilities, device_caps]
            v4l2_control []
            v4l2_fmtdesc [pixelformat]
            v4l2_format [fmt]
            v4l2_frmivalenum [type_, __bindgen_anon_1 = discrete]
            v4l2_frmsizeenum [type_, __bindgen_anon_1 = discrete]
            v4l2_pix_format [bytesperline, sizeimage]
            v4l2_query_ext_ctrl [minimum, maximum, step, default_value, flags]
            v4l2_querymenu [index]
            v4l2_requestbuffers []
            v4l2_streamparm [parm]
            v4l2_outputparm [timeperframe]
            v4l2_plane [bytesused, length, m, data_offset]
            v4l2_plane_pix_format [sizeimage, bytesperline]
            v4l2_pix_format_mplane [plane_fmt, num_planes]
            v4l2_event [type_, u, pending, sequence, timestamp, id]
            v4l2_event_subscription [type_, id, flags]
            v4l2_selection [type_, target, flags, r]
        }
        lines.push(format!(
            "size v4l2_buf_type {}",
            size_of::<sys::v4l2_buf_type>()
        ));
        macro_rules! requests {
            ($($r:ident)*) => {$(
                lines.push(format!("request {} {:#x}", stringify!($r), $r));
            )*};
        }
        requests! {
            VIDIOC_DQBUF VIDIOC_ENUM_FMT VIDIOC_ENUM_FRAMEINTERVALS VIDIOC_ENUM_FRAMESIZES
            VIDIOC_G_CTRL VIDIOC_G_PARM VIDIOC_QBUF VIDIOC_QUERYBUF VIDIOC_QUERYCAP
            VIDIOC_QUERYMENU VIDIOC_QUERY_EXT_CTRL VIDIOC_REQBUFS VIDIOC_STREAMOFF
            VIDIOC_STREAMON VIDIOC_S_CTRL VIDIOC_S_FMT VIDIOC_S_PARM
            VIDIOC_G_FMT VIDIOC_DQEVENT VIDIOC_SUBSCRIBE_EVENT VIDIOC_S_SELECTION
        }
        lines.join("\n") + "\n"
    }

    /// bindgen's structs have the layout gcc gives the same videodev2.h on this
    /// target, through the file tests/arm/v4l2_layout.c's output is compared with
    /// (by scripts/cross.sh --test, built with each cross gcc and run under
    /// qemu-user). The build's assertion in `requests!` cannot see a wrong
    /// layout (v4l computes each request from the same structs). bindgen writes
    /// these structs in C-named Rust types (`c_long`, `c_ulonglong`) that rustc
    /// sizes for the target, so even bindings generated for x86_64 gave armv7's
    /// layout (tried: this test passed with them); what it guards against is the
    /// rest: headers that are not the target's (a 64-bit `time_t` changes
    /// `v4l2_buffer`), padding or opaque blobs that bindgen sizes for the target
    /// it parsed, a new v4l or bindgen. v4l2_buffer is 88 bytes on x86_64 and
    /// aarch64, 68 on 32-bit ARM.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm"))]
    #[test]
    fn layouts_are_the_c_compilers() {
        // From the crate's root, not this file's: the file can move.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        let expected = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/arm/v4l2-layout-lp64.txt"
        ));
        #[cfg(target_arch = "arm")]
        let expected = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/arm/v4l2-layout-armhf.txt"
        ));
        let got = layout_lines();
        for (g, e) in got.lines().zip(expected.lines()) {
            assert_eq!(g, e);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn zeroed_structs_are_all_zero() {
        let b: sys::v4l2_buffer = zeroed();
        assert_eq!(
            (b.index, b.type_, b.bytesused, b.flags, b.length),
            (0, 0, 0, 0, 0)
        );
    }
}
