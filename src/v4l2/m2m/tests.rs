use std::path::Path;

use super::device::Layout;
use super::encoder::{has_picture, write_picture};
use super::*;

fn layout(fourcc: Fourcc, width: u32, height: u32, bpl: u32) -> Layout {
    Layout {
        fourcc,
        width,
        height,
        bytesperline: bpl,
        sizeimage: bpl.saturating_mul(height),
    }
}

#[test]
fn fourccs_read_as_text() {
    assert_eq!(Fourcc::parse("FWHT"), Some(Fourcc::FWHT));
    assert_eq!(Fourcc::H264.to_string(), "H264");
    assert_eq!(Fourcc::parse("H26"), None);
    assert_eq!(Fourcc::parse("H\u{e9}4"), None);
    assert_eq!(Fourcc::parse("H2\n4"), None);
}

#[test]
fn yu12_geometry_is_checked_against_the_buffer() {
    // The Pi aligns the stride to 32 and the height to 16: 1920x1080 comes
    // back as stride 1920, 1088 rows.
    let l = layout(Fourcc::YU12, 1920, 1088, 1920);
    let g = l.yu12_planes((1920, 1080), 1920 * 1088 * 3 / 2).unwrap();
    assert_eq!((g.y_stride, g.rows), (1920, 1088));
    assert_eq!(g.chroma(), (1920 * 1088, 1920 * 1088 + 960 * 544));
    assert!(l
        .yu12_planes((1920, 1080), 1920 * 1088 * 3 / 2 - 1)
        .is_none());
    assert!(
        l.yu12_planes((1920, 1090), usize::MAX).is_none(),
        "more rows than the buffer"
    );
    assert!(
        layout(Fourcc::YU12, 640, 480, 600)
            .yu12_planes((640, 480), usize::MAX)
            .is_none(),
        "stride under the width"
    );
    assert!(
        layout(Fourcc(*b"NV12"), 640, 480, 640)
            .yu12_planes((640, 480), usize::MAX)
            .is_none(),
        "another format"
    );
    assert!(
        layout(Fourcc::YU12, u32::MAX, u32::MAX, u32::MAX - 1)
            .yu12_planes((640, 480), usize::MAX)
            .is_none(),
        "sizes whose product overflows are refused"
    );
}

#[test]
fn pictures_are_written_at_the_drivers_strides() {
    // A 4x2 picture into a buffer of stride 8 with 4 rows.
    let (y, u, v) = ([1u8, 2, 3, 4, 5, 6, 7, 8], [9u8, 10], [11u8, 12]);
    let picture = Planes {
        y: &y,
        u: &u,
        v: &v,
        y_stride: 4,
        c_stride: 2,
    };
    let g = layout(Fourcc::YU12, 4, 4, 8)
        .yu12_planes((4, 2), 8 * 4 * 3 / 2)
        .unwrap();
    let mut buffer = vec![0u8; 8 * 4 * 3 / 2];
    write_picture(&picture, g, &mut buffer).unwrap();
    assert_eq!(&buffer[..4], &[1, 2, 3, 4]);
    assert_eq!(&buffer[8..12], &[5, 6, 7, 8]);
    assert_eq!(&buffer[32..34], &[9, 10]);
    assert_eq!(&buffer[40..42], &[11, 12]);
    // Short planes are refused, not read past.
    let short = Planes {
        y: &y[..6],
        ..picture
    };
    assert!(write_picture(&short, g, &mut buffer).is_none());
    assert!(write_picture(&picture, g, &mut buffer[..40]).is_none());
}

#[test]
fn parameter_sets_alone_are_not_a_picture() {
    let sps_pps = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce];
    assert!(!has_picture(&sps_pps));
    let idr = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88];
    assert!(has_picture(&idr));
    assert!(has_picture(&[0, 0, 1, 0x41, 0x9a]));
    assert!(
        has_picture(b"not annex b"),
        "unparseable: left to the caller's check"
    );
}

#[test]
fn a_node_that_is_not_a_codec_is_refused_with_its_path() {
    // /dev/null answers no V4L2 ioctl.
    let e = check(Path::new("/dev/null"), Role::Encoder, Fourcc::H264).unwrap_err();
    assert!(
        e.to_string().starts_with("/dev/null: VIDIOC_QUERYCAP"),
        "{e}"
    );
    let e = check(
        Path::new("/nonexistent/video9"),
        Role::Decoder,
        Fourcc::FWHT,
    )
    .unwrap_err();
    assert!(e.to_string().contains("opening"), "{e}");
}
