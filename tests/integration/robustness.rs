//! Slow, dying and hostile peers: one bad viewer never harms the others.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use livestream::media::frame::{FrameInfo, Limits, PixelFormat};
use livestream::net::protocol::{self, ClientHello, PacketHeader, ServerHello, Status};

use crate::util::{
    assert_no_gaps, free_port, record, serve, serve_on, serve_small, temp_dir, wait_until, Lazy,
    NetnsPair, Proc, Watcher, SERVE_PLAINTEXT, VIEW_PLAINTEXT,
};

/// Connects and completes the handshake as a viewer would, then returns the socket.
fn handshake(addr: &str) -> (TcpStream, ServerHello) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    ClientHello {
        version: protocol::VERSION,
        renditions: false,
    }
    .write(&mut s)
    .unwrap();
    let hello = ServerHello::read(&mut s, &Limits::default()).unwrap();
    (s, hello)
}

/// Waits until the server closes `s`: a read returns end of file or an error.
fn assert_closed_by_server(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    wait_until(
        Duration::from_secs(5),
        format!("{what}: the server to close the connection (it kept sending)"),
        || match s.read(&mut buf) {
            Ok(0) => Some(()),
            Ok(_) => None,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("{what}: the server did not close the connection")
            }
            Err(_) => Some(()),
        },
    );
}

/// One viewer stops reading; the others still get every frame, and the server's
/// memory stays bounded (it drops frames for the stalled viewer instead of queueing).
#[test]
fn a_stalled_viewer_harms_no_one() {
    let dir = temp_dir();
    // 2.7 MB frames at 30 fps: queueing them for a stalled viewer would take
    // ~80 MB a second.
    let (mut server, addr) = serve(&[
        "--codec",
        "raw",
        "--width",
        "1280",
        "--height",
        "720",
        "--fps",
        "30",
        SERVE_PLAINTEXT,
    ]);
    let (stalled, hello) = handshake(&addr);
    assert_eq!(
        hello.frame,
        FrameInfo::packed(PixelFormat::Rgb24, 1280, 720).unwrap()
    );
    let path = dir.path().join("good.lsr");
    let mut good = record(&addr, &path, 90, &[VIEW_PLAINTEXT]);
    good.expect_success(Duration::from_secs(30));
    assert_no_gaps(&path, 90);
    let rss_mb = server.rss_kib() / 1024;
    assert!(
        rss_mb < 120,
        "server RSS {rss_mb} MB with a stalled viewer: frames are queueing"
    );
    // The stalled viewer is still connected, and resumes with a fresh frame.
    drop(stalled);
    server.terminate();
}

/// Viewers that die in the middle of a frame, 100 in a row, while another watches.
#[test]
fn viewers_killed_mid_frame_100_times() {
    let dir = temp_dir();
    let (mut server, addr) = serve(&[
        "--codec",
        "raw",
        "--width",
        "640",
        "--height",
        "480",
        "--fps",
        "30",
        SERVE_PLAINTEXT,
    ]);
    let watcher = Watcher::start(&addr, 120, &[VIEW_PLAINTEXT], &[]);
    for i in 0..100 {
        let (mut s, _) = handshake(&addr);
        // Part of the first frame's header and payload, then gone.
        let mut part = vec![0u8; protocol::PACKET_HEADER_LEN + 1000 + i * 37];
        s.read_exact(&mut part).unwrap();
        if i % 2 == 0 {
            // Abortive close: the server sees a reset, not a clean end.
            let s2 = socket_with_linger_zero(s);
            drop(s2);
        } else {
            s.shutdown(Shutdown::Both).unwrap();
        }
    }
    watcher.finish();
    assert!(server.is_running(), "server died");
    // Still serving new viewers.
    let path = dir.path().join("after.lsr");
    let mut after = record(&addr, &path, 10, &[VIEW_PLAINTEXT]);
    after.expect_success(Duration::from_secs(20));
    assert_no_gaps(&path, 10);
    server.terminate();
}

fn socket_with_linger_zero(s: TcpStream) -> TcpStream {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setting a socket option on a socket we own.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as u32,
        );
    }
    s
}

/// Malformed handshakes are refused with a logged reason; a viewer keeps watching.
#[test]
fn malformed_clients_are_disconnected_with_a_reason() {
    let (mut server, addr) =
        serve_small(&["--set", "serve.handshake-timeout=0.5", SERVE_PLAINTEXT]);
    let watcher = Watcher::start(&addr, 90, &[VIEW_PLAINTEXT], &[]);

    let mut huge_ext = b"LSTR\x01\x00\x00\x00".to_vec();
    huge_ext.extend_from_slice(&u16::MAX.to_le_bytes());
    huge_ext.extend_from_slice(&[0, 0]);
    let mut random = vec![0u8; 4096];
    let mut x: u32 = 0x1234_5678;
    for b in random.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    random[0] = b'Q';
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated handshake",
            b"LST".to_vec(),
            "in the middle of a message",
        ),
        (
            "wrong magic",
            b"LSTX\x01\x00\x00\x00\x00\x00\x00\x00".to_vec(),
            "bad magic",
        ),
        (
            "a TLS hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00".to_vec(),
            "bad magic",
        ),
        ("huge extension length", huge_ext, "over the limit of 4096"),
        ("random bytes", random, "bad magic"),
        ("no handshake at all", Vec::new(), "timed out"),
    ];
    for (n, (what, bytes, logged)) in cases.iter().enumerate() {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(bytes).unwrap();
        if *what == "truncated handshake" {
            s.shutdown(Shutdown::Write).unwrap();
        }
        assert_closed_by_server(&mut s, what);
        let times = cases[..=n].iter().filter(|c| c.2 == *logged).count();
        server.wait_stderr(logged, times, Duration::from_secs(5));
        server.wait_stderr("rejected", n + 1, Duration::from_secs(5));
    }
    // An old protocol version gets a readable refusal.
    let mut s = TcpStream::connect(&addr).unwrap();
    ClientHello {
        version: 0,
        renditions: false,
    }
    .write(&mut s)
    .unwrap();
    match ServerHello::read(&mut s, &Limits::default()) {
        Err(protocol::ProtocolError::Refused {
            status: Status::Version,
            message,
        }) => {
            assert!(message.contains("protocol 1"), "{message}")
        }
        other => panic!("version 0: {other:?}"),
    }

    watcher.finish();
    let rss_mb = server.rss_kib() / 1024;
    assert!(rss_mb < 100, "server RSS {rss_mb} MB after hostile input");
    server.terminate();
}

/// More viewers than `max-viewers` are refused with "busy"; the others are unaffected.
#[test]
fn viewer_cap_refuses_politely() {
    let (mut server, addr) = serve(&[
        "--width",
        "64",
        "--height",
        "16",
        "--set",
        "serve.max-viewers=2",
        SERVE_PLAINTEXT,
    ]);
    let (_a, _) = handshake(&addr);
    let (_b, _) = handshake(&addr);
    let mut c = TcpStream::connect(&addr).unwrap();
    ClientHello {
        version: 1,
        renditions: false,
    }
    .write(&mut c)
    .unwrap();
    match ServerHello::read(&mut c, &Limits::default()) {
        Err(protocol::ProtocolError::Refused {
            status: Status::Busy,
            message,
        }) => {
            assert!(message.contains("2 viewers"), "{message}")
        }
        other => panic!("third viewer: {other:?}"),
    }
    server.terminate();
}

/// The server goes away and comes back on the same port: the viewer reconnects and
/// resumes by itself.
#[test]
fn viewer_reconnects_after_server_restart() {
    let addr = format!("127.0.0.1:{}", free_port());
    let (mut first, _) = serve_on(
        &addr,
        &["--width", "160", "--height", "120", SERVE_PLAINTEXT],
    );
    let mut view = Proc::spawn("view", &["view", &addr, VIEW_PLAINTEXT]);
    view.wait_stderr("connected to", 1, Duration::from_secs(10));
    first.terminate();
    view.wait_stderr("reconnecting in", 1, Duration::from_secs(10));
    let (mut second, _) = serve_on(
        &addr,
        &["--width", "160", "--height", "120", SERVE_PLAINTEXT],
    );
    view.wait_stderr("connected to", 2, Duration::from_secs(15));
    // Frames flow again: a status line after the second connection.
    view.wait_for(
        "frames after reconnecting",
        Duration::from_secs(10),
        |_, err| {
            err.rsplit("connected to")
                .next()
                .is_some_and(|tail| tail.contains(" fps "))
        },
    );
    view.terminate();
    assert!(view.stderr().contains("stopped:"), "{}", view.stderr());
    second.terminate();
}

/// A hostile server cannot make the viewer panic or allocate what it announces.
#[test]
fn viewer_rejects_a_hostile_server() {
    type Behaviour = Box<dyn Fn(&mut TcpStream)>;
    let cases: Vec<(&str, Behaviour, &str)> = vec![
        (
            "bad magic",
            Box::new(|s| {
                s.write_all(b"HTTP/1.1 200 OK\r\n\r\n0123456789012345678901234567890123456789")
                    .unwrap()
            }),
            "not a livestream peer",
        ),
        (
            "giant frame size",
            Box::new(|s| {
                let mut b = Vec::new();
                ServerHello {
                    frame: FrameInfo {
                        format: PixelFormat::Rgb24,
                        width: 100_000,
                        height: 100_000,
                        stride: 300_000,
                    },
                    ..good_hello()
                }
                .write(&mut b)
                .unwrap();
                s.write_all(&b).unwrap()
            }),
            "bad stream geometry",
        ),
        (
            "huge payload length",
            Box::new(|s| {
                let mut b = Vec::new();
                good_hello().write(&mut b).unwrap();
                b.extend_from_slice(
                    &PacketHeader {
                        kind: protocol::PACKET_FRAME,
                        flags: 0,
                        len: u32::MAX,
                        seq: 0,
                        capture_us: 0,
                    }
                    .encode(),
                );
                s.write_all(&b).unwrap()
            }),
            "over the limit",
        ),
        (
            "wrong payload size",
            Box::new(|s| {
                let mut b = Vec::new();
                good_hello().write(&mut b).unwrap();
                b.extend_from_slice(
                    &PacketHeader {
                        kind: protocol::PACKET_FRAME,
                        flags: 0,
                        len: 100,
                        seq: 0,
                        capture_us: 0,
                    }
                    .encode(),
                );
                b.extend_from_slice(&[7u8; 100]);
                s.write_all(&b).unwrap()
            }),
            "the stream header says 3072",
        ),
        (
            "a rendition larger than the stream",
            Box::new(|s| {
                let mut b = Vec::new();
                good_hello().write(&mut b).unwrap();
                b.extend_from_slice(&rendition(64, 64));
                s.write_all(&b).unwrap()
            }),
            "64x64 is larger than the stream's 32x32",
        ),
        (
            "a rendition of a stream that has none",
            Box::new(|s| {
                let mut b = Vec::new();
                good_hello().write(&mut b).unwrap();
                b.extend_from_slice(&rendition(16, 16));
                s.write_all(&b).unwrap()
            }),
            "only an H.264 stream has renditions",
        ),
    ];
    for (what, behave, expected) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut view = Proc::spawn(
            "view",
            &["view", &addr, VIEW_PLAINTEXT, "--no-reconnect", "-q"],
        );
        // Never a bare accept: a viewer that fails before connecting must not hang
        // the test.
        listener.set_nonblocking(true).unwrap();
        let mut s = wait_until(
            Duration::from_secs(10),
            Lazy(|| format!("{what}: the viewer to connect:\n{}", view.stderr())),
            || match listener.accept() {
                Ok((s, _)) => Some(s),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        view.is_running(),
                        "{what}: the viewer ended before it connected:\n{}",
                        view.stderr()
                    );
                    None
                }
                Err(e) => panic!("accept: {e}"),
            },
        );
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = [0u8; protocol::CLIENT_HELLO_LEN];
        s.read_exact(&mut hello).unwrap();
        behave(&mut s);
        let status = view.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(1), "{what}: {}", view.stderr());
        view.assert_no_panic();
        assert!(
            view.stderr().contains(expected),
            "{what}: expected `{expected}` in:\n{}",
            view.stderr()
        );
    }
}

/// A rendition packet of a `w`x`h` rendition, 1 of 2.
fn rendition(w: u32, h: u32) -> [u8; protocol::PACKET_HEADER_LEN + protocol::RENDITION_LEN] {
    protocol::Rendition {
        width: w,
        height: h,
        bits_per_second: 300_000,
        index: 1,
        count: 2,
    }
    .packet()
}

fn good_hello() -> ServerHello {
    ServerHello {
        status: Status::Ok,
        codec: "raw".into(),
        frame: FrameInfo::packed(PixelFormat::Rgb24, 32, 32).unwrap(),
        fps: 30.0,
        max_payload: 32 * 32 * 3,
        server_time_us: 0,
        message: "evil".into(),
    }
}

/// SIGTERM while a connection sits in its handshake and another viewer has
/// stopped reading: the server still exits promptly (it cuts both off after a
/// 2 s grace), with status 0.
#[test]
fn shutdown_does_not_wait_for_stuck_connections() {
    let (mut server, addr) = serve(&[
        "--codec",
        "raw",
        "--width",
        "1280",
        "--height",
        "720",
        "--set",
        "serve.handshake-timeout=60",
        SERVE_PLAINTEXT,
    ]);
    let _silent = TcpStream::connect(&addr).unwrap();
    let (_stalled, _) = handshake(&addr);
    server.wait_stderr("connected (", 1, Duration::from_secs(10));
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    // Far less than the 60 s handshake timeout.
    server.expect_success(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// Hundreds of connections from one machine in a few seconds (from the test's own
/// network namespace) while a viewer there watches: the flood is cut down to the
/// per-address rate, the viewer keeps every frame at full rate.
#[test]
fn a_connection_flood_does_not_disturb_a_viewer() {
    let net = NetnsPair::new(None);
    // As by default: the flood meets the secure handshake.
    let mut server = net.serve("10.231.0.1:7878", &["--set", "serve.auth=\"pair\""]);
    let code = crate::util::pairing_code(&server);
    let dir = temp_dir();
    let log = dir.path().join("flooded.csv");
    let mut view = NetnsPair::livestream(
        &net.viewer_ns,
        "view (viewer namespace)",
        &[
            "view",
            "10.231.0.1:7878",
            "--frames",
            "150",
            "-q",
            "--latency-log",
            log.to_str().unwrap(),
            "--pair",
            &code,
        ],
    );
    view.wait_stderr("connected to", 1, Duration::from_secs(10));
    // Three waves of 300 connections from the viewer's address, held open a second.
    let flood = "for wave in 1 2 3; do for i in $(seq 300); do \
                 exec {fd}<>/dev/tcp/10.231.0.1/7878 2>/dev/null || true; done; sleep 1; \
                 for fd in $(ls /proc/$$/fd); do [ $fd -gt 2 ] && eval \"exec $fd>&-\"; done; done";
    let mut flooder = Proc::spawn_program(
        "ip",
        "flood",
        &["netns", "exec", &net.viewer_ns, "bash", "-c", flood],
    );
    flooder.wait_exit(Duration::from_secs(60));
    view.expect_success(Duration::from_secs(30));
    server.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<(u64, i64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[6].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 150);
    for w in rows.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "a frame was dropped during the flood");
    }
    let seconds = (rows[149].1 - rows[0].1) as f64 / 1e6;
    assert!(
        seconds < 149.0 / 30.0 + 0.5,
        "150 frames took {seconds:.2} s: not full rate"
    );
    let said = server.stderr();
    for line in said.lines().filter(|l| l.contains("refused")) {
        eprintln!("{line}");
    }
    assert!(
        said.contains("connections from 10.231.0.2: over 10 a second"),
        "the flood was not limited:\n{said}"
    );
}
