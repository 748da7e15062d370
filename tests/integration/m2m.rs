//! The memory-to-memory engine (`livestream::v4l2::m2m`, what the `h264`
//! codec's `v4l2m2m` engine drives on a Raspberry Pi) against a real kernel
//! codec: `vicodec`, the kernel's stateful FWHT encoder and decoder, which
//! speaks the same API as the Pi's H.264 encoder. Debian's kernel does not
//! build vicodec, so the vivid VM loads one built by tests/vivid/modules.sh.
//!
//! The check itself, [`guest_fwht_round_trip`], runs inside the guest: this
//! test binary is copied there and run with `--ignored --exact`, once with
//! vicodec on the multi-planar buffer API (as the Pi's codec) and once on the
//! single-planar one.

use std::time::Duration;

use livestream::backend::table::ConfigText;
use livestream::backend::Kind;
use livestream::config::{Config, Overrides};
use livestream::media::convert;
use livestream::media::frame::Frame;
use livestream::media::quality::psnr;
use livestream::registry;
use livestream::v4l2::m2m::{self, Decoder, Encoder, EncoderSettings, Fourcc, Planes, Role};

use crate::vivid::Vm;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
const FRAMES: usize = 30;
/// vicodec's keyframe period is set through the generic GOP size control.
const PERIOD: u32 = 10;

/// `frames` frames of the synthetic camera (a photograph panned, with sensor
/// noise) as I420.
fn photo_frames(frames: usize) -> Vec<Vec<u8>> {
    let overrides = Overrides {
        source: Some("synthetic-camera".into()),
        width: Some(WIDTH),
        height: Some(HEIGHT),
        fps: Some(0.0),
        ..Default::default()
    };
    let cfg = Config::parse(ConfigText::embedded(), &overrides).unwrap();
    let backend = registry::source("synthetic-camera").unwrap();
    let mut source =
        (backend.open)(&cfg.capture, &cfg.backend(Kind::Source, "synthetic-camera")).unwrap();
    let (mut frame, mut rgb) = (Frame::empty(), Vec::new());
    (0..frames)
        .map(|_| {
            source.next_frame(&mut frame).unwrap();
            let mut i420 = Vec::new();
            assert!(convert::to_i420(&frame, &mut rgb, &mut i420));
            i420
        })
        .collect()
}

/// Whether an FWHT frame is an I-frame: its header's flags (big-endian, after
/// two magic words, the version, width and height) have `V4L2_FWHT_FL_I_FRAME`.
/// vicodec's stateful encoder does not flag its buffers as keyframes.
fn fwht_i_frame(coded: &[u8]) -> bool {
    let flags = coded.get(20..24).expect("an FWHT header");
    u32::from_be_bytes(flags.try_into().unwrap()) & 0x400 != 0
}

fn planes(i420: &[u8]) -> Planes<'_> {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let (y, chroma) = i420.split_at(w * h);
    let (u, v) = chroma.split_at(w * h / 4);
    Planes {
        y,
        u,
        v,
        y_stride: w,
        c_stride: w / 2,
    }
}

/// Runs inside the VM: photo frames through vicodec's encoder and back
/// through its decoder, each picture within bounded error of its own source
/// (and further from the others), compressed, with keyframes where asked.
#[test]
#[ignore = "runs inside the vivid VM with vicodec loaded: m2m::the_m2m_engine_round_trips_frames_through_vicodec starts it"]
fn guest_fwht_round_trip() {
    let encoder_node = m2m::find(Role::Encoder, Fourcc::FWHT).expect("vicodec's FWHT encoder");
    let decoder_node = m2m::find(Role::Decoder, Fourcc::FWHT).expect("vicodec's FWHT decoder");
    println!("encoder {encoder_node:?}\ndecoder {decoder_node:?}");
    let settings = EncoderSettings {
        fourcc: Fourcc::FWHT,
        width: WIDTH,
        height: HEIGHT,
        fps: 30.0,
        bitrate: 2_000_000,
        keyframe_period: PERIOD,
    };
    let mut encoder = Encoder::open(Some(&encoder_node.path), &settings).unwrap();
    let mut decoder = Decoder::open(None, Fourcc::FWHT, (WIDTH * HEIGHT * 3) as usize).unwrap();
    println!("{}; {}", encoder.describe(), decoder.describe());
    let sources = photo_frames(FRAMES);
    let y_len = (WIDTH * HEIGHT) as usize;
    let (mut coded, mut picture) = (Vec::new(), Frame::empty());
    let (mut keyframes, mut total, mut worst) = (Vec::new(), 0, f64::MAX);
    // Asked for a keyframe at frame 15 too, when the driver takes requests.
    let asked = encoder.takes_keyframe_requests().then_some(15);
    for (i, source) in sources.iter().enumerate() {
        encoder
            .encode(&planes(source), asked == Some(i), &mut coded)
            .unwrap();
        assert!(!coded.is_empty(), "frame {i}: nothing coded");
        let key = fwht_i_frame(&coded);
        if key {
            keyframes.push(i);
        }
        total += coded.len();
        picture.info = livestream::media::frame::FrameInfo::packed(
            livestream::media::frame::PixelFormat::I420,
            WIDTH,
            HEIGHT,
        )
        .unwrap();
        decoder.decode(&coded, &mut picture).unwrap();
        assert_eq!(picture.data.len(), source.len());
        let own = psnr(&picture.data[..y_len], &source[..y_len]);
        let chroma = psnr(&picture.data[y_len..], &source[y_len..]);
        // The picture is this frame's, not an earlier one's: further from
        // a source frame ten frames away (the pan moves it).
        let other = &sources[(i + FRAMES / 3) % FRAMES];
        let theirs = psnr(&picture.data[..y_len], &other[..y_len]);
        println!(
            "frame {i}: {} bytes{}, Y-PSNR {own:.1} dB (chroma {chroma:.1}), {theirs:.1} dB against frame {}",
            coded.len(),
            if key { ", keyframe" } else { "" },
            (i + FRAMES / 3) % FRAMES
        );
        assert!(
            own >= 28.0 && chroma >= 28.0,
            "frame {i}: {own:.1} / {chroma:.1} dB"
        );
        assert!(
            own > theirs + 3.0,
            "frame {i}: {own:.1} dB against its own source, {theirs:.1} against another"
        );
        worst = worst.min(own);
    }
    let raw = sources.iter().map(Vec::len).sum::<usize>();
    println!(
        "{FRAMES} frames: {total} bytes coded of {raw} ({:.1}x), worst Y-PSNR {worst:.1} dB, keyframes {keyframes:?}",
        raw as f64 / total as f64
    );
    assert!(
        total * 3 < raw,
        "FWHT compressed {raw} bytes only to {total}"
    );
    let mut expected: Vec<usize> = (0..FRAMES).step_by(PERIOD as usize).collect();
    expected.extend(asked);
    expected.sort();
    assert_eq!(
        keyframes, expected,
        "keyframes every {PERIOD} frames (and at {asked:?})"
    );
    // A frame larger than the decoder's buffers is refused, not written past.
    let huge = vec![0u8; 64 << 20];
    let e = decoder.decode(&huge, &mut picture).unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
}

/// The engine round-trips frames through vicodec on both buffer APIs: the
/// multi-planar one (the Raspberry Pi's) and the single-planar one.
#[test]
fn the_m2m_engine_round_trips_frames_through_vicodec() {
    let mut vm = Vm::boot_with_codecs(true);
    let exe = "/bin/integration";
    for multiplanar in [1, 0] {
        let (out, rc) = vm.sh(
            &format!(
                "rmmod vicodec; insmod /lib/modules/extra-vicodec.ko multiplanar={multiplanar} && \
                 {exe} m2m::guest_fwht_round_trip --exact --ignored --nocapture --test-threads=1"
            ),
            Duration::from_secs(300),
        );
        println!("multiplanar={multiplanar}:\n{out}");
        assert_eq!(rc, "0", "multiplanar={multiplanar}:\n{out}");
        assert!(out.contains("1 passed"), "{out}");
        assert!(
            out.contains(&format!("mplane: {}", multiplanar == 1)),
            "vicodec on the API asked for:\n{out}"
        );
    }
    // `livestream devices` shows the codecs, which `engine = "auto"` would
    // take for H.264 (vicodec has none: FWHT only).
    let (out, rc) = vm.sh("/bin/livestream devices", Duration::from_secs(120));
    assert_eq!(rc, "0", "{out}");
    for role in ["encoder", "decoder"] {
        assert!(
            out.contains(&format!("\"vicodec\" (vicodec), hardware FWHT {role}")),
            "{out}"
        );
    }
    assert!(
        !out.contains("engine = \"auto\""),
        "vicodec is no H.264 encoder:\n{out}"
    );
}
