//! End to end over real TCP on 127.0.0.1: what viewers receive is what was captured.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use livestream::config::CaptureConfig;
use livestream::media::frame::{Frame, Limits, PixelFormat};
use livestream::media::recording::RecordingReader;
use livestream::sources::test_pattern::{read_stamp, TestPatternSource};
use livestream::sources::FrameSource;

use crate::util::{
    free_port, record, serve, serve_on, temp_dir, Proc, SERVE_PLAINTEXT, VIEW_PLAINTEXT,
};

/// Every frame of a recording, in order.
pub fn read_recording(path: &Path) -> Vec<Frame> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = RecordingReader::new(BufReader::new(file), &Limits::default()).unwrap();
    let mut frames = Vec::new();
    let mut f = Frame::empty();
    while reader.read(&mut f).unwrap() {
        frames.push(f.clone());
    }
    frames
}

/// Checks that `frames` are consecutive test-pattern frames, each byte-identical to
/// the frame the test pattern draws for its stamp.
fn assert_exact_and_consecutive(frames: &[Frame], capture: CaptureConfig, what: &str) {
    assert_exact(frames, capture, what, true);
}

/// Checks that each of `frames` is byte-identical to the frame the test pattern
/// draws for its stamp, in rising order, and with `consecutive`, none missing.
fn assert_exact(frames: &[Frame], capture: CaptureConfig, what: &str, consecutive: bool) {
    let mut pattern = TestPatternSource::new(&capture, 4).unwrap();
    assert_eq!(
        pattern.stream_info().frame,
        frames[0].info,
        "{what}: geometry"
    );
    let mut expected = Frame::empty();
    for (i, f) in frames.iter().enumerate() {
        let stamp =
            read_stamp(f).unwrap_or_else(|| panic!("{what}: frame {i} has no readable stamp"));
        assert_eq!(
            stamp.seq, f.seq,
            "{what}: frame {i}: pixels and header disagree on seq"
        );
        assert_eq!(
            stamp.capture_us, f.capture_us,
            "{what}: frame {i}: capture time"
        );
        if i > 0 && consecutive {
            assert_eq!(f.seq, frames[i - 1].seq + 1, "{what}: gap before frame {i}");
        } else if i > 0 {
            assert!(f.seq > frames[i - 1].seq, "{what}: frame {i} out of order");
        }
        pattern.frame_at(stamp.seq, stamp.capture_us, &mut expected);
        assert!(
            expected.data == f.data,
            "{what}: frame {i} (seq {}) differs from what was sent",
            f.seq
        );
    }
}

fn pixel_exact(codec: &str, format: PixelFormat) {
    let dir = temp_dir();
    let (mut server, addr) = serve(&[
        "--codec",
        codec,
        "--width",
        "320",
        "--height",
        "240",
        "--fps",
        "60",
        "--format",
        format.name(),
        SERVE_PLAINTEXT,
    ]);
    let mut viewers: Vec<Proc> = (0..3)
        .map(|i| {
            let path = dir.path().join(format!("v{i}.lsr"));
            record(&addr, &path, 40, &[VIEW_PLAINTEXT])
        })
        .collect();
    for v in &mut viewers {
        v.expect_success(Duration::from_secs(30));
    }
    let capture = CaptureConfig {
        width: 320,
        height: 240,
        fps: 60.0,
        format,
    };
    for i in 0..3 {
        let frames = read_recording(&dir.path().join(format!("v{i}.lsr")));
        assert_eq!(
            frames.len(),
            40,
            "viewer {i} recorded {} frames",
            frames.len()
        );
        assert_exact_and_consecutive(&frames, capture, &format!("{codec}/{format} viewer {i}"));
    }
    server.terminate();
}

#[test]
fn raw_is_pixel_exact_to_several_viewers() {
    pixel_exact("raw", PixelFormat::Rgb24);
}

#[test]
fn bincode_is_pixel_exact_to_several_viewers() {
    pixel_exact("bincode", PixelFormat::Yuyv);
}

#[test]
fn lz4_is_pixel_exact_to_several_viewers() {
    pixel_exact("lz4", PixelFormat::Nv12);
}

#[test]
fn lz4_carries_every_other_format() {
    for format in [
        PixelFormat::Bgr24,
        PixelFormat::Xrgb32,
        PixelFormat::Rgba32,
        PixelFormat::Uyvy,
        PixelFormat::I420,
        PixelFormat::Grey,
    ] {
        let dir = temp_dir();
        let (mut server, addr) = serve(&[
            "--codec",
            "lz4",
            "--width",
            "128",
            "--height",
            "64",
            "--fps",
            "60",
            "--format",
            format.name(),
            SERVE_PLAINTEXT,
        ]);
        let path = dir.path().join("v.lsr");
        record(&addr, &path, 5, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(20));
        let capture = CaptureConfig {
            width: 128,
            height: 64,
            fps: 60.0,
            format,
        };
        // Exact pixels is the point here. At 60 fps a viewer may drop a frame
        // while it starts (newest wins): seen once in a loaded CI run.
        assert_exact(&read_recording(&path), capture, format.name(), false);
        server.terminate();
    }
}

/// A recording made by the file sink replays through the file source, unchanged.
#[test]
fn file_source_replays_a_recording() {
    let dir = temp_dir();
    let original = dir.path().join("original.lsr");
    let (mut server, addr) = serve(&[
        "--width",
        "160",
        "--height",
        "120",
        "--fps",
        "60",
        "--codec",
        "raw",
        SERVE_PLAINTEXT,
    ]);
    record(&addr, &original, 20, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(20));
    server.terminate();
    let recorded = read_recording(&original);
    assert_eq!(recorded.len(), 20);

    let src = format!("sources.file.path={}", original.display());
    let (mut replay, addr) = serve(&[
        "--source",
        "file",
        "--set",
        &src,
        "--set",
        "sources.file.loop=true",
        "--codec",
        "raw",
        SERVE_PLAINTEXT,
    ]);
    let copy = dir.path().join("copy.lsr");
    record(&addr, &copy, 30, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(20));
    replay.terminate();

    let replayed = read_recording(&copy);
    assert_eq!(replayed.len(), 30);
    let first_seq = recorded[0].seq;
    let mut last: Option<u64> = None;
    for (i, f) in replayed.iter().enumerate() {
        // The pixels still carry the original stamp: find the original frame.
        let stamp = read_stamp(f).expect("replayed frame keeps its stamp");
        let orig = recorded
            .iter()
            .find(|o| o.seq == stamp.seq)
            .unwrap_or_else(|| {
                panic!(
                    "replayed frame {i} (stamp {}) is not in the recording",
                    stamp.seq
                )
            });
        assert!(
            orig.data == f.data,
            "replayed frame {i} differs from the recording"
        );
        if let Some(prev) = last {
            let wrapped = prev == recorded.last().unwrap().seq && stamp.seq == first_seq;
            assert!(
                stamp.seq == prev + 1 || wrapped,
                "replay out of order: {prev} then {}",
                stamp.seq
            );
        }
        last = Some(stamp.seq);
        if i > 0 {
            assert_eq!(f.seq, replayed[i - 1].seq + 1, "replay has a gap at {i}");
        }
    }
}

/// A finite recording ends the stream; the viewer stops by itself with status 0.
#[test]
fn end_of_a_recording_ends_the_viewer() {
    let dir = temp_dir();
    let rec = dir.path().join("r.lsr");
    let (mut server, addr) = serve(&[
        "--width",
        "64",
        "--height",
        "16",
        "--fps",
        "60",
        SERVE_PLAINTEXT,
    ]);
    record(&addr, &rec, 90, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(20));
    server.terminate();
    // The viewer starts first and waits for the server (reconnecting), so it is
    // watching before the 1.5 s recording is over.
    let addr = format!("127.0.0.1:{}", free_port());
    let mut view = Proc::spawn("view", &["view", &addr, VIEW_PLAINTEXT, "-q"]);
    let src = format!("sources.file.path={}", rec.display());
    let (mut replay, _) = serve_on(&addr, &["--source", "file", "--set", &src, SERVE_PLAINTEXT]);
    view.expect_success(Duration::from_secs(20));
    assert!(
        view.stderr().contains("stream ended: the source has ended"),
        "{}",
        view.stderr()
    );
    replay.expect_success(Duration::from_secs(10));
}

/// Y4M recordings open in ffmpeg, for 4:4:4 (from RGB), 4:2:2, 4:2:0 and grey
/// sources, as full-range ("pc") video like the JPEG-style colour maths.
#[test]
fn y4m_recordings_play_in_ffmpeg() {
    let ffmpeg = which("ffmpeg").expect("ffmpeg is needed: the README's test command installs it");
    for (format, pix_fmt) in [
        ("rgb24", "yuv444p"),
        ("yuyv", "yuv422p"),
        ("nv12", "yuv420p"),
        ("grey", "gray"),
    ] {
        let dir = temp_dir();
        let path = dir.path().join("out.y4m");
        // Lossless, so each format reaches the file as it was captured.
        let (mut server, addr) = serve(&[
            "--codec",
            "lz4",
            "--width",
            "160",
            "--height",
            "120",
            "--fps",
            "60",
            "--format",
            format,
            SERVE_PLAINTEXT,
        ]);
        record(&addr, &path, 12, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(20));
        server.terminate();
        let out = std::process::Command::new(&ffmpeg)
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "framemd5", "-"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{format}: ffmpeg: {stderr}"
        );
        let frames = stdout.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(frames, 12, "{format}: ffmpeg decoded {frames} frames");
        let probe = std::process::Command::new(ffmpeg.with_file_name("ffprobe"))
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=width,height,pix_fmt,color_range",
                "-of",
                "csv=p=0",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&probe.stdout).trim(),
            format!("160,120,{pix_fmt},pc"),
            "{format}"
        );
    }
}

pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}
