//! The kernel's Video4Linux2 API as livestream uses it, apart from any one
//! backend: each ioctl tied to the one struct it takes ([`ioctl`]), and the
//! stateful memory-to-memory codecs ([`m2m`]): the hardware H.264 encoder of
//! the Raspberry Pi 0-4 (`/dev/video11`) and any other driver with the same
//! API, such as the kernel's `vicodec` test codec.
//!
//! The camera source (`sources::v4l2`) and the `h264` codec's `v4l2m2m`
//! engine build on it; both come with the `v4l2` feature, whose `v4l` crate
//! generates the kernel's structs from the build machine's (or the cross
//! sysroot's) `linux/videodev2.h`.

pub(crate) mod ioctl;
pub mod m2m;

/// A fixed-size, NUL-padded string from the kernel, never trusted to be UTF-8.
pub(crate) fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).trim().to_string()
}

/// A four-character code as text, `?` for bytes that are not printable ASCII.
pub(crate) fn fourcc_text(code: u32) -> String {
    code.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}
