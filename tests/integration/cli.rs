//! The command line as a user meets it: errors, listings, the default run.

use std::time::Duration;

use crate::util::{serve, temp_dir, Proc, SERVE_PLAINTEXT, VIEW_PLAINTEXT};

fn run_config(toml: &str, args: &[&str]) -> (i32, String) {
    let dir = temp_dir();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, toml).unwrap();
    let path = path.display().to_string();
    let mut all = vec!["--config", path.as_str()];
    all.extend_from_slice(args);
    let mut p = Proc::spawn("livestream", &all);
    let status = p.wait_exit(Duration::from_secs(10));
    p.assert_no_panic();
    (status.code().unwrap_or(-1), p.stderr())
}

#[test]
fn config_errors_point_at_the_line_and_list_what_is_expected() {
    let cases: [(&str, &str, &[&str]); 5] = [
        (
            "[serve]\nlisten = \"127.0.0.1:0\"\nsource = \"webcam\"\n",
            "bad.toml:3:10: unknown source `webcam`",
            &[
                "3 | source = \"webcam\"",
                "  |          ^^^^^^^^",
                "expected one of: file, ",
                "synthetic-camera, test-pattern",
            ],
        ),
        (
            "[capture]\nwidth = 640\nwidht = 480\n",
            "bad.toml:3:1: unknown field `widht`",
            &["expected one of `width`, `height`, `fps`, `format`"],
        ),
        (
            "[capture]\nfps = \"fast\"\n",
            "bad.toml:2:7: invalid type: string \"fast\"",
            &["expected f64"],
        ),
        (
            "[capture]\nwidth = 100000\nheight = 480\n",
            "bad.toml:2:9: impossible capture size",
            &["width and height from 1 to 8192"],
        ),
        (
            "[serve]\ncodec = \"zstd\"\n",
            "bad.toml:2:9: unknown codec `zstd`",
            &["expected one of: bincode, h264, jpeg, lz4, raw"],
        ),
    ];
    for (toml, headline, more) in cases {
        let (code, err) = run_config(toml, &["serve"]);
        assert_eq!(code, 2, "{toml}: {err}");
        assert!(err.contains(headline), "expected `{headline}` in:\n{err}");
        for m in more {
            assert!(err.contains(m), "expected `{m}` in:\n{err}");
        }
    }
    let (code, err) = run_config("", &["serve", "--sink", "x"]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = run_config("", &["view", "127.0.0.1:1", "--sink", "screen"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--sink: unknown sink `screen`")
            && err.contains(if cfg!(feature = "sdl2") {
                "expected one of: file, minifb, null, record, sdl2, window"
            } else {
                "expected one of: file, minifb, null, record, window"
            }),
        "{err}"
    );
    let (code, err) = run_config("", &["view", "127.0.0.1:1", "--sink", "file"]);
    assert_eq!(code, 2);
    assert!(err.contains("`path` is required"), "{err}");
}

#[test]
fn backends_lists_every_backend_with_availability() {
    let mut p = Proc::spawn("backends", &["backends"]);
    p.expect_success(Duration::from_secs(10));
    let out = p.stdout();
    for name in [
        "test-pattern",
        "synthetic-camera",
        "file",
        "raw",
        "lz4",
        "bincode",
        "null",
    ] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(name) && l.contains("available")),
            "{name} in:\n{out}"
        );
    }
    for kind in ["sources:", "codecs:", "sinks:"] {
        assert!(out.contains(kind), "{out}");
    }
}

/// With no configuration and no camera, `serve` streams the built-in test pattern
/// and says so, and how to choose a camera.
#[test]
fn default_serve_streams_the_test_pattern() {
    let dir = temp_dir(); // no livestream.toml here: the built-in one is used
    let mut server = Proc::spawn_in(
        "serve",
        &["serve", "--listen", "127.0.0.1:0", SERVE_PLAINTEXT],
        Some(dir.path()),
    );
    let addr = server.wait_listening();
    let out = server.stdout();
    assert!(
        out.contains(
            "streaming test-pattern, 1280x720 rgb24 at 30 fps, \
             codec h264 (openh264, 2.8 Mbit/s, a keyframe every 2 s and on request)"
        ),
        "{out}"
    );
    assert!(
        out.contains("watch with: livestream view 127.0.0.1:"),
        "{out}"
    );
    let err = server.stderr();
    assert!(
        err.contains("no camera found") && err.contains("--source"),
        "{err}"
    );
    let mut view = Proc::spawn("view", &["view", &addr, VIEW_PLAINTEXT, "--frames", "10"]);
    view.expect_success(Duration::from_secs(20));
    assert!(
        view.stderr().contains("frame limit reached: 10 frames"),
        "{}",
        view.stderr()
    );
    server.terminate();
}

#[test]
fn view_duration_and_ctrl_c_end_cleanly() {
    let (mut server, addr) = serve(&["--width", "64", "--height", "16", SERVE_PLAINTEXT]);
    let mut view = Proc::spawn(
        "view",
        &["view", &addr, VIEW_PLAINTEXT, "--duration", "1", "-q"],
    );
    view.expect_success(Duration::from_secs(10));
    assert!(
        view.stderr().contains("duration reached"),
        "{}",
        view.stderr()
    );
    let mut view = Proc::spawn("view", &["view", &addr, VIEW_PLAINTEXT, "-q"]);
    view.wait_stderr("connected to", 1, Duration::from_secs(10));
    view.signal(libc::SIGINT);
    view.expect_success(Duration::from_secs(10));
    server.signal(libc::SIGINT);
    server.expect_success(Duration::from_secs(10));
}
