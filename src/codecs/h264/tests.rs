use super::*;
use crate::media::quality::psnr_y;
use crate::sources::synthetic_camera::decode_png;

/// Frames panning across a photograph, 2 pixels a frame, `w` x `h`, RGB24.
fn panning(w: u32, h: u32, n: usize) -> Vec<Frame> {
    let img = decode_png(include_bytes!("../../../data/photos/coffee.png")).unwrap();
    assert!(img.width >= w + 2 * n as u32 && img.height >= h);
    (0..n)
        .map(|i| {
            let mut rgb = Vec::new();
            for row in img
                .data
                .chunks_exact(img.width as usize * 3)
                .take(h as usize)
            {
                let x = i * 2 * 3;
                rgb.extend_from_slice(&row[x..x + w as usize * 3]);
            }
            let mut f = Frame::empty();
            convert::from_rgb24(&rgb, w, h, PixelFormat::Rgb24, &mut f);
            f.seq = i as u64;
            f
        })
        .collect()
}

fn codec(opts: Options) -> H264Codec {
    H264Codec::new(opts)
}

/// Each frame's access unit, from one encoder in order.
fn encode_all(frames: &[Frame]) -> Vec<Vec<u8>> {
    let mut enc = codec(Options::default());
    frames
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            enc.encode(f, &mut out).unwrap();
            out
        })
        .collect()
}

fn stream(f: &Frame) -> StreamInfo {
    StreamInfo {
        frame: f.info,
        fps: 30.0,
    }
}

/// Decodes `payload` as the viewer does: the frame set up from the stream header.
fn decode(c: &mut H264Codec, info: FrameInfo, payload: &[u8]) -> Result<Frame, CodecError> {
    let mut out = Frame::empty();
    out.info = info;
    c.decode(&mut payload.to_vec(), &mut out)?;
    Ok(out)
}

#[test]
fn round_trip_is_sharp_and_starts_on_a_keyframe() {
    let frames = panning(480, 320, 30);
    let mut enc = codec(Options::default());
    enc.begin(&stream(&frames[0])).unwrap();
    let mut dec = codec(Options::default());
    let mut bytes = 0;
    for (i, f) in frames.iter().enumerate() {
        let mut out = Vec::new();
        let e = enc.encode(f, &mut out).unwrap();
        assert_eq!(e.payload, Payload::Written);
        assert_eq!(e.keyframe, i == 0, "frame {i}: only the first is an IDR");
        let au = annexb::check_access_unit(&out).unwrap();
        assert_eq!(au.keyframe, e.keyframe);
        if e.keyframe {
            assert_eq!(
                au.sps_size,
                Some((480, 320)),
                "parameter sets before the IDR"
            );
            assert!(au.has_pps);
        }
        assert!(out.len() <= enc.max_payload(&f.info));
        bytes += out.len();
        let back = decode(&mut dec, f.info, &out).unwrap();
        assert_eq!(back.info, enc.decoded_info(&f.info));
        let p = psnr_y(f, &back).unwrap();
        eprintln!("frame {i}: {} bytes, Y-PSNR {p:.1} dB", out.len());
        assert!(p >= 35.0, "frame {i}: Y-PSNR {p:.1} dB");
    }
    // The automatic rate for 480x320 at 30 fps is 0.46 Mbit/s: about 1.9 KB a
    // frame on average, the IDR's share included.
    let per_frame = bytes / frames.len();
    assert!(per_frame < 6_000, "{per_frame} bytes a frame");
}

#[test]
fn a_keyframe_on_request() {
    let frames = panning(320, 240, 6);
    let mut enc = codec(Options::default());
    let mut out = Vec::new();
    let keys: Vec<bool> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == 3 {
                enc.request_keyframe();
            }
            enc.encode(f, &mut out).unwrap().keyframe
        })
        .collect();
    assert_eq!(keys, [true, false, false, true, false, false]);
    // A decoder that starts at the requested keyframe decodes from there.
    let mut dec = codec(Options::default());
    enc.request_keyframe();
    enc.encode(&frames[5], &mut out).unwrap();
    decode(&mut dec, frames[5].info, &out).unwrap();
}

#[test]
fn a_delta_without_its_reference_is_an_error_not_a_picture() {
    let frames = panning(320, 240, 3);
    let payloads = encode_all(&frames);
    // A decoder that never saw the keyframe.
    let mut dec = codec(Options::default());
    assert!(decode(&mut dec, frames[1].info, &payloads[1]).is_err());
}

#[test]
fn every_input_format_encodes() {
    let frames = panning(64, 48, 1);
    let mut rgb = Vec::new();
    convert::to_rgb24(&frames[0], &mut rgb);
    for format in PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed()) {
        let mut f = Frame::empty();
        convert::from_rgb24(&rgb, 64, 48, format, &mut f);
        let mut enc = codec(Options::default());
        let mut out = Vec::new();
        assert!(enc.encode(&f, &mut out).unwrap().keyframe, "{format}");
        let back = decode(&mut codec(Options::default()), f.info, &out).unwrap();
        let p = psnr_y(&f, &back).unwrap();
        assert!(p >= 30.0, "{format}: Y-PSNR {p:.1} dB");
    }
}

#[test]
fn streams_it_cannot_carry_are_refused_at_the_start() {
    let mut enc = codec(Options::default());
    let odd = StreamInfo {
        frame: FrameInfo::packed(PixelFormat::Rgb24, 641, 480).unwrap(),
        fps: 30.0,
    };
    let e = enc.begin(&odd).unwrap_err();
    assert!(e.to_string().contains("even width and height"), "{e}");
    let huge = StreamInfo {
        frame: FrameInfo::packed(PixelFormat::Grey, 4096, 2304).unwrap(),
        fps: 30.0,
    };
    assert!(enc.begin(&huge).is_err());
}

#[test]
fn the_automatic_bitrate_follows_size_and_rate() {
    let at = |w, h, fps| {
        bitrate(
            &Options::default(),
            &StreamInfo {
                frame: FrameInfo::packed(PixelFormat::I420, w, h).unwrap(),
                fps,
            },
        )
    };
    assert_eq!(at(1280, 720, 30.0), 2_764_800);
    assert_eq!(at(1280, 720, 0.0), 2_764_800, "unpaced counts as 30 fps");
    assert_eq!(at(160, 120, 5.0), 150_000, "the floor");
    assert_eq!(at(3840, 2160, 60.0), 16_000_000, "the ceiling");
    let set = Options {
        bitrate: 1500,
        ..Options::default()
    };
    assert_eq!(
        bitrate(
            &set,
            &StreamInfo {
                frame: FrameInfo::packed(PixelFormat::I420, 64, 64).unwrap(),
                fps: 30.0
            }
        ),
        1_500_000
    );
}

/// Random, truncated and mutated payloads from a peer: an error or a picture
/// of the stream's size, never a panic.
#[test]
fn hostile_payloads_never_panic() {
    let frames = panning(160, 120, 4);
    let good = encode_all(&frames);
    let info = frames[0].info;
    let mut rng = fastrand::Rng::with_seed(11);
    let mut dec = codec(Options::default());
    for round in 0..2000 {
        let base = &good[round % good.len()];
        let payload: Vec<u8> = match round % 3 {
            0 => (0..rng.usize(..600)).map(|_| rng.u8(..)).collect(),
            1 => base[..rng.usize(..base.len())].to_vec(),
            _ => {
                let mut p = base.clone();
                for _ in 0..rng.usize(1..6) {
                    let i = rng.usize(..p.len());
                    p[i] = rng.u8(..);
                }
                p
            }
        };
        if let Ok(f) = decode(&mut dec, info, &payload) {
            assert_eq!(f.data.len(), 160 * 120 * 3 / 2);
        }
        // Now and then a good keyframe, so the decoder has state to lose.
        if round % 50 == 0 {
            let _ = decode(&mut dec, info, &good[0]);
        }
    }
}

/// With threads, every frame is coded in that many slices (one per thread),
/// starts on an IDR, and decodes to a good picture. Slices cost quality on a
/// small picture: here 36.5 dB in one slice, 33.7 in two (ffmpeg's decoder
/// agrees, so it is the encoder's, not a mismatch), against 40.4 and 40.4 dB
/// at 1080p (docs/benchmarks.md); hence one slice below 640x360 by default.
#[test]
fn threads_code_each_frame_in_slices() {
    let frames = panning(480, 320, 12);
    let mean_psnr = |threads: u16| -> f64 {
        let mut enc = codec(Options {
            threads,
            ..Options::default()
        });
        enc.begin(&stream(&frames[0])).unwrap();
        let mut dec = codec(Options::default());
        let mut sum = 0.0;
        for (i, f) in frames.iter().enumerate() {
            let mut out = Vec::new();
            let e = enc.encode(f, &mut out).unwrap();
            assert_eq!(e.keyframe, i == 0, "{threads} threads, frame {i}");
            let au = annexb::check_access_unit(&out).unwrap();
            assert_eq!(au.slices, threads as usize, "frame {i}: slices");
            let picture = decode(&mut dec, f.info, &out).unwrap();
            sum += psnr_y(f, &picture).unwrap();
        }
        sum / frames.len() as f64
    };
    let (one, two) = (mean_psnr(1), mean_psnr(2));
    assert!(
        one >= 35.0 && two >= 32.0,
        "Y-PSNR: one slice {one:.2} dB, two {two:.2} dB"
    );
}

/// `engine = "v4l2m2m"` at a node that is no encoder fails with the node and
/// the step; `auto` at the same node falls back to openh264 and says so.
#[test]
fn the_engine_is_chosen_and_a_wrong_hardware_node_is_named() {
    let f = &panning(64, 48, 1)[0];
    let at_null = |engine| Options {
        engine,
        device: Some("/dev/null".into()),
        ..Options::default()
    };
    let mut auto = codec(at_null(EngineChoice::Auto));
    auto.begin(&stream(f)).unwrap();
    assert!(
        auto.settings().starts_with("openh264, "),
        "{}",
        auto.settings()
    );
    let mut out = Vec::new();
    assert!(auto.encode(f, &mut out).unwrap().keyframe);

    let mut hardware = codec(at_null(EngineChoice::V4l2m2m));
    let e = hardware.begin(&stream(f)).unwrap_err();
    #[cfg(feature = "v4l2")]
    let expected = "/dev/null: VIDIOC_QUERYCAP";
    #[cfg(not(feature = "v4l2"))]
    let expected = "lacks the `v4l2` feature";
    let chain = format!(
        "{e}: {}",
        std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
    );
    assert!(chain.contains(expected), "{chain}");
}

#[test]
fn the_bitrate_changes_while_it_encodes() {
    // A photograph panned at 320x240 (about 320 kbit/s when free): 60
    // frames at 300 kbit/s, then 60 at 100 kbit/s from the same running
    // encoder (no new keyframe asked).
    let frames = panning(320, 240, 120);
    let mut enc = codec(Options {
        bitrate: 300,
        keyframe_interval: 100.0,
        ..Options::default()
    });
    enc.begin(&stream(&frames[0])).unwrap();
    let mut bytes = [0usize; 2];
    for (i, f) in frames.iter().enumerate() {
        if i == 60 {
            assert!(enc.set_bitrate(100_000), "openh264 takes a new rate");
            assert_eq!(enc.target_bitrate(), Some(100_000));
        }
        let mut out = Vec::new();
        enc.encode(f, &mut out).unwrap();
        // The second half after the rate control has had a second to follow.
        if !(60..90).contains(&i) {
            bytes[usize::from(i >= 60)] += out.len();
        }
    }
    // Bytes over the last 60 frames (2 s at 30 fps) and the last 30 (1 s).
    let before = bytes[0] as f64 * 8.0 / 2.0;
    let after = bytes[1] as f64 * 8.0 / 1.0;
    eprintln!("300 kbit/s aimed: {before:.0} bit/s; then 100: {after:.0}");
    assert!(
        after < before * 0.5,
        "{before:.0} bit/s before, {after:.0} after"
    );
    assert!(after < 150_000.0, "{after:.0} bit/s aimed at 100k");
}
