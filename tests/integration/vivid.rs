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
pub(crate) struct Vm {
    child: Child,
    dir: tempfile::TempDir,
    console: Arc<Mutex<String>>,
    next: usize,
    /// The guest's port 7878, here.
    pub(crate) addr: String,
}

impl Vm {
    fn boot() -> Vm {
        Vm::boot_with(temp_dir(), &[], 900)
    }

    /// A VM with more of tests/vivid/run-vivid-vm.sh's options (`--fwd-udp`),
    /// up for at most `seconds`.
    pub(crate) fn boot_for(extra: &[String], seconds: u32) -> Vm {
        Vm::boot_with(temp_dir(), extra, seconds)
    }

    /// A VM that also has the modules Debian's kernel lacks
    /// (tests/vivid/modules.sh builds them once): vicodec, the kernel's FWHT
    /// codec, on the multi-planar M2M API (as the Raspberry Pi's
    /// bcm2835-codec is) or the single-planar one, with the v4l2-mem2mem it
    /// needs; and a v4l2loopback node, [`LOOPBACK`], that `/bin/v4l2feed`
    /// (tests/vivid/v4l2feed.c) feeds compressed frames.
    ///
    /// Nodes: vivid's four first (/dev/video0 capture, 1 output, 2 and 3 VBI),
    /// then vicodec's: /dev/video4 the stateful encoder (OUTPUT raw, YU12 by
    /// default, 28 raw formats; CAPTURE FWHT), /dev/video5 the stateful
    /// decoder (OUTPUT FWHT; CAPTURE raw), /dev/video6 the stateless decoder
    /// (OUTPUT SFWH); `vicodec_nodes` finds them by their media entity
    /// instead (`stateful-encoder-source`, ...). This test binary is
    /// `/bin/integration` there, for checks that run in the guest (`m2m.rs`).
    pub(crate) fn boot_with_codecs(multiplanar: bool) -> Vm {
        let modules = Command::new("tests/vivid/modules.sh")
            .stdin(Stdio::null())
            .output()
            .expect("tests/vivid/modules.sh runs");
        assert!(
            modules.status.success(),
            "building the modules failed:\n{}",
            String::from_utf8_lossy(&modules.stderr)
        );
        let modules = PathBuf::from(String::from_utf8(modules.stdout).unwrap().trim());
        let dir = temp_dir();
        let feeder = dir.path().join("v4l2feed");
        let gcc = Command::new("gcc")
            .args(["-O2", "-Wall", "-static", "-o"])
            .arg(&feeder)
            .arg("tests/vivid/v4l2feed.c")
            .output()
            .expect("gcc runs");
        assert!(
            gcc.status.success(),
            "{}",
            String::from_utf8_lossy(&gcc.stderr)
        );
        let module = |name: &str, params: &str| {
            let path = modules.join(name).display().to_string();
            ["--module".to_string(), format!("{path}={params}")]
        };
        let this = std::env::current_exe().expect("the test binary's path");
        let mut extra = vec![
            "--put".to_string(),
            format!("{}:/bin/v4l2feed", feeder.display()),
            "--put".to_string(),
            format!("{}:/bin/integration", this.display()),
        ];
        extra.extend(module("v4l2-mem2mem.ko", ""));
        extra.extend(module(
            "vicodec.ko",
            &format!("multiplanar={}", u8::from(multiplanar)),
        ));
        // exclusive_caps: a capture node only while fed, as a camera is;
        // max_buffers: room for a reader a few frames behind.
        extra.extend(module(
            "v4l2loopback.ko",
            "exclusive_caps=1 video_nr=10 card_label=loopcam max_buffers=8",
        ));
        Vm::boot_with(dir, &extra, 900)
    }

    fn boot_with(dir: tempfile::TempDir, extra: &[String], seconds: u32) -> Vm {
        std::fs::copy("tests/vivid/guest.sh", dir.path().join("guest.sh")).unwrap();
        let port = crate::util::free_port();
        let mut child = Command::new("tests/vivid/run-vivid-vm.sh")
            .args(extra)
            .args([
                "--share",
                dir.path().to_str().unwrap(),
                "--fwd",
                &format!("{port}:7878"),
                "--put",
                &format!("{BIN}:/bin/livestream"),
                "--timeout",
                &seconds.to_string(),
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

    pub(crate) fn path(&self, name: &str) -> PathBuf {
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
    pub(crate) fn sh(&mut self, cmd: &str, timeout: Duration) -> (String, String) {
        let n = self.request(&format!("sh {cmd}"));
        let (_, rc) = self.answer(&[format!("rc.{n}")], timeout);
        let out = std::fs::read_to_string(self.path(&format!("out.{n}"))).unwrap_or_default();
        (out, rc)
    }

    /// Starts `livestream serve ARGS` in the guest: Ok(log name) once it
    /// listens, Err(its output) when it ends first.
    pub(crate) fn serve(&mut self, args: &str, timeout: Duration) -> Result<String, String> {
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

    pub(crate) fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Ends the guest's server; its exit status.
    pub(crate) fn stop(&mut self) -> String {
        let n = self.request("stop");
        self.answer(&[format!("rc.{n}")], Duration::from_secs(60)).1
    }

    pub(crate) fn wait_log(&self, log: &str, text: &str, timeout: Duration) {
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

/// The v4l2loopback node of [`Vm::boot_with_codecs`].
const LOOPBACK: &str = "/dev/video10";

/// What one vicodec node is, from `v4l2-ctl --all`: its media entity
/// (`stateful-encoder-source`, ...), its device capabilities, and the pixel
/// formats of its capture and output queues.
#[derive(Debug)]
struct CodecNode {
    node: String,
    entity: String,
    caps: String,
    capture: String,
    output: String,
}

/// vicodec's nodes, as `v4l2-ctl --list-devices` and `--all` show them.
fn vicodec_nodes(vm: &mut Vm) -> Vec<CodecNode> {
    let (list, rc) = vm.sh("v4l2-ctl --list-devices", Duration::from_secs(60));
    assert_eq!(rc, "0", "{list}");
    let nodes: Vec<String> = list
        .lines()
        .skip_while(|l| !l.starts_with("vicodec ("))
        .skip(1)
        .map(str::trim)
        .take_while(|l| !l.is_empty() && !l.ends_with("):"))
        .filter(|l| l.starts_with("/dev/video"))
        .map(String::from)
        .collect();
    assert!(!nodes.is_empty(), "no vicodec node:\n{list}");
    nodes
        .into_iter()
        .map(|node| {
            let (all, rc) = vm.sh(
                &format!("v4l2-ctl -d {node} --all"),
                Duration::from_secs(60),
            );
            assert_eq!(rc, "0", "{all}");
            let lines: Vec<&str> = all.lines().map(str::trim).collect();
            let value = |l: &str| l.split_once(':').map_or("", |(_, v)| v.trim()).to_string();
            let after = |header: &str, key: &str| {
                lines
                    .iter()
                    .skip_while(|l| !l.starts_with(header))
                    .find(|l| l.starts_with(key))
                    .map_or(String::new(), |l| value(l))
            };
            let caps_at = lines.iter().position(|l| l.starts_with("Device Caps"));
            CodecNode {
                entity: after("Entity Info:", "Name"),
                caps: caps_at.map_or(String::new(), |i| {
                    format!("{} ({})", value(lines[i]), lines.get(i + 1).unwrap_or(&""))
                }),
                capture: after("Format Video Capture", "Pixel Format"),
                output: after("Format Video Output", "Pixel Format"),
                node,
            }
        })
        .collect()
}

/// One line a node: what the report of a failed check, and the test's output, show.
fn layout(nodes: &[CodecNode]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{}: {}, {}, capture {}, output {}\n",
                n.node, n.entity, n.caps, n.capture, n.output
            )
        })
        .collect()
}

/// vicodec has its stateful FWHT encoder and decoder (and the stateless
/// decoder), on the multi-planar M2M API or the single-planar one.
fn assert_vicodec(nodes: &[CodecNode], multiplanar: bool) {
    let find = |entity: &str| {
        nodes
            .iter()
            .find(|n| n.entity == entity)
            .unwrap_or_else(|| panic!("no vicodec node {entity}:\n{}", layout(nodes)))
    };
    let (encoder, decoder) = (
        find("stateful-encoder-source"),
        find("stateful-decoder-source"),
    );
    find("stateless-decoder-source");
    assert!(encoder.capture.starts_with("'FWHT'"), "{encoder:?}");
    assert!(encoder.output.starts_with("'YU12'"), "{encoder:?}");
    assert!(decoder.output.starts_with("'FWHT'"), "{decoder:?}");
    assert!(decoder.capture.starts_with("'YU12'"), "{decoder:?}");
    for n in nodes {
        assert_eq!(
            n.caps.ends_with("(Video Memory-to-Memory Multiplanar)"),
            multiplanar,
            "{n:?}"
        );
        assert!(n.caps.contains("Video Memory-to-Memory"), "{n:?}");
    }
}

/// 48 pictures of 640x480, panning across each photo in data/photos in turn
/// (every one different), as ffmpeg writes them: `.jpg` files in `dir`.
fn photo_frames(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for (i, photo) in ["coffee", "astronaut"].iter().enumerate() {
        let first = i * 24;
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-loop", "1", "-i"])
            .arg(format!("data/photos/{photo}.png"))
            .args([
                "-vf",
                "scale=960:720,crop=640:480:n*10:n*6,format=yuvj420p",
                "-frames:v",
                "24",
                "-c:v",
                "mjpeg",
                "-q:v",
                "4",
                "-start_number",
                &first.to_string(),
                "-f",
                "image2",
            ])
            .arg(dir.join("photo-%02d.jpg"))
            .output()
            .expect("ffmpeg runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        files.extend((first..first + 24).map(|n| dir.join(format!("photo-{n:02}.jpg"))));
    }
    files
}

/// The same pictures as H.264 access units: libx264, constrained baseline, a
/// keyframe every 12, each unit opened by a delimiter (which is where the
/// stream is cut into units).
fn photo_h264(dir: &Path) -> Vec<Vec<u8>> {
    let stream = dir.join("photos.h264");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", "15", "-i"])
        .arg(dir.join("photo-%02d.jpg"))
        .args([
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-bf",
            "0",
            "-g",
            "12",
            "-x264-params",
            "aud=1",
            "-f",
            "h264",
        ])
        .arg(&stream)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stream = std::fs::read(stream).unwrap();
    let aud = [0, 0, 0, 1, 9];
    let starts: Vec<usize> = (0..stream.len().saturating_sub(aud.len()))
        .filter(|&i| stream[i..].starts_with(&aud))
        .chain([stream.len()])
        .collect();
    assert_eq!(starts[0], 0, "the stream does not open with a delimiter");
    starts
        .windows(2)
        .map(|w| stream[w[0]..w[1]].to_vec())
        .collect()
}

impl Vm {
    /// Starts `/bin/v4l2feed` in the guest, writing `frames` one by one, in a
    /// loop, into [`LOOPBACK`] as `fourcc` at 640x480 and 15 fps; returns once
    /// the first is in (from then on the node is a capture device).
    fn feed(&mut self, name: &str, fourcc: &str, frames: &[Vec<u8>]) {
        let mut file = Vec::new();
        for f in frames {
            file.extend_from_slice(&(f.len() as u32).to_le_bytes());
            file.extend_from_slice(f);
        }
        std::fs::write(self.path(&format!("{name}.frames")), file).unwrap();
        let (out, rc) = self.sh(
            &format!(
                "/bin/v4l2feed {LOOPBACK} {fourcc} 640 480 15 /mnt/host/{name}.frames \
                 > /mnt/host/{name}.feed 2>&1 & echo $! > /mnt/host/{name}.pid"
            ),
            Duration::from_secs(60),
        );
        assert_eq!(rc, "0", "{out}");
        let log = format!("{name}.feed");
        wait_until(
            Duration::from_secs(60),
            Lazy(|| format!("the feeder to start:\n{}", self.log(&log))),
            || self.log(&log).contains("feeding").then_some(()),
        );
    }

    /// Ends that feeder; what it printed.
    fn stop_feed(&mut self, name: &str) -> String {
        let (out, rc) = self.sh(
            &format!("kill $(cat /mnt/host/{name}.pid)"),
            Duration::from_secs(60),
        );
        assert_eq!(rc, "0", "{out}");
        let log = format!("{name}.feed");
        wait_until(
            Duration::from_secs(60),
            Lazy(|| format!("the feeder to end:\n{}", self.log(&log))),
            || {
                let log = self.log(&log);
                let last = log.lines().last().unwrap_or_default();
                last.starts_with("fed ").then(|| last.to_string())
            },
        )
    }
}

/// Checks that `got` is frames of `fed`, each byte for byte, in the order fed
/// (which loops): only whole frames may be missing, and for H.264 every run
/// after a gap, and the first, starts on a keyframe. Returns how many were
/// missing.
fn assert_fed_in_order(fed: &[Vec<u8>], got: &[&[u8]], h264: bool) -> usize {
    for (i, f) in fed.iter().enumerate() {
        assert!(
            !fed[..i].contains(f),
            "fed frame {i} is a copy of an earlier one: the test cannot tell them apart"
        );
    }
    let index: Vec<usize> = got
        .iter()
        .enumerate()
        .map(|(k, f)| {
            fed.iter().position(|x| x == f).unwrap_or_else(|| {
                panic!(
                    "received frame {k} ({} bytes) is none of the fed frames",
                    f.len()
                )
            })
        })
        .collect();
    let keyframe =
        |i: usize| livestream::media::annexb::check_access_unit(&fed[i]).is_ok_and(|a| a.keyframe);
    if h264 {
        assert!(keyframe(index[0]), "the first is not a keyframe: {index:?}");
    }
    let mut missing = 0;
    for w in index.windows(2) {
        let step = (w[1] + fed.len() - w[0]) % fed.len();
        assert_ne!(step, 0, "a frame twice in a row: {index:?}");
        missing += step - 1;
        if h264 && step != 1 {
            assert!(
                keyframe(w[1]),
                "after a gap ({} to {}) a frame that is not a keyframe: {index:?}",
                w[0],
                w[1]
            );
        }
    }
    missing
}

/// A camera that sends compressed video: a v4l2loopback node in the guest, fed
/// MJPEG and then H.264 (pictures of the photos in data/photos), is streamed
/// by the `v4l2` source through the `jpeg` and `h264` codecs, which pass the
/// camera's frames through; the viewer here records exactly the bytes the
/// feeder wrote. The same boot shows vicodec's nodes on both M2M APIs.
#[test]
fn v4l2_source_passes_compressed_video_through_from_v4l2loopback() {
    let mut vm = Vm::boot_with_codecs(true);
    let boot = Duration::from_secs(600); // a fresh machine downloads the kernel first
    let (lsmod, rc) = vm.sh("lsmod", boot);
    assert_eq!(rc, "0", "{lsmod}");
    for module in ["vicodec", "v4l2_mem2mem", "v4l2loopback"] {
        assert!(
            lsmod.lines().any(|l| l.starts_with(&format!("{module} "))),
            "{module} is not loaded:\n{lsmod}\n{}",
            tail(&vm.console)
        );
    }

    // vicodec on the multi-planar API, then again on the single-planar one.
    let nodes = vicodec_nodes(&mut vm);
    eprintln!("vicodec multiplanar=1:\n{}", layout(&nodes));
    assert_vicodec(&nodes, true);
    let (out, rc) = vm.sh(
        "rmmod vicodec && insmod /lib/modules/extra-vicodec.ko multiplanar=0",
        Duration::from_secs(60),
    );
    assert_eq!(rc, "0", "{out}");
    let nodes = vicodec_nodes(&mut vm);
    eprintln!("vicodec multiplanar=0:\n{}", layout(&nodes));
    assert_vicodec(&nodes, false);

    // MJPEG: the camera's JPEGs pass through the jpeg codec untouched.
    let jpegs: Vec<Vec<u8>> = photo_frames(vm.dir.path())
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    vm.feed("mjpeg", "MJPG", &jpegs);
    let (devices, rc) = vm.sh("/bin/livestream devices", Duration::from_secs(60));
    assert_eq!(rc, "0", "{devices}");
    assert!(
        devices.contains(&format!("{LOOPBACK}: \"loopcam\"")) && devices.contains("jpeg "),
        "{devices}"
    );
    // vicodec is listed, but as a hardware codec, not as a camera.
    assert!(
        !devices
            .lines()
            .any(|l| l.contains("vicodec") && l.contains("backend v4l2")),
        "a codec listed as a camera:\n{devices}"
    );
    let source = format!(
        "--source v4l2 --set sources.v4l2.device={LOOPBACK} --width 640 --height 480 --fps 15"
    );
    let log = vm
        .serve(
            &format!("{source} --format jpeg --codec jpeg"),
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("serve from the MJPEG loopback failed:\n{e}"));
    // The `record` sink keeps JPEG as it came (`file` would get pixels).
    let dir = vm.path("mjpeg");
    let set = format!(
        "sinks.record.dir={}",
        toml::Value::String(dir.display().to_string())
    );
    let args = ["--sink", "record", "--set", &set, "--frames", "40", "-q"];
    let mut view = crate::util::Proc::spawn(
        "view --sink record",
        &[&["view", &vm.addr, VIEW_PLAINTEXT][..], &args].concat(),
    );
    view.expect_success(Duration::from_secs(180));
    assert_eq!(vm.stop(), "0", "{}", vm.log(&log));
    let fed = vm.stop_feed("mjpeg");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files.len() == 1 && files[0].extension().is_some_and(|e| e == "mjpeg"),
        "{files:?}"
    );
    // The JPEGs one after another: cut where each fed one ends.
    let recording = std::fs::read(&files[0]).unwrap();
    let mut got: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    while at < recording.len() {
        let len = jpegs
            .iter()
            .find(|j| recording[at..].starts_with(j))
            .unwrap_or_else(|| {
                panic!(
                    "the recording's bytes from {at} (after {} whole frames, of {} bytes) begin \
                     no fed JPEG: {:02x?}",
                    got.len(),
                    recording.len(),
                    &recording[at..recording.len().min(at + 48)]
                )
            })
            .len();
        got.push(&recording[at..at + len]);
        at += len;
    }
    assert_eq!(got.len(), 40);
    let missing = assert_fed_in_order(&jpegs, &got, false);
    eprintln!("MJPEG: 40 frames received byte for byte, {missing} left out between them ({fed})");

    // H.264: the camera's access units pass through the h264 codec, checked
    // and untouched.
    let units = photo_h264(vm.dir.path());
    assert_eq!(units.len(), jpegs.len());
    vm.feed("h264", "H264", &units);
    let log = vm
        .serve(
            &format!("{source} --format h264 --codec h264"),
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("serve from the H.264 loopback failed:\n{e}"));
    let out = vm.path("h264.lsr");
    record(
        &vm.addr,
        &out,
        40,
        &["--set", "sinks.file.keep-h264=true", VIEW_PLAINTEXT],
    )
    .expect_success(Duration::from_secs(180));
    assert_eq!(vm.stop(), "0", "{}", vm.log(&log));
    let fed = vm.stop_feed("h264");
    assert!(vm.log(&log).contains("passed through"), "{}", vm.log(&log));
    let (info, got) = read_recording(&out);
    assert_eq!(
        (info.format, info.width, info.height),
        (PixelFormat::H264, 640, 480),
        "{}",
        vm.log(&log)
    );
    assert_eq!(got.len(), 40);
    let got: Vec<&[u8]> = got.iter().map(|f| &f.data[..]).collect();
    let missing = assert_fed_in_order(&units, &got, true);
    eprintln!(
        "H.264: 40 access units received byte for byte, {missing} left out between them ({fed})"
    );
}

/// Open file descriptors of any guest process on vivid's capture node.
fn video0_holders(vm: &mut Vm) -> usize {
    let (out, rc) = vm.sh(
        "for f in /proc/[0-9]*/fd/*; do readlink $f; done 2>/dev/null | grep -c '^/dev/video0$'",
        Duration::from_secs(30),
    );
    // grep -c says 0 with status 1 when nothing matched.
    assert!(rc == "0" || rc == "1", "{out}");
    out.trim().parse().unwrap_or_else(|_| panic!("{out:?}"))
}

/// Waits until the guest's server says its source is `open` (or not),
/// asking 3 times a second: connections from outside the guest are limited
/// per address (10 a second).
fn wait_source(vm: &Vm, open: bool, timeout: Duration) {
    let start = std::time::Instant::now();
    let mut last = serde_json::Value::Null;
    while start.elapsed() < timeout {
        last = stats(&vm.addr)["source_open"].clone();
        if last == open {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the guest's source_open is {last}, not {open}, after {timeout:?}");
}

/// Capture on demand (the default for a camera): the guest's server does not
/// hold vivid's node before the first viewer, holds it while one watches,
/// and lets it go a few seconds after the last leaves; each viewer's first
/// picture comes as soon as the driver starts.
#[test]
fn a_camera_is_open_only_while_watched() {
    let mut vm = Vm::boot();
    let boot = Duration::from_secs(600); // a fresh machine downloads the kernel first
    let (devices, _) = vm.sh("/bin/livestream devices", boot);
    assert!(devices.contains("/dev/video0"), "{devices}");
    let log = vm
        .serve(
            "--source v4l2 --codec lz4 --format yuyv --width 640 --height 480 --fps 30",
            Duration::from_secs(120),
        )
        .unwrap_or_else(|e| panic!("serve failed:\n{e}"));
    assert_eq!(video0_holders(&mut vm), 0, "held before any viewer");
    assert_eq!(stats(&vm.addr)["source_open"], false);
    let mut first_pictures = Vec::new();
    for round in 0..2 {
        let out = vm.path(&format!("on-demand-{round}.lsr"));
        let view = crate::util::Proc::spawn(
            "view (on demand)",
            &[
                "view",
                &vm.addr,
                "--sink",
                "file",
                "--set",
                &format!("sinks.file.path={}", out.display()),
                "--frames",
                "40",
                VIEW_PLAINTEXT,
            ],
        );
        // While it watches: open, and held.
        wait_source(&vm, true, Duration::from_secs(30));
        assert!(video0_holders(&mut vm) >= 1, "not held while watched");
        let mut view = view;
        view.expect_success(Duration::from_secs(60));
        let said = view.stderr();
        let at = said
            .find("first picture ")
            .unwrap_or_else(|| panic!("{}", view.said()));
        let ms: f64 = said[at + "first picture ".len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", view.said()));
        first_pictures.push(ms);
        let (_, frames) = read_recording(&out);
        assert_eq!(frames.len(), 40);
        // Released a few seconds after the viewer left.
        let left = std::time::Instant::now();
        wait_source(&vm, false, Duration::from_secs(15));
        let closed_after = left.elapsed();
        assert_eq!(video0_holders(&mut vm), 0, "held after it closed");
        eprintln!(
            "on demand, round {round}: first picture {ms:.0} ms after connecting with the camera closed; \
             closed {:.1} s after the viewer left",
            closed_after.as_secs_f64()
        );
        assert!(closed_after >= Duration::from_secs(3), "{closed_after:?}");
    }
    let server_log = vm.log(&log);
    let opened: Vec<&str> = server_log
        .lines()
        .filter(|l| l.contains("the source opened in"))
        .collect();
    eprintln!("{opened:#?}");
    assert_eq!(opened.len(), 2, "{}", vm.log(&log));
    assert_eq!(vm.stop(), "0", "{}", vm.log(&log));
}
