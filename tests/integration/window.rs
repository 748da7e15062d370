//! Window sinks on a real X server (Xvfb): what a person sees, read back with
//! ffmpeg's x11grab, and keys typed with xdotool.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use livestream::sources::test_pattern::BARS;

use crate::http_client::stats;
use crate::stream::which;
use crate::util::{
    assert_no_gaps, poll_until, record, serve, serve_small, temp_dir, wait_until, Lazy, Proc,
    SERVE_PLAINTEXT, VIEW_PLAINTEXT,
};

/// A private X server for one test, optionally with a window manager (openbox:
/// full screen needs one), stopped on drop.
struct Xvfb {
    child: Child,
    wm: Option<Child>,
    display: String,
    /// Xvfb's own output.
    log: std::path::PathBuf,
}

impl Xvfb {
    fn start(with_wm: bool) -> Xvfb {
        let xvfb = which("Xvfb").expect("Xvfb is needed: the README's test command installs it");
        // A display number nobody uses: no lock file and no socket.
        let n = (90..200)
            .find(|n| {
                !Path::new(&format!("/tmp/.X{n}-lock")).exists()
                    && !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            })
            .expect("a free X display number");
        // Its output is kept for a failure message: a full CI run once saw a
        // viewer's connection to this display broken during set-up.
        let log =
            std::env::temp_dir().join(format!("livestream-xvfb-{}-{n}.log", std::process::id()));
        let child = Command::new(xvfb)
            .args([
                format!(":{n}").as_str(),
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
                // Without it the server resets whenever its last client
                // leaves: each xdotool call did, with no window manager, and
                // a viewer connecting then was refused ("XOpenDisplay
                // failed", seen here; most likely what a CI run once saw).
                "-noreset",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut x = Xvfb {
            child,
            wm: None,
            display: format!(":{n}"),
            log,
        };
        // Ready when a client can talk to it (its socket appears earlier).
        wait_until(
            Duration::from_secs(10),
            format!("Xvfb :{n} to start"),
            || {
                Command::new("xdotool")
                    .arg("getdisplaygeometry")
                    .env("DISPLAY", &x.display)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
                    .then_some(())
            },
        );
        if !with_wm {
            return x;
        }
        let openbox =
            which("openbox").expect("openbox is needed: the README's test command installs it");
        let log =
            std::env::temp_dir().join(format!("livestream-openbox-{}.log", std::process::id()));
        // Openbox is up once its own window exists. Seen once under load: it
        // never got there; it is started again if it died, and its output is
        // kept for the failure message.
        let deadline = Instant::now() + Duration::from_secs(20);
        for attempt in 1.. {
            let mut wm = Command::new(&openbox)
                .env("DISPLAY", &x.display)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            // Some(None) once it is up, Some(Some(status)) if it died.
            let outcome = poll_until(deadline.saturating_duration_since(Instant::now()), || {
                if !x.xdotool(&["search", "--classname", "openbox"]).is_empty() {
                    return Some(None);
                }
                wm.try_wait().unwrap().map(Some)
            });
            x.wm = Some(wm);
            match outcome {
                Some(None) => break,
                Some(Some(_died)) => continue,
                None => panic!(
                    "openbox did not start within 20 s (attempt {attempt}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        let _ = std::fs::remove_file(&log);
        x
    }

    fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The id of the viewer's window (its title contains "livestream"), waiting
    /// for it to appear; on failure, says what the viewer printed. SDL's window
    /// once took over 15 s to appear in a full CI run, right after the vivid VM
    /// test, and never alone (7.6 s for the whole test): the deadline is 30 s.
    fn window(&self, view: &Proc) -> String {
        wait_until(
            Duration::from_secs(30),
            Lazy(|| {
                format!(
                    "a window of {}; it printed:\n{}\nXvfb {} printed:\n{}",
                    view.name,
                    view.stderr(),
                    self.display,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            }),
            || {
                let id = self.xdotool(&["search", "--name", "livestream"]);
                id.lines()
                    .next()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
            },
        )
    }

    /// (x, y, width, height) of a window. Asked again until xdotool answers
    /// with all four: a full CI run on a loaded machine once got an empty
    /// answer for a window it had just found.
    fn geometry(&self, id: &str) -> (usize, usize, usize, usize) {
        let why = RefCell::new(String::new());
        wait_until(
            Duration::from_secs(10),
            Lazy(|| format!("the geometry of window {id}: {}", why.borrow())),
            || {
                self.try_geometry(id)
                    .map_err(|e| *why.borrow_mut() = e)
                    .ok()
            },
        )
    }

    /// One look at a window's geometry, or what xdotool said instead and
    /// which windows named "livestream" exist now (a full CI run once lost
    /// the viewer's window after `f`; this says whether it was gone, replaced
    /// or only not answering).
    fn try_geometry(&self, id: &str) -> Result<(usize, usize, usize, usize), String> {
        let out = Command::new("xdotool")
            .args(["getwindowgeometry", "--shell", id])
            .env("DISPLAY", &self.display)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| -> Option<usize> {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
        };
        (|| Some((get("X")?, get("Y")?, get("WIDTH")?, get("HEIGHT")?)))().ok_or_else(|| {
            format!(
                "xdotool said {:?} {:?} ({}); windows named livestream now: {:?}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status,
                self.xdotool(&["search", "--name", "livestream"])
            )
        })
    }

    /// The whole screen as RGB24, 1280x800; the PNG is kept under target/ as
    /// evidence for a person.
    fn screenshot(&self, save: &str) -> Vec<u8> {
        let ffmpeg = which("ffmpeg").expect("ffmpeg is needed");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("window");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{save}.png"));
        let out = Command::new(ffmpeg)
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "x11grab",
                "-video_size",
                "1280x800",
            ])
            .args(["-i", &self.display, "-frames:v", "1"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "x11grab: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let image =
            livestream::sources::synthetic_camera::decode_png(&std::fs::read(&path).unwrap())
                .unwrap();
        assert_eq!((image.width, image.height), (1280, 800));
        image.data
    }

    /// Closes window `id` the way a user does (alt+F4 to openbox) until `closed`
    /// says it took: a key sent before openbox manages a just-mapped window is
    /// lost, as it would be for a person, who presses again.
    fn close(&self, id: &str, mut closed: impl FnMut() -> bool) {
        for _ in 0..10 {
            self.xdotool(&["windowactivate", "--sync", id]);
            self.xdotool(&["key", "--clearmodifiers", "alt+F4"]);
            if poll_until(Duration::from_secs(1), || closed().then_some(())).is_some() {
                return;
            }
        }
        panic!("window {id} did not close after 10 alt+F4 over 10 s");
    }

    /// Holds a key for 0.3 s (minifb reads key state once per frame).
    fn press(&self, id: &str, key: &str) {
        self.xdotool(&["windowactivate", "--sync", id]);
        self.xdotool(&["keydown", key, "sleep", "0.3", "keyup", key]);
    }
}

/// The windows the window manager has framed (reparented into a frame of its
/// own) since [`Framed::watch`]: every window a person has been shown, even
/// one gone a moment later, which xdotool's searches may never see.
#[cfg(feature = "x11")]
struct Framed {
    conn: x11rb::rust_connection::RustConnection,
    root: u32,
    seen: BTreeSet<u32>,
}

#[cfg(feature = "x11")]
impl Framed {
    /// Listens to the root window's children: once this returns, the X server
    /// reports every reparenting to us.
    fn watch(x: &Xvfb) -> Framed {
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::{ChangeWindowAttributesAux, ConnectionExt, EventMask};
        let (conn, screen) = x11rb::connect(Some(&x.display)).unwrap();
        let root = conn.setup().roots[screen].root;
        conn.change_window_attributes(
            root,
            &ChangeWindowAttributesAux::new().event_mask(EventMask::SUBSTRUCTURE_NOTIFY),
        )
        .unwrap()
        .check()
        .unwrap();
        Framed {
            conn,
            root,
            seen: BTreeSet::new(),
        }
    }

    /// Every window framed so far, by id.
    fn windows(&mut self) -> BTreeSet<u32> {
        use x11rb::connection::Connection;
        use x11rb::protocol::Event;
        use x11rb::wrapper::ConnectionExt;
        // A round trip: whatever happened before it has reached us.
        self.conn.sync().unwrap();
        while let Some(event) = self.conn.poll_for_event().unwrap() {
            if let Event::ReparentNotify(e) = event {
                if e.parent != self.root {
                    self.seen.insert(e.window);
                }
            }
        }
        self.seen.clone()
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: Xvfb then removes its lock file and socket.
        for child in self.wm.iter_mut().chain(std::iter::once(&mut self.child)) {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn pixel(shot: &[u8], x: usize, y: usize) -> [u8; 3] {
    let i = (y * 1280 + x) * 3;
    [shot[i], shot[i + 1], shot[i + 2]]
}

fn is_bar(p: [u8; 3]) -> Option<usize> {
    BARS.iter().position(|b| {
        b.iter()
            .zip(p)
            .all(|(&a, c)| (a as i32 - c as i32).abs() <= 12)
    })
}

/// The bounding box of non-black pixels inside a window: where the picture is.
fn picture_box(
    shot: &[u8],
    (wx, wy, ww, wh): (usize, usize, usize, usize),
) -> (usize, usize, usize, usize) {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in wy..(wy + wh).min(800) {
        for x in wx..(wx + ww).min(1280) {
            if pixel(shot, x, y).iter().any(|&c| c > 40) {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
}

/// Waits until the window at `geo` shows the test pattern's colour bars across its
/// middle row (frames are on screen); returns that screenshot.
fn wait_for_bars(x: &Xvfb, geo: (usize, usize, usize, usize), name: &str, shows: &Proc) -> Vec<u8> {
    let seen = RefCell::new(BTreeSet::new());
    wait_until(
        Duration::from_secs(10),
        Lazy(|| {
            format!(
                "colour bars in the window (saw {:?}); {} printed:\n{}",
                seen.borrow(),
                shows.name,
                shows.stderr()
            )
        }),
        || {
            let shot = x.screenshot(name);
            let row = geo.1 + geo.3 / 2;
            let bars: BTreeSet<usize> = (geo.0..geo.0 + geo.2)
                .step_by(8)
                .filter_map(|px| is_bar(pixel(&shot, px, row)))
                .collect();
            let enough = bars.len() >= 6;
            *seen.borrow_mut() = bars;
            enough.then_some(shot)
        },
    )
}

/// `view --sink SINK` on the test's display, with more arguments.
fn view_on(x: &Xvfb, addr: &str, sink: &str, more: &[&str]) -> Proc {
    view_on_with(x, addr, sink, more, &[])
}

/// [`view_on`] with more environment variables.
fn view_on_with(x: &Xvfb, addr: &str, sink: &str, more: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut args = vec!["view", addr, "--sink", sink, "-q"];
    args.extend_from_slice(more);
    let mut env = env.to_vec();
    env.push(("DISPLAY", &x.display));
    Proc::spawn_env(&format!("view {sink} {}", more.join(" ")), &args, &env)
}

/// The window sinks of this build.
fn sinks() -> Vec<&'static str> {
    let mut sinks = vec!["minifb"];
    if cfg!(feature = "x11") {
        sinks.push("x11");
    }
    if cfg!(feature = "sdl2") {
        sinks.push("sdl2");
    }
    sinks
}

/// `window` picks x11 when it is compiled in (an X server is there), else
/// minifb, else sdl2.
#[test]
fn window_picks_the_best_sink() {
    let x = Xvfb::start(false);
    let (mut server, addr) = serve(&["--width", "64", "--height", "16", SERVE_PLAINTEXT]);
    let mut view = view_on(&x, &addr, "window", &[VIEW_PLAINTEXT]);
    let best = if cfg!(feature = "x11") {
        "x11"
    } else if cfg!(feature = "minifb") {
        "minifb"
    } else {
        "sdl2"
    };
    view.wait_stderr(&format!("window sink: {best}"), 1, Duration::from_secs(10));
    x.window(&view);
    view.terminate();
    server.terminate();
}

/// Each window sink shows the live test pattern, kept at its aspect ratio when
/// resized, and `h` draws the overlay.
#[test]
fn window_shows_the_live_picture() {
    for sink in sinks() {
        shows_the_live_picture(sink, &[VIEW_PLAINTEXT], &[]);
    }
}

/// x11 without shared memory (what it does for a display across the network):
/// the same picture, sent in PutImage requests, and it says so once.
#[cfg(feature = "x11")]
#[test]
fn x11_without_shared_memory_shows_the_live_picture() {
    let view = shows_the_live_picture(
        "x11",
        &["--set", "sinks.x11.shm=false", VIEW_PLAINTEXT],
        &[],
    );
    assert_eq!(
        view.stderr().matches("no shared memory").count(),
        1,
        "{}",
        view.stderr()
    );
}

/// sdl2 on a machine without OpenGL (its library hidden from SDL): the sink
/// falls back to a plain window, and SDL's software renderer shows the same
/// live picture.
#[cfg(feature = "sdl2")]
#[test]
fn sdl2_without_opengl_shows_the_live_picture() {
    let view = shows_the_live_picture(
        "sdl2",
        &[VIEW_PLAINTEXT],
        &[
            ("SDL_OPENGL_LIBRARY", "/nonexistent/libGL.so"),
            ("RUST_LOG", "info,livestream::sinks::sdl2=debug"),
        ],
    );
    let said = view.stderr();
    assert!(said.contains("no OpenGL window"), "{said}");
    assert!(said.contains("the software renderer"), "{said}");
}

/// Checks a window sink's picture, the viewer run with `more` arguments and
/// `env`; returns the viewer (ended).
fn shows_the_live_picture(sink: &str, more: &[&str], env: &[(&str, &str)]) -> Proc {
    let x = Xvfb::start(false);
    let (mut server, addr) = serve(&[
        "--width",
        "640",
        "--height",
        "480",
        "--fps",
        "30",
        SERVE_PLAINTEXT,
    ]);
    let mut view = view_on_with(&x, &addr, sink, more, env);
    let id = x.window(&view);
    let geo = x.geometry(&id);
    assert_eq!(
        (geo.2, geo.3),
        (640, 480),
        "window opens at the picture's size"
    );
    let first = wait_for_bars(&x, geo, "first", &view);
    std::thread::sleep(Duration::from_secs(1)); // "two screenshots a second apart"
    let second = x.screenshot("second");
    assert_ne!(first, second, "{sink}: the picture is not live");

    // Resized to a wide window, the picture keeps 4:3 and is letterboxed.
    x.xdotool(&["windowsize", &id, "1000", "400"]);
    let seen = RefCell::new(String::new());
    wait_until(
        Duration::from_secs(10),
        Lazy(|| {
            format!(
                "{sink}: a 4:3 picture centred in the window resized to 1000x400 ({})",
                seen.borrow()
            )
        }),
        || {
            let geo = x.geometry(&id);
            let shot = x.screenshot("resized");
            let (px, _, pw, ph) = picture_box(&shot, geo);
            let aspect = pw as f64 / ph as f64;
            // Centred between black bars: the box of what is not black would take in
            // anything left of an earlier picture.
            let centred = (px - geo.0).abs_diff((geo.2 - pw) / 2) <= 3;
            *seen.borrow_mut() = format!("window {geo:?}, picture {pw}x{ph} at x {px}");
            (geo.2 == 1000 && (aspect - 4.0 / 3.0).abs() < 0.05 && ph >= 390 && centred)
                .then_some(())
        },
    );

    // `h`: the overlay's white text on a dark box in the top-left corner.
    let before = x.screenshot("before-overlay");
    x.press(&id, "h");
    let (bx, by, _, _) = picture_box(&before, x.geometry(&id));
    wait_until(
        Duration::from_secs(5),
        format!("{sink}: overlay text after pressing h"),
        || {
            let shot = x.screenshot("overlay");
            // The overlay darkens the stamp rows under it; look for white text pixels
            // inside a dark box below the stamp (the box is 4 lines of 10 px tall).
            let white_in_box = (by + 8..by + 40)
                .flat_map(|y| (bx + 8..bx + 200).map(move |x| (x, y)))
                .filter(|&(px, py)| pixel(&shot, px, py) == [255, 255, 255])
                .count();
            (white_in_box > 50).then_some(())
        },
    );
    view.terminate();
    server.terminate();
    view
}

/// `q`, Esc and SIGTERM each end the viewer with status 0.
#[test]
fn window_quits_cleanly() {
    let x = Xvfb::start(false);
    let (mut server, addr) = serve_small(&[SERVE_PLAINTEXT]);
    for (sink, key) in sinks().into_iter().flat_map(|s| [(s, "q"), (s, "Escape")]) {
        let mut view = view_on(&x, &addr, sink, &[VIEW_PLAINTEXT]);
        view.wait_stderr("connected to", 1, Duration::from_secs(10));
        let id = x.window(&view);
        x.press(&id, key);
        view.expect_success(Duration::from_secs(10));
        assert!(
            view.stderr().contains("window closed"),
            "{key}: {}",
            view.stderr()
        );
    }
    for sink in sinks() {
        let mut view = view_on(&x, &addr, sink, &[VIEW_PLAINTEXT]);
        view.wait_stderr("connected to", 1, Duration::from_secs(10));
        x.window(&view);
        view.terminate();
    }
    server.terminate();
}

/// No display: a clear error, no panic.
#[test]
fn no_display_is_a_clear_error() {
    let mut view = Proc::spawn_env(
        "view",
        &["view", "127.0.0.1:9", VIEW_PLAINTEXT, "--sink", "window"],
        &[("DISPLAY", ""), ("WAYLAND_DISPLAY", "")],
    );
    let status = view.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", view.stderr());
    view.assert_no_panic();
    assert!(
        view.stderr()
            .contains("no display found: set DISPLAY, or use --sink null / file"),
        "{}",
        view.stderr()
    );
    assert!(Command::new(crate::util::BIN)
        .arg("backends")
        .env("DISPLAY", "")
        .output()
        .unwrap()
        .stdout
        .windows(16)
        .any(|w| w == b"no display found"));
}

/// sdl2 and x11: `f` goes full screen (the picture pillarboxed on the 1280x800
/// screen) and back.
#[cfg(any(feature = "sdl2", feature = "x11"))]
#[test]
fn window_full_screen_toggles() {
    // minifb cannot (it says so when `f` is pressed).
    for sink in sinks().into_iter().filter(|&s| s != "minifb") {
        full_screen_toggles(sink);
    }
}

#[cfg(any(feature = "sdl2", feature = "x11"))]
fn full_screen_toggles(sink: &str) {
    let x = Xvfb::start(true);
    let (mut server, addr) = serve(&[
        "--width",
        "640",
        "--height",
        "480",
        "--fps",
        "30",
        SERVE_PLAINTEXT,
    ]);
    #[cfg(feature = "x11")]
    let mut framed = Framed::watch(&x);
    let mut view = view_on(&x, &addr, sink, &[VIEW_PLAINTEXT]);
    view.wait_stderr("connected to", 1, Duration::from_secs(10));
    let id = x.window(&view);
    let windowed = x.geometry(&id);
    wait_for_bars(&x, windowed, "before-full-screen", &view);
    // One window, shown once: SDL used to destroy its window and make another
    // as it made its OpenGL renderer (a flash a person would see), and two
    // CI runs lost the window they had found.
    #[cfg(feature = "x11")]
    assert_eq!(
        framed.windows(),
        BTreeSet::from([id.parse().unwrap()]),
        "{sink}: the windows shown, against the viewer's window {id}"
    );
    let wait_for_size =
        |want: (usize, usize), what: &str| {
            let seen = RefCell::new(Ok((0, 0, 0, 0)));
            wait_until(
                Duration::from_secs(10),
                Lazy(|| {
                    format!(
                    "{sink} {what}: a {want:?} window (it is {:?}); the viewer {} and printed:\n{}",
                    seen.borrow(),
                    if view.is_running() { "runs" } else { "has exited" },
                    view.stderr()
                )
                }),
                || {
                    let geo = x.try_geometry(&id);
                    let fits = geo.as_ref().is_ok_and(|g| (g.2, g.3) == want);
                    *seen.borrow_mut() = geo;
                    fits.then_some(())
                },
            )
        };
    x.press(&id, "f");
    wait_for_size((1280, 800), "full screen");
    // The picture fills the screen's height at 4:3.
    let seen = RefCell::new((0, 0));
    wait_until(
        Duration::from_secs(10),
        Lazy(|| {
            format!(
                "{sink}: a 4:3 picture the screen's height (it is {:?})",
                seen.borrow()
            )
        }),
        || {
            let shot = x.screenshot("fullscreen");
            let (_, _, pw, ph) = picture_box(&shot, (0, 0, 1280, 800));
            *seen.borrow_mut() = (pw, ph);
            (ph >= 790 && ((pw as f64 / ph as f64) - 4.0 / 3.0).abs() < 0.05).then_some(())
        },
    );
    x.press(&id, "f");
    wait_for_size((windowed.2, windowed.3), "back to a window");
    view.terminate();
    server.terminate();
}

/// Closing the window (the window manager's close: Alt+F4 in openbox sends
/// WM_DELETE_WINDOW) ends the viewer with status 0, for every window sink.
#[test]
fn closing_the_window_ends_the_viewer() {
    let x = Xvfb::start(true);
    let (mut server, addr) = serve_small(&[SERVE_PLAINTEXT]);
    for sink in sinks() {
        let mut view = view_on(&x, &addr, sink, &[VIEW_PLAINTEXT]);
        view.wait_stderr("connected to", 1, Duration::from_secs(10));
        let id = x.window(&view);
        x.close(&id, || !view.is_running());
        view.expect_success(Duration::from_secs(10));
        assert!(
            view.stderr().contains("window closed"),
            "{sink}: {}",
            view.stderr()
        );
    }
    server.terminate();
}

/// `serve --preview`: a live window on the server; closing it leaves the server
/// streaming to its viewers.
#[test]
fn serve_preview_shows_the_live_picture() {
    let x = Xvfb::start(true);
    let mut server = Proc::spawn_env(
        "serve --preview",
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--width",
            "640",
            "--height",
            "480",
            "--fps",
            "30",
            "--preview",
            SERVE_PLAINTEXT,
        ],
        &[("DISPLAY", &x.display)],
    );
    let addr = server.wait_listening();
    let id = x.window(&server);
    let geo = x.geometry(&id);
    let first = wait_for_bars(&x, geo, "preview-first", &server);
    std::thread::sleep(Duration::from_secs(1)); // "two screenshots a second apart"
    assert_ne!(
        first,
        x.screenshot("preview-second"),
        "the preview is not live"
    );

    // Closing the preview ends the preview only.
    x.close(&id, || {
        server
            .stderr()
            .contains("local sink window closed; the server goes on")
    });
    server.wait_stderr(
        "local sink window closed; the server goes on",
        1,
        Duration::from_secs(10),
    );
    let dir = temp_dir();
    let rec = dir.path().join("after.lsr");
    record(&addr, &rec, 30, &[VIEW_PLAINTEXT]).expect_success(Duration::from_secs(20));
    assert_no_gaps(&rec, 30);
    let stats = stats(&addr);
    let local = &stats["local_sinks"][0];
    assert_eq!(local["name"], "window", "{stats}");
    assert_eq!(local["running"], false, "{stats}");
    assert!(local["presented"].as_u64().unwrap() > 10, "{stats}");
    server.terminate();
}
