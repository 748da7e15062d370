//! JPEG from a camera, a file or a server, as `codecs::jpeg` takes it:
//! - marker walking (`parse_header`) never panics, and what it finds lies
//!   inside the input;
//! - inserting the standard Huffman tables (what UVC cameras leave out) makes
//!   a JPEG whose header reads the same, now with tables, the scan unchanged
//!   after them; removing them gives back one without tables;
//! - decoding (the default build's engine), checked against the stream's
//!   size, never panics and fills exactly the picture's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livestream::codecs::jpeg::markers::{parse_header, strip_huffman_tables, with_huffman_tables};
use livestream::codecs::jpeg::JpegCodec;
use livestream::codecs::FrameCodec;
use livestream::media::frame::{Frame, FrameInfo, PixelFormat};

/// Pictures larger than this are not decoded (the walk still is): the decoder
/// would spend the fuzzer's time on pixels.
const MAX_SIDE: u32 = 256;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = parse_header(data) else {
        return;
    };
    assert!(header.scan_at + 2 <= data.len());
    assert_eq!(&data[header.scan_at..header.scan_at + 2], &[0xFF, 0xDA]);

    let mut with = Vec::new();
    match with_huffman_tables(data, &mut with) {
        Ok(false) => assert!(header.has_dht),
        Ok(true) => {
            assert!(!header.has_dht);
            let again = parse_header(&with).expect("a JPEG with tables inserted");
            assert!(again.has_dht);
            assert_eq!((again.width, again.height), (header.width, header.height));
            assert_eq!(&with[again.scan_at..], &data[header.scan_at..]);
            assert_eq!(&with[..header.scan_at], &data[..header.scan_at]);
        }
        Err(e) => panic!("a JPEG whose header parsed: {e}"),
    }
    let stripped = strip_huffman_tables(data).expect("a JPEG whose header parsed");
    let bare = parse_header(&stripped).expect("a JPEG with its tables removed");
    assert!(!bare.has_dht);
    assert_eq!((bare.width, bare.height), (header.width, header.height));

    if header.width == 0
        || header.height == 0
        || header.width > MAX_SIDE
        || header.height > MAX_SIDE
    {
        return;
    }
    let mut codec = JpegCodec::with_quality(80).unwrap();
    let mut frame = Frame::empty();
    frame.info = FrameInfo {
        format: PixelFormat::Jpeg,
        width: header.width,
        height: header.height,
        stride: 0,
    };
    let mut payload = data.to_vec();
    if codec.decode(&mut payload, &mut frame).is_ok() {
        assert_eq!(frame.info.format, PixelFormat::Rgb24);
        assert_eq!(frame.data.len(), frame.info.byte_len());
    }
});
