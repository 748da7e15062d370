//! The soak (issue 19; `scripts/soak.sh`, not CI): a server with a real camera
//! (vivid, in the VM of `vivid.rs`) watched for an hour by everything that
//! watches it, all at once:
//!
//! - 16 native viewers (`livestream view` processes), each joining for 2 to
//!   10 s, leaving, and joining again; each keeps a latency log, whose frame
//!   numbers must only go up;
//! - two headless Chromium pages, one over WebRTC (UDP forwarded into the
//!   VM), one on MJPEG, for the whole hour (`tests/browser/follow.mjs`);
//! - RTSP clients: one ffmpeg for the whole hour, one joining for 15 s at a
//!   time; their packets' timestamps must only go up;
//! - the server's own segmented recording, capped by `max-total-bytes`;
//! - the camera unplugged every 5 minutes (vivid's `disconnect` control, the
//!   module removed, loaded again 2.5 s later).
//!
//! The guest samples the server's RSS, open files and threads every 10 s.
//! Everything is written to `SOAK_OUT` (default `target/soak`): the samples,
//! the server's log, a summary. Then the checks: no panic anywhere, every
//! viewer's frames in order, the camera back after each unplug, the recording
//! under its cap and playable, and the last 10 minutes of each sample within
//! 5 % of minute 10 (medians: see `flatness`).
//!
//! `SOAK_MINUTES` (default 60) and `SOAK_UNPLUG_MINUTES` (default 5) change
//! the schedule: `SOAK_MINUTES=12` is a trial of the whole thing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http_client::stats;
use crate::util::{free_port, Proc, VIEW_PLAINTEXT};
use crate::vivid::Vm;

const VIEWERS: usize = 16;
/// The guest's WebRTC port; forwarded from a free UDP port here.
const GUEST_WEBRTC: u16 = 7879;
/// The recording's cap, and how long one file runs.
const RECORD_CAP: u64 = 24 << 20;
const SEGMENT_SECONDS: u32 = 60;

fn minutes(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator: the same churn at every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the soak's clients found, for the summary and the checks.
#[derive(Default)]
struct Findings {
    /// Native sessions, frames they showed, sessions that showed none.
    native_sessions: u64,
    native_frames: u64,
    native_empty: u64,
    /// RTSP client runs and packets they got.
    rtsp_runs: u64,
    rtsp_packets: u64,
    /// What went wrong, each with where.
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Findings>>;

/// The frame numbers of a latency log (`seq` first), in file order; a line
/// cut short by the viewer's end is left out.
fn logged_seqs(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| l.split(',').count() == 10)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect()
}

/// Where a sequence goes backwards or repeats, if it does.
fn out_of_order(seqs: &[u64]) -> Option<(usize, u64, u64)> {
    seqs.windows(2)
        .enumerate()
        .find(|(_, w)| w[1] <= w[0])
        .map(|(i, w)| (i + 1, w[0], w[1]))
}

fn panicked(text: &str) -> bool {
    text.contains("panicked")
}

/// Ends a client (SIGTERM if it still runs); its exit status, once its
/// output is whole.
fn end(p: &mut Proc) -> std::process::ExitStatus {
    if p.is_running() {
        p.signal(libc::SIGTERM);
    }
    p.wait_exit(Duration::from_secs(15))
}

/// One native viewer slot: joins for 2-10 s, leaves for 0.5-3 s, again,
/// until `stop`.
fn native_viewer(
    slot: usize,
    addr: String,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    found: Shared,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("soak-view-{slot}"))
        .spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((slot as u64 + 1) * 0x1234_5677));
            let mut session = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let log = dir.join(format!("view-{slot}.csv"));
                let mut view = Proc::spawn(
                    &format!("view {slot}.{session}"),
                    &[
                        "view",
                        &addr,
                        "--sink",
                        "null",
                        "--latency-log",
                        log.to_str().unwrap(),
                        VIEW_PLAINTEXT,
                    ],
                );
                let stay = Duration::from_millis(2000 + rng.below(8000));
                let joined = Instant::now();
                while joined.elapsed() < stay && !stop.load(Ordering::Relaxed) && view.is_running()
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let ended_early = !view.is_running();
                let status = end(&mut view);
                let seqs = logged_seqs(&log);
                let said = view.stderr();
                let mut f = found.lock().unwrap();
                f.native_sessions += 1;
                f.native_frames += seqs.len() as u64;
                if seqs.is_empty() {
                    f.native_empty += 1;
                }
                if let Some((at, a, b)) = out_of_order(&seqs) {
                    f.problems.push(format!(
                        "viewer {slot}.{session}: frame {b} after {a} (line {at})"
                    ));
                }
                if panicked(&said) {
                    f.problems
                        .push(format!("viewer {slot}.{session} panicked:\n{said}"));
                }
                if !status.success() {
                    f.problems.push(format!(
                        "viewer {slot}.{session} exited with {status}:\n{said}"
                    ));
                }
                if ended_early {
                    f.problems.push(format!(
                        "viewer {slot}.{session} ended by itself after {:.1} s:\n{said}",
                        joined.elapsed().as_secs_f64()
                    ));
                }
                drop(f);
                session += 1;
                let away = Instant::now();
                let gap = Duration::from_millis(500 + rng.below(2500));
                while away.elapsed() < gap && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .unwrap()
}

/// An RTSP client (ffmpeg over TCP, packets copied, one line each); `each`
/// bounds a run (None: until `stop`), and a new run starts after each.
fn rtsp_client(
    name: &'static str,
    url: String,
    each: Option<Duration>,
    stop: Arc<AtomicBool>,
    found: Shared,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("soak-{name}"))
        .spawn(move || {
            let mut run = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut args = vec![
                    "-nostdin",
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-rtsp_transport",
                    "tcp",
                    "-i",
                    &url,
                    "-c",
                    "copy",
                    "-f",
                    "framecrc",
                    "-",
                ];
                let seconds;
                if let Some(each) = each {
                    seconds = each.as_secs().to_string();
                    args.splice(6..6, ["-t", seconds.as_str()]);
                }
                let mut ffmpeg = Proc::spawn_program("ffmpeg", &format!("{name} {run}"), &args);
                let started = Instant::now();
                let bound = each.map(|e| e + Duration::from_secs(30));
                while ffmpeg.is_running()
                    && !stop.load(Ordering::Relaxed)
                    && bound.is_none_or(|b| started.elapsed() < b)
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                let by_itself = !ffmpeg.is_running();
                end(&mut ffmpeg);
                // framecrc: stream, dts, pts, duration, size, crc. ffmpeg's
                // RTP depacketizer gives the first packet no time (ffprobe
                // shows pts=N/A), which framecrc writes as 0, as the next:
                // the order is judged from the second packet on.
                let dts: Vec<u64> = ffmpeg
                    .stdout()
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|l| l.split(',').nth(1)?.trim().parse().ok())
                    .skip(1)
                    .collect();
                let said = ffmpeg.stderr();
                let mut f = found.lock().unwrap();
                f.rtsp_runs += 1;
                f.rtsp_packets += dts.len() as u64;
                if let Some((at, a, b)) = out_of_order(&dts) {
                    f.problems
                        .push(format!("{name} run {run}: dts {b} after {a} (packet {at})"));
                }
                if dts.is_empty() {
                    f.problems
                        .push(format!("{name} run {run} got nothing:\n{said}"));
                }
                if by_itself && each.is_none() && !stop.load(Ordering::Relaxed) {
                    f.problems.push(format!(
                        "{name} run {run} ended by itself after {:.0} s ({} packets):\n{said}",
                        started.elapsed().as_secs_f64(),
                        dts.len()
                    ));
                }
                drop(f);
                run += 1;
            }
        })
        .unwrap()
}

/// One follow.mjs page for the whole soak: its lines, and its exit.
struct Page {
    mode: &'static str,
    child: std::process::Child,
    lines: Arc<Mutex<Vec<(f64, serde_json::Value)>>>,
    reader: JoinHandle<()>,
}

impl Page {
    fn start(url: &str, seconds: u64, mode: &'static str, epoch: Instant) -> Page {
        let node = crate::stream::which("node").expect("node is needed");
        let mut child = Command::new(node)
            .arg(crate::util::browser_scripts().join("follow.mjs"))
            .args([url, &seconds.to_string(), mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let into = lines.clone();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
                into.lock()
                    .unwrap()
                    .push((epoch.elapsed().as_secs_f64(), v));
            }
        });
        Page {
            mode,
            child,
            lines,
            reader,
        }
    }

    /// Waits for its end (it ends by itself after its seconds); what it
    /// showed each minute, and the problems.
    fn finish(mut self, minutes: u64, found: &Shared, out: &Path) -> Vec<f64> {
        let status = crate::wait::wait_until(
            Duration::from_secs(120),
            format!("the {} page to end", self.mode),
            || self.child.try_wait().ok().flatten(),
        );
        self.reader.join().unwrap();
        let lines = self.lines.lock().unwrap();
        let text: Vec<String> = lines.iter().map(|(t, v)| format!("{t:.1} {v}")).collect();
        std::fs::write(out.join(format!("page-{}.txt", self.mode)), text.join("\n")).unwrap();
        let mut f = found.lock().unwrap();
        if !status.success() {
            let last: Vec<String> = lines
                .iter()
                .rev()
                .take(3)
                .map(|(_, v)| v.to_string())
                .collect();
            f.problems.push(format!(
                "the {} page did not play in its mode throughout ({status}); last lines:\n{}",
                self.mode,
                last.join("\n")
            ));
        }
        // How often the picture had changed since the look before (twice a
        // second), each minute: vivid's pictures carry no stamp the page
        // reads, so the page hashes what it shows.
        let mut changes = vec![0.0; minutes as usize];
        for pair in lines.windows(2) {
            let (before, (t, now)) = (&pair[0].1, &pair[1]);
            let m = (*t / 60.0) as usize;
            let hash = &now["pictureHash"];
            if m < changes.len() && hash.is_u64() && *hash != before["pictureHash"] {
                changes[m] += 1.0;
            }
        }
        changes
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One line of the guest's sampler: seconds since the soak began, RSS (KiB),
/// open files, threads, connections (each viewer holds a socket and a thread
/// or two, so the last three go up and down with the churn).
#[derive(Clone, Copy, Debug)]
struct Sample {
    t: f64,
    rss_kib: f64,
    fds: f64,
    threads: f64,
    connections: f64,
}

/// One figure of a sample.
type Pick = fn(&Sample) -> f64;

fn read_samples(path: &Path, started_epoch: f64) -> Vec<Sample> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let v: Vec<f64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (v.len() == 5).then(|| Sample {
                t: v[0] - started_epoch,
                rss_kib: v[1],
                fds: v[2],
                threads: v[3],
                connections: v[4],
            })
        })
        .collect()
}

/// The medians of a figure around minute 10 (minutes 8 to 12: open files
/// and threads go up and down by a few with the viewers connected at each
/// sample, so one minute's six samples would judge the churn, not a leak)
/// and over the last 10 minutes; and the largest of those.
fn flatness(samples: &[Sample], total_min: f64, pick: Pick) -> (f64, f64, f64) {
    let window = |from: f64, to: f64| {
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|s| s.t >= from * 60.0 && s.t < to * 60.0)
            .map(pick)
            .collect();
        median(&mut v)
    };
    let base = window(8.0, 12.0);
    let late = window(total_min - 10.0, total_min);
    let max_late = samples
        .iter()
        .filter(|s| s.t >= (total_min - 10.0) * 60.0)
        .map(pick)
        .fold(0.0, f64::max);
    (base, late, max_late)
}

#[test]
#[ignore = "an hour long: scripts/soak.sh runs it"]
fn an_hour_of_churn_unplugs_and_recording() {
    let total = minutes("SOAK_MINUTES", 60);
    let unplug_every = minutes("SOAK_UNPLUG_MINUTES", 5);
    assert!(
        total >= 12,
        "SOAK_MINUTES: at least 12 (minutes 8-12 are the baseline)"
    );
    let out = PathBuf::from(std::env::var("SOAK_OUT").unwrap_or_else(|_| "target/soak".into()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();

    let udp = free_port();
    let mut vm = Vm::boot_for(
        &[
            "--fwd-udp".to_string(),
            format!("{udp}:{GUEST_WEBRTC}"),
            // qemu passes the guest's UDP answers back only so.
            "--restrict".to_string(),
            "off".to_string(),
        ],
        (total * 60 + 1200) as u32,
    );
    let (devices, rc) = vm.sh("/bin/livestream devices", Duration::from_secs(600));
    assert_eq!(rc, "0", "{devices}");
    std::fs::write(
        vm.path("soak.toml"),
        format!(
            "[serve]\nsource = \"v4l2\"\ncodec = \"h264\"\nmax-viewers = 32\n\
             connections-per-second = 1000\ndiscovery = false\n\
             webrtc-port = {GUEST_WEBRTC}\n\
             # The browser here reaches the guest's socket through qemu's forward.\n\
             webrtc-candidates = [\"127.0.0.1:{udp}\"]\nwebrtc-networks = [\"10.0.2.15\"]\n\
             sinks = [\"record\"]\n\
             [capture]\nwidth = 640\nheight = 360\nfps = 30\nformat = \"yuyv\"\n\
             [sinks.record]\ndir = \"/mnt/host/rec\"\nsegment-seconds = {SEGMENT_SECONDS}\n\
             max-total-bytes = {RECORD_CAP}\n"
        ),
    )
    .unwrap();
    let log = vm
        .serve("--config /mnt/host/soak.toml", Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("serve failed:\n{e}"));
    let addr = vm.addr.clone();

    // The guest's sampler: epoch seconds, RSS KiB, open files, threads, and
    // the TCP connections to port 7878 (1EC6) then.
    let (said, rc) = vm.sh(
        "p=$(pidof livestream); \
         (while kill -0 $p 2>/dev/null; do \
            echo $(date +%s) $(awk '/^VmRSS/{print $2}' /proc/$p/status) \
              $(ls /proc/$p/fd 2>/dev/null | wc -l) $(awk '/^Threads/{print $2}' /proc/$p/status) \
              $(awk '$2 ~ /:1EC6$/ && $4 == \"01\"' /proc/net/tcp | wc -l); \
            sleep 10; done) > /mnt/host/samples.txt 2>&1 &",
        Duration::from_secs(30),
    );
    assert_eq!(rc, "0", "{said}");
    let (now, _) = vm.sh("date +%s", Duration::from_secs(30));
    let started_epoch: f64 = now.trim().parse().unwrap();
    let epoch = Instant::now();
    let deadline = Duration::from_secs(total * 60);

    let stop = Arc::new(AtomicBool::new(false));
    let found = Shared::default();
    let logs = tempfile::tempdir().unwrap();
    let mut threads: Vec<JoinHandle<()>> = (0..VIEWERS)
        .map(|i| {
            native_viewer(
                i,
                addr.clone(),
                logs.path().to_path_buf(),
                stop.clone(),
                found.clone(),
            )
        })
        .collect();
    let url = format!("rtsp://{addr}/stream");
    threads.push(rtsp_client(
        "rtsp-whole",
        url.clone(),
        None,
        stop.clone(),
        found.clone(),
    ));
    threads.push(rtsp_client(
        "rtsp-churn",
        url,
        Some(Duration::from_secs(15)),
        stop.clone(),
        found.clone(),
    ));
    let page_seconds = total * 60 - epoch.elapsed().as_secs() - 30;
    let pages = [
        Page::start(&format!("http://{addr}/"), page_seconds, "webrtc", epoch),
        Page::start(
            &format!("http://{addr}/?mode=mjpeg"),
            page_seconds,
            "mjpeg",
            epoch,
        ),
    ];

    // The schedule: a look at /stats every 10 s, an unplug every few minutes.
    let mut viewers_seen = Vec::new();
    let mut unplugs = 0u64;
    let mut tick = 0u64;
    while epoch.elapsed() < deadline {
        tick += 1;
        let next = Duration::from_secs(10 * tick);
        if tick % (unplug_every * 6) == 0 && epoch.elapsed() + Duration::from_secs(60) < deadline {
            let (said, rc) = vm.sh(
                "v4l2-ctl -d /dev/video0 -c disconnect=1 && \
                 n=0; until rmmod vivid 2>/dev/null; do n=$((n+1)); [ $n -gt 300 ] && exit 1; sleep 0.1; done; \
                 sleep 2.5; insmod /lib/modules/vivid.ko",
                Duration::from_secs(120),
            );
            unplugs += 1;
            if rc != "0" {
                found
                    .lock()
                    .unwrap()
                    .problems
                    .push(format!("unplug {unplugs} failed: {said}"));
            }
        }
        if let Ok(s) = std::panic::catch_unwind(|| stats(&addr)) {
            let n = s["viewers"].as_array().map_or(0, Vec::len);
            viewers_seen.push((epoch.elapsed().as_secs_f64(), n));
        }
        if let Some(left) = next.checked_sub(epoch.elapsed()) {
            std::thread::sleep(left);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let per_minute: Vec<(&str, Vec<f64>)> = pages
        .into_iter()
        .map(|p| (p.mode, p.finish(total, &found, &out)))
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // The recording, before the server stops (a cap holds while it runs).
    let rec = vm.path("rec");
    let files: Vec<(PathBuf, u64)> = std::fs::read_dir(&rec)
        .map(|d| {
            d.map_while(Result::ok)
                .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let rc = vm.stop();
    let server_log = vm.log(&log);
    std::fs::write(out.join("server.log"), &server_log).unwrap();
    std::fs::copy(vm.path("samples.txt"), out.join("samples.txt")).unwrap();
    let samples = read_samples(&vm.path("samples.txt"), started_epoch);

    let mut f = found.lock().unwrap();
    if rc != "0" {
        f.problems.push(format!("the server ended with {rc}"));
    }
    if panicked(&server_log) {
        f.problems.push("the server's log has a panic".into());
    }
    let back = server_log.matches("is back after").count() as u64;
    if back != unplugs {
        f.problems.push(format!(
            "{unplugs} unplugs, the camera came back {back} times"
        ));
    }
    let recorded: u64 = files.iter().map(|(_, n)| n).sum();
    if recorded > RECORD_CAP {
        f.problems.push(format!(
            "the recording holds {recorded} bytes, over its cap {RECORD_CAP}"
        ));
    }
    for (path, _) in &files {
        let probe = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-count_packets",
                "-show_entries",
                "stream=nb_read_packets",
            ])
            .args(["-of", "csv=p=0"])
            .arg(path)
            .output()
            .unwrap();
        let packets = String::from_utf8_lossy(&probe.stdout).trim().to_string();
        if !probe.status.success() || packets.parse::<u64>().map_or(true, |n| n == 0) {
            f.problems.push(format!(
                "{} does not play: {packets} {}",
                path.display(),
                String::from_utf8_lossy(&probe.stderr)
            ));
        }
    }

    // The summary: what ran, the samples' course, the checks.
    let mut s = String::new();
    let total_min = total as f64;
    writeln!(s, "soak: {total} min, {VIEWERS} native viewers churning, 2 pages, 2 RTSP clients, unplug every {unplug_every} min").unwrap();
    writeln!(
        s,
        "native: {} sessions, {} frames, {} sessions with no frame",
        f.native_sessions, f.native_frames, f.native_empty
    )
    .unwrap();
    writeln!(s, "rtsp: {} runs, {} packets", f.rtsp_runs, f.rtsp_packets).unwrap();
    for (mode, changes) in &per_minute {
        let shown: Vec<String> = changes.iter().map(|v| format!("{v:.0}")).collect();
        writeln!(
            s,
            "page {mode}: of 120 looks a minute, a new picture at: {}",
            shown.join(" ")
        )
        .unwrap();
        // The first and last minutes are partly before and after the page.
        if changes
            .iter()
            .skip(1)
            .take(total as usize - 2)
            .any(|&v| v < 60.0)
        {
            f.problems.push(format!(
                "the {mode} page showed the same picture for more than half a minute: {shown:?}"
            ));
        }
    }
    let mut counts: Vec<f64> = viewers_seen.iter().map(|&(_, n)| n as f64).collect();
    writeln!(
        s,
        "viewers in /stats: median {:.0}, max {:.0}",
        median(&mut counts),
        counts.iter().fold(0.0, |a: f64, &b| a.max(b))
    )
    .unwrap();
    writeln!(s, "unplugs: {unplugs}, camera back {back} times").unwrap();
    writeln!(
        s,
        "recording: {} files, {recorded} bytes (cap {RECORD_CAP})",
        files.len()
    )
    .unwrap();
    writeln!(s, "samples: {}", samples.len()).unwrap();
    writeln!(s, "minute | RSS MiB | open files | threads | connections").unwrap();
    for m in 0..total {
        let in_minute: Vec<&Sample> = samples
            .iter()
            .filter(|x| (x.t / 60.0) as u64 == m)
            .collect();
        if let Some(last) = in_minute.last() {
            writeln!(
                s,
                "{m:>6} | {:>7.1} | {:>10.0} | {:>7.0} | {:>11.0}",
                last.rss_kib / 1024.0,
                last.fds,
                last.threads,
                last.connections
            )
            .unwrap();
        }
    }
    let picks: [(&str, Pick); 3] = [
        ("RSS", |x| x.rss_kib),
        ("open files", |x| x.fds),
        ("threads", |x| x.threads),
    ];
    for (name, pick) in picks {
        let (base, late, max_late) = flatness(&samples, total_min, pick);
        let change = (late - base) / base * 100.0;
        writeln!(
            s,
            "{name}: minutes 8-12 median {base:.0}, last 10 minutes median {late:.0} ({change:+.1} %), max {max_late:.0}"
        )
        .unwrap();
        if !(base > 0.0 && change.abs() <= 5.0) {
            f.problems.push(format!(
                "{name} is not flat: {base:.0} around minute 10, {late:.0} at the end"
            ));
        }
    }
    writeln!(s, "problems: {}", f.problems.len()).unwrap();
    for p in &f.problems {
        writeln!(s, "- {p}").unwrap();
    }
    std::fs::write(out.join("summary.txt"), &s).unwrap();
    eprintln!("{s}");
    assert!(
        f.problems.is_empty(),
        "the soak found problems (above; {})",
        out.display()
    );
}
