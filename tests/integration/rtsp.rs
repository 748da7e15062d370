//! RTSP over real TCP and UDP on 127.0.0.1, with real clients: ffmpeg over
//! TCP and UDP (digest auth), GStreamer's `rtspsrc`, and raw requests for
//! basic auth and the hostile cases. Every picture a client decodes carries
//! the test pattern's stamp, in order: none is corrupt.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use livestream::media::frame::{Frame, FrameInfo, PixelFormat};
use livestream::sources::test_pattern::read_stamp;

use crate::stream::which;
use crate::util::{record, serve_small, Proc, SERVE_PLAINTEXT, VIEW_PLAINTEXT};

const W: u32 = 320;
const H: u32 = 240;

/// `serve` of the test pattern in H.264, with pairing: the server, its
/// address and the RTSP URL it printed (with the token).
fn serve_rtsp(more: &[&str]) -> (Proc, String, String) {
    serve_rtsp_codec("h264", more)
}

/// [`serve_rtsp`] with another codec.
fn serve_rtsp_codec(codec: &str, more: &[&str]) -> (Proc, String, String) {
    let mut args = vec!["--codec", codec];
    args.extend_from_slice(more);
    let (server, addr) = serve_small(&args);
    server.wait_for("the RTSP URL", Duration::from_secs(10), |out, _| {
        out.contains("rtsp://")
    });
    let url = server
        .stdout()
        .split_whitespace()
        .find(|w| w.starts_with("rtsp://"))
        .unwrap()
        .to_string();
    (server, addr, url)
}

/// Pictures decoded by ffmpeg from `url` over `transport`, as grey frames.
fn ffmpeg_pictures(url: &str, transport: &str, frames: usize) -> Result<Vec<Frame>, String> {
    let ffmpeg = which("ffmpeg").expect("ffmpeg is needed: the README's test command installs it");
    let out = Command::new(ffmpeg)
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-timeout",
            "10000000",
        ])
        .args(["-i", url, "-frames:v"])
        .arg(frames.to_string())
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
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(grey_frames(&out.stdout))
}

fn grey_frames(bytes: &[u8]) -> Vec<Frame> {
    let info = FrameInfo::packed(PixelFormat::Grey, W, H).unwrap();
    bytes
        .chunks_exact(info.byte_len())
        .map(|luma| Frame {
            info,
            seq: 0,
            capture_us: 0,
            data: luma.to_vec(),
        })
        .collect()
}

/// Every picture has a readable stamp (its check word holds: not corrupt),
/// and they come in capture order.
fn assert_whole_and_in_order(pictures: &[Frame], what: &str) {
    let mut last = None;
    for (i, p) in pictures.iter().enumerate() {
        let stamp = read_stamp(p).unwrap_or_else(|| panic!("{what}: picture {i} is corrupt"));
        if let Some(last) = last {
            assert!(
                stamp.seq > last,
                "{what}: picture {i} (frame {}) after frame {last}",
                stamp.seq
            );
        }
        last = Some(stamp.seq);
    }
}

#[test]
fn ffmpeg_plays_over_tcp_and_udp_and_every_picture_is_whole() {
    let (mut server, _addr, url) = serve_rtsp(&[]);
    for transport in ["tcp", "udp"] {
        let pictures = ffmpeg_pictures(&url, transport, 60)
            .unwrap_or_else(|e| panic!("{transport}: ffmpeg: {e}\n{}", server.said()));
        assert_eq!(pictures.len(), 60, "{transport}");
        assert_whole_and_in_order(&pictures, transport);
    }
    server.wait_for("both clients gone", Duration::from_secs(10), |_, err| {
        err.matches("RTSP viewer").count() >= 2
    });
    let said = server.stderr();
    assert!(
        said.contains("playing over TCP") && said.contains("playing over UDP"),
        "{said}"
    );
    server.terminate();
    server.assert_no_panic();
}

/// A JPEG stream goes out as RTP/JPEG (RFC 2435): ffmpeg rebuilds every
/// picture, whole and in order, over TCP and UDP; a 4:4:4 stream, which
/// RTP/JPEG cannot carry, is refused at DESCRIBE with the reason.
#[test]
fn a_jpeg_stream_plays_as_rtp_jpeg_and_one_that_cannot_is_refused() {
    let (mut server, _addr, url) = serve_rtsp_codec("jpeg", &[]);
    for transport in ["tcp", "udp"] {
        let pictures = ffmpeg_pictures(&url, transport, 30)
            .unwrap_or_else(|e| panic!("{transport}: ffmpeg: {e}\n{}", server.said()));
        assert_eq!(pictures.len(), 30, "{transport}");
        assert_whole_and_in_order(&pictures, transport);
    }
    server.terminate();
    server.assert_no_panic();
    let (mut server, addr, _url) = serve_rtsp_codec(
        "jpeg",
        &[
            "--set",
            "codecs.jpeg.subsampling=\"4:4:4\"",
            SERVE_PLAINTEXT,
        ],
    );
    let answer = exchange(
        &addr,
        &format!("DESCRIBE rtsp://{addr}/stream RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    );
    assert!(answer.starts_with("RTSP/1.0 415"), "{answer}");
    assert!(answer.contains("4:4:4"), "{answer}");
    server.terminate();
}

/// `[serve] rtsp-listen`: RTSP clients on a second port (8554 in real
/// use) get the same stream, and `serve` prints that URL too.
#[test]
fn a_second_port_serves_rtsp_clients_too() {
    let port = crate::util::free_port();
    let listen = format!("serve.rtsp-listen=\"127.0.0.1:{port}\"");
    let (mut server, _addr, _url) = serve_rtsp(&[SERVE_PLAINTEXT, "--set", &listen]);
    let url = format!("rtsp://127.0.0.1:{port}/stream");
    assert!(server.stdout().contains(&url), "{}", server.said());
    let pictures = ffmpeg_pictures(&url, "tcp", 30).unwrap();
    assert_eq!(pictures.len(), 30);
    assert_whole_and_in_order(&pictures, "second port");
    server.terminate();
    server.assert_no_panic();
}

/// One request on its own connection; the response head and body.
fn exchange(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    read_response(&mut s)
}

/// Reads one response (head and `Content-Length` body).
fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                return String::from_utf8_lossy(&got[..end + 4 + len]).into_owned();
            }
        }
        // A connection the server refused at once (too many in their
        // handshake) is reset rather than closed when a request was sent.
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("reading an RTSP response: {e} (so far: {text:?})"),
        };
        if n == 0 {
            return text;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// A connection of its own to the server at `addr`, reads bounded in time.
fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// SETUP of the stream's track over `transport` on `s`: the answer.
fn set_up(s: &mut TcpStream, plain: &str, transport: &str) -> String {
    s.write_all(
        format!("SETUP {plain}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: {transport}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    read_response(s)
}

/// The session a SETUP's answer names.
fn session_of(setup: &str) -> String {
    setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session in {setup:?}"))
        .to_string()
}

/// PLAY of `session` on `s`: the answer.
fn play(s: &mut TcpStream, plain: &str, session: &str) -> String {
    s.write_all(
        format!("PLAY {plain} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    read_response(s)
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_token_is_the_password_of_basic_and_digest_auth() {
    let (mut server, addr, url) = serve_rtsp(&[]);
    let token = url
        .split_once(':')
        .and_then(|(_, rest)| rest.split_once(':'))
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(t, _)| t.to_string())
        .unwrap();
    let plain = format!("rtsp://{addr}/stream");
    // No token: 401, offering digest and basic. OPTIONS needs none.
    let options = exchange(
        &addr,
        &format!("OPTIONS {plain} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
    );
    assert!(
        options.starts_with("RTSP/1.0 200 OK\r\nCSeq: 1\r\n"),
        "{options}"
    );
    assert!(options.contains("DESCRIBE"), "{options}");
    let refused = exchange(
        &addr,
        &format!("DESCRIBE {plain} RTSP/1.0\r\nCSeq: 2\r\n\r\n"),
    );
    assert!(
        refused.starts_with("RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\n"),
        "{refused}"
    );
    assert!(
        refused.contains("WWW-Authenticate: Basic realm=\"livestream\""),
        "{refused}"
    );
    let nonce = refused
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    assert!(nonce.len() >= 16, "{refused}");
    // ffmpeg without the token says 401.
    let err = ffmpeg_pictures(&plain, "tcp", 1).unwrap_err();
    assert!(err.contains("401"), "{err}");

    // Basic, with the token as the password (any user): the SDP.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let describe = |auth: &str| {
        exchange(
            &addr,
            &format!("DESCRIBE {plain} RTSP/1.0\r\nCSeq: 3\r\nAuthorization: {auth}\r\n\r\n"),
        )
    };
    let ok = describe(&format!("Basic {}", b64.encode(format!("nvr:{token}"))));
    assert!(ok.starts_with("RTSP/1.0 200 OK\r\n"), "{ok}");
    assert!(ok.contains("Content-Type: application/sdp"), "{ok}");
    assert!(ok.contains("a=rtpmap:96 H264/90000"), "{ok}");
    assert!(ok.contains("sprop-parameter-sets="), "{ok}");
    assert!(ok.contains("a=x-dimensions:320,240"), "{ok}");
    let wrong = describe(&format!("Basic {}", b64.encode("nvr:not-the-token")));
    assert!(wrong.starts_with("RTSP/1.0 401"), "{wrong}");

    // Digest on one connection (its nonce), as ffmpeg and NVRs do it.
    let mut s = connect(&addr);
    s.write_all(format!("DESCRIBE {plain} RTSP/1.0\r\nCSeq: 1\r\n\r\n").as_bytes())
        .unwrap();
    let challenge = read_response(&mut s);
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let ha1 = md5_hex(&format!("ha:livestream:{token}"));
    let ha2 = md5_hex(&format!("DESCRIBE:{plain}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
    s.write_all(
        format!(
            "DESCRIBE {plain} RTSP/1.0\r\nCSeq: 2\r\nAuthorization: Digest username=\"ha\", \
             realm=\"livestream\", nonce=\"{nonce}\", uri=\"{plain}\", response=\"{response}\"\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let ok = read_response(&mut s);
    assert!(ok.starts_with("RTSP/1.0 200 OK\r\nCSeq: 2\r\n"), "{ok}");
    server.terminate();
    server.assert_no_panic();
}

#[test]
fn gstreamer_rtspsrc_decodes_the_stream() {
    let Some(gst) = which("gst-launch-1.0") else {
        panic!("gst-launch-1.0 is needed: the README's test command installs it");
    };
    let (mut server, _addr, url) = serve_rtsp(&[]);
    let dir = crate::util::temp_dir();
    let out = dir.path().join("frames.grey");
    let (user, token) = {
        let creds = url.trim_start_matches("rtsp://").split('@').next().unwrap();
        let (u, t) = creds.split_once(':').unwrap();
        (u.to_string(), t.to_string())
    };
    let plain = format!("rtsp://{}", url.split('@').nth(1).unwrap());
    let result = Command::new(gst)
        .args(["-q", "-e", "rtspsrc"])
        .arg(format!("location={plain}"))
        .arg(format!("user-id={user}"))
        .arg(format!("user-pw={token}"))
        .args([
            "protocols=tcp",
            "latency=0",
            "!",
            "rtph264depay",
            "!",
            "avdec_h264",
        ])
        .args(["!", "identity", "eos-after=60", "!", "videoconvert", "!"])
        .arg("video/x-raw,format=GRAY8")
        .args(["!", "filesink"])
        .arg(format!("location={}", out.display()))
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "gst-launch: {}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let pictures = grey_frames(&std::fs::read(&out).unwrap());
    assert!(pictures.len() >= 59, "{} pictures", pictures.len());
    assert_whole_and_in_order(&pictures, "gstreamer");
    server.terminate();
    server.assert_no_panic();
}

/// Broken and hostile requests get clear answers, each ends only its own
/// connection, and a native viewer watching meanwhile sees every frame.
#[test]
fn hostile_requests_get_clear_answers_and_harm_no_one() {
    // Open (no pairing): what is tried here is RTSP itself.
    let (mut server, addr, _url) = serve_rtsp(&[SERVE_PLAINTEXT]);
    let dir = crate::util::temp_dir();
    let rec = dir.path().join("native.lsr");
    let mut native = record(&addr, &rec, 90, &[VIEW_PLAINTEXT]);
    let plain = format!("rtsp://{addr}/stream");
    let cases: Vec<(String, &str)> = vec![
        // A head over the bound.
        (
            format!(
                "OPTIONS {plain} RTSP/1.0\r\nX: {}\r\n\r\n",
                "a".repeat(9000)
            ),
            "RTSP/1.0 400",
        ),
        // Not RTSP after its method.
        ("SETUP \x01\x02\x03\r\n\r\n".to_string(), "RTSP/1.0 400"),
        // No such path.
        (
            format!("DESCRIBE rtsp://{addr}/other RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            "RTSP/1.0 404",
        ),
        // PLAY with no session set up, and of a session that is not there.
        (
            format!("PLAY {plain} RTSP/1.0\r\nCSeq: 1\r\nSession: 1234\r\n\r\n"),
            "RTSP/1.0 455",
        ),
        // A transport we do not serve, and an interleaved channel out of range.
        (
            format!(
                "SETUP {plain}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
                 Transport: RTP/AVP;multicast\r\n\r\n"
            ),
            "RTSP/1.0 461",
        ),
        (
            format!(
                "SETUP {plain}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
                 Transport: RTP/AVP/TCP;interleaved=255-256\r\n\r\n"
            ),
            "RTSP/1.0 461",
        ),
        // Publishing is not taken.
        (
            format!("ANNOUNCE {plain} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            "RTSP/1.0 405",
        ),
    ];
    for (request, expected) in &cases {
        let answer = exchange(&addr, request);
        assert!(
            answer.starts_with(expected),
            "{:?} → {answer:?}",
            &request[..request.len().min(80)]
        );
    }
    // SETUP, then PLAY of another session id: 454.
    let mut s = connect(&addr);
    let setup = set_up(&mut s, &plain, "RTP/AVP/TCP;unicast;interleaved=0-1");
    assert!(setup.starts_with("RTSP/1.0 200"), "{setup}");
    assert!(setup.contains("Session: "), "{setup}");
    assert!(play(&mut s, &plain, "FFFF").starts_with("RTSP/1.0 454"));
    // UDP to ports where no one listens: the server sends into the void
    // until the client's connection goes.
    let mut u = connect(&addr);
    let setup = set_up(&mut u, &plain, "RTP/AVP;unicast;client_port=9-10");
    let session = session_of(&setup);
    assert!(play(&mut u, &plain, &session).starts_with("RTSP/1.0 200"));
    // Many sessions set up and never played, then dropped.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut c = connect(&addr);
            assert!(
                set_up(&mut c, &plain, "RTP/AVP/TCP;unicast;interleaved=0-1")
                    .starts_with("RTSP/1.0 200")
            );
            c
        })
        .collect();
    native.expect_success(Duration::from_secs(30));
    crate::util::assert_no_gaps(&rec, 90);
    drop(idle);
    drop(u);
    drop(s);
    server.wait_for(
        "the UDP session to end",
        Duration::from_secs(10),
        |_, err| err.contains("RTSP viewer") && err.contains("closed the connection"),
    );
    server.terminate();
    server.assert_no_panic();
}

/// ffmpeg listening for a publisher at `url`: takes 60 pictures into `out`.
fn rtsp_listener(url: &str, out: &std::path::Path) -> Proc {
    let out = out.to_str().unwrap();
    Proc::spawn_program(
        "ffmpeg",
        "ffmpeg-listen",
        &[
            "-v",
            "error",
            "-rtsp_flags",
            "listen",
            "-i",
            url,
            "-frames:v",
            "60",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-y",
            out,
        ],
    )
}

/// `serve --publish`: ffmpeg's RTSP listener takes our ANNOUNCE, SETUP and
/// RECORD and decodes 60 whole pictures; when it goes and comes back, the
/// server connects again by itself and pictures flow again.
#[test]
fn publishing_reaches_a_listener_and_comes_back_after_it_restarts() {
    assert!(which("ffmpeg").is_some(), "ffmpeg is needed");
    let dir = crate::util::temp_dir();
    let url = format!("rtsp://127.0.0.1:{}/live", crate::util::free_port());
    let first = dir.path().join("first.grey");
    let mut listener = rtsp_listener(&url, &first);
    let (mut server, _addr) = serve_small(&["--codec", "h264", SERVE_PLAINTEXT, "--publish", &url]);
    listener.expect_success(Duration::from_secs(30));
    let pictures = grey_frames(&std::fs::read(&first).unwrap());
    assert_eq!(pictures.len(), 60);
    assert_whole_and_in_order(&pictures, "first listener");
    // The listener is gone: the server notices and tries again.
    server.wait_for("a retry", Duration::from_secs(15), |_, err| {
        err.contains("trying again")
    });
    let second = dir.path().join("second.grey");
    let mut listener = rtsp_listener(&url, &second);
    listener.expect_success(Duration::from_secs(60));
    let pictures = grey_frames(&std::fs::read(&second).unwrap());
    assert_eq!(pictures.len(), 60);
    assert_whole_and_in_order(&pictures, "second listener");
    let sessions = server
        .stderr()
        .lines()
        .filter(|l| l.ends_with(&format!("publishing to {url}")))
        .count();
    assert!(sessions >= 2, "{}", server.said());
    server.terminate();
    server.assert_no_panic();
}

/// CPU time (user + system) the process `pid` has used, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is 3rd.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// What one window of [`measure_receivers`] saw.
struct Window {
    /// Each receiver's whole frames a second.
    rates: Vec<f64>,
    /// Frames the server captured a second.
    captured: f64,
    /// The server's CPU ticks.
    ticks: u64,
}

/// Frames each receiver got in `window`, the server's capture rate and its
/// CPU meanwhile.
fn measure_receivers(
    server: &Proc,
    addr: &str,
    receivers: &[livestream::bench::rtsp::Receiver],
    window: Duration,
) -> Window {
    let captured = || {
        crate::http_client::stats(addr)["frames_captured"]
            .as_u64()
            .unwrap()
    };
    let before: Vec<u64> = receivers
        .iter()
        .map(|r| r.frames.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let (frames, ticks, at) = (
        captured(),
        cpu_ticks(server.pid()),
        std::time::Instant::now(),
    );
    std::thread::sleep(window);
    let ticks = cpu_ticks(server.pid()) - ticks;
    let frames = captured() - frames;
    let secs = at.elapsed().as_secs_f64();
    let rates = receivers
        .iter()
        .zip(before)
        .map(|(r, b)| (r.frames.load(std::sync::atomic::Ordering::Relaxed) - b) as f64 / secs)
        .collect();
    Window {
        rates,
        captured: frames as f64 / secs,
        ticks,
    }
}

/// 16 clients (half over TCP, half over UDP) of a 720p30 H.264 stream each
/// get every frame the server captures (30 fps in an optimised build; a
/// debug build captures fewer), and the server's CPU with 16 is within 1.5
/// times its CPU with one: the encoder runs once for all.
#[test]
fn sixteen_clients_each_get_every_frame_for_little_more_cpu() {
    use livestream::bench::rtsp::Receiver;
    let (mut server, addr) = crate::util::serve(&[
        "--codec",
        "h264",
        "--width",
        "1280",
        "--height",
        "720",
        "--fps",
        "30",
        SERVE_PLAINTEXT,
    ]);
    let url = format!("rtsp://{addr}/stream");
    let wait_playing = |receivers: &[Receiver]| {
        crate::wait::wait_until(
            Duration::from_secs(20),
            "every client's first frame",
            || {
                receivers
                    .iter()
                    .all(|r| r.frames.load(std::sync::atomic::Ordering::Relaxed) > 0)
                    .then_some(())
            },
        );
    };
    let one = vec![Receiver::start(&url, false, "rtsp-client-0").unwrap()];
    wait_playing(&one);
    let alone = measure_receivers(&server, &addr, &one, Duration::from_secs(4));
    // Every frame: within a frame or two of the capture over the window.
    let every = |w: &Window| w.captured.min(30.0) - 0.5;
    assert!(
        alone.rates[0] >= every(&alone),
        "one client: {:?} fps of {:.1}",
        alone.rates,
        alone.captured
    );
    let mut many = one;
    for i in 1..16 {
        many.push(Receiver::start(&url, i % 2 == 1, &format!("rtsp-client-{i}")).unwrap());
    }
    wait_playing(&many);
    let together = measure_receivers(&server, &addr, &many, Duration::from_secs(4));
    for (i, r) in together.rates.iter().enumerate() {
        assert!(
            *r >= every(&together),
            "client {i}: {r:.1} fps of {:.1} captured ({:?})",
            together.captured,
            together.rates
        );
    }
    let (alone, together) = (alone.ticks, together.ticks);
    assert!(
        together as f64 <= alone.max(1) as f64 * 1.5,
        "server CPU: {alone} ticks with one client, {together} with 16"
    );
    for r in many {
        r.finish().unwrap();
    }
    server.terminate();
    server.assert_no_panic();
    println!("server CPU ticks in 4 s: {alone} with 1 client, {together} with 16");
}

/// Threads of process `pid`.
fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// 100 connections that set a session up and never play: the server lets in
/// as many as its handshake bound allows (closing the rest at once), ends
/// each after the session timeout, and is then back to its own threads and
/// serving a new client.
#[test]
fn sessions_never_played_are_timed_out_and_freed() {
    let (mut server, addr, _url) =
        serve_rtsp(&[SERVE_PLAINTEXT, "--set", "serve.rtsp-session-timeout=2"]);
    let plain = format!("rtsp://{addr}/stream");
    let baseline = threads(server.pid());
    let mut answered = 0;
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut c = connect(&addr);
            let _ = c.write_all(
                format!(
                    "SETUP {plain}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
                     Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
                )
                .as_bytes(),
            );
            let answer = read_response(&mut c);
            if answer.starts_with("RTSP/1.0 200") {
                answered += 1;
            } else {
                assert!(answer.is_empty(), "{answer}");
            }
            c
        })
        .collect();
    assert!(answered >= 50, "only {answered} of 100 sessions set up");
    // Each is closed by the server after the timeout: its read sees the end.
    for mut c in idle {
        let mut buf = [0u8; 64];
        assert_eq!(c.read(&mut buf).unwrap_or(0), 0, "a closed session");
    }
    crate::wait::wait_until(Duration::from_secs(10), "the server's threads back", || {
        (threads(server.pid()) <= baseline).then_some(())
    });
    let pictures = ffmpeg_pictures(&plain, "tcp", 10).unwrap();
    assert_whole_and_in_order(&pictures, "after the flood");
    server.terminate();
    server.assert_no_panic();
}

/// Janus's configuration for one test: its HTTP API on `http`, ICE on
/// `ice..ice+40`, the streaming plugin with one RTSP mountpoint (id 1)
/// pulling `url` with `user`/`password`.
fn janus_config(dir: &std::path::Path, http: u16, ice: u16, url: &str, user: &str, password: &str) {
    // Debian's multiarch directory: /usr/lib/x86_64-linux-gnu/janus here.
    let lib = std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("janus"))
        .find(|p| p.join("plugins").is_dir())
        .expect("Janus's plugins under /usr/lib/*/janus");
    let lib = lib.display();
    let off = |kind: &str, keep: &str| {
        std::fs::read_dir(format!("{lib}/{kind}"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".so") && !n.contains(keep))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let files = [
        (
            "janus.jcfg",
            format!(
                "general: {{\n configs_folder = \"{d}\"\n plugins_folder = \"{lib}/plugins\"\n \
                 transports_folder = \"{lib}/transports\"\n events_folder = \"{lib}/events\"\n \
                 loggers_folder = \"{lib}/loggers\"\n debug_level = 4\n}}\n\
                 plugins: {{ disable = \"{}\" }}\ntransports: {{ disable = \"{}\" }}\n\
                 events: {{ broadcast = false }}\nloggers: {{ disable = \"{}\" }}\n\
                 media: {{ rtp_port_range = \"{ice}-{}\" }}\n",
                off("plugins", "streaming"),
                off("transports", "http"),
                off("loggers", "none"),
                ice + 40,
                d = dir.display()
            ),
        ),
        (
            "janus.transport.http.jcfg",
            format!(
                "general: {{ base_path = \"/janus\"\n http = true\n port = {http}\n \
                 ip = \"127.0.0.1\"\n https = false }}\nadmin: {{ admin_http = false }}\n"
            ),
        ),
        (
            "janus.plugin.streaming.jcfg",
            format!(
                "general: {{ }}\ncam: {{\n type = \"rtsp\"\n id = 1\n description = \"livestream\"\n \
                 audio = false\n video = true\n url = \"{url}\"\n rtsp_user = \"{user}\"\n \
                 rtsp_pwd = \"{password}\"\n rtsp_failcheck = false\n rtsp_reconnect_delay = 2\n}}\n"
            ),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Scale out through a media server from Debian: Janus's streaming plugin
/// pulls our RTSP (with the token, digest auth through its libcurl) and
/// serves headless Chromium over WebRTC; the browser decodes 30 frames, and
/// the picture it shows carries a whole test-pattern stamp.
#[test]
fn janus_relays_our_rtsp_to_a_browser_over_webrtc() {
    let janus = which("janus").expect("janus is needed: the README's test command installs it");
    let node = which("node").expect("node is needed");
    let browser = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let (mut server, addr, url) = serve_rtsp(&[]);
    let creds = url.trim_start_matches("rtsp://").split('@').next().unwrap();
    let (user, token) = creds.split_once(':').unwrap();
    let dir = crate::util::temp_dir();
    let http = crate::util::free_port();
    let ice = crate::util::free_port().clamp(20000, 60000);
    janus_config(
        dir.path(),
        http,
        ice,
        &format!("rtsp://{addr}/stream"),
        user,
        token,
    );
    let conf = dir.path().join("janus.jcfg");
    let mut janus = Proc::spawn_program(
        janus.to_str().unwrap(),
        "janus",
        &[
            "-F",
            dir.path().to_str().unwrap(),
            "-C",
            conf.to_str().unwrap(),
        ],
    );
    janus.wait_for("Janus's HTTP API", Duration::from_secs(20), |out, _| {
        out.contains("HTTP webserver started")
    });
    server.wait_for(
        "Janus playing our RTSP",
        Duration::from_secs(20),
        |_, err| err.contains("RTSP client") && err.contains("playing over"),
    );
    let png = dir.path().join("picture.png");
    let out = Command::new(node)
        .arg(browser.join("janus.mjs"))
        .arg(format!("http://127.0.0.1:{http}/janus"))
        .arg("1")
        .arg(&png)
        .args(["30", "20000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser through Janus: {stdout}{}\njanus said: {}\nserver said: {}",
        String::from_utf8_lossy(&out.stderr),
        janus.said(),
        server.said()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(result["framesDecoded"].as_u64().unwrap() >= 30, "{result}");
    let image =
        livestream::sources::synthetic_camera::decode_png(&std::fs::read(&png).unwrap()).unwrap();
    let info = FrameInfo::packed(PixelFormat::Rgb24, image.width, image.height).unwrap();
    let picture = Frame {
        info,
        seq: 0,
        capture_us: 0,
        data: image.data,
    };
    assert!(
        read_stamp(&picture).is_some(),
        "the picture Janus relayed is not whole"
    );
    janus.terminate();
    server.terminate();
    server.assert_no_panic();
}

/// A client that plays and then floods keep-alives without reading anything
/// is ended once its unread answers reach their bound; others go on.
#[test]
fn a_client_that_floods_requests_and_reads_nothing_is_ended_alone() {
    let (mut server, addr, _url) = serve_rtsp(&[SERVE_PLAINTEXT]);
    let plain = format!("rtsp://{addr}/stream");
    let dir = crate::util::temp_dir();
    let rec = dir.path().join("native.lsr");
    let mut native = record(&addr, &rec, 90, &[VIEW_PLAINTEXT]);
    let mut s = connect(&addr);
    let setup = set_up(&mut s, &plain, "RTP/AVP/TCP;unicast;interleaved=0-1");
    let session = session_of(&setup);
    assert!(play(&mut s, &plain, &session).starts_with("RTSP/1.0 200"));
    // From here on nothing is read: the stream and the answers fill the
    // socket, then the server's buffer of answers.
    let keep_alive =
        format!("GET_PARAMETER {plain} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n");
    let flood = keep_alive.repeat(1000);
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..20 {
        if s.write_all(flood.as_bytes()).is_err() {
            break;
        }
    }
    server.wait_for(
        "the flooding client ended",
        Duration::from_secs(20),
        |_, err| err.contains("does not read the answers"),
    );
    native.expect_success(Duration::from_secs(30));
    crate::util::assert_no_gaps(&rec, 90);
    drop(s);
    server.terminate();
    server.assert_no_panic();
}

/// With every place taken (`max-viewers`), PLAY is answered 453 with the
/// reason, not 200 and a closed connection.
#[test]
fn a_full_server_says_so_at_play() {
    use livestream::bench::rtsp::Receiver;
    let (mut server, addr, _url) = serve_rtsp(&[SERVE_PLAINTEXT, "--set", "serve.max-viewers=1"]);
    let plain = format!("rtsp://{addr}/stream");
    let first = Receiver::start(&plain, false, "rtsp-client-0").unwrap();
    crate::wait::wait_until(Duration::from_secs(20), "the first client's frames", || {
        (first.frames.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(())
    });
    let mut s = connect(&addr);
    let setup = set_up(&mut s, &plain, "RTP/AVP/TCP;unicast;interleaved=0-1");
    let session = session_of(&setup);
    let answer = play(&mut s, &plain, &session);
    assert!(answer.starts_with("RTSP/1.0 453"), "{answer}");
    assert!(answer.contains("viewers"), "{answer}");
    first.finish().unwrap();
    server.terminate();
    server.assert_no_panic();
}

/// An RTSP client over UDP has no connection whose `TCP_INFO` measures its
/// link: the server estimates it from the client's receiver reports (bytes
/// sent between two, less the share lost), for `/stats` like any viewer's.
/// ffmpeg sends one for about every 280 kB it receives.
#[test]
fn an_rtsp_client_over_udp_gets_a_link_estimate_from_its_receiver_reports() {
    let (mut server, addr) = crate::util::serve(&[
        "--source",
        "synthetic-camera",
        "--codec",
        "h264",
        "--width",
        "640",
        "--height",
        "480",
        "--fps",
        "30",
        SERVE_PLAINTEXT,
    ]);
    let url = format!("rtsp://{addr}/stream");
    let ffmpeg = which("ffmpeg").expect("ffmpeg is needed: the README's test command installs it");
    let mut client = Command::new(ffmpeg)
        .args(["-v", "error", "-rtsp_transport", "udp", "-i", &url])
        .args(["-t", "30", "-f", "null", "-"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rtsp_viewer = || {
        let stats = crate::http_client::stats(&addr);
        stats["viewers"]
            .as_array()?
            .iter()
            .find(|v| v["protocol"] == "rtsp")
            .cloned()
    };
    let found = crate::wait::poll_until(Duration::from_secs(20), || {
        let v = rtsp_viewer()?;
        let kbit = v["link"]["kbit"].as_f64()?;
        (kbit > 0.0).then_some(v)
    });
    let _ = client.kill();
    let _ = client.wait();
    server.terminate();
    server.assert_no_panic();
    let v = found.expect("no link estimate for the UDP client within 20 s");
    let kbit = v["link"]["kbit"].as_f64().unwrap();
    // What it was sent on average since it connected, against the estimate.
    let sent_kbit =
        v["bytes"].as_f64().unwrap() * 8.0 / 1000.0 / v["connected_seconds"].as_f64().unwrap();
    eprintln!(
        "UDP client: link {kbit} kbit/s (measured {}), sent {sent_kbit:.0} kbit/s",
        v["link"]["measured"]
    );
    assert!(
        kbit > sent_kbit * 0.4 && kbit < sent_kbit * 2.5,
        "estimate {kbit} kbit/s for a stream sent at {sent_kbit:.0}: {v}"
    );
    assert_eq!(
        v["link"]["measured"], false,
        "nothing lost on loopback: a lower bound"
    );
}
