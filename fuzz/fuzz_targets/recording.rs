//! `media::recording`, on a file the `file` source replays (written by us,
//! or anything a user points it at). The first byte chooses:
//! - the rest as a whole file: reading it never panics, and every record it
//!   yields fits the header's geometry (within the small limits given);
//! - a stream and frames built from the rest (structure-aware), written with
//!   the writer: read back whole and equal; the same file cut anywhere reads a
//!   prefix of the frames and then ends cleanly (a recording cut short by a
//!   power loss replays up to its last whole record).
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use livestream::media::frame::{Frame, FrameInfo, Limits, PixelFormat, StreamInfo};
use livestream::media::recording::{write_header, write_record, RecordingReader};

/// Small, so that sizes from the header are often over them.
const LIMITS: Limits = Limits {
    max_width: 64,
    max_height: 64,
    max_frame_bytes: 64 * 64 * 4,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        read_any(rest);
    } else {
        let _ = round_trip(&mut Unstructured::new(rest));
    }
});

fn read_any(file: &[u8]) {
    let Ok(mut reader) = RecordingReader::new(file, &LIMITS) else {
        return;
    };
    let info = reader.stream_info().frame;
    let max = info
        .validate(&LIMITS)
        .expect("a header the reader accepted");
    let mut frame = Frame::empty();
    for _ in 0..1000 {
        match reader.read(&mut frame) {
            Ok(true) => {
                assert_eq!(frame.info, info);
                if info.format.is_compressed() {
                    assert!(!frame.data.is_empty() && frame.data.len() <= max);
                } else {
                    assert_eq!(frame.data.len(), max);
                }
            }
            Ok(false) | Err(_) => break,
        }
    }
}

fn round_trip(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let format = *u.choose(&PixelFormat::ALL)?;
    let (width, height) = (u.int_in_range(1..=64)?, u.int_in_range(1..=64)?);
    let Ok(frame_info) = FrameInfo::packed(format, width, height) else {
        return Ok(());
    };
    let Ok(len) = frame_info.validate(&LIMITS) else {
        return Ok(());
    };
    let stream = StreamInfo {
        frame: frame_info,
        fps: u.int_in_range(0..=240_000u32)? as f64 / 1000.0,
    };
    let mut frames = Vec::new();
    for _ in 0..u.int_in_range(0..=8)? {
        let n = if format.is_compressed() {
            u.int_in_range(1..=len)?
        } else {
            len
        };
        let mut data = vec![0u8; n];
        u.fill_buffer(&mut data)?;
        frames.push(Frame {
            info: frame_info,
            seq: u.arbitrary()?,
            capture_us: u.arbitrary()?,
            data,
        });
    }
    let mut file = Vec::new();
    write_header(&mut file, &stream).unwrap();
    let mut ends = Vec::new();
    for f in &frames {
        write_record(&mut file, f).unwrap();
        ends.push(file.len());
    }
    let read = |file: &[u8]| -> Option<Vec<Frame>> {
        let mut reader = RecordingReader::new(file, &LIMITS).ok()?;
        assert_eq!(reader.stream_info().frame, frame_info);
        let mut got = Vec::new();
        let mut f = Frame::empty();
        while reader
            .read(&mut f)
            .expect("a record we wrote, whole or cut")
        {
            got.push(f.clone());
        }
        Some(got)
    };
    let got = read(&file).expect("the header we wrote");
    assert_eq!(got.len(), frames.len());
    for (a, b) in got.iter().zip(&frames) {
        assert_eq!(
            (a.seq, a.capture_us, &a.data),
            (b.seq, b.capture_us, &b.data)
        );
    }
    let cut = u.int_in_range(0..=file.len())?;
    match read(&file[..cut]) {
        None => assert!(cut < livestream::media::recording::HEADER_LEN),
        Some(got) => {
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(got.len(), whole, "records before the cut at {cut}");
        }
    }
    Ok(())
}
