//! Pairing and encryption, between real processes: refusals and their messages,
//! a watching viewer left alone by them, records altered or replayed in transit,
//! traffic captured on the test's own interface, and HTTP's token.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::http_client::get_with;
use crate::util::{pairing_code, temp_dir, NetnsPair, Proc, Watcher, VIEW_PLAINTEXT};

/// `serve` with pairing, its keys in `keys`; returns it, its address and code.
fn serve_secure(keys: &std::path::Path, listen: &str, more: &[&str]) -> (Proc, String, String) {
    let mut args = vec![
        "serve",
        "--listen",
        listen,
        "--width",
        "320",
        "--height",
        "240",
        "--fps",
        "30",
        "--set",
        "serve.auth=\"pair\"",
    ];
    args.extend_from_slice(more);
    let server = Proc::spawn_env(
        "serve",
        &args,
        &[("XDG_CONFIG_HOME", keys.to_str().unwrap())],
    );
    let addr = server.wait_listening();
    let code = pairing_code(&server);
    (server, addr, code)
}

/// `view` with pairing, its keys in `keys`.
fn view(keys: &std::path::Path, addr: &str, more: &[&str]) -> Proc {
    let mut args = vec!["view", addr, "--set", "view.auth=\"pair\""];
    args.extend_from_slice(more);
    Proc::spawn_env(
        "view",
        &args,
        &[("XDG_CONFIG_HOME", keys.to_str().unwrap())],
    )
}

/// Runs a viewer that must fail; returns what it said.
fn refused(keys: &std::path::Path, addr: &str, more: &[&str]) -> String {
    let mut v = view(keys, addr, more);
    let status = v.wait_exit(Duration::from_secs(20));
    let said = v.stderr();
    assert_eq!(status.code(), Some(1), "{said}");
    v.assert_no_panic();
    said
}

/// Frames a `view` reported at its end.
fn frames_seen(said: &str) -> u64 {
    said.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("reached: ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no frame count in:\n{said}"))
}

/// A paired viewer, its keys in `keys`, watching for `seconds` (at 30 fps), to
/// show that what happens around it does not disturb it.
fn watcher(keys: &std::path::Path, addr: &str, code: &str, seconds: u32) -> Watcher {
    Watcher::start(
        addr,
        30 * seconds,
        &["--set", "view.auth=\"pair\"", "--pair", code],
        &[("XDG_CONFIG_HOME", keys.to_str().unwrap())],
    )
}

fn wrong_code(right: &str) -> &'static str {
    if right == "1111-1111" {
        "2222-2222"
    } else {
        "1111-1111"
    }
}

/// Every refusal, each with a message that says what to do, while a paired
/// viewer watches undisturbed; then a server with another key is refused.
#[test]
fn pairing_refusals_leave_a_watching_viewer_alone() {
    let (server_keys, watcher_keys, other_keys) = (temp_dir(), temp_dir(), temp_dir());
    let (mut server, addr, code) = serve_secure(server_keys.path(), "127.0.0.1:0", &[]);

    let watcher = watcher(watcher_keys.path(), &addr, &code, 8);
    assert!(watcher
        .view()
        .stderr()
        .contains("paired with \"livestream on"));

    let other = other_keys.path();
    let said = refused(other, &addr, &["--frames", "5", "-q"]);
    assert!(
        said.contains("is not paired with this viewer") && said.contains("--pair CODE"),
        "no code: {said}"
    );
    let said = refused(
        other,
        &addr,
        &["--frames", "5", "-q", "--pair", wrong_code(&code)],
    );
    assert!(
        said.contains("failed: wrong pairing code"),
        "wrong code: {said}"
    );
    let mut plain = Proc::spawn_env(
        "view (plaintext)",
        &["view", &addr, VIEW_PLAINTEXT, "--frames", "5", "-q"],
        &[("XDG_CONFIG_HOME", other.to_str().unwrap())],
    );
    assert_eq!(plain.wait_exit(Duration::from_secs(20)).code(), Some(1));
    assert!(
        plain.stderr().contains("requires pairing and encryption"),
        "plaintext: {}",
        plain.stderr()
    );
    // The right code once, then no code.
    let mut v = view(other, &addr, &["--pair", &code, "--frames", "10", "-q"]);
    v.expect_success(Duration::from_secs(20));
    let mut v = view(other, &addr, &["--frames", "10", "-q"]);
    v.expect_success(Duration::from_secs(20));
    assert_eq!(frames_seen(&v.stderr()), 10);

    watcher.finish();
    let log = server.stderr();
    assert!(log.contains("wrong pairing code (1 of 5)"), "{log}");
    assert_eq!(log.matches("paired with viewer").count(), 2, "{log}");
    server.terminate();

    // Another key at the same address, under the same name: an impostor, or a
    // reset server. Refused, with both fingerprints.
    let new_keys = temp_dir();
    let (mut impostor, _, _) = serve_secure(new_keys.path(), &addr, &[]);
    let said = refused(other, &addr, &["--frames", "5", "-q"]);
    assert!(
        said.contains("REFUSED") && said.contains("impostor") && said.contains("paired with key"),
        "changed key: {said}"
    );
    impostor.terminate();
}

/// What a relay does to the frames (length-prefixed, as the secure protocol
/// sends everything) of one direction.
#[derive(Clone, Copy)]
enum Meddle {
    /// Flip a bit in the nth frame from the server.
    AlterDown(usize),
    /// Send the nth frame from the server twice.
    ReplayDown(usize),
    /// Flip a bit in the nth frame from the viewer.
    AlterUp(usize),
}

/// A relay for one connection that understands the framing and meddles once.
fn relay(server: &str, meddle: Meddle) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.to_string();
    std::thread::spawn(move || {
        let (viewer, _) = listener.accept().unwrap();
        let upstream = TcpStream::connect(&server).unwrap();
        let pipe = |mut from: TcpStream, mut to: TcpStream, down: bool| {
            std::thread::spawn(move || {
                let mut n = 0;
                let mut body = vec![0u8; 65536];
                loop {
                    let mut len = [0u8; 2];
                    if from.read_exact(&mut len).is_err() {
                        break;
                    }
                    let l = u16::from_le_bytes(len) as usize;
                    if from.read_exact(&mut body[..l]).is_err() {
                        break;
                    }
                    n += 1;
                    let mut times = 1;
                    match meddle {
                        Meddle::AlterDown(k) if down && n == k => body[l / 2] ^= 0x10,
                        Meddle::ReplayDown(k) if down && n == k => times = 2,
                        Meddle::AlterUp(k) if !down && n == k => body[l / 2] ^= 0x10,
                        _ => {}
                    }
                    for _ in 0..times {
                        if to
                            .write_all(&len)
                            .and_then(|_| to.write_all(&body[..l]))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            })
        };
        let a = pipe(
            viewer.try_clone().unwrap(),
            upstream.try_clone().unwrap(),
            false,
        );
        let b = pipe(upstream, viewer, true);
        let _ = (a.join(), b.join());
    });
    addr
}

/// A record altered or replayed on its way (either way) ends that connection
/// with a message saying so; a viewer connected directly goes on.
#[test]
fn altered_or_replayed_records_end_only_that_connection() {
    let (server_keys, viewer_keys, direct_keys) = (temp_dir(), temp_dir(), temp_dir());
    let (mut server, addr, code) = serve_secure(server_keys.path(), "127.0.0.1:0", &[]);
    let direct = watcher(direct_keys.path(), &addr, &code, 12);
    // Pair the meddled-with viewer directly first: the relay's address is new to
    // it, the key it pinned is not.
    let mut v = view(
        viewer_keys.path(),
        &addr,
        &["--pair", &code, "--frames", "3", "-q"],
    );
    v.expect_success(Duration::from_secs(20));

    // Frames from the server: reply, Noise message, verdict, then records (the
    // hello, then about 4 records per frame of 230 KB).
    for (meddle, what) in [
        (Meddle::AlterDown(60), "altered"),
        (Meddle::ReplayDown(60), "replayed"),
    ] {
        let via = relay(&addr, meddle).to_string();
        let said = refused(viewer_keys.path(), &via, &["--no-reconnect", "-q"]);
        assert!(said.contains("failed authentication"), "{what}: {said}");
    }
    // From the viewer: hello, two Noise messages, its hello, then pings.
    let via = relay(&addr, Meddle::AlterUp(6)).to_string();
    let said = refused(viewer_keys.path(), &via, &["--no-reconnect", "-q"]);
    assert!(
        said.contains("the connection closed"),
        "altered ping: {said}"
    );
    server.wait_stderr("failed authentication", 1, Duration::from_secs(10));

    direct.finish();
    server.terminate();
}

/// Captures every packet on the viewer's namespace (an `AF_PACKET` socket
/// opened from a thread that joined it) until `stop`.
fn capture(ns: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u8>> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: joins this thread (only) to the test's namespace.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: a plain socket call; the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        assert!(fd >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
        // Room for bursts: a drop would hide what the test looks for.
        let room: libc::c_int = 256 << 20;
        setsockopt(fd, libc::SO_RCVBUFFORCE, &room);
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        setsockopt(fd, libc::SO_RCVTIMEO, &tv);
        let mut all = Vec::new();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) && all.len() < 256 << 20 {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                all.extend_from_slice(&buf[..n as usize]);
            }
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        all
    })
}

/// Sets a `SOL_SOCKET` option.
fn setsockopt<T>(fd: libc::c_int, option: libc::c_int, value: &T) {
    // SAFETY: `value` is a valid T for the option, for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// Test-pattern rows: 48 bytes repeating with period 3 (one pixel's RGB), of
/// at least two values (a coloured bar, not padding).
fn has_pattern_rows(b: &[u8]) -> bool {
    let mut run = 0;
    for i in 3..b.len() {
        if b[i] == b[i - 3] {
            run += 1;
            if run >= 45 && !(b[i - 2] == b[i - 1] && b[i - 1] == b[i]) {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

fn has_jpeg(b: &[u8]) -> bool {
    b.windows(5).any(|w| w == b"JFIF\0")
}

/// The stream as captured on the wire: plaintext shows JPEG headers and
/// test-pattern rows (the detectors work); encrypted, neither appears.
#[test]
fn captured_traffic_carries_no_plaintext() {
    let net = NetnsPair::new(None);
    let run = |codec: &str, auth: &str, port: u16| -> Vec<u8> {
        let listen = format!("10.231.0.1:{port}");
        let auth_set = format!("serve.auth=\"{auth}\"");
        let mut server = net.serve(&listen, &["--codec", codec, "--set", &auth_set]);
        let view_auth = format!("view.auth=\"{auth}\"");
        let code = if auth == "pair" {
            pairing_code(&server)
        } else {
            String::new()
        };
        let mut view_args = vec!["view", &listen, "--frames", "60", "-q", "--set", &view_auth];
        if auth == "pair" {
            view_args.extend(["--pair", &code]);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let capturing = capture(&net.viewer_ns, stop.clone());
        let mut view = NetnsPair::livestream(&net.viewer_ns, "view (viewer namespace)", &view_args);
        view.expect_success(Duration::from_secs(30));
        stop.store(true, Ordering::Relaxed);
        server.terminate();
        let captured = capturing.join().unwrap();
        // All of it: at least the bytes the viewer received.
        let said = view.stderr();
        let mb: f64 = said
            .split(" MB, latency")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no byte count in:\n{said}"));
        // (The viewer prints MB with one decimal.)
        assert!(
            captured.len() as f64 >= (mb - 0.05) * 1e6,
            "captured {} bytes of {mb} MB",
            captured.len()
        );
        captured
    };
    let plain = run("raw", "none", 7001);
    assert!(
        has_pattern_rows(&plain),
        "the row detector finds nothing in plaintext"
    );
    let plain = run("jpeg", "none", 7002);
    assert!(
        has_jpeg(&plain),
        "the JPEG detector finds nothing in plaintext"
    );

    let sealed = run("raw", "pair", 7003);
    assert!(!has_pattern_rows(&sealed), "test-pattern rows on the wire");
    let sealed = run("jpeg", "pair", 7004);
    assert!(!has_jpeg(&sealed), "a JPEG header on the wire");
}

/// HTTP with pairing: without the token, 401 and not one frame byte; with it,
/// in the URL (the page then sets a cookie), as a bearer token or as the basic
/// auth password, the stream.
#[test]
fn http_needs_the_token() {
    let keys = temp_dir();
    let (mut server, addr, _) = serve_secure(keys.path(), "127.0.0.1:0", &["--codec", "jpeg"]);
    let out = server.stdout();
    let token = out
        .split("?token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_string();
    assert_eq!(token.len(), 32);

    for (target, headers) in [
        ("/stream.mjpg", String::new()),
        ("/snapshot.jpg", String::new()),
        ("/stats", String::new()),
        ("/metrics", String::new()),
        (
            "/stream.mjpg?token=0123456789abcdef0123456789abcdef",
            String::new(),
        ),
        ("/stream.mjpg", "Authorization: Bearer nope\r\n".into()),
        (
            "/stream.mjpg",
            format!("Cookie: livestream_token={}x\r\n", token),
        ),
    ] {
        let r = get_with(&addr, target, &headers);
        assert_eq!(r.status, 401, "{target} {headers}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Basic realm=\"livestream\""),
            "{target} {headers}: WWW-Authenticate: {challenge}"
        );
        assert!(
            !r.body.windows(2).any(|w| w == [0xFF, 0xD8]),
            "frame bytes in a 401"
        );
    }

    let page = get_with(&addr, &format!("/?token={token}"), "");
    assert_eq!(page.status, 200);
    let cookie = format!("livestream_token={token}");
    let set_cookie = page.header("set-cookie").unwrap_or_default();
    assert!(
        set_cookie.starts_with(&format!("{cookie}; Path=/; HttpOnly")),
        "Set-Cookie: {set_cookie}"
    );
    assert!(String::from_utf8_lossy(&page.body).contains("stream.mjpg"));
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{token}"));
    for headers in [
        format!("Cookie: other=1; {cookie}\r\n"),
        format!("Authorization: Bearer {token}\r\n"),
        format!("Authorization: Basic {basic}\r\n"),
    ] {
        let stream = get_with(&addr, "/stream.mjpg", &headers);
        assert_eq!(stream.status, 200, "{headers}");
        assert!(
            stream.body.windows(2).any(|w| w == [0xFF, 0xD8]),
            "{headers}: no JPEG"
        );
    }
    let stats = get_with(&addr, &format!("/stats?token={token}"), "");
    assert_eq!(stats.status, 200);
    assert!(server
        .stderr()
        .contains("refused: no token for /stream.mjpg"));
    server.terminate();
}
