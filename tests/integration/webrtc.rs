//! WebRTC for browsers (WHEP): headless Chromium plays the H.264 stream over
//! WebRTC and ends its session with `DELETE`; hostile WHEP requests get clear
//! answers while a native viewer watches undisturbed.

use std::time::Duration;

use crate::http::promtool_check;
use crate::http_client::{exchange, get_with, Response};
use crate::stream::which;
use crate::util::{
    browser_scripts, serve, serve_small, wait_until, Lazy, Proc, Watcher, SERVE_PLAINTEXT,
    VIEW_PLAINTEXT,
};

/// `POST /whep` with `body` and more header lines.
fn post(addr: &str, headers: &str, body: &[u8]) -> Response {
    let mut request = format!("POST /whep HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n").into_bytes();
    request.extend_from_slice(body);
    exchange(addr, &request)
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The WebRTC viewers in the server's `/stats`.
fn webrtc_viewers(addr: &str, auth: &str) -> usize {
    let r = get_with(addr, "/stats", auth);
    assert_eq!(r.status, 200, "{}", text(&r));
    r.json()["viewers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["protocol"] == "webrtc")
        .count()
}

/// Headless Chromium posts its offer with the token, plays the answer's video
/// (at least 30 frames presented within 15 s) while the server's `/stats` and
/// `/metrics` show its RTT and bitrate, then `DELETE` ends the session on the
/// server: its log says so and `/stats` lists no WebRTC viewer.
#[test]
fn chromium_plays_h264_over_webrtc_and_delete_ends_the_session() {
    let node = which("node").expect("node is needed");
    let dir = browser_scripts();
    // As by default: pairing on, so WHEP needs the token.
    let (mut server, addr) = serve(&[
        "--codec",
        "h264",
        "--width",
        "640",
        "--height",
        "480",
        "--fps",
        "30",
        "--set",
        "serve.auth=\"pair\"",
    ]);
    server.wait_stderr("WebRTC (POST /whep) on UDP", 1, Duration::from_secs(10));
    let url = server.page_url();
    let token = url.split_once("token=").unwrap().1.to_string();
    let auth = format!("Authorization: Bearer {token}\r\n");
    let refused = post(
        &addr,
        "Content-Type: application/sdp\r\nContent-Length: 5\r\n",
        b"v=0\r\n",
    );
    assert_eq!(
        refused.status,
        401,
        "no token, no session: {}",
        text(&refused)
    );

    let out = std::process::Command::new(node)
        .arg(dir.join("webrtc.mjs"))
        .arg(&url)
        .args(["30", "15000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("browser: {stdout}");
    assert!(
        out.status.success(),
        "browser check failed: {stdout}{}\nserver said: {}",
        String::from_utf8_lossy(&out.stderr),
        server.said()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(result["presented"].as_u64().unwrap() >= 30, "{result}");
    assert!(result["framesDecoded"].as_u64().unwrap() >= 30, "{result}");
    assert!(
        result["codec"].as_str().unwrap().contains("H264"),
        "{result}"
    );
    assert_eq!(
        (result["width"].as_u64(), result["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert!(
        result["location"].as_str().unwrap().starts_with("/whep/"),
        "{result}"
    );

    // What the server said of it while it played: str0m's figures in /stats
    // and in /metrics, which promtool finds clean.
    let figures = &result["serverViewer"]["webrtc"];
    let rtt = figures["rtt_ms"].as_f64();
    assert!(
        rtt.is_some_and(|ms| ms > 0.0 && ms < 1000.0),
        "an RTT on loopback in /stats: {result}"
    );
    assert!(
        figures["bitrate_kbit"].as_f64().is_some_and(|k| k > 0.0),
        "a bitrate in /stats: {result}"
    );
    for field in ["nacks", "plis", "firs"] {
        assert!(figures[field].is_u64(), "{field} in /stats: {result}");
    }
    let metrics = result["metrics"].as_str().unwrap();
    let peer = result["serverViewer"]["peer"].as_str().unwrap();
    for series in [
        "livestream_webrtc_viewer_rtt_seconds",
        "livestream_webrtc_viewer_sent_bytes_per_second",
        "livestream_webrtc_viewer_nacks_total",
        "livestream_webrtc_viewer_plis_total",
    ] {
        assert!(
            metrics.contains(&format!("{series}{{peer=\"{peer}\"}} ")),
            "{series} for {peer} in /metrics:\n{metrics}"
        );
    }
    promtool_check(metrics);

    // The server's side: connected, then ended by the DELETE, and gone.
    server.wait_stderr("WebRTC viewer", 1, Duration::from_secs(5));
    server.wait_stderr(
        "left: ended by the browser (DELETE)",
        1,
        Duration::from_secs(5),
    );
    wait_until(
        Duration::from_secs(5),
        Lazy(|| format!("no WebRTC viewer in /stats: {}", server.said())),
        || (webrtc_viewers(&addr, &auth) == 0).then_some(()),
    );
    let said = server.stderr();
    let left = said
        .lines()
        .find(|l| l.contains("left: ended by the browser (DELETE)"))
        .unwrap();
    let sent: u64 = left
        .split("sent ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("frames sent in {left:?}"));
    assert!(sent >= 30, "{left}");
    server.terminate();
    server.assert_no_panic();
}

/// Hostile and mistaken WHEP requests: each gets its own clear status, and a
/// native viewer watching meanwhile misses nothing.
#[test]
fn bad_whep_requests_get_clear_answers_and_harm_no_one() {
    let (mut server, addr) = serve_small(&["--codec", "h264", SERVE_PLAINTEXT]);
    let watcher = Watcher::start(&addr, 90, &[VIEW_PLAINTEXT], &[]);
    let sdp = "Content-Type: application/sdp\r\n";
    let cases: Vec<(&str, Response, u16)> = vec![
        ("no length", post(&addr, sdp, b""), 411),
        (
            "chunked",
            post(
                &addr,
                &format!("{sdp}Transfer-Encoding: chunked\r\n"),
                b"5\r\nv=0\r\n\r\n0\r\n\r\n",
            ),
            411,
        ),
        (
            "huge",
            post(
                &addr,
                &format!("{sdp}Content-Length: 1000000\r\n"),
                b"v=0\r\n",
            ),
            413,
        ),
        (
            "a length past u64",
            post(
                &addr,
                &format!("{sdp}Content-Length: 99999999999999999999999\r\n"),
                b"",
            ),
            400,
        ),
        (
            "not SDP",
            post(
                &addr,
                "Content-Type: application/json\r\nContent-Length: 2\r\n",
                b"{}",
            ),
            415,
        ),
        (
            "not an offer",
            post(&addr, &format!("{sdp}Content-Length: 5\r\n"), b"hello"),
            400,
        ),
        (
            "SDP str0m cannot read",
            post(
                &addr,
                &format!("{sdp}Content-Length: 12\r\n"),
                b"v=0\r\nnonsense",
            ),
            400,
        ),
        (
            "GET the endpoint",
            exchange(&addr, b"GET /whep HTTP/1.1\r\n\r\n"),
            405,
        ),
        (
            "PATCH (trickle ICE)",
            exchange(&addr, b"PATCH /whep/00 HTTP/1.1\r\n\r\n"),
            405,
        ),
        (
            "DELETE an unknown session",
            exchange(
                &addr,
                format!("DELETE /whep/{} HTTP/1.1\r\n\r\n", "ab".repeat(16)).as_bytes(),
            ),
            404,
        ),
        (
            "DELETE a malformed one",
            exchange(&addr, b"DELETE /whep/../stats HTTP/1.1\r\n\r\n"),
            404,
        ),
        (
            "POST elsewhere",
            exchange(&addr, b"POST /stats HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            405,
        ),
    ];
    for (what, r, status) in &cases {
        assert_eq!(r.status, *status, "{what}: {}", text(r));
        assert!(!r.body.is_empty(), "{what}: a reason is given");
    }
    // An offer whose body never comes: the connection's thread gives up.
    let slow = post(&addr, &format!("{sdp}Content-Length: 100\r\n"), b"v=0\r\n");
    assert_eq!(slow.status, 408, "{}", text(&slow));
    watcher.finish();
    assert!(server.is_running());
    server.terminate();
    server.assert_no_panic();
}

/// `node tests/browser/page.mjs URL MODE SECONDS PAGES`, after `prefix` (to
/// run it in a network namespace), spawned; its JSON comes from [`page_result`].
fn page_check(
    prefix: &[&str],
    url: &str,
    mode: &str,
    seconds: u32,
    pages: u32,
) -> std::process::Child {
    let node = which("node").expect("node is needed");
    let dir = browser_scripts();
    let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    args.push(node.display().to_string());
    args.push(dir.join("page.mjs").display().to_string());
    args.extend([
        url.to_string(),
        mode.into(),
        seconds.to_string(),
        pages.to_string(),
    ]);
    std::process::Command::new(&args[0])
        .args(&args[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn page_result(child: std::process::Child, server: &Proc) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("page: {stdout}");
    assert!(
        out.status.success(),
        "page check failed: {stdout}{}\nserver said: {}",
        String::from_utf8_lossy(&out.stderr),
        server.said()
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// The server's page plays 720p30 over WebRTC in Chromium: at least 25
/// pictures decoded a second over 3 s, H.264, the test pattern's stamps read
/// from the video in order, two screenshots that differ, and its own latency
/// (capture → displayed) at most 50 ms at the median on loopback; the figures
/// it posts show up as the viewer's in `/stats`.
#[test]
fn the_page_plays_720p_over_webrtc_and_measures_its_latency() {
    let (mut server, addr) = serve(&[
        "--codec",
        "h264",
        "--width",
        "1280",
        "--height",
        "720",
        "--fps",
        "30",
        "--set",
        "serve.auth=\"pair\"",
    ]);
    server.wait_stderr("WebRTC (POST /whep) on UDP", 1, Duration::from_secs(10));
    let url = server.page_url();
    let token = url.split_once("token=").unwrap().1.to_string();
    let auth = format!("Authorization: Bearer {token}\r\n");
    let clock = get_with(&addr, "/clock", &auth);
    assert_eq!(clock.status, 200);
    assert!(clock.json()["now_us"].as_u64().unwrap() > 0);

    let child = page_check(&[], &url, "webrtc", 3, 1);
    // While it plays: the page's own latency reaches /stats.
    let reported = wait_until(
        Duration::from_secs(20),
        Lazy(|| {
            format!(
                "a WebRTC viewer's reported latency in /stats: {}",
                server.said()
            )
        }),
        || {
            let stats = get_with(&addr, "/stats", &auth).json();
            stats["viewers"].as_array().unwrap().iter().find_map(|v| {
                (v["protocol"] == "webrtc" && !v["reported_latency"].is_null())
                    .then(|| v["reported_latency"].clone())
            })
        },
    );
    let result = page_result(child, &server);
    let page = &result["pages"][0];
    eprintln!(
        "page latency (ms): {}; reported to the server: {reported}",
        page["latency"]
    );
    assert_eq!(page["modeText"], "WebRTC", "{page}");
    assert_eq!(page["codec"], "video/H264", "{page}");
    assert_eq!(page["size"], "1280x720", "{page}");
    assert!(page["decodedPerSecond"].as_f64().unwrap() >= 25.0, "{page}");
    assert!(page["stamps"].as_u64().unwrap() >= 75, "{page}");
    assert_eq!(page["stampsInOrder"], true, "{page}");
    assert_eq!(page["screenshotsDiffer"], true, "{page}");
    let p50 = page["latency"]["p50"].as_f64().unwrap();
    assert!((0.0..=50.0).contains(&p50), "latency p50 {p50} ms: {page}");
    assert!(
        page["status"].as_str().unwrap().contains("latency"),
        "{page}"
    );
    // The first report covers the start too (the jitter buffer settling):
    // a figure, not the steady state.
    let first = reported["p50_ms"].as_f64().unwrap();
    assert!(first > 0.0 && first < 1000.0, "{reported}");
    server.terminate();
    server.assert_no_panic();
}

/// A browser whose UDP is blocked (in a network namespace that drops every
/// UDP datagram, so ICE cannot connect) plays MJPEG within 5 s of opening the
/// page, which says so and why.
#[test]
fn without_udp_the_page_falls_back_to_mjpeg_within_5_s() {
    let link = crate::util::NetnsPair::new(None);
    for chain in ["INPUT", "OUTPUT"] {
        crate::util::NetnsPair::iptables(
            &link.viewer_ns,
            &["-A", chain, "-p", "udp", "-j", "DROP"],
        );
    }
    let mut server = link.serve("10.231.0.1:7878", &["--codec", "h264", SERVE_PLAINTEXT]);
    server.wait_stderr("WebRTC (POST /whep) on UDP", 1, Duration::from_secs(10));
    let child = page_check(
        &["ip", "netns", "exec", &link.viewer_ns],
        "http://10.231.0.1:7878/",
        "mjpeg",
        2,
        1,
    );
    let result = page_result(child, &server);
    let page = &result["pages"][0];
    assert!(
        page["modeText"]
            .as_str()
            .unwrap()
            .starts_with("MJPEG (WebRTC did not connect"),
        "{page}"
    );
    let settled = result["settledMs"].as_u64().unwrap();
    assert!(settled <= 5000, "MJPEG after {settled} ms: {result}");
    assert!(page["stamps"].as_u64().unwrap() >= 20, "{page}");
    assert_eq!(page["stampsInOrder"], true, "{page}");
    // The session that never connected ends on the server (ICE timeout).
    server.wait_stderr("ended before it connected", 1, Duration::from_secs(40));
    server.terminate();
    server.assert_no_panic();
}

/// Four pages at once in one browser each keep at least 25 pictures a second
/// over WebRTC (the server encodes once; packetising and encryption are per
/// viewer).
#[test]
fn four_pages_at_once_each_keep_25_fps() {
    let (mut server, addr) = serve(&[
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
    server.wait_stderr("WebRTC (POST /whep) on UDP", 1, Duration::from_secs(10));
    let url = format!("http://{addr}/");
    let result = page_result(page_check(&[], &url, "webrtc", 3, 4), &server);
    let pages = result["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 4);
    for page in pages {
        assert!(
            page["decodedPerSecond"].as_f64().unwrap() >= 25.0,
            "{result}"
        );
        assert_eq!(page["stampsInOrder"], true, "{page}");
    }
    server.terminate();
    server.assert_no_panic();
}

/// CPU time of the thread named `name` in process `pid`, ns
/// (`/proc/PID/task/TID/schedstat`).
fn thread_cpu_ns(pid: i32, name: &str) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .find_map(|t| {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            (comm.trim() == name).then_some(())?;
            std::fs::read_to_string(dir.join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// A JPEG stream plays over WebRTC: the `webrtc-h264` thread encodes H.264
/// for WebRTC viewers, and only while one watches (idle before the first and
/// after the last, by its CPU time).
#[test]
fn a_jpeg_stream_plays_over_webrtc_encoded_only_while_watched() {
    let node = which("node").expect("node is needed");
    let dir = browser_scripts();
    let (mut server, addr) = serve(&[
        "--codec",
        "jpeg",
        "--width",
        "640",
        "--height",
        "480",
        "--fps",
        "30",
        SERVE_PLAINTEXT,
    ]);
    server.wait_stderr("WebRTC (POST /whep) on UDP", 1, Duration::from_secs(10));
    let cpu = || thread_cpu_ns(server.pid(), "webrtc-h264").expect("a webrtc-h264 thread");
    let idle = |from: u64, what: &str| {
        let spent = cpu() - from;
        eprintln!("webrtc-h264 {what}: {spent} ns in 1 s");
        // It looks for viewers ten times a second (microseconds each); one
        // 640x480 H.264 frame costs about a millisecond here.
        assert!(
            spent < 5_000_000,
            "{what}: {spent} ns spent while no one watched"
        );
    };
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1)); // an interval measured, not a wait for an event
    idle(before, "before the first viewer");

    let started = cpu();
    let out = std::process::Command::new(node)
        .arg(dir.join("webrtc.mjs"))
        .arg(format!("http://{addr}/"))
        .args(["90", "15000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser: {stdout}\nserver said: {}",
        server.said()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(
        result["codec"].as_str().unwrap().contains("H264"),
        "{result}"
    );
    assert!(result["framesDecoded"].as_u64().unwrap() >= 90, "{result}");
    let watched = cpu() - started;
    eprintln!("webrtc-h264 while watched: {watched} ns");
    // 90 frames at least, each about a millisecond.
    assert!(
        watched > 20_000_000,
        "encoding H.264 for it took {watched} ns"
    );

    server.wait_stderr(
        "left: ended by the browser (DELETE)",
        1,
        Duration::from_secs(5),
    );
    let after = cpu();
    std::thread::sleep(Duration::from_secs(1)); // as above
    idle(after, "after the last viewer left");
    server.terminate();
    server.assert_no_panic();
}

/// `[serve] webrtc-networks` and `webrtc-candidates` decide what browsers are
/// offered: a filter that keeps none of the machine's addresses, with no extra
/// candidate, stops `serve` with the reason; extra candidates are offered after
/// the kept addresses, with the WebRTC port unless they give one.
#[test]
fn webrtc_networks_and_candidates_decide_what_is_offered() {
    let mut refused = Proc::spawn(
        "serve",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--codec",
            "h264",
            SERVE_PLAINTEXT,
            "--set",
            "serve.webrtc-networks=[\"10.255.0.0/16\"]",
        ],
    );
    let status = refused.wait_exit(Duration::from_secs(15));
    refused.assert_no_panic();
    let said = refused.stderr();
    assert!(!status.success(), "serve must not start: {said}");
    assert!(
        said.contains("no WebRTC candidate")
            && said.contains("10.255.0.0/16")
            && said.contains("127.0.0.1:"),
        "the reason, the networks and the machine's addresses: {said}"
    );

    let (mut server, addr) = serve_small(&[
        "--codec",
        "h264",
        SERVE_PLAINTEXT,
        "--set",
        "serve.webrtc-networks=[\"127.0.0.0/8\"]",
        "--set",
        "serve.webrtc-candidates=[\"203.0.113.7\", \"198.51.100.9:8555\"]",
    ]);
    server.wait_stderr("WebRTC (POST /whep) on UDP", 1, Duration::from_secs(10));
    let port = addr.rsplit_once(':').unwrap().1;
    let said = server.stderr();
    let line = said
        .lines()
        .find(|l| l.contains("WebRTC (POST /whep) on UDP"))
        .unwrap();
    assert!(
        line.ends_with(&format!(
            "candidates 127.0.0.1:{port}, 203.0.113.7:{port}, 198.51.100.9:8555"
        )),
        "{line}"
    );
    server.terminate();
    server.assert_no_panic();
}
