//! H.264 end to end over real TCP on 127.0.0.1: viewers never present a
//! corrupt picture, whatever happens to their frames on the way (joins,
//! stalls, hostile payloads), and keyframes made on request are coalesced.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use livestream::config::CaptureConfig;
use livestream::media::annexb;
use livestream::media::frame::{Frame, FrameInfo, PixelFormat};
use livestream::media::quality::psnr_y;
use livestream::net::protocol::{
    self, ClientHello, PacketHeader, ServerHello, Status, FLAG_KEYFRAME,
};
use livestream::sources::test_pattern::{read_stamp, TestPatternSource};

use crate::http_client::stats;
use crate::stream::{read_recording, which};
use crate::util::{
    record, serve_small, temp_dir, NetnsPair, Proc, SERVE_PLAINTEXT, VIEW_PLAINTEXT,
};
use crate::wait::wait_until;

const W: u32 = 320;
const H: u32 = 240;

fn serve_h264(more: &[&str]) -> (Proc, String) {
    let mut args = vec!["--codec", "h264", SERVE_PLAINTEXT];
    args.extend_from_slice(more);
    serve_small(&args)
}

/// Every recorded (presented) frame carries the test pattern's stamp for its
/// own sequence number and capture time, in rising order, and is within
/// `min_psnr` of the picture the pattern draws for that stamp: no corrupt
/// picture was presented. Returns the frames' sequence numbers.
fn assert_clean(path: &Path, min_psnr: f64) -> Vec<u64> {
    let frames = read_recording(path);
    assert!(!frames.is_empty(), "{}: no frames", path.display());
    let capture = CaptureConfig {
        width: W,
        height: H,
        fps: 30.0,
        format: PixelFormat::Rgb24,
    };
    let mut pattern = TestPatternSource::new(&capture, 4).unwrap();
    let mut expected = Frame::empty();
    let mut seqs = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let what = format!("{}: frame {i} (seq {})", path.display(), f.seq);
        let stamp = read_stamp(f).unwrap_or_else(|| panic!("{what}: no readable stamp"));
        assert_eq!(
            (stamp.seq, stamp.capture_us),
            (f.seq, f.capture_us),
            "{what}: the picture is another frame's"
        );
        if let Some(&last) = seqs.last() {
            assert!(f.seq > last, "{what}: out of order");
        }
        pattern.frame_at(stamp.seq, stamp.capture_us, &mut expected);
        let p = psnr_y(&expected, f).unwrap_or_else(|| panic!("{what}: no luma"));
        assert!(p >= min_psnr, "{what}: Y-PSNR {p:.1} dB");
        seqs.push(f.seq);
    }
    seqs
}

/// What a viewer logged at its end: how long after it began connecting its
/// first picture came, and the longest time between two pictures, in ms.
fn picture_times(viewer: &Proc) -> (f64, f64) {
    let said = viewer.stderr();
    let number_after = |label: &str| -> f64 {
        let at = said
            .find(label)
            .unwrap_or_else(|| panic!("no \"{label}\" in {}", viewer.said()));
        said[at + label.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after \"{label}\" in {}", viewer.said()))
    };
    (
        number_after("first picture "),
        number_after("longest gap between pictures "),
    )
}

/// How many frames a viewer logged that the server dropped for it.
fn dropped_by_server(viewer: &Proc) -> u64 {
    let said = viewer.stderr();
    let at = said
        .find("(server ")
        .unwrap_or_else(|| panic!("no drop count in {}", viewer.said()));
    said[at + "(server ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop count in {}", viewer.said()))
}

#[test]
fn viewers_decode_clean_pictures() {
    let dir = temp_dir();
    let (mut server, addr) = serve_h264(&[]);
    let mut viewers: Vec<Proc> = (0..3)
        .map(|i| {
            record(
                &addr,
                &dir.path().join(format!("v{i}.lsr")),
                60,
                &[VIEW_PLAINTEXT],
            )
        })
        .collect();
    for v in &mut viewers {
        v.expect_success(Duration::from_secs(30));
        v.assert_no_panic();
    }
    for (i, v) in viewers.iter().enumerate() {
        // Joining costs a connection, a handshake and one keyframe made on
        // request: on loopback about 20 ms (the benchmark measures it); the
        // bound leaves room for a loaded CI machine.
        let (first_ms, gap_ms) = picture_times(v);
        eprintln!("viewer {i}: first picture after {first_ms:.1} ms, longest gap {gap_ms:.1} ms");
        assert!(
            first_ms < 1000.0,
            "viewer {i}: first picture after {first_ms} ms"
        );
        let seqs = assert_clean(&dir.path().join(format!("v{i}.lsr")), 35.0);
        assert_eq!(seqs.len(), 60);
        // Each viewer started on a keyframe made for it, then got every frame.
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0] + 1, "viewer {i}: a gap after {}", w[0]);
        }
    }
    let s = stats(&addr);
    assert_eq!(s["codec"], "h264");
    server.terminate();
    server.assert_no_panic();
}

#[test]
fn a_stalled_viewer_resumes_on_a_keyframe() {
    let dir = temp_dir();
    // No periodic keyframes: only the ones asked for can bring it back.
    let (mut server, addr) = serve_h264(&["--set", "codecs.h264.keyframe-interval=0"]);
    let path = dir.path().join("stalled.lsr");
    // The kernel's socket buffers hold some 250 of these 1 KB frames, which
    // the viewer reads after the stall before any it missed: it records
    // enough to get past them.
    let mut viewer = record(&addr, &path, 600, &[VIEW_PLAINTEXT]);
    viewer.wait_stderr("connected to", 1, Duration::from_secs(10));
    wait_until(
        Duration::from_secs(10),
        "the viewer's first 20 frames",
        || (stats(&addr)["viewers"][0]["sent"].as_u64().unwrap_or(0) >= 20).then_some(()),
    );
    viewer.signal(libc::SIGSTOP);
    // Stalled until its socket buffers are full and the server has dropped
    // frames for it.
    wait_until(Duration::from_secs(30), "frames dropped for it", || {
        (stats(&addr)["viewers"][0]["dropped"].as_u64().unwrap_or(0) >= 20).then_some(())
    });
    let forced_before = stats(&addr)["keyframes_forced"].as_u64().unwrap();
    viewer.signal(libc::SIGCONT);
    viewer.expect_success(Duration::from_secs(60));
    let seqs = assert_clean(&path, 35.0);
    assert_eq!(seqs.len(), 600);
    assert!(
        seqs.windows(2).any(|w| w[1] > w[0] + 1),
        "frames were dropped in the stall"
    );
    let forced = stats(&addr)["keyframes_forced"].as_u64().unwrap();
    assert!(
        forced > forced_before,
        "it resumed on a keyframe made on request ({forced_before} → {forced})"
    );
    server.terminate();
}

#[test]
fn twenty_joins_cost_few_keyframes() {
    let dir = temp_dir();
    let (mut server, addr) = serve_h264(&[
        "--set",
        "codecs.h264.keyframe-interval=0",
        "--set",
        "serve.max-viewers=32",
    ]);
    let started = Instant::now();
    let mut viewers: Vec<Proc> = (0..20)
        .map(|i| {
            record(
                &addr,
                &dir.path().join(format!("j{i}.lsr")),
                15,
                &[VIEW_PLAINTEXT],
            )
        })
        .collect();
    for v in &mut viewers {
        v.expect_success(Duration::from_secs(60));
    }
    let spread = started.elapsed();
    for i in 0..20 {
        assert_clean(&dir.path().join(format!("j{i}.lsr")), 35.0);
    }
    // Keyframes on request are at least 100 ms apart, and answer every
    // request made before them: however the joins spread, at most one
    // keyframe per 100 ms of it, plus the first.
    let forced = stats(&addr)["keyframes_forced"].as_u64().unwrap();
    let asked = stats(&addr)["keyframes_asked"].as_u64().unwrap();
    let bound = spread.as_millis() as u64 / 100 + 1;
    // A viewer whose first frame happens to be a keyframe made for another
    // need not ask.
    assert!(
        asked >= 1 && forced >= 1,
        "{asked} requests, {forced} keyframes"
    );
    assert!(
        forced <= bound,
        "{forced} keyframes for {asked} requests over {spread:?}"
    );
    server.terminate();
}

/// A server of our own that speaks the protocol and sends the h264 payloads
/// `frames` gives it, with their keyframe flags; returns once it sent them
/// all and the viewer closed the connection or 10 s passed.
fn fake_server(listener: TcpListener, frames: Vec<(Vec<u8>, bool)>) {
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    ClientHello::read(&mut s).unwrap();
    ServerHello {
        status: Status::Ok,
        codec: "h264".into(),
        frame: FrameInfo::packed(PixelFormat::I420, W, H).unwrap(),
        fps: 30.0,
        max_payload: 1 << 20,
        server_time_us: livestream::media::clock::now_us(),
        message: "hostile".into(),
    }
    .write(&mut s)
    .unwrap();
    for (seq, (payload, key)) in frames.into_iter().enumerate() {
        let header = PacketHeader {
            kind: protocol::PACKET_FRAME,
            flags: if key { FLAG_KEYFRAME } else { 0 },
            len: payload.len() as u32,
            seq: seq as u64,
            // The time the test pattern stamped into the picture.
            capture_us: seq as u64 * 33_333,
        };
        if protocol::write_packet(&mut s, &header, &payload).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5)); // paced, as a camera is
    }
    let _ = protocol::write_end(&mut s, "done", true);
    let _ = s.flush();
}

/// Real H.264 of the test pattern, from the codec the server uses.
fn encoded(n: usize, key_every: usize) -> Vec<(Vec<u8>, bool)> {
    let capture = CaptureConfig {
        width: W,
        height: H,
        fps: 30.0,
        format: PixelFormat::I420,
    };
    let mut pattern = TestPatternSource::new(&capture, 4).unwrap();
    let cfg = livestream::config::Config::parse(
        livestream::backend::table::ConfigText::embedded(),
        &livestream::config::Overrides::default(),
    )
    .unwrap();
    let backend = livestream::registry::codec("h264").unwrap();
    let mut codec = (backend.open)(&cfg.backend(livestream::backend::Kind::Codec, "h264")).unwrap();
    let mut f = Frame::empty();
    (0..n)
        .map(|i| {
            pattern.frame_at(i as u64, i as u64 * 33_333, &mut f);
            if i % key_every == 0 {
                codec.request_keyframe();
            }
            let mut out = Vec::new();
            let e = codec.encode(&f, &mut out).unwrap();
            (out, e.keyframe)
        })
        .collect()
}

#[test]
fn hostile_payloads_resynchronise_at_a_keyframe() {
    let mut frames = encoded(60, 20);
    assert!(frames[0].1 && frames[20].1 && frames[40].1);
    let mut rng = fastrand::Rng::with_seed(5);
    // Random bytes first (it cannot decode), then truncated and mutated frames
    // and a truncated keyframe, all while the viewer waits for a keyframe:
    // they must be skipped, not decoded.
    frames[3].0 = (0..300).map(|_| rng.u8(..)).collect();
    let half = frames[5].0.len() / 2;
    frames[5].0.truncate(half);
    for _ in 0..8 {
        let at = rng.usize(4..frames[7].0.len());
        frames[7].0[at] = rng.u8(..);
    }
    frames[20].0.truncate(12);
    frames[22].0 = vec![0, 0, 1];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || fake_server(listener, frames));
    let dir = temp_dir();
    let path = dir.path().join("hostile.lsr");
    let mut viewer = record(&addr, &path, 1000, &[VIEW_PLAINTEXT, "--no-reconnect"]);
    viewer.wait_exit(Duration::from_secs(30));
    server.join().unwrap();
    viewer.assert_no_panic();
    let said = viewer.stderr();
    assert!(said.contains("waiting for a keyframe"), "{said}");
    // It presented frames from before the damage, skipped everything up to
    // the next good keyframe (20 was damaged itself), and went on from 40 to
    // the end (a picture the file sink was too busy for may be dropped: newest
    // wins after the decoder).
    let seqs = assert_clean(&path, 35.0);
    assert!(seqs.iter().any(|&s| s < 3), "{seqs:?}");
    assert!(!seqs.iter().any(|s| (3..40).contains(s)), "{seqs:?}");
    assert!(seqs.iter().filter(|&&s| s >= 40).count() >= 10, "{seqs:?}");
    assert_eq!(seqs.last(), Some(&59), "{seqs:?}");
}

const KEEP_H264: [&str; 3] = ["--set", "sinks.file.keep-h264=true", VIEW_PLAINTEXT];

/// 90 frames of the test pattern's H.264 stream as a viewer kept them, in
/// `dir`/original.lsr: the stand-in for a camera that delivers H.264.
fn h264_recording(dir: &Path) -> (std::path::PathBuf, Vec<Frame>) {
    let original = dir.join("original.lsr");
    let (mut server, addr) = serve_h264(&[]);
    record(&addr, &original, 90, &KEEP_H264).expect_success(Duration::from_secs(30));
    server.terminate();
    let recorded = read_recording(&original);
    assert_eq!(recorded.len(), 90);
    for (i, f) in recorded.iter().enumerate() {
        assert_eq!(f.info.format, PixelFormat::H264, "frame {i}");
        let au = annexb::check_access_unit(&f.data).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert!(i > 0 || au.keyframe, "the recording starts on a keyframe");
    }
    assert!(
        recorded.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "the recording has every frame of its stretch"
    );
    (original, recorded)
}

/// A server replaying `recording` (H.264) in a loop, as an H.264 camera.
fn replay_h264(recording: &Path, more: &[&str]) -> (Proc, String) {
    let path = format!("sources.file.path={}", recording.display());
    let mut args = vec![
        "--source",
        "file",
        "--set",
        &path,
        "--set",
        "sources.file.loop=true",
        "--codec",
        "h264",
        SERVE_PLAINTEXT,
    ];
    args.extend_from_slice(more);
    crate::util::serve(&args)
}

/// The access units of an H.264 stream recorded as they came (`keep-h264`),
/// replayed by the `file` source through the `h264` codec, reach a viewer
/// byte for byte (no re-encode), and another viewer decodes them into the
/// pictures that were first recorded.
#[test]
fn recorded_h264_passes_through_unchanged() {
    let dir = temp_dir();
    let (original, recorded) = h264_recording(dir.path());
    let keep = KEEP_H264;
    let (mut replay, addr) = replay_h264(&original, &[]);
    let (copy, decoded) = (dir.path().join("copy.lsr"), dir.path().join("decoded.lsr"));
    let mut a = record(&addr, &copy, 60, &keep);
    let mut b = record(&addr, &decoded, 60, &[VIEW_PLAINTEXT]);
    a.expect_success(Duration::from_secs(30));
    b.expect_success(Duration::from_secs(30));
    replay.terminate();
    replay.assert_no_panic();
    assert!(
        replay.stdout().contains("passed through"),
        "{}",
        replay.said()
    );

    // The file source numbers frames from 0 as it replays them, in a loop.
    let original_of = |seq: u64| &recorded[(seq % recorded.len() as u64) as usize];
    let copies = read_recording(&copy);
    assert_eq!(copies.len(), 60);
    for f in &copies {
        assert_eq!(f.info.format, PixelFormat::H264);
        assert!(
            f.data == original_of(f.seq).data,
            "replayed frame {}: its bytes changed on the way",
            f.seq
        );
    }
    // A frame the server had to drop for it (a loaded machine) is followed
    // by the file's next keyframe, never by a delta that needed it.
    for w in copies.windows(2) {
        let resumed = annexb::check_access_unit(&w[1].data).is_ok_and(|a| a.keyframe);
        assert!(
            w[1].seq == w[0].seq + 1 || resumed,
            "after a gap ({} to {}) a delta",
            w[0].seq,
            w[1].seq
        );
    }
    // A codec that may drop any frame is refused for such a source, saying
    // which to use.
    let path = format!("sources.file.path={}", original.display());
    let mut lz4 = Proc::spawn(
        "serve-lz4",
        &[
            "serve",
            "--source",
            "file",
            "--set",
            &path,
            "--codec",
            "lz4",
            "--listen",
            "127.0.0.1:0",
            SERVE_PLAINTEXT,
        ],
    );
    let status = lz4.wait_exit(Duration::from_secs(20));
    assert!(
        !status.success() && lz4.stderr().contains("codec `h264` or `auto`"),
        "{}",
        lz4.said()
    );
    // Decoded: each picture is the test pattern's frame that was first
    // recorded in that place.
    for f in read_recording(&decoded) {
        let stamp = read_stamp(&f).unwrap_or_else(|| panic!("frame {}: no stamp", f.seq));
        assert_eq!(stamp.seq, original_of(f.seq).seq, "frame {}", f.seq);
    }
}

/// A link that carries less than the stream: the server drops frames for this
/// viewer, each drop breaks the chain, and the viewer resumes on a keyframe
/// made for it. It sees fewer frames, each of them whole and in order, and no
/// long freeze.
#[test]
fn a_viewer_behind_a_narrow_link_sees_fewer_frames_never_a_corrupt_one() {
    // The test pattern's stream takes about 270 kbit/s here; the link's
    // queue holds 20 ms, as a WiFi link's does when it is not bloated.
    let link = NetnsPair::shaped(Some(("150kbit", "4kb", "20ms")));
    let mut server = link.serve(
        "10.231.0.1:7879",
        &[
            "--codec",
            "h264",
            "--set",
            "codecs.h264.bitrate=1500",
            SERVE_PLAINTEXT,
        ],
    );
    let dir = temp_dir();
    let path = dir.path().join("narrow.lsr");
    let set = format!("sinks.file.path={}", path.display());
    let mut view = NetnsPair::livestream(
        &link.viewer_ns,
        "view (narrow link)",
        &[
            "view",
            "10.231.0.1:7879",
            "--sink",
            "file",
            "--set",
            &set,
            "--duration",
            "6",
            "-q",
            VIEW_PLAINTEXT,
        ],
    );
    view.expect_success(Duration::from_secs(30));
    view.assert_no_panic();
    server.terminate();
    server.assert_no_panic();
    let seqs = assert_clean(&path, 35.0);
    let dropped = dropped_by_server(&view);
    let (first_ms, gap_ms) = picture_times(&view);
    eprintln!(
        "narrow link: {} pictures in 6 s, {dropped} frames dropped by the server, \
         first picture after {first_ms:.0} ms, longest gap {gap_ms:.0} ms",
        seqs.len()
    );
    assert!(dropped > 0, "the link carried everything: {}", view.said());
    assert!(seqs.len() >= 20, "{} pictures in 6 s", seqs.len());
    assert!(gap_ms < 1500.0, "a freeze of {gap_ms} ms");
}

/// A source that does not pace itself (`fps = 0`) is read only when a frame
/// will be taken: what it captures stays close to what the one viewer gets,
/// instead of several frames read and thrown away for each one sent.
#[test]
fn an_unpaced_source_is_read_only_as_fast_as_frames_are_taken() {
    let dir = temp_dir();
    let (mut server, addr) = crate::util::serve(&[
        "--width",
        "320",
        "--height",
        "240",
        "--fps",
        "0",
        "--codec",
        "jpeg",
        SERVE_PLAINTEXT,
    ]);
    let path = dir.path().join("unpaced.lsr");
    record(&addr, &path, 120, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(30));
    let s = stats(&addr);
    let captured = s["frames_captured"].as_u64().unwrap();
    server.terminate();
    let got = read_recording(&path).len() as u64;
    eprintln!("unpaced: {captured} frames captured for {got} presented");
    // Between the viewer's 120th frame and the stats call the server goes on
    // for one frame at a time per subscriber; the bound leaves room for that.
    assert!(
        captured <= got * 3 / 2 + 20,
        "{captured} frames captured for {got} the viewer got"
    );
}

/// Grey pictures of `W`x`H`, as ffmpeg decodes `input` (a JPEG file, an MJPEG
/// URL), at most `frames` of them.
fn ffmpeg_grey(input: &str, frames: usize) -> Vec<Frame> {
    let ffmpeg = which("ffmpeg").expect("ffmpeg is needed: the README's test command installs it");
    let out = std::process::Command::new(ffmpeg)
        .args(["-v", "error", "-i", input, "-frames:v"])
        .arg(frames.to_string())
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg on {input}: {stderr}");
    let info = FrameInfo::packed(PixelFormat::Grey, W, H).unwrap();
    out.stdout
        .chunks_exact(info.byte_len())
        .map(|luma| Frame {
            info,
            seq: 0,
            capture_us: 0,
            data: luma.to_vec(),
        })
        .collect()
}

/// An H.264 camera (the `file` source replaying H.264) for browsers and for
/// the server's own sinks that want pixels: `/snapshot.jpg`, `/stream.mjpg`
/// and a local `file` sink storing pixels get decoded pictures, each the test
/// pattern's frame that was recorded, never a corrupt one (the stamp's check
/// word would not read).
#[test]
fn an_h264_camera_reaches_browsers_and_local_sinks_as_pictures() {
    let dir = temp_dir();
    let (original, recorded) = h264_recording(dir.path());
    let local = dir.path().join("local.lsr");
    let local_path = format!("sinks.file.path={}", local.display());
    let (mut replay, addr) = replay_h264(
        &original,
        &["--set", "serve.sinks=[\"file\"]", "--set", &local_path],
    );
    let recorded_seqs: Vec<u64> = recorded.iter().map(|f| f.seq).collect();
    let is_recorded = |what: &str, f: &Frame| {
        let stamp = read_stamp(f).unwrap_or_else(|| panic!("{what}: no readable stamp"));
        assert!(
            recorded_seqs.contains(&stamp.seq),
            "{what}: frame {} was never recorded",
            stamp.seq
        );
        stamp.seq
    };

    let snapshot = crate::http_client::get(&addr, "/snapshot.jpg");
    assert_eq!(snapshot.status, 200, "{}", replay.said());
    assert_eq!(snapshot.header("content-type"), Some("image/jpeg"));
    let jpg = dir.path().join("snapshot.jpg");
    std::fs::write(&jpg, &snapshot.body).unwrap();
    let pictures = ffmpeg_grey(jpg.to_str().unwrap(), 1);
    assert_eq!(pictures.len(), 1);
    is_recorded("snapshot", &pictures[0]);

    let url = format!("http://{addr}/stream.mjpg");
    let pictures = ffmpeg_grey(&url, 30);
    assert_eq!(pictures.len(), 30);
    let mut seen: Vec<u64> = pictures
        .iter()
        .enumerate()
        .map(|(i, f)| is_recorded(&format!("MJPEG picture {i}"), f))
        .collect();
    seen.sort();
    seen.dedup();
    assert!(seen.len() > 20, "only {} distinct pictures", seen.len());

    wait_until(
        Duration::from_secs(20),
        "60 frames in the server's own file sink",
        || (stats(&addr)["local_sinks"][0]["presented"].as_u64()? >= 60).then_some(()),
    );
    replay.terminate();
    replay.assert_no_panic();
    let frames = read_recording(&local);
    assert!(frames.len() >= 60, "{} frames", frames.len());
    let original_of = |seq: u64| recorded[(seq % recorded.len() as u64) as usize].seq;
    for w in frames.windows(2) {
        assert!(
            w[1].seq > w[0].seq,
            "out of order: {} then {}",
            w[0].seq,
            w[1].seq
        );
    }
    for f in &frames {
        assert_ne!(f.info.format, PixelFormat::H264, "pixels, not access units");
        let seq = is_recorded(&format!("local frame {}", f.seq), f);
        assert_eq!(seq, original_of(f.seq), "local frame {}", f.seq);
    }
}

/// A camera's H.264 with one broken access unit: the server refuses it, and
/// no frame that depends on it reaches a viewer (the encoder's numbering
/// skips it, so every viewer's chain waits for the next keyframe). Every
/// picture the viewer presents is the recorded frame of its place.
#[test]
fn a_broken_access_unit_from_the_source_takes_its_dependants_with_it() {
    let dir = temp_dir();
    let (original, recorded) = h264_recording(dir.path());
    let keyframes: Vec<usize> = (0..recorded.len())
        .filter(|&i| annexb::check_access_unit(&recorded[i].data).is_ok_and(|a| a.keyframe))
        .collect();
    // The delta after the first keyframe breaks; up to the next keyframe
    // (the loop's first frame, if none is in between) nothing may be shown.
    let broken = keyframes[0] + 1;
    let next_key = keyframes
        .iter()
        .copied()
        .find(|&k| k > broken)
        .unwrap_or(recorded.len());
    assert!(
        next_key > broken + 2 && !keyframes.contains(&broken),
        "keyframes at {keyframes:?}"
    );
    let stream = {
        let file = std::fs::File::open(&original).unwrap();
        let limits = livestream::media::frame::Limits::default();
        livestream::media::recording::RecordingReader::new(std::io::BufReader::new(file), &limits)
            .unwrap()
            .stream_info()
    };
    let damaged = dir.path().join("damaged.lsr");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&damaged).unwrap());
    livestream::media::recording::write_header(&mut out, &stream).unwrap();
    for (i, f) in recorded.iter().enumerate() {
        let mut f = f.clone();
        if i == broken {
            f.data = vec![0xa5; f.data.len().max(64)];
        }
        livestream::media::recording::write_record(&mut out, &f).unwrap();
    }
    out.flush().unwrap();
    drop(out);

    // The server's own recording keeps the H.264 as it came; a viewer
    // decodes it.
    let (kept, decoded) = (dir.path().join("kept.lsr"), dir.path().join("decoded.lsr"));
    let kept_path = format!("sinks.file.path={}", kept.display());
    let (mut replay, addr) = replay_h264(
        &damaged,
        &[
            "--set",
            "serve.sinks=[\"file\"]",
            "--set",
            &kept_path,
            "--set",
            "sinks.file.keep-h264=true",
        ],
    );
    record(&addr, &decoded, 30, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(60));
    replay.terminate();
    replay.assert_no_panic();
    assert!(
        replay.stderr().contains("failed"),
        "the server said nothing of the broken frame: {}",
        replay.said()
    );
    let n = recorded.len() as u64;
    // What the server's recording kept: not one dependant of the broken
    // access unit (a viewer also sees the gap in the frame numbers, but the
    // server's own sinks follow the encoder's count).
    let kept = read_recording(&kept);
    assert!(kept.len() >= 30, "{} frames kept", kept.len());
    for f in &kept {
        let place = (f.seq % n) as usize;
        assert!(
            !(broken..next_key).contains(&place),
            "kept frame {} (place {place}) depends on the broken one at {broken}",
            f.seq
        );
        assert!(f.data == recorded[place].data, "kept frame {}", f.seq);
    }
    let frames = read_recording(&decoded);
    assert_eq!(frames.len(), 30);
    for f in &frames {
        let place = (f.seq % n) as usize;
        assert!(
            !(broken..next_key).contains(&place),
            "frame {} (place {place} of the recording) depends on the broken one at {broken}",
            f.seq
        );
        let stamp = read_stamp(f).unwrap_or_else(|| panic!("frame {}: no stamp", f.seq));
        assert_eq!(stamp.seq, recorded[place].seq, "frame {}", f.seq);
    }
}
