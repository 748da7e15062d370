//! The `v4l2` source against a real kernel driver: `vivid`, the kernel's virtual
//! video test driver, in a VM (tests/vivid/run-vivid-vm.sh boots it under qemu).
//! `livestream serve` runs in the guest; `livestream view` runs here and watches
//! through a forwarded port. One boot serves every check (a boot takes 15-35 s).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use livestream::media::frame::{Frame, FrameInfo, PixelFormat};
use livestream::sources::camera::no_signal_frame;

use crate::http_client::stats;
use crate::util::{poll_until, record, temp_dir, wait_until, Lazy, BIN, VIEW_PLAINTEXT};

/// The VM and the folder it shares with this test (see tests/vivid/guest.sh).
struct Vm {
    child: Child,
    dir: tempfile::TempDir,
    console: Arc<Mutex<String>>,
    next: usize,
    /// The guest's port 7878, here.
    addr: String,
}

impl Vm {
    fn boot() -> Vm {
        let dir = temp_dir();
        std::fs::copy("tests/vivid/guest.sh", dir.path().join("guest.sh")).unwrap();
        let port = crate::util::free_port();
        let mut child = Command::new("tests/vivid/run-vivid-vm.sh")
            .args([
                "--share",
                dir.path().to_str().unwrap(),
                "--fwd",
                &format!("{port}:7878"),
                "--put",
                &format!("{BIN}:/bin/livestream"),
                "--timeout",
                "900",
                "--sh",
                "sh /mnt/host/guest.sh /mnt/host",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: the script's qemu goes with it (below).
            .process_group(0)
            .spawn()
            .expect("tests/vivid/run-vivid-vm.sh runs");
        let console = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let console = console.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut c = console.lock().unwrap();
                    c.push_str(&line);
                    c.push('\n');
                }
            });
        }
        Vm {
            child,
            dir,
            console,
            next: 0,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sends request N, whole (written, then renamed).
    fn request(&mut self, req: &str) -> usize {
        let n = self.next;
        self.next += 1;
        let tmp = self.path(".req.tmp");
        std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(req.as_bytes()))
            .unwrap();
        std::fs::rename(&tmp, self.path(&format!("req.{n}"))).unwrap();
        n
    }

    /// Waits for the first of `names` to appear; returns which and its content.
    fn answer(&mut self, names: &[String], timeout: Duration) -> (String, String) {
        let (dir, child) = (self.dir.path(), &mut self.child);
        let console = &self.console;
        wait_until(
            timeout,
            Lazy(|| format!("{names:?} from the VM:\n{}", tail(console))),
            || {
                for name in names {
                    if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
                        return Some((name.clone(), text.trim_end().to_string()));
                    }
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "the VM ended ({status}) while waiting for {names:?}:\n{}",
                        tail(console)
                    );
                }
                None
            },
        )
    }

    /// Runs a shell command in the guest: (output, exit status).
    fn sh(&mut self, cmd: &str, timeout: Duration) -> (String, String) {
        let n = self.request(&format!("sh {cmd}"));
        let (_, rc) = self.answer(&[format!("rc.{n}")], timeout);
        let out = std::fs::read_to_string(self.path(&format!("out.{n}"))).unwrap_or_default();
        (out, rc)
    }

    /// Starts `livestream serve ARGS` in the guest: Ok(log name) once it
    /// listens, Err(its output) when it ends first.
    fn serve(&mut self, args: &str, timeout: Duration) -> Result<String, String> {
        // Plaintext, like the viewers here (VIEW_PLAINTEXT): pairing is tested in
        // secure.rs.
        let n = self.request(&format!(
            "serve serve --listen 0.0.0.0:7878 --set serve.auth=\"none\" {args}"
        ));
        let (which, text) = self.answer(&[format!("ready.{n}"), format!("fail.{n}")], timeout);
        if which.starts_with("fail") {
            Err(text)
        } else {
            Ok(format!("serve.{n}.log"))
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Ends the guest's server; its exit status.
    fn stop(&mut self) -> String {
        let n = self.request("stop");
        self.answer(&[format!("rc.{n}")], Duration::from_secs(60)).1
    }

    fn wait_log(&self, log: &str, text: &str, timeout: Duration) {
        wait_until(
            timeout,
            Lazy(|| format!("{text:?} in the guest's server log:\n{}", self.log(log))),
            || self.log(log).contains(text).then_some(()),
        );
    }

    /// Frames the guest's server has captured, from its /stats.
    fn captured(&self) -> u64 {
        stats(&self.addr)["frames_captured"].as_u64().unwrap()
    }

    fn wait_captured(&self, at_least: u64, timeout: Duration) {
        wait_until(
            timeout,
            format!("the guest server to capture {at_least} frames"),
            || (self.captured() >= at_least).then_some(()),
        );
    }
}

/// The last 40 lines the VM printed.
fn tail(console: &Mutex<String>) -> String {
    let c = console.lock().unwrap();
    let lines: Vec<&str> = c.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.request("quit");
        // Not a failure if it does not: the group is killed next anyway.
        let _ = poll_until(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        // The whole group, whatever is left of it: killing the script alone
        // left its qemu running (at 190% CPU, up to the script's own 900 s
        // timeout), which starved the tests after it.
        // SAFETY: a plain kill(2) of the group this test created.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn read_recording(path: &Path) -> (FrameInfo, Vec<Frame>) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = livestream::media::recording::RecordingReader::new(
        std::io::BufReader::new(file),
        &livestream::media::frame::Limits::default(),
    )
    .unwrap();
    let info = reader.stream_info().frame;
    let mut frames = Vec::new();
    let mut f = Frame::empty();
    while reader.read(&mut f).unwrap() {
        frames.push(f.clone());
    }
    (info, frames)
}

/// Records `frames` frames from the guest's server here and checks their geometry
/// and that the picture moves (vivid draws a running timecode).
fn watch(vm: &Vm, format: PixelFormat, width: u32, height: u32, frames: u32) -> Vec<Frame> {
    let out = vm.path(&format!("{format}-{width}x{height}.lsr"));
    let mut view = record(&vm.addr, &out, frames, &[VIEW_PLAINTEXT]);
    view.expect_success(Duration::from_secs(180));
    let (info, got) = read_recording(&out);
    assert_eq!(
        (info.format, info.width, info.height),
        (format, width, height),
        "stream geometry"
    );
    assert_eq!(got.len(), frames as usize);
    let no_signal = no_signal_frame(info).unwrap();
    for (i, w) in got.windows(2).enumerate() {
        assert_eq!(w[0].info, info);
        assert_ne!(
            w[0].data, no_signal.data,
            "frame {i} is the no-signal picture"
        );
        assert_ne!(
            w[0].data,
            w[1].data,
            "frames {i} and {} are the same: not live",
            i + 1
        );
    }
    got
}

#[test]
fn v4l2_source_streams_from_the_vivid_driver() {
    let mut vm = Vm::boot();
    let boot = Duration::from_secs(600); // a fresh machine downloads the kernel first

    let (devices, rc) = vm.sh("/bin/livestream devices", boot);
    assert_eq!(rc, "0", "{devices}");
    assert!(devices.contains("/dev/video0: \"vivid\""), "{devices}");
    for mode in [
        "yuyv ",
        "nv12 ",
        "rgb24 ",
        "640x480 @ 25",
        "1280x720 @ 12.50",
    ] {
        assert!(devices.contains(mode), "devices lacks {mode:?}:\n{devices}");
    }
    assert!(devices.contains("--source v4l2 --set 'sources.v4l2.device=bus:platform:vivid-000'"));
    let (controls, _) = vm.sh(
        "/bin/livestream devices --controls",
        Duration::from_secs(60),
    );
    assert!(
        controls.contains("brightness") && controls.contains("0..255"),
        "{controls}"
    );

    // Each format and size: the right geometry, live content.
    for (format, width, height) in [
        (PixelFormat::Yuyv, 640, 480),
        (PixelFormat::Nv12, 640, 480),
        (PixelFormat::Rgb24, 640, 480),
        (PixelFormat::Yuyv, 1280, 720),
        (PixelFormat::Nv12, 1280, 720),
        (PixelFormat::Rgb24, 1280, 720),
    ] {
        let log = vm
            .serve(
                &format!("--source v4l2 --codec lz4 --format {format} --width {width} --height {height} --fps 30"),
                Duration::from_secs(120),
            )
            .unwrap_or_else(|e| panic!("serve {format} {width}x{height} failed:\n{e}"));
        watch(&vm, format, width, height, 6);
        assert_eq!(vm.stop(), "0", "{}", vm.log(&log));
        assert!(
            vm.log(&log).contains("v4l2: /dev/video0 \"vivid\""),
            "{}",
            vm.log(&log)
        );
    }

    // The settings `devices` prints select the camera.
    let select = devices
        .lines()
        .find_map(|l| l.trim().strip_prefix("select with: livestream serve "))
        .expect("a `select with` line");
    assert!(
        select.contains("--format yuyv --width 640 --height 480 --fps 25"),
        "{select}"
    );
    let log = vm
        .serve(
            &format!("{} --codec lz4", select.replace('\'', "")),
            Duration::from_secs(120),
        )
        .unwrap();
    watch(&vm, PixelFormat::Yuyv, 640, 480, 3);
    vm.stop();
    assert!(
        vm.log(&log)
            .contains("streaming v4l2, 640x480 yuyv at 25 fps"),
        "{}",
        vm.log(&log)
    );

    // The second camera backend, nokhwa, on the same driver.
    let log = vm
        .serve(
            "--source nokhwa --codec lz4 --format yuyv --width 640 --height 480 --fps 25",
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("serve --source nokhwa failed:\n{e}"));
    watch(&vm, PixelFormat::Yuyv, 640, 480, 4);
    assert_eq!(vm.stop(), "0", "{}", vm.log(&log));

    // source = "auto" finds the camera.
    let log = vm.serve("--codec lz4", Duration::from_secs(120)).unwrap();
    vm.stop();
    assert!(
        vm.log(&log).contains("streaming v4l2, 1280x720"),
        "{}",
        vm.log(&log)
    );

    // A size the camera does not offer: the nearest it has, said in the log.
    let log = vm
        .serve(
            "--source v4l2 --codec lz4 --format yuyv --width 1000 --height 700",
            Duration::from_secs(120),
        )
        .unwrap();
    watch(&vm, PixelFormat::Yuyv, 1280, 720, 3);
    vm.stop();
    assert!(
        vm.log(&log)
            .contains("offers no 1000x700 yuyv: using the nearest it has, 1280x720 yuyv"),
        "{}",
        vm.log(&log)
    );

    // Controls from the config reach the device; a value out of range is refused.
    let log = vm
        .serve(
            "--source v4l2 --codec lz4 --format yuyv --width 640 --height 480 --set sources.v4l2.controls.brightness=200 --set sources.v4l2.controls.horizontal_flip=true",
            Duration::from_secs(120),
        )
        .unwrap();
    let (now, _) = vm.sh(
        "v4l2-ctl -d /dev/video0 -C brightness -C horizontal_flip",
        Duration::from_secs(30),
    );
    assert!(
        now.contains("brightness: 200") && now.contains("horizontal_flip: 1"),
        "{now}\n{}",
        vm.log(&log)
    );
    vm.stop();
    let refused = vm
        .serve(
            "--source v4l2 --set sources.v4l2.controls.brightness=300",
            Duration::from_secs(120),
        )
        .expect_err("brightness 300 is out of range");
    assert!(
        refused.contains("`brightness` = 300 is outside its range 0 to 255"),
        "{refused}"
    );

    // Unplugged for 2.5 s and back: viewers stay connected, get "no signal" about
    // once a second, then the camera again.
    let log = vm
        .serve(
            "--source v4l2 --codec lz4 --format yuyv --width 640 --height 480 --fps 25",
            Duration::from_secs(120),
        )
        .unwrap();
    let out = vm.path("unplug.lsr");
    let mut view = record(&vm.addr, &out, 1_000_000, &[VIEW_PLAINTEXT]);
    vm.wait_captured(10, Duration::from_secs(60));
    let (said, rc) = vm.sh(
        "v4l2-ctl -d /dev/video0 -c disconnect=1 && \
         n=0; until rmmod vivid 2>/dev/null; do n=$((n+1)); [ $n -gt 300 ] && exit 1; sleep 0.1; done; \
         sleep 2.5; insmod /lib/modules/vivid.ko",
        Duration::from_secs(90),
    );
    assert_eq!(rc, "0", "unplugging vivid failed: {said}\n{}", vm.log(&log));
    vm.wait_log(&log, "is back after", Duration::from_secs(60));
    let back = vm.captured();
    vm.wait_captured(back + 10, Duration::from_secs(60));
    view.terminate();
    assert!(
        !view.stderr().contains("reconnecting"),
        "the viewer had to reconnect:\n{}",
        view.stderr()
    );
    assert_eq!(vm.stop(), "0");
    let (info, frames) = read_recording(&out);
    let no_signal = no_signal_frame(info).unwrap();
    let kinds: Vec<bool> = frames.iter().map(|f| f.data == no_signal.data).collect();
    let first_lost = kinds
        .iter()
        .position(|&k| k)
        .expect("no \"no signal\" frame was sent");
    let back_at = kinds[first_lost..]
        .iter()
        .position(|&k| !k)
        .map(|p| p + first_lost)
        .expect("the camera never came back");
    assert!(first_lost >= 1, "{kinds:?}");
    assert!((2..=5).contains(&(back_at - first_lost)), "{kinds:?}");
    assert!(kinds[back_at..].iter().all(|&k| !k), "{kinds:?}");
    assert!(frames.len() - back_at >= 5, "{kinds:?}");
    for w in frames.windows(2) {
        assert!(
            w[1].seq > w[0].seq,
            "sequence numbers run on across the unplug"
        );
    }
    let log = vm.log(&log);
    assert!(log.contains("camera /dev/video0 (vivid) lost"), "{log}");
}
