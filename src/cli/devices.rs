//! `livestream devices`: the cameras every camera backend of this build finds,
//! each with the lines that select it (flags, and `livestream.toml`), its
//! formats, sizes and frame rates, and with `--controls` its controls. Camera
//! backends left out of the build are named with the feature that brings them
//! back. On the main thread.

use super::DevicesArgs;
use crate::backend::Kind;
use crate::media::frame::PixelFormat;
use crate::registry;
use crate::sources::camera::{CameraInfo, ControlInfo};

pub(super) fn run(args: &DevicesArgs) {
    let backends: Vec<_> = crate::sources::cameras()
        .into_iter()
        .filter_map(|b| Some((b.name, b.devices?)))
        .collect();
    for out in registry::compiled_out() {
        if out.kind == Kind::Source {
            println!(
                "camera backend {} is not in this build: rebuild with --features {} (needs {})",
                out.name, out.feature, out.package
            );
        }
    }
    let mut found = 0;
    for (backend, list) in backends {
        for cam in list(args.controls) {
            found += 1;
            print_camera(backend, &cam, args.controls);
        }
    }
    if found == 0 {
        explain_no_camera();
    }
    #[cfg(feature = "v4l2")]
    print_hardware_codecs();
}

/// The kernel's memory-to-memory codecs (the Raspberry Pi 0-4's H.264
/// encoder), and whether the `h264` codec's `engine = "auto"` takes one.
#[cfg(feature = "v4l2")]
fn print_hardware_codecs() {
    use crate::v4l2::m2m::{self, Fourcc, Role};
    let codecs = m2m::list();
    if codecs.is_empty() {
        println!(
            "no hardware video codec (V4L2 memory-to-memory): [codecs.h264] encodes with openh264"
        );
        return;
    }
    for c in &codecs {
        let used = if c.role == Role::Encoder && c.fourcc == Fourcc::H264 {
            " (used by [codecs.h264] engine = \"auto\")"
        } else {
            ""
        };
        println!(
            "{}: \"{}\" ({}), hardware {} {}{used}",
            c.path.display(),
            c.card,
            c.driver,
            c.fourcc,
            c.role
        );
    }
}

/// No camera: whether there are video nodes at all, and what `serve` does then.
fn explain_no_camera() {
    let nodes: Vec<String> = std::fs::read_dir("/dev")
        .map(|d| {
            let mut n: Vec<String> = d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("video"))
                .map(|n| format!("/dev/{n}"))
                .collect();
            n.sort();
            n
        })
        .unwrap_or_default();
    if nodes.is_empty() {
        println!("no cameras found (no /dev/video* device)");
    } else {
        println!(
            "no cameras found: {} exist but none captures video here (in use, no permission, \
             or metadata nodes)",
            nodes.join(", ")
        );
    }
    println!("`livestream serve` streams the test pattern when there is no camera");
}

fn print_camera(backend: &str, cam: &CameraInfo, controls: bool) {
    println!(
        "{}: \"{}\" ({}), backend {backend}",
        cam.node, cam.name, cam.detail
    );
    print_selection(backend, cam);
    print_modes(cam);
    if controls {
        println!("  controls ([sources.{backend}.controls] NAME = VALUE):");
        for c in &cam.controls {
            print_control(c);
        }
    }
}

/// The command line and the `livestream.toml` lines that stream this camera:
/// the largest mode of its preferred format that keeps 25 fps or more.
fn print_selection(backend: &str, cam: &CameraInfo) {
    let smooth = cam
        .modes
        .iter()
        .filter(|m| cam.modes.first().is_some_and(|f| f.format == m.format))
        .filter(|m| m.fps.first().is_some_and(|&f| f >= 24.9))
        .max_by_key(|m| m.width as u64 * m.height as u64);
    let Some(best) = smooth.or(cam.modes.first()) else {
        return;
    };
    let fps = best
        .fps
        .first()
        .map_or(String::new(), |f| format!(" --fps {}", fmt_fps(*f)));
    println!(
        "  select with: livestream serve --source {backend} --set 'sources.{backend}.{}={}' \
         --format {} --width {} --height {}{fps}",
        cam.option, cam.stable_id, best.format, best.width, best.height
    );
    let value = if cam.stable_id.parse::<u32>().is_ok() {
        cam.stable_id.clone()
    } else {
        format!("{:?}", cam.stable_id)
    };
    println!(
        "  or in livestream.toml:  [serve] source = \"{backend}\"   [sources.{backend}] {} = {value}",
        cam.option
    );
}

/// One line per pixel format, in the camera's order: its sizes and frame rates.
fn print_modes(cam: &CameraInfo) {
    let mut formats: Vec<PixelFormat> = Vec::new();
    for m in &cam.modes {
        if !formats.contains(&m.format) {
            formats.push(m.format);
        }
    }
    for format in formats {
        let sizes: Vec<String> = cam
            .modes
            .iter()
            .filter(|m| m.format == format)
            .map(|m| {
                let rates: Vec<String> = m.fps.iter().map(|f| fmt_fps(*f)).collect();
                if rates.is_empty() {
                    format!("{}x{}", m.width, m.height)
                } else {
                    format!("{}x{} @ {}", m.width, m.height, rates.join("/"))
                }
            })
            .collect();
        println!("  {:<7} {}", format.name(), sizes.join(", "));
    }
    if !cam.other_formats.is_empty() {
        println!(
            "  also offered, not taken by livestream: {}",
            cam.other_formats.join(" ")
        );
    }
}

/// A control's name, kind, range, step, default and value, then its menu.
fn print_control(c: &ControlInfo) {
    let mut line = format!("    {:<34} {:<6} {}..{}", c.key, c.kind, c.min, c.max);
    if c.step > 1 {
        line += &format!(" step {}", c.step);
    }
    line += &format!(" default {}", c.default);
    if let Some(v) = c.current {
        line += &format!(" now {v}");
    }
    if c.read_only {
        line += " (read-only)";
    }
    if c.inactive {
        line += " (inactive)";
    }
    println!("{line}");
    if !c.menu.is_empty() {
        let entries: Vec<String> = c.menu.iter().map(|(i, n)| format!("{i}={n}")).collect();
        println!("      {}", entries.join(", "));
    }
}

/// A frame rate as cameras state them: whole rates without decimals.
fn fmt_fps(f: f64) -> String {
    if (f - f.round()).abs() < 0.005 {
        format!("{}", f.round())
    } else {
        format!("{f:.2}")
    }
}
