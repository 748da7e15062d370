//! Running the real `livestream` binary: spawn, read its output, wait with
//! deadlines; the viewers and servers most tests need, and a [`Watcher`] to show
//! a viewer is not disturbed. Each test drives its processes from its own thread;
//! two threads per process collect its output.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::wait::{poll_until, wait_until, Lazy};

pub const BIN: &str = env!("CARGO_BIN_EXE_livestream");

/// `serve` without pairing or encryption (`auth = "none"`). Tests of other
/// features pass it (or [`VIEW_PLAINTEXT`]) so that any two processes can talk;
/// `secure.rs` tests pairing and encryption, and the tests that run as by
/// default (pairing) pass neither.
pub const SERVE_PLAINTEXT: &str = "--set=serve.auth=\"none\"";

/// `view` without pairing or encryption: see [`SERVE_PLAINTEXT`].
pub const VIEW_PLAINTEXT: &str = "--set=view.auth=\"none\"";

/// A running `livestream` process whose output is collected as it comes.
pub struct Proc {
    pub name: String,
    /// In a mutex so that `is_running` can look while its output is borrowed
    /// (a wait that shows the output when it fails).
    child: Mutex<Child>,
    pid: i32,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The threads collecting stdout and stderr: joined once the process has
    /// exited, so that its output is whole.
    readers: Vec<JoinHandle<()>>,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

impl Proc {
    /// `livestream ARGS`, the arguments as they are.
    pub fn spawn(name: &str, args: &[&str]) -> Proc {
        Proc::spawn_in(name, args, None)
    }

    pub fn spawn_in(name: &str, args: &[&str], dir: Option<&Path>) -> Proc {
        Proc::spawn_cmd(Command::new(BIN), name, args, dir, &[])
    }

    /// With extra environment variables (an empty value clears one).
    pub fn spawn_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn_cmd(Command::new(BIN), name, args, None, env)
    }

    /// Another program (which runs the binary: `unshare`, `ip netns exec`).
    pub fn spawn_program(program: &str, name: &str, args: &[&str]) -> Proc {
        Proc::spawn_cmd(Command::new(program), name, args, None, &[])
    }

    fn spawn_cmd(
        mut cmd: Command,
        name: &str,
        args: &[&str],
        dir: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Proc {
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Keys and pins go to the test's own directory, never the user's.
        if !env.iter().any(|(k, _)| *k == "XDG_CONFIG_HOME") {
            cmd.env("XDG_CONFIG_HOME", keys_dir());
        }
        // Info unless the caller asks for more.
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("livestream binary runs");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Proc {
            name: name.to_string(),
            pid: child.id() as i32,
            child: Mutex::new(child),
            stdout,
            stderr,
            readers,
        }
    }

    /// The page URL `serve` printed (`or open: URL`, with its token).
    pub fn page_url(&self) -> String {
        self.stdout()
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("or open:")
                    .map(|u| u.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no page URL printed: {}", self.said()))
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its name and output, for a failure message.
    pub fn said(&self) -> String {
        format!(
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.name,
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits until `cond` holds for (stdout, stderr), or panics at the deadline.
    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&str, &str) -> bool) {
        wait_until(
            timeout,
            Lazy(|| format!("{what} from {}", self.said())),
            || cond(&self.stdout(), &self.stderr()).then_some(()),
        );
    }

    /// Waits until `text` appears `count` times in stderr.
    pub fn wait_stderr(&self, text: &str, count: usize, timeout: Duration) {
        self.wait_for(&format!("{count}x `{text}` in stderr"), timeout, |_, e| {
            e.matches(text).count() >= count
        });
    }

    /// Waits until a `serve` prints `listening on ADDR`; returns ADDR.
    pub fn wait_listening(&self) -> String {
        self.wait_for("`listening on`", Duration::from_secs(15), |out, _| {
            out.contains("listening on ")
        });
        self.stdout()
            .lines()
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
            .unwrap()
    }

    pub fn is_running(&self) -> bool {
        self.child.lock().unwrap().try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit, or kills it and panics at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.get_mut().unwrap();
        let Some(status) = poll_until(timeout, || child.try_wait().unwrap()) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not exit within {timeout:?}: {}", self.said());
        };
        // Its output is whole once the readers have seen the pipes close.
        let readers = std::mem::take(&mut self.readers);
        wait_until(
            Duration::from_secs(5),
            Lazy(|| {
                format!(
                    "the end of the output of {} (exited {status}; does a child of it hold it?)",
                    self.name
                )
            }),
            || readers.iter().all(JoinHandle::is_finished).then_some(()),
        );
        for reader in readers {
            reader.join().expect("an output reader panicked");
        }
        status
    }

    /// Waits for a successful exit; panics with the output otherwise.
    pub fn expect_success(&mut self, timeout: Duration) {
        let status = self.wait_exit(timeout);
        assert!(status.success(), "exited with {status}: {}", self.said());
        self.assert_no_panic();
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, then expect a clean exit with status 0.
    pub fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
        self.expect_success(Duration::from_secs(10));
    }

    pub fn assert_no_panic(&self) {
        let err = self.stderr();
        assert!(!err.contains("panicked"), "{}: panicked:\n{err}", self.name);
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts `livestream serve` on a free loopback port and returns it with its address.
pub fn serve(args: &[&str]) -> (Proc, String) {
    serve_on("127.0.0.1:0", args)
}

/// `serve` of a small test pattern, 320x240 at 30 fps, with `more` arguments:
/// what most tests need.
pub fn serve_small(more: &[&str]) -> (Proc, String) {
    let mut args = vec!["--width", "320", "--height", "240", "--fps", "30"];
    args.extend_from_slice(more);
    serve(&args)
}

/// The pairing code a secure `serve` printed.
pub fn pairing_code(server: &Proc) -> String {
    server.wait_for("the pairing code", Duration::from_secs(15), |out, _| {
        out.contains("pairing code: ")
    });
    let out = server.stdout();
    let at = out.find("pairing code: ").unwrap() + "pairing code: ".len();
    out[at..].split_whitespace().next().unwrap().to_string()
}

pub fn serve_on(listen: &str, args: &[&str]) -> (Proc, String) {
    let mut all = vec!["serve", "--listen", listen];
    all.extend_from_slice(args);
    let p = Proc::spawn("serve", &all);
    let addr = p.wait_listening();
    (p, addr)
}

/// A directory for keys shared by the processes of this test run.
fn keys_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .to_path_buf()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("livestream-test-")
        .tempdir()
        .unwrap()
}

/// Starts `livestream view ADDR --sink file` recording `frames` frames to
/// `path`, with `more` arguments.
pub fn record(addr: &str, path: &Path, frames: u32, more: &[&str]) -> Proc {
    record_env(addr, path, frames, more, &[])
}

/// [`record`] with extra environment variables.
fn record_env(addr: &str, path: &Path, frames: u32, more: &[&str], env: &[(&str, &str)]) -> Proc {
    let set = format!("sinks.file.path={}", path.display());
    let name = format!(
        "view recording {}",
        path.file_name().unwrap_or_default().to_string_lossy()
    );
    let frames = frames.to_string();
    let mut args = vec![
        "view", addr, "--sink", "file", "--set", &set, "--frames", &frames, "-q",
    ];
    args.extend_from_slice(more);
    Proc::spawn_env(&name, &args, env)
}

/// The recording at `path` holds `expected` frames with consecutive sequence
/// numbers: the viewer got every frame.
pub fn assert_no_gaps(path: &Path, expected: usize) {
    let frames = crate::stream::read_recording(path);
    assert_eq!(frames.len(), expected, "{}", path.display());
    for w in frames.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "{}: gap after seq {}",
            path.display(),
            w[0].seq
        );
    }
}

/// A viewer watching while a test does something around it, to show that it is
/// not disturbed: it records `frames` frames, and [`Watcher::finish`] checks
/// that it got every one of them and never reconnected.
pub struct Watcher {
    view: Proc,
    rec: PathBuf,
    frames: u32,
    _dir: tempfile::TempDir,
}

impl Watcher {
    /// Starts watching `addr` with `more` arguments (how it authenticates, at
    /// least) and `env`; returns once it is connected.
    pub fn start(addr: &str, frames: u32, more: &[&str], env: &[(&str, &str)]) -> Watcher {
        let dir = temp_dir();
        let rec = dir.path().join("watcher.lsr");
        let view = record_env(addr, &rec, frames, more, env);
        view.wait_stderr("connected to", 1, Duration::from_secs(10));
        Watcher {
            view,
            rec,
            frames,
            _dir: dir,
        }
    }

    pub fn view(&self) -> &Proc {
        &self.view
    }

    /// Waits for the end of its recording: every frame, in order, on its first
    /// connection.
    pub fn finish(mut self) {
        // The stream's time at 30 fps, and room for a loaded machine.
        let timeout = Duration::from_secs(30 + u64::from(self.frames) / 30);
        self.view.expect_success(timeout);
        let said = self.view.stderr();
        assert!(
            !said.contains("reconnecting"),
            "the watcher reconnected: {said}"
        );
        assert_no_gaps(&self.rec, self.frames as usize);
    }
}

/// Two network namespaces joined by a veth pair, 10.231.0.1 (the server's) and
/// 10.231.0.2 (the viewer's); the server's side optionally limited by tbf.
/// Deleted on drop. Tests that touch a network beyond loopback use these only.
pub struct NetnsPair {
    pub server_ns: String,
    pub viewer_ns: String,
    /// The server's end of the veth pair, where tbf shapes.
    server_dev: String,
    /// The viewer's end.
    viewer_dev: String,
}

impl NetnsPair {
    pub fn new(rate: Option<&str>) -> NetnsPair {
        NetnsPair::shaped(rate.map(|r| (r, "32kb", "50ms")))
    }

    /// With tbf's rate, burst and latency (its queue) given: a small queue
    /// makes TCP back off at once rather than fill seconds of buffer first.
    pub fn shaped(tbf: Option<(&str, &str, &str)>) -> NetnsPair {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let id = format!("{}{n}", std::process::id() % 100_000);
        let link = NetnsPair {
            server_ns: format!("ls-srv-{id}"),
            viewer_ns: format!("ls-view-{id}"),
            server_dev: format!("lsa{id}"),
            viewer_dev: format!("lsb{id}"),
        };
        let (a, b) = (format!("lsa{id}"), format!("lsb{id}"));
        let run = |args: &[&str]| {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {} (network namespaces need root and iproute2; the README's test command has both)",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (s, v) = (link.server_ns.as_str(), link.viewer_ns.as_str());
        run(&["ip", "netns", "add", s]);
        run(&["ip", "netns", "add", v]);
        run(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        run(&["ip", "link", "set", &a, "netns", s]);
        run(&["ip", "link", "set", &b, "netns", v]);
        run(&["ip", "-n", s, "addr", "add", "10.231.0.1/24", "dev", &a]);
        run(&["ip", "-n", v, "addr", "add", "10.231.0.2/24", "dev", &b]);
        for (ns, dev) in [(s, &a), (v, &b)] {
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        if let Some((rate, burst, latency)) = tbf {
            run(&[
                "ip", "netns", "exec", s, "tc", "qdisc", "add", "dev", &a, "root", "tbf", "rate",
                rate, "burst", burst, "latency", latency,
            ]);
        }
        link
    }
}

impl NetnsPair {
    /// Changes the server side's tbf (made with a rate) to `rate`, as a WiFi
    /// link changes when its viewer walks away.
    pub fn set_rate(&self, rate: &str) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server_ns,
                "tc",
                "qdisc",
                "change",
                "dev",
            ])
            .args([
                &self.server_dev,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "32kb",
            ])
            .args(["latency", "50ms"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Takes the link away: every packet that reaches either namespace over
    /// the veth pair is dropped (each side's own traffic to itself still
    /// flows: a test asks the server's `/stats` from its side), as when a viewer walks out of WiFi range or a switch between
    /// them fails. Nothing crosses, no FIN, no RST, and neither side is told
    /// (`ip link set down` would be another fault: it takes the server's
    /// route away, so its sends fail at once). Until [`NetnsPair::link_up`].
    pub fn link_down(&self) {
        for (ns, dev) in [
            (&self.server_ns, &self.server_dev),
            (&self.viewer_ns, &self.viewer_dev),
        ] {
            NetnsPair::iptables(ns, &["-I", "INPUT", "1", "-i", dev, "-j", "DROP"]);
        }
    }

    /// Gives the link back after [`NetnsPair::link_down`].
    pub fn link_up(&self) {
        for (ns, dev) in [
            (&self.server_ns, &self.server_dev),
            (&self.viewer_ns, &self.viewer_dev),
        ] {
            NetnsPair::iptables(ns, &["-D", "INPUT", "-i", dev, "-j", "DROP"]);
        }
    }

    /// iptables `args` (a command on the filter table: `-A CHAIN RULE`...)
    /// inside namespace `ns`, which has tables of its own, gone with it.
    pub fn iptables(ns: &str, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "iptables"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "iptables {args:?} (the README's test command installs iptables): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Drops each packet that reaches the viewer's namespace over the veth
    /// pair with probability `p`, at random (`netem` is not in every kernel;
    /// iptables' statistic match is); 0 for none. Replaces any loss or
    /// [`NetnsPair::link_down`] set there before.
    pub fn set_loss_to_viewer(&self, p: f64) {
        NetnsPair::iptables(&self.viewer_ns, &["-F", "INPUT"]);
        if p > 0.0 {
            let p = p.to_string();
            let rule = ["-A", "INPUT", "-i", &self.viewer_dev, "-m", "statistic"];
            let rest = ["--mode", "random", "--probability", &p, "-j", "DROP"];
            NetnsPair::iptables(&self.viewer_ns, &[&rule[..], &rest[..]].concat());
        }
    }

    /// Runs `f` on a thread that joined the server's namespace (its
    /// addresses are reachable only from there).
    pub fn in_server_ns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        NetnsPair::spawn_in(&self.server_ns, f).join().unwrap()
    }

    /// Runs `f` on a thread of its own inside namespace `ns` (the server's or
    /// the viewer's).
    pub fn spawn_in<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: joins this thread (only) to the test's namespace.
            assert_eq!(
                unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
    }

    /// The server's `/stats` at `addr`, fetched from inside its namespace.
    pub fn stats(&self, addr: &str) -> serde_json::Value {
        let addr = addr.to_string();
        self.in_server_ns(move || crate::http_client::stats(&addr))
    }

    /// `livestream ARGS` in the namespace `ns`.
    pub fn livestream(ns: &str, name: &str, args: &[&str]) -> Proc {
        let mut all = vec!["netns", "exec", ns, BIN];
        all.extend_from_slice(args);
        Proc::spawn_program("ip", name, &all)
    }

    /// `serve` of the 320x240 test pattern at 30 fps in the server's namespace,
    /// listening on `listen`, with `more` arguments; returned once it listens.
    pub fn serve(&self, listen: &str, more: &[&str]) -> Proc {
        let mut args = vec![
            "serve", "--listen", listen, "--width", "320", "--height", "240", "--fps", "30",
        ];
        args.extend_from_slice(more);
        let server = NetnsPair::livestream(&self.server_ns, "serve (server namespace)", &args);
        server.wait_listening();
        server
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.viewer_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// `tests/browser`, where the Chromium scripts are, once its
/// `playwright-core` is there (the README's test command installs it).
pub fn browser_scripts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: the README's test command runs npm ci in tests/browser"
    );
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_what_came() {
        let mut polls = 0;
        let got = wait_until(Duration::from_secs(5), "the third poll", || {
            polls += 1;
            (polls == 3).then_some(polls * 10)
        });
        assert_eq!(got, 30);
    }

    #[test]
    #[should_panic(expected = "waiting for Godot (0 of 1 arrived)")]
    fn wait_until_says_what_never_came() {
        let arrived = std::cell::Cell::new(0);
        wait_until(
            Duration::from_millis(50),
            Lazy(|| format!("Godot ({} of 1 arrived)", arrived.get())),
            || None::<()>,
        );
    }

    #[test]
    fn poll_until_tries_once_more_at_the_deadline() {
        let start = std::time::Instant::now();
        let timeout = Duration::from_millis(30);
        let got = poll_until(timeout, || (start.elapsed() >= timeout).then_some(()));
        assert_eq!(got, Some(()));
    }
}
