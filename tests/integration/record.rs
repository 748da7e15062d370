//! Sinks on the server: `serve --record DIR` while viewers watch, and a viewer's
//! own `record` sink. The recordings are checked with ffmpeg (they must play),
//! frame by frame through the test pattern's stamps, and for H.264 (fragmented
//! MP4) in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use livestream::media::frame::{Frame, FrameInfo, PixelFormat};
use livestream::sources::test_pattern::read_stamp;

use crate::http_client::stats;
use crate::stream::which;
use crate::util::{
    assert_no_gaps, record, serve, serve_small, temp_dir, wait_until, Lazy, Proc, SERVE_PLAINTEXT,
    VIEW_PLAINTEXT,
};

/// The recordings in `dir`, oldest name first.
fn recordings(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "y4m" || e == "mjpeg" || e == "mp4")
        })
        .collect();
    files.sort();
    files
}

/// Decodes a whole file with ffmpeg: the number of frames, and ffmpeg's
/// complaints (empty when it played cleanly).
fn ffmpeg_frames(path: &Path) -> (usize, String) {
    let ffmpeg = which("ffmpeg").expect("ffmpeg is needed: the README's test command installs it");
    let mut cmd = Command::new(ffmpeg);
    cmd.args(["-v", "error", "-nostdin"]);
    if path.extension().is_some_and(|e| e == "mjpeg") {
        cmd.args(["-f", "mjpeg"]);
    }
    let out = cmd
        .arg("-i")
        .arg(path)
        // Every decoded frame, whatever its timing (no frame rate imposed).
        .args(["-fps_mode", "passthrough", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    (frames, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The test-pattern frame numbers in a video file of `w`x`h` pictures, as
/// ffmpeg decodes it, read from each picture's luma.
fn decoded_stamps(path: &Path, w: usize, h: usize) -> Vec<u64> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args([
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(w * h)
        .enumerate()
        .map(|(i, luma)| {
            let frame = Frame {
                info: FrameInfo::packed(PixelFormat::Grey, w as u32, h as u32).unwrap(),
                seq: 0,
                capture_us: 0,
                data: luma.to_vec(),
            };
            read_stamp(&frame)
                .unwrap_or_else(|| panic!("{}: picture {i} has no readable stamp", path.display()))
                .seq
        })
        .collect()
}

/// Which of a file's video packets are keyframes, in order (ffprobe's view).
fn key_flags(path: &Path) -> Vec<bool> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["packet=flags", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.starts_with('K'))
        .collect()
}

/// Headless Chromium plays `path` past its first second.
fn chromium_plays(path: &Path) {
    let node = which("node").expect("node is needed");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/play_mp4.mjs");
    let out = Command::new(node).arg(&script).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "Chromium did not play {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn h264_recordings_are_mp4_that_ffmpeg_and_chromium_play() {
    let dir = temp_dir();
    let (on_server, on_viewer) = (dir.path().join("server"), dir.path().join("viewer"));
    let (mut server, addr) = serve_small(&[
        "--codec",
        "h264",
        "--record",
        on_server.to_str().unwrap(),
        SERVE_PLAINTEXT,
    ]);
    let set = format!("sinks.record.dir={}", on_viewer.display());
    let mut view = Proc::spawn(
        "view --sink record",
        &[
            "view",
            &addr,
            "--sink",
            "record",
            "--set",
            &set,
            "--frames",
            "90",
            "-q",
            VIEW_PLAINTEXT,
        ],
    );
    view.expect_success(Duration::from_secs(30));
    server.terminate();
    server.assert_no_panic();
    for folder in [&on_server, &on_viewer] {
        let files = recordings(folder);
        assert_eq!(files.len(), 1, "{files:?}");
        let file = &files[0];
        assert!(file.extension().is_some_and(|e| e == "mp4"), "{file:?}");
        let (frames, complaints) = ffmpeg_frames(file);
        assert_eq!(complaints, "", "{}: ffmpeg complained", file.display());
        assert!(frames >= 90, "{}: {frames} frames", file.display());
        // Each picture is the one it should be, in order: the recording kept
        // the encoder's access units as they came. A frame the sink was too
        // slow for (a loaded machine) is followed by a keyframe, never by a
        // picture that needed it.
        let stamps = decoded_stamps(file, 320, 240);
        let keys = key_flags(file);
        assert_eq!((stamps.len(), keys.len()), (frames, frames));
        assert!(keys[0], "{}: starts on a delta", file.display());
        for (i, w) in stamps.windows(2).enumerate() {
            assert!(
                w[1] == w[0] + 1 || (w[1] > w[0] && keys[i + 1]),
                "{}: {} after {}",
                file.display(),
                w[1],
                w[0]
            );
        }
    }
    chromium_plays(&recordings(&on_server)[0]);
}

/// The test-pattern frame numbers in a Y4M file, read from each frame's Y plane.
fn y4m_stamps(path: &Path) -> Vec<u64> {
    let data = std::fs::read(path).unwrap();
    let header_end = data.iter().position(|&b| b == b'\n').unwrap();
    let header = String::from_utf8_lossy(&data[..header_end]).into_owned();
    let field = |p: char| -> usize {
        header
            .split(' ')
            .find_map(|f| f.strip_prefix(p))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (w, h) = (field('W'), field('H'));
    assert!(header.contains("C444"), "{header}");
    let frame_len = w * h * 3;
    let mut stamps = Vec::new();
    let mut at = header_end + 1;
    while at + 6 + frame_len <= data.len() {
        assert_eq!(&data[at..at + 6], b"FRAME\n");
        let luma = Frame {
            info: FrameInfo {
                format: PixelFormat::Grey,
                width: w as u32,
                height: h as u32,
                stride: w as u32,
            },
            seq: 0,
            capture_us: 0,
            data: data[at + 6..at + 6 + w * h].to_vec(),
        };
        stamps.push(read_stamp(&luma).expect("a stamped test-pattern frame").seq);
        at += 6 + frame_len;
    }
    stamps
}

fn local_sink(addr: &str) -> serde_json::Value {
    stats(addr)["local_sinks"][0].clone()
}

fn wait_presented(addr: &str, n: u64) {
    wait_until(
        Duration::from_secs(20),
        Lazy(|| format!("{n} frames in the recording: {}", local_sink(addr))),
        || (local_sink(addr)["presented"].as_u64().unwrap_or(0) >= n).then_some(()),
    );
}

#[test]
fn recording_holds_every_frame_while_viewers_watch() {
    let dir = temp_dir();
    let rec = dir.path().join("rec");
    let (mut server, addr) = serve_small(&[
        "--frames",
        "90",
        "--record",
        rec.to_str().unwrap(),
        SERVE_PLAINTEXT,
    ]);
    let a = dir.path().join("a.lsr");
    let b = dir.path().join("b.lsr");
    let (mut va, mut vb) = (
        record(&addr, &a, 40, &[VIEW_PLAINTEXT]),
        record(&addr, &b, 40, &[VIEW_PLAINTEXT]),
    );
    va.expect_success(Duration::from_secs(20));
    vb.expect_success(Duration::from_secs(20));
    assert_no_gaps(&a, 40);
    assert_no_gaps(&b, 40);
    server.expect_success(Duration::from_secs(20));
    let files = recordings(&rec);
    assert_eq!(files.len(), 1, "{files:?}");
    // The default codec is H.264: an MP4 of the encoder's access units.
    // Every captured frame, in order; on a loaded machine the sink may miss
    // a few, and then goes on at a keyframe made for it, never at a delta.
    let stamps = decoded_stamps(&files[0], 320, 240);
    let keys = key_flags(&files[0]);
    assert_eq!((stamps.first(), stamps.last()), (Some(&0), Some(&89)));
    assert!(stamps.len() >= 80, "{stamps:?}");
    for (i, w) in stamps.windows(2).enumerate() {
        assert!(
            w[1] == w[0] + 1 || (w[1] > w[0] && keys[i + 1]),
            "{} after {}: {stamps:?}",
            w[1],
            w[0]
        );
    }
    let (frames, complaints) = ffmpeg_frames(&files[0]);
    assert_eq!((frames, complaints.as_str()), (stamps.len(), ""));
}

#[test]
fn kill_9_leaves_a_recording_that_plays() {
    for codec in ["jpeg", "lz4", "h264"] {
        let dir = temp_dir();
        let (mut server, addr) = serve(&[
            "--width",
            "320",
            "--height",
            "240",
            "--fps",
            "60",
            "--codec",
            codec,
            "--record",
            dir.path().to_str().unwrap(),
            SERVE_PLAINTEXT,
        ]);
        wait_presented(&addr, 40);
        server.signal(libc::SIGKILL);
        server.wait_exit(Duration::from_secs(5));
        let files = recordings(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let ext = match codec {
            "jpeg" => "mjpeg",
            "h264" => "mp4",
            _ => "y4m",
        };
        assert!(files[0].extension().is_some_and(|e| e == ext), "{files:?}");
        let (frames, complaints) = ffmpeg_frames(&files[0]);
        assert!(frames >= 40, "{codec}: {frames} frames");
        assert_eq!(complaints, "", "{codec}: ffmpeg complained");
    }
}

/// A tmpfs of 2 MiB mounted for the test in a folder of its own: the recording
/// fills it. Unmounted on drop (before the folder goes).
struct TinyDisk(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl TinyDisk {
    fn mount() -> TinyDisk {
        let dir = temp_dir();
        let at = dir.path().join("disk");
        std::fs::create_dir(&at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "size=2m",
                "livestream-test",
                at.to_str().unwrap(),
            ])
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mounting a tmpfs needs root (the README's test command runs as root)"
        );
        TinyDisk(at, dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// H.264 on a full disk: the MP4 is cut back to its last whole fragment and
/// plays to there, in ffmpeg and in Chromium.
#[test]
fn a_full_disk_leaves_an_mp4_that_plays() {
    let tmpfs = TinyDisk::mount();
    let disk = tmpfs.path();
    // A camera-like picture at 8 Mbit/s fills the 2 MiB disk in about 2 s.
    let (mut server, _addr) = serve(&[
        "--source",
        "synthetic-camera",
        "--width",
        "1280",
        "--height",
        "720",
        "--fps",
        "30",
        "--codec",
        "h264",
        "--set",
        "codecs.h264.bitrate=8000",
        "--record",
        disk.to_str().unwrap(),
        SERVE_PLAINTEXT,
    ]);
    server.wait_stderr(
        "the disk is full: recording stopped after",
        1,
        Duration::from_secs(30),
    );
    server.terminate();
    let files = recordings(disk);
    assert_eq!(files.len(), 1);
    let said = server.stderr();
    let at = said.find("recording stopped after ").unwrap() + "recording stopped after ".len();
    let recorded: usize = said[at..].split(' ').next().unwrap().parse().unwrap();
    let (frames, complaints) = ffmpeg_frames(&files[0]);
    assert_eq!((frames, complaints.as_str()), (recorded, ""));
    assert!(frames >= 30, "{frames} frames");
    chromium_plays(&files[0]);
}

#[test]
fn a_full_disk_stops_the_recording_not_the_stream() {
    let tmpfs = TinyDisk::mount();
    let disk = tmpfs.path();
    // 320x240 4:4:4 Y4M frames are 230 KB: the disk is full after 9.
    let (mut server, addr) = serve_small(&[
        "--codec",
        "lz4",
        "--record",
        disk.to_str().unwrap(),
        SERVE_PLAINTEXT,
    ]);
    server.wait_stderr(
        "the disk is full: recording stopped after",
        1,
        Duration::from_secs(20),
    );
    let local = local_sink(&addr);
    assert_eq!(local["running"], false, "{local}");
    assert!(
        local["failed"].as_str().unwrap().contains("No space left"),
        "{local}"
    );
    // The stream goes on: a viewer gets 60 frames without a gap.
    let elsewhere = temp_dir();
    let out = elsewhere.path().join("after.lsr");
    record(&addr, &out, 60, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(20));
    assert_no_gaps(&out, 60);
    server.terminate();
    // What was recorded plays, every frame of it whole.
    let files = recordings(disk);
    assert_eq!(files.len(), 1);
    let stamps = y4m_stamps(&files[0]);
    assert!(stamps.len() >= 5, "{stamps:?}");
    let (frames, complaints) = ffmpeg_frames(&files[0]);
    assert_eq!((frames, complaints.as_str()), (stamps.len(), ""));
    let said = server.stderr();
    assert!(
        said.contains(&format!("recording stopped after {} frames", stamps.len())),
        "{said}"
    );
}

#[test]
fn segments_rotate_and_the_oldest_go_under_the_cap() {
    let dir = temp_dir();
    // Files that are not this sink's recordings are never touched.
    std::fs::write(dir.path().join("keep.txt"), b"mine").unwrap();
    std::fs::write(dir.path().join("holiday.mjpeg"), b"mine too").unwrap();
    let cap = 400_000u64;
    let (mut server, _addr) = serve_small(&[
        "--codec",
        "jpeg",
        "--record",
        dir.path().to_str().unwrap(),
        "--set",
        "sinks.record.segment-seconds=0.5",
        "--set",
        &format!("sinks.record.max-total-bytes={cap}"),
        SERVE_PLAINTEXT,
    ]);
    // Wait until segments have been deleted for the cap.
    server.wait_stderr(
        "record: deleted the oldest recording",
        2,
        Duration::from_secs(30),
    );
    server.terminate();
    let ours: Vec<PathBuf> = recordings(dir.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("record-")
        })
        .collect();
    let total: u64 = ours.iter().map(|p| p.metadata().unwrap().len()).sum();
    assert!(ours.len() >= 2, "{ours:?}");
    assert!(total <= cap, "{total} bytes in {ours:?}");
    for p in &ours {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        // record-YYYYmmdd-HHMMSS[-N].mjpeg
        let stem = name
            .strip_prefix("record-")
            .unwrap()
            .strip_suffix(".mjpeg")
            .unwrap();
        assert!(stem.len() >= 15 && stem.as_bytes()[8] == b'-', "{name}");
        let (frames, complaints) = ffmpeg_frames(p);
        assert!(
            frames >= 1 && complaints.is_empty(),
            "{name}: {frames} frames, {complaints}"
        );
    }
    assert_eq!(std::fs::read(dir.path().join("keep.txt")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read(dir.path().join("holiday.mjpeg")).unwrap(),
        b"mine too"
    );
}

#[test]
fn record_options_are_checked() {
    let dir = temp_dir();
    let mut out = Proc::spawn(
        "serve",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            SERVE_PLAINTEXT,
            "--record",
            dir.path().to_str().unwrap(),
            "--set",
            "sinks.record.segment-bytes=100",
        ],
    );
    let status = out.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}", out.stderr());
    assert!(
        out.stderr()
            .contains("segment-bytes must be 0 (off) or at least 65536"),
        "{}",
        out.stderr()
    );
}

/// `view --sink record` of a JPEG stream keeps the JPEGs as they came: no decode.
#[test]
fn a_viewer_records_jpeg_as_it_came() {
    let dir = temp_dir();
    let (mut server, addr) = serve_small(&["--codec", "jpeg", SERVE_PLAINTEXT]);
    let set = format!(
        "sinks.record.dir={}",
        toml::Value::String(dir.path().display().to_string())
    );
    let mut view = Proc::spawn(
        "view --sink record",
        &[
            "view",
            &addr,
            VIEW_PLAINTEXT,
            "--sink",
            "record",
            "--set",
            &set,
            "--frames",
            "30",
            "-q",
        ],
    );
    view.expect_success(Duration::from_secs(20));
    server.terminate();
    let files = recordings(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].extension().is_some_and(|e| e == "mjpeg"),
        "{files:?}"
    );
    let (frames, complaints) = ffmpeg_frames(&files[0]);
    assert_eq!((frames, complaints.as_str()), (30, ""));
}

/// With a cap set, a full disk frees the oldest segment and recording goes on.
#[test]
fn a_full_disk_under_a_cap_frees_the_oldest_segment() {
    let tmpfs = TinyDisk::mount();
    let disk = tmpfs.path();
    let (mut server, addr) = serve(&[
        "--width",
        "320",
        "--height",
        "240",
        "--fps",
        "60",
        "--codec",
        "jpeg",
        "--record",
        disk.to_str().unwrap(),
        "--set",
        "sinks.record.segment-seconds=0.5",
        // More than the disk holds: the disk fills before the cap is reached.
        "--set",
        "sinks.record.max-total-bytes=100000000",
        SERVE_PLAINTEXT,
    ]);
    server.wait_stderr(
        "record: deleted the oldest recording",
        2,
        Duration::from_secs(30),
    );
    let local = local_sink(&addr);
    assert_eq!(local["running"], true, "{local}");
    assert!(
        !server.stderr().contains("disk is full"),
        "{}",
        server.stderr()
    );
    server.terminate();
    for p in recordings(disk) {
        let (frames, complaints) = ffmpeg_frames(&p);
        assert!(
            frames >= 1 && complaints.is_empty(),
            "{}: {frames}, {complaints}",
            p.display()
        );
    }
}
