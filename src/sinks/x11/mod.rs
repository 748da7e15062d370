//! `x11`: a window spoken to in the X protocol itself (x11rb's pure-Rust
//! connection: no system library at build or run time).
//!
//! Pictures reach the X server through shared memory (MIT-SHM 1.2, a memfd passed
//! over the X socket): when the window is the picture's size the frame is
//! converted straight into the segment the server reads, otherwise it is
//! converted, then scaled into the segment with SIMD (fast_image_resize). Two
//! segments take turns, and one is written again only after the server has
//! reported (ShmCompletion) that it is done reading it. Without MIT-SHM (a
//! display across the network) pictures go in the X connection, in PutImage
//! requests cut under the server's maximum request length.
//!
//! The picture keeps its aspect ratio: black bars are the window's background.
//! `f` toggles full screen (asks the window manager), `h` the overlay, `q` or Esc
//! quits; closing the window ends the viewer normally.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use fast_image_resize as fir;
use serde::Deserialize;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{
    self, AtomEnum, ClientMessageEvent, ConnectionExt as _, CreateGCAux, CreateWindowAux,
    EventMask, ImageFormat, ImageOrder, PropMode, VisualClass, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use super::window::NO_DISPLAY;
use super::{overlay, Flow, FrameSink, Live, SinkBackend, StreamMeta};
use crate::backend::Availability;
use crate::config::table::BackendConfig;
use crate::error::{BackendError, SinkError};
use crate::media::convert;
use crate::media::frame::Frame;

inventory::submit! {
    SinkBackend {
        name: "x11",
        summary: "an X11 window, pictures in shared memory (MIT-SHM): aspect kept, f full screen, h overlay",
        probe,
        open,
    }
}

/// `[sinks.x11]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
struct Options {
    /// Hand pictures over in shared memory when the X server can take them so;
    /// `false` sends them in the X connection, as a remote display gets them.
    shm: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { shm: true }
    }
}

/// Keysyms the window acts on (X11 `keysymdef.h`).
mod keysym {
    pub const Q: u32 = 0x71;
    pub const F: u32 = 0x66;
    pub const H: u32 = 0x68;
    pub const ESCAPE: u32 = 0xff1b;
}

/// What a key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Quit,
    FullScreen,
    Overlay,
}

/// The action of a keysym; capitals act as their small letters (a keyboard map
/// may list only the capital for a letter key).
fn action(sym: u32) -> Option<Action> {
    let sym = if (0x41..=0x5a).contains(&sym) {
        sym + 0x20
    } else {
        sym
    };
    match sym {
        keysym::Q | keysym::ESCAPE => Some(Action::Quit),
        keysym::F => Some(Action::FullScreen),
        keysym::H => Some(Action::Overlay),
        _ => None,
    }
}

/// The server's keyboard map: keycode to keysyms, `per` keysyms per keycode from
/// keycode `min` on.
#[derive(Debug, Default)]
struct Keymap {
    min: u8,
    per: u8,
    syms: Vec<u32>,
}

impl Keymap {
    /// The keysym of a key pressed without modifiers (the first of its column),
    /// `None` for a keycode outside the map or without one.
    fn keysym(&self, code: u8) -> Option<u32> {
        let i = (code.checked_sub(self.min)? as usize).checked_mul(self.per as usize)?;
        self.syms.get(i).copied().filter(|&s| s != 0)
    }
}

/// Where the picture goes in the window: `w` x `h` at (`x`, `y`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rect {
    x: i32,
    y: i32,
    w: u32,
    h: u32,
}

/// The largest rectangle of the picture's aspect ratio inside the window,
/// centred (the rest is black bars). Exactly the window when the sizes are equal;
/// empty when either is.
fn fit((pw, ph): (u32, u32), (ww, wh): (u32, u32)) -> Rect {
    if pw == 0 || ph == 0 || ww == 0 || wh == 0 {
        return Rect {
            x: 0,
            y: 0,
            w: 0,
            h: 0,
        };
    }
    let (pw64, ph64, ww64, wh64) = (pw as u64, ph as u64, ww as u64, wh as u64);
    // Full height when the window is wider than the picture, else full width;
    // the other side rounded to the nearest pixel, at least one.
    let (w, h) = if pw64 * wh64 <= ph64 * ww64 {
        (((pw64 * wh64 + ph64 / 2) / ph64).clamp(1, ww64), wh64)
    } else {
        (ww64, ((ph64 * ww64 + pw64 / 2) / pw64).clamp(1, wh64))
    };
    let (w, h) = (w as u32, h as u32);
    Rect {
        x: ((ww - w) / 2) as i32,
        y: ((wh - h) / 2) as i32,
        w,
        h,
    }
}

/// The parts of a `ww` x `wh` window around `rect` (which is inside it): above,
/// below, left and right, some of them empty. With `rect` they cover the window
/// once.
fn bars((ww, wh): (u32, u32), r: Rect) -> [Rect; 4] {
    let (x, y) = (r.x.max(0) as u32, r.y.max(0) as u32);
    let right = x + r.w;
    let bottom = y + r.h;
    [
        Rect {
            x: 0,
            y: 0,
            w: ww,
            h: y,
        },
        Rect {
            x: 0,
            y: bottom as i32,
            w: ww,
            h: wh.saturating_sub(bottom),
        },
        Rect {
            x: 0,
            y: y as i32,
            w: x,
            h: r.h,
        },
        Rect {
            x: right as i32,
            y: y as i32,
            w: ww.saturating_sub(right),
            h: r.h,
        },
    ]
}

/// The size a window opens at for a `w` x `h` picture: the picture's, at most 1280
/// wide (the aspect kept).
fn opening_size(w: u32, h: u32) -> (u16, u16) {
    let scale = (1280.0 / w.max(1) as f64).min(1.0);
    let side = |v: u32| ((v as f64 * scale) as u32).clamp(1, u16::MAX as u32) as u16;
    (side(w), side(h))
}

/// Whether the sink can write pixels for a visual as native-endian 0x00RRGGBB
/// words: a TrueColor visual of depth 24 or 32 with 8-bit
/// channels at the usual masks, stored in 32 bits per pixel, in this machine's
/// byte order. `Err` says what the display has instead.
fn check_visual(
    depth: u8,
    bits_per_pixel: Option<u8>,
    class: VisualClass,
    (red, green, blue): (u32, u32, u32),
    order: ImageOrder,
) -> Result<(), String> {
    let native = if cfg!(target_endian = "little") {
        ImageOrder::LSB_FIRST
    } else {
        ImageOrder::MSB_FIRST
    };
    if depth != 24 && depth != 32 {
        return Err(format!(
            "the screen's depth is {depth} bits (24 or 32 wanted)"
        ));
    }
    // DirectColor goes through a colormap that need not be the identity.
    if class != VisualClass::TRUE_COLOR {
        return Err(format!(
            "the screen's visual is {class:?} (TrueColor wanted)"
        ));
    }
    if (red, green, blue) != (0xff0000, 0xff00, 0xff) {
        return Err(format!(
            "the screen's colour masks are red {red:#x} green {green:#x} blue {blue:#x} \
             (0xff0000 0xff00 0xff wanted)"
        ));
    }
    if bits_per_pixel != Some(32) {
        return Err(format!(
            "depth {depth} images take {bits_per_pixel:?} bits per pixel (32 wanted)"
        ));
    }
    if order != native {
        return Err(format!(
            "the server's image byte order is {order:?}, this machine's {native:?}"
        ));
    }
    Ok(())
}

/// A title as Latin-1 for `WM_NAME` (type STRING), for window managers that do
/// not read `_NET_WM_NAME`: dashes become `-`, other characters outside Latin-1 `?`.
fn latin1(title: &str) -> Vec<u8> {
    title
        .chars()
        .map(|c| match c {
            '\u{2010}'..='\u{2015}' => b'-',
            c if (c as u32) < 0x100 => c as u32 as u8,
            _ => b'?',
        })
        .collect()
}

x11rb::atom_manager! {
    Atoms: AtomsCookie {
        WM_PROTOCOLS,
        WM_DELETE_WINDOW,
        _NET_WM_NAME,
        _NET_WM_STATE,
        _NET_WM_STATE_FULLSCREEN,
        UTF8_STRING,
    }
}

/// Wraps an X failure as a sink error that keeps it as its cause.
fn x_error<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
) -> impl FnOnce(E) -> SinkError + '_ {
    move |e| SinkError::Io {
        what: format!("the x11 window: {what}"),
        source: io::Error::other(e),
    }
}

fn setup_error<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
) -> impl FnOnce(E) -> BackendError + '_ {
    move |e| BackendError::Io {
        what: format!("the x11 window: {what}"),
        source: io::Error::other(e),
    }
}

/// Connects to `$DISPLAY`. An X server with no client left resets itself (the
/// probe's connection closing is enough), and drops a connection that arrives
/// meanwhile before its setup: that one is tried again, for up to a second.
fn connect() -> Result<(RustConnection, usize), BackendError> {
    if std::env::var_os("DISPLAY").is_none_or(|d| d.is_empty()) {
        return Err(BackendError::Invalid {
            what: "the x11 window".into(),
            why: no_x_display(),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match RustConnection::connect(None) {
            Err(x11rb::errors::ConnectError::IoError(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) && Instant::now() < deadline =>
            {
                log::debug!("x11: the X server dropped the connection at setup ({e}); again");
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.map_err(setup_error("connecting to the X display")),
        }
    }
}

/// Why there is no X display: no display at all, or only Wayland.
fn no_x_display() -> String {
    if std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty()) {
        "no X display (DISPLAY is not set); on Wayland use --sink minifb".into()
    } else {
        NO_DISPLAY.into()
    }
}

/// Available when an X server answers at `$DISPLAY`.
fn probe() -> Availability {
    match connect() {
        Ok(_) => Availability::Available,
        Err(BackendError::Invalid { why, .. }) => Availability::Unavailable(why),
        Err(e) => Availability::Unavailable(e.to_string()),
    }
}

fn open(table: &BackendConfig) -> Result<Box<dyn FrameSink>, BackendError> {
    super::window::require_display("x11")?;
    let opts: Options = table.parse()?;
    let (conn, screen) = connect()?;
    let display = Display::new(conn, screen, opts.shm)?;
    Ok(Box::new(X11Sink {
        x: display,
        window: None,
        codec: String::new(),
        overlay: false,
        painter: Painter::default(),
        store: Store::Plain(Vec::new()),
        shown: None,
        stop: false,
        redraw: false,
        placed: None,
        release: None,
    }))
}

/// The connection and what the sink learnt from the server when it connected.
struct Display {
    conn: RustConnection,
    root: xproto::Window,
    visual: xproto::Visualid,
    depth: u8,
    black: u32,
    screen_size: (u32, u32),
    atoms: Atoms,
    keymap: Keymap,
    /// MIT-SHM with fd passing can be used (local server, version 1.2+).
    shm: bool,
}

impl Display {
    fn new(conn: RustConnection, screen: usize, want_shm: bool) -> Result<Display, BackendError> {
        let setup = conn.setup();
        let Some(s) = setup.roots.get(screen) else {
            return Err(BackendError::Invalid {
                what: "the x11 window".into(),
                why: format!("the X display has no screen {screen}"),
            });
        };
        let visual = s
            .allowed_depths
            .iter()
            .flat_map(|d| &d.visuals)
            .find(|v| v.visual_id == s.root_visual);
        let bpp = setup
            .pixmap_formats
            .iter()
            .find(|f| f.depth == s.root_depth)
            .map(|f| f.bits_per_pixel);
        let checked = match visual {
            Some(v) => check_visual(
                s.root_depth,
                bpp,
                v.class,
                (v.red_mask, v.green_mask, v.blue_mask),
                setup.image_byte_order,
            ),
            None => Err("the screen's root visual is not listed".into()),
        };
        if let Err(why) = checked {
            return Err(BackendError::Unsupported {
                backend: "x11",
                what: format!("this display: {why}"),
            });
        }
        let (root, root_visual, depth, black) =
            (s.root, s.root_visual, s.root_depth, s.black_pixel);
        let screen_size = (s.width_in_pixels as u32, s.height_in_pixels as u32);
        let atoms = Atoms::new(&conn)
            .map_err(setup_error("atoms"))?
            .reply()
            .map_err(setup_error("atoms"))?;
        let keymap = load_keymap(&conn).map_err(|e| match e {
            SinkError::Io { what, source } => BackendError::Io { what, source },
            other => BackendError::Invalid {
                what: "the keyboard map".into(),
                why: other.to_string(),
            },
        })?;
        let shm = if want_shm {
            shm_usable(&conn)
        } else {
            log::info!(
                "x11: no shared memory (sinks.x11.shm = false): pictures go in the X connection"
            );
            false
        };
        Ok(Display {
            conn,
            root,
            visual: root_visual,
            depth,
            black,
            screen_size,
            atoms,
            keymap,
            shm,
        })
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.conn.flush().map_err(x_error("sending"))
    }

    /// Asks the window manager to toggle full screen (EWMH `_NET_WM_STATE`).
    fn toggle_full_screen(&self, window: xproto::Window) -> Result<(), SinkError> {
        const TOGGLE: u32 = 2;
        let event = ClientMessageEvent::new(
            32,
            window,
            self.atoms._NET_WM_STATE,
            [TOGGLE, self.atoms._NET_WM_STATE_FULLSCREEN, 0, 1, 0],
        );
        self.conn
            .send_event(
                false,
                self.root,
                EventMask::SUBSTRUCTURE_REDIRECT | EventMask::SUBSTRUCTURE_NOTIFY,
                event,
            )
            .map_err(x_error("full screen"))?;
        Ok(())
    }
}

/// Reads the server's keyboard map.
fn load_keymap(conn: &RustConnection) -> Result<Keymap, SinkError> {
    let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
    let reply = conn
        .get_keyboard_mapping(min, max.saturating_sub(min).saturating_add(1))
        .map_err(x_error("keyboard map"))?
        .reply()
        .map_err(x_error("keyboard map"))?;
    Ok(Keymap {
        min,
        per: reply.keysyms_per_keycode,
        syms: reply.keysyms,
    })
}

/// MIT-SHM with fd passing works only with a server on this machine, over a Unix
/// socket, that has version 1.2 or later.
fn shm_usable(conn: &RustConnection) -> bool {
    let why = if !is_unix_socket(conn.stream().as_raw_fd()) {
        "the X server is not on this machine (TCP connection)".to_string()
    } else {
        match conn.extension_information(shm::X11_EXTENSION_NAME) {
            Ok(Some(_)) => match shm::query_version(conn).map(|c| c.reply()) {
                Ok(Ok(v)) if (v.major_version, v.minor_version) >= (1, 2) => return true,
                Ok(Ok(v)) => format!(
                    "the server has MIT-SHM {}.{}, without fd passing (1.2)",
                    v.major_version, v.minor_version
                ),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            },
            Ok(None) => "the server has no MIT-SHM extension".into(),
            Err(e) => e.to_string(),
        }
    };
    log::warn!("x11: no shared memory ({why}); pictures go in the X connection, which costs more");
    false
}

fn is_unix_socket(fd: i32) -> bool {
    // SAFETY: getsockname writes at most `len` bytes into the zeroed storage.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) == 0
            && addr.ss_family as i32 == libc::AF_UNIX
    }
}

/// Memory shared with the X server: a memfd mapped here, attached there.
struct Segment {
    seg: shm::Seg,
    map: NonNull<u8>,
    len: usize,
    /// ShmPutImage requests from this segment the server has not completed.
    pending: u32,
}

impl Segment {
    /// A segment of at least `len` bytes (which must be more than 0), attached.
    fn new(conn: &RustConnection, len: usize) -> Result<Segment, SinkError> {
        let os = |what: &'static str| {
            move |e: io::Error| SinkError::Io {
                what: format!("the x11 window: shared memory: {what}"),
                source: e,
            }
        };
        // SAFETY: memfd_create with a valid C string; the fd is owned from here.
        let fd = unsafe { libc::memfd_create(c"livestream-x11".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os("memfd_create")(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = libc::off_t::try_from(len)
            .map_err(|_| os("size")(io::Error::other(format!("{len} bytes"))))?;
        // SAFETY: plain syscall on our own descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(os("ftruncate")(io::Error::last_os_error()));
        }
        // SAFETY: a new shared mapping of the whole file; unmapped in Drop only.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os("mmap")(io::Error::last_os_error()));
        }
        let map = NonNull::new(ptr.cast::<u8>()).expect("mmap does not return null on success");
        let mut segment = Segment {
            seg: 0,
            map,
            len,
            pending: 0,
        };
        // The server maps the file itself (read-only); ours stays valid after the
        // descriptor is sent and closed.
        segment.seg = conn.generate_id().map_err(x_error("shared memory id"))?;
        conn.shm_attach_fd(segment.seg, fd, true)
            .map_err(x_error("attaching shared memory"))?
            .check()
            .map_err(x_error("attaching shared memory"))?;
        Ok(segment)
    }

    /// The first `n` pixels of the segment (`n * 4 <= len`).
    fn pixels(&mut self, n: usize) -> &mut [u32] {
        assert!(
            n * 4 <= self.len,
            "{n} pixels in a {}-byte segment",
            self.len
        );
        // SAFETY: the mapping is `len` bytes, page-aligned (so u32-aligned), lives
        // as long as `self`, and this is the only reference into it here. The X
        // server reads it only while `pending > 0`, which the caller waits out.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().cast::<u32>(), n) }
    }

    fn detach(&self, conn: &RustConnection) {
        // Best effort: a connection that is gone has dropped the segment anyway.
        let _ = conn.shm_detach(self.seg);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`, which nothing uses after this.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.len) };
    }
}

/// Segment `slot`, at least `bytes` long: the one there, or a new one. The
/// server must be done reading it (`pending == 0`).
fn segment<'a>(
    x: &Display,
    slot: &'a mut Option<Segment>,
    bytes: usize,
) -> Result<&'a mut Segment, SinkError> {
    if slot.as_ref().is_some_and(|s| s.len < bytes) {
        if let Some(old) = slot.take() {
            old.detach(&x.conn);
        }
    }
    match slot {
        Some(s) => Ok(s),
        None => {
            // Room for a picture as large as the screen, so resizing the window
            // rarely needs a new segment (memory is touched only where written).
            let (sw, sh) = x.screen_size;
            let len = bytes.max(sw as usize * sh as usize * 4).max(4);
            Ok(slot.insert(Segment::new(&x.conn, len)?))
        }
    }
}

/// Where the pictures go before the server takes them.
enum Store {
    /// Two shared segments taking turns: `next` is written while the server may
    /// still read the other one.
    Shm {
        segments: [Option<Segment>; 2],
        next: usize,
    },
    /// The picture, sent in the X connection (no MIT-SHM).
    Plain(Vec<u32>),
}

/// What is on screen, to draw again on Expose: the picture's size, and for
/// shared memory the segment that holds it.
#[derive(Clone, Copy, Debug)]
struct Shown {
    w: u32,
    h: u32,
    segment: usize,
}

/// The window and its size, as the server last told it.
struct Win {
    id: xproto::Window,
    gc: xproto::Gcontext,
    size: (u32, u32),
}

/// Turns frames into window pictures: conversion, overlay, scaling. Buffers are
/// kept from frame to frame and grow only with the geometry.
struct Painter {
    /// The frame as 0x00RRGGBB, when it must be scaled.
    pixels: Vec<u32>,
    rgb: Vec<u8>,
    resizer: fir::Resizer,
    options: fir::ResizeOptions,
}

impl Default for Painter {
    fn default() -> Self {
        Painter {
            pixels: Vec::new(),
            rgb: Vec::new(),
            resizer: fir::Resizer::new(),
            // Two-tap bilinear (minifb's and OpenCV's linear): 1.3-1.5 ms from
            // 1080p to 720p here, where the convolution whose kernel widens when
            // shrinking took 1.8-2.0. The fourth byte is padding, not alpha.
            options: fir::ResizeOptions::new()
                .resize_alg(fir::ResizeAlg::Interpolation(fir::FilterType::Bilinear))
                .use_alpha(false),
        }
    }
}

impl Painter {
    /// Draws `frame` (and the overlay when `overlay` is set) into `dst`, a `w` x
    /// `h` picture.
    fn paint(
        &mut self,
        frame: &Frame,
        overlay: Option<(&str, &Live)>,
        (w, h): (u32, u32),
        dst: &mut [u32],
    ) -> Result<(), SinkError> {
        let (fw, fh) = (frame.info.width, frame.info.height);
        let unsupported = || SinkError::Unsupported {
            sink: "x11",
            what: format!("{} frames", frame.info.format),
        };
        if (w, h) == (fw, fh) {
            if !convert::to_xrgb_u32_into(frame, &mut self.rgb, dst) {
                return Err(unsupported());
            }
            if let Some((codec, live)) = overlay {
                overlay::draw_live(dst, fw, fh, codec, live);
            }
            return Ok(());
        }
        if !convert::to_xrgb_u32(frame, &mut self.rgb, &mut self.pixels) {
            return Err(unsupported());
        }
        if let Some((codec, live)) = overlay {
            overlay::draw_live(&mut self.pixels, fw, fh, codec, live);
        }
        let resize = |e: &dyn std::fmt::Display| SinkError::Io {
            what: format!("the x11 window: scaling {fw}x{fh} to {w}x{h}"),
            source: io::Error::other(e.to_string()),
        };
        let src = fir::images::ImageRef::new(
            fw,
            fh,
            bytemuck::cast_slice(&self.pixels),
            fir::PixelType::U8x4,
        )
        .map_err(|e| resize(&e))?;
        let mut dst = fir::images::Image::from_slice_u8(
            w,
            h,
            bytemuck::cast_slice_mut(dst),
            fir::PixelType::U8x4,
        )
        .map_err(|e| resize(&e))?;
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .map_err(|e| resize(&e))
    }
}

pub struct X11Sink {
    x: Display,
    window: Option<Win>,
    codec: String,
    overlay: bool,
    painter: Painter,
    store: Store,
    shown: Option<Shown>,
    /// The user asked to stop (seen while handling events).
    stop: bool,
    /// The window needs its picture again (Expose).
    redraw: bool,
    /// Where the last picture went, and the window's size then: the bars are
    /// painted black again when either changes.
    placed: Option<(Rect, (u32, u32))>,
    /// The last key release (keycode, time): a press at the same time is the
    /// server's auto-repeat, which must not toggle again.
    release: Option<(u8, u32)>,
}

/// How long the server may take to finish reading a picture before the sink
/// gives up on it.
const COMPLETION_TIMEOUT: Duration = Duration::from_secs(2);

impl X11Sink {
    /// Shared segments when the server offered MIT-SHM and takes the first one (a
    /// screenful); else, said once, the X connection.
    fn new_store(&mut self) -> Store {
        if !self.x.shm {
            return Store::Plain(Vec::new());
        }
        let (sw, sh) = self.x.screen_size;
        match Segment::new(&self.x.conn, (sw as usize * sh as usize * 4).max(4)) {
            Ok(first) => Store::Shm {
                segments: [Some(first), None],
                next: 0,
            },
            Err(e) => {
                self.x.shm = false;
                log::warn!(
                    "x11: no shared memory ({e}); pictures go in the X connection, which costs more"
                );
                Store::Plain(Vec::new())
            }
        }
    }

    fn open_window(&mut self, meta: &StreamMeta) -> Result<(), SinkError> {
        let conn = &self.x.conn;
        let (w, h) = opening_size(meta.info.frame.width, meta.info.frame.height);
        let id = conn.generate_id().map_err(x_error("window id"))?;
        let aux = CreateWindowAux::new()
            .background_pixel(self.x.black)
            .event_mask(
                EventMask::EXPOSURE
                    | EventMask::STRUCTURE_NOTIFY
                    | EventMask::KEY_PRESS
                    | EventMask::KEY_RELEASE,
            );
        // Centred on the screen (where a window manager, if any, does not place
        // it itself), so under the pointer on a fresh X server.
        let (sw, sh) = self.x.screen_size;
        let (x, y) = (
            i16_of((sw as i32 - w as i32).max(0) / 2),
            i16_of((sh as i32 - h as i32).max(0) / 2),
        );
        conn.create_window(
            self.x.depth,
            id,
            self.x.root,
            x,
            y,
            w,
            h,
            0,
            WindowClass::INPUT_OUTPUT,
            self.x.visual,
            &aux,
        )
        .map_err(x_error("creating the window"))?;
        let gc = conn.generate_id().map_err(x_error("graphics context id"))?;
        // No GraphicsExposure events: the sink never copies between drawables.
        conn.create_gc(gc, id, &CreateGCAux::new().graphics_exposures(0))
            .map_err(x_error("graphics context"))?;
        let atoms = self.x.atoms;
        conn.change_property32(
            PropMode::REPLACE,
            id,
            atoms.WM_PROTOCOLS,
            AtomEnum::ATOM,
            &[atoms.WM_DELETE_WINDOW],
        )
        .map_err(x_error("WM_PROTOCOLS"))?;
        conn.change_property8(
            PropMode::REPLACE,
            id,
            AtomEnum::WM_CLASS,
            AtomEnum::STRING,
            b"livestream\0livestream\0",
        )
        .map_err(x_error("WM_CLASS"))?;
        self.window = Some(Win {
            id,
            gc,
            size: (w as u32, h as u32),
        });
        self.set_title(meta)?;
        self.x
            .conn
            .map_window(id)
            .map_err(x_error("showing the window"))?;
        self.x.flush()
    }

    fn set_title(&self, meta: &StreamMeta) -> Result<(), SinkError> {
        let Some(win) = &self.window else {
            return Ok(());
        };
        let title = format!("{} — {}", meta.name, meta.address);
        let conn = &self.x.conn;
        conn.change_property8(
            PropMode::REPLACE,
            win.id,
            self.x.atoms._NET_WM_NAME,
            self.x.atoms.UTF8_STRING,
            title.as_bytes(),
        )
        .map_err(x_error("_NET_WM_NAME"))?;
        conn.change_property8(
            PropMode::REPLACE,
            win.id,
            AtomEnum::WM_NAME,
            AtomEnum::STRING,
            &latin1(&title),
        )
        .map_err(x_error("WM_NAME"))?;
        Ok(())
    }

    /// Handles events until the server has completed every read of segment `i`.
    fn wait_for_segment(&mut self, i: usize) -> Result<(), SinkError> {
        let deadline = Instant::now() + COMPLETION_TIMEOUT;
        loop {
            let Store::Shm { segments, .. } = &self.store else {
                return Ok(());
            };
            if segments[i].as_ref().is_none_or(|s| s.pending == 0) {
                return Ok(());
            }
            let Some(ev) = self.x.conn.poll_for_event().map_err(x_error("events"))? else {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(SinkError::Io {
                        what: "the x11 window".into(),
                        source: io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the X server did not finish drawing a picture within {COMPLETION_TIMEOUT:?}"
                            ),
                        ),
                    });
                }
                self.x.flush()?;
                wait_readable(self.x.conn.stream().as_raw_fd(), left);
                continue;
            };
            self.event(ev)?;
        }
    }

    /// Takes one event into the sink's state.
    fn event(&mut self, ev: Event) -> Result<(), SinkError> {
        let Some(win) = &mut self.window else {
            return Ok(());
        };
        match ev {
            Event::Expose(e) if e.window == win.id && e.count == 0 => self.redraw = true,
            Event::ConfigureNotify(e) if e.window == win.id => {
                win.size = (e.width as u32, e.height as u32);
            }
            Event::KeyRelease(e) => self.release = Some((e.detail, e.time)),
            Event::KeyPress(e) => {
                let repeat = self.release == Some((e.detail, e.time));
                match self.x.keymap.keysym(e.detail).and_then(action) {
                    Some(Action::Quit) => self.stop = true,
                    Some(Action::Overlay) if !repeat => self.overlay = !self.overlay,
                    Some(Action::FullScreen) if !repeat => self.x.toggle_full_screen(win.id)?,
                    _ => {}
                }
            }
            Event::ClientMessage(e)
                if e.window == win.id
                    && e.type_ == self.x.atoms.WM_PROTOCOLS
                    && e.data.as_data32()[0] == self.x.atoms.WM_DELETE_WINDOW =>
            {
                self.stop = true
            }
            Event::DestroyNotify(e) if e.window == win.id => {
                self.window = None;
                self.stop = true;
            }
            Event::MappingNotify(e) if e.request == xproto::Mapping::KEYBOARD => {
                self.x.keymap = load_keymap(&self.x.conn)?;
            }
            Event::ShmCompletion(e) => {
                if let Store::Shm { segments, .. } = &mut self.store {
                    for s in segments.iter_mut().flatten() {
                        if s.seg == e.shmseg {
                            s.pending = s.pending.saturating_sub(1);
                        }
                    }
                }
            }
            Event::Error(e) => {
                return Err(x_error("the X server refused a request")(
                    x11rb::errors::ReplyError::from(e),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// Handles every pending event, draws again when asked; `Stop` when the user
    /// is done.
    fn events(&mut self) -> Result<Flow, SinkError> {
        while let Some(ev) = self.x.conn.poll_for_event().map_err(x_error("events"))? {
            self.event(ev)?;
        }
        if std::mem::take(&mut self.redraw) {
            self.put_shown()?;
        }
        self.x.flush()?;
        Ok(if self.stop {
            Flow::Stop
        } else {
            Flow::Continue
        })
    }

    /// Sends the picture on screen again, centred in the window as it is now.
    fn put_shown(&mut self) -> Result<(), SinkError> {
        let (Some(win), Some(shown)) = (&self.window, self.shown) else {
            return Ok(());
        };
        let rect = Rect {
            x: (win.size.0 as i32 - shown.w as i32) / 2,
            y: (win.size.1 as i32 - shown.h as i32) / 2,
            w: shown.w,
            h: shown.h,
        };
        let (id, gc) = (win.id, win.gc);
        clear_bars(&self.x, id, win.size, rect)?;
        self.placed = Some((rect, win.size));
        match &mut self.store {
            Store::Shm { segments, .. } => {
                if let Some(s) = &mut segments[shown.segment] {
                    put_shm(&self.x, id, gc, s, rect)?;
                }
                Ok(())
            }
            Store::Plain(pixels) => put_plain(&self.x, id, gc, pixels, rect),
        }
    }
}

/// Paints the window black around `rect` (its background: the window is made
/// with a black one).
fn clear_bars(
    x: &Display,
    window: xproto::Window,
    size: (u32, u32),
    rect: Rect,
) -> Result<(), SinkError> {
    for b in bars(size, rect).into_iter().filter(|b| b.w > 0 && b.h > 0) {
        x.conn
            .clear_area(
                false,
                window,
                i16_of(b.x),
                i16_of(b.y),
                u16_of(b.w),
                u16_of(b.h),
            )
            .map_err(x_error("ClearArea"))?;
    }
    Ok(())
}

/// Blocks until `fd` has data to read or `timeout` passes.
fn wait_readable(fd: i32, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd; an error or EINTR just means "look again".
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// A request's coordinates are 16-bit: pictures and windows beyond that are cut.
fn u16_of(v: u32) -> u16 {
    v.min(u16::MAX as u32) as u16
}

fn i16_of(v: i32) -> i16 {
    v.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

/// Asks the server to copy the `rect.w` x `rect.h` picture at the start of
/// segment `s` to `rect` in the window, and to say when it is done reading.
fn put_shm(
    x: &Display,
    window: xproto::Window,
    gc: xproto::Gcontext,
    s: &mut Segment,
    rect: Rect,
) -> Result<(), SinkError> {
    let (w, h) = (u16_of(rect.w), u16_of(rect.h));
    x.conn
        .shm_put_image(
            window,
            gc,
            w,
            h,
            0,
            0,
            w,
            h,
            i16_of(rect.x),
            i16_of(rect.y),
            x.depth,
            ImageFormat::Z_PIXMAP.into(),
            true,
            s.seg,
            0,
        )
        .map_err(x_error("ShmPutImage"))?;
    s.pending += 1;
    Ok(())
}

/// Sends the picture in the X connection, in PutImage requests of whole rows
/// that each fit the server's maximum request length.
fn put_plain(
    x: &Display,
    window: xproto::Window,
    gc: xproto::Gcontext,
    pixels: &[u32],
    rect: Rect,
) -> Result<(), SinkError> {
    let (w, h) = (rect.w as usize, rect.h as usize);
    if w == 0 || h == 0 || pixels.len() < w * h {
        return Ok(());
    }
    // A PutImage request's header is 24 bytes.
    let rows = (x.conn.maximum_request_bytes().saturating_sub(24) / (w * 4)).clamp(1, h);
    for (i, chunk) in pixels[..w * h].chunks(rows * w).enumerate() {
        x.conn
            .put_image(
                ImageFormat::Z_PIXMAP,
                window,
                gc,
                u16_of(w as u32),
                u16_of((chunk.len() / w) as u32),
                i16_of(rect.x),
                i16_of(rect.y + (i * rows) as i32),
                0,
                x.depth,
                bytemuck::cast_slice(chunk),
            )
            .map_err(x_error("PutImage"))?;
    }
    Ok(())
}

impl FrameSink for X11Sink {
    fn start(&mut self, meta: &StreamMeta) -> Result<(), SinkError> {
        self.codec = meta.codec.clone();
        if self.window.is_none() {
            self.store = self.new_store();
            self.open_window(meta)?;
        } else {
            self.set_title(meta)?;
            self.x.flush()?;
        }
        Ok(())
    }

    fn present(&mut self, frame: &Frame, live: &Live) -> Result<Flow, SinkError> {
        if self.events()? == Flow::Stop {
            return Ok(Flow::Stop);
        }
        let Some(win) = &self.window else {
            return Ok(Flow::Continue);
        };
        let (id, gc, size) = (win.id, win.gc, win.size);
        let rect = fit((frame.info.width, frame.info.height), size);
        if rect.w == 0 || rect.h == 0 {
            return Ok(Flow::Continue);
        }
        if self.placed != Some((rect, size)) {
            clear_bars(&self.x, id, size, rect)?;
            self.placed = Some((rect, size));
        }
        let n = rect.w as usize * rect.h as usize;
        if let Store::Shm { next, .. } = self.store {
            // The segment the server is not reading now (unless it is slow: then
            // this waits for it).
            self.wait_for_segment(next)?;
            let overlay = self.overlay.then_some((self.codec.as_str(), live));
            let Store::Shm { segments, next } = &mut self.store else {
                unreachable!("the store does not change while presenting");
            };
            let s = segment(&self.x, &mut segments[*next], n * 4)?;
            self.painter
                .paint(frame, overlay, (rect.w, rect.h), s.pixels(n))?;
            put_shm(&self.x, id, gc, s, rect)?;
            self.shown = Some(Shown {
                w: rect.w,
                h: rect.h,
                segment: *next,
            });
            *next = 1 - *next;
        } else if let Store::Plain(pixels) = &mut self.store {
            let overlay = self.overlay.then_some((self.codec.as_str(), live));
            pixels.resize(n, 0);
            self.painter
                .paint(frame, overlay, (rect.w, rect.h), pixels)?;
            put_plain(&self.x, id, gc, pixels, rect)?;
            self.shown = Some(Shown {
                w: rect.w,
                h: rect.h,
                segment: 0,
            });
        }
        self.events()
    }

    fn idle(&mut self) -> Result<Flow, SinkError> {
        self.events()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if let Store::Shm { segments, .. } = &mut self.store {
            for s in segments.iter_mut().filter_map(Option::take) {
                s.detach(&self.x.conn);
            }
        }
        if let Some(win) = self.window.take() {
            let _ = self.x.conn.free_gc(win.gc);
            let _ = self.x.conn.destroy_window(win.id);
        }
        self.shown = None;
        self.placed = None;
        // The server maps a segment itself: unmapping ours (Segment's drop) never
        // takes memory from under it.
        self.x.flush()
    }
}

impl Drop for X11Sink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_ratio_centred() {
        let r = |x, y, w, h| Rect { x, y, w, h };
        assert_eq!(
            fit((640, 480), (640, 480)),
            r(0, 0, 640, 480),
            "same size: 1:1"
        );
        assert_eq!(
            fit((640, 480), (1000, 400)),
            r(233, 0, 533, 400),
            "a wide window: pillarboxed, full height"
        );
        assert_eq!(
            fit((1920, 1080), (1280, 800)),
            r(0, 40, 1280, 720),
            "a tall window: letterboxed, full width"
        );
        assert_eq!(fit((1920, 1080), (1280, 720)), r(0, 0, 1280, 720));
        assert_eq!(
            fit((64, 16), (3, 1000)),
            r(0, 499, 3, 1),
            "never thinner than a pixel"
        );
        assert_eq!(fit((0, 480), (640, 480)).w, 0, "an empty picture");
        assert_eq!(fit((640, 480), (0, 480)).w, 0, "an empty window");
        // Large sizes do not overflow.
        let big = fit((u32::MAX, 1), (u32::MAX, u32::MAX));
        assert_eq!((big.w, big.h), (u32::MAX, 1));
    }

    #[test]
    fn fit_is_inside_the_window_for_every_size() {
        for (pw, ph) in [(640, 480), (1920, 1080), (7, 3), (1, 999)] {
            for ww in (1..300).step_by(7) {
                for wh in (1..300).step_by(11) {
                    let r = fit((pw, ph), (ww, wh));
                    assert!(r.w >= 1 && r.h >= 1, "{pw}x{ph} in {ww}x{wh}: {r:?}");
                    assert!(r.x >= 0 && r.y >= 0, "{pw}x{ph} in {ww}x{wh}: {r:?}");
                    assert!(r.x as u32 + r.w <= ww && r.y as u32 + r.h <= wh, "{r:?}");
                    assert!(r.w == ww || r.h == wh, "touches two sides: {r:?}");
                }
            }
        }
    }

    #[test]
    fn bars_and_picture_cover_the_window_once() {
        for (pic, win) in [
            ((640, 480), (1000, 400)),
            ((1920, 1080), (1280, 800)),
            ((640, 480), (640, 480)),
            ((7, 3), (50, 51)),
        ] {
            let r = fit(pic, win);
            let mut count = vec![0u8; (win.0 * win.1) as usize];
            for b in bars(win, r).into_iter().chain([r]) {
                for y in b.y as u32..b.y as u32 + b.h {
                    for x in b.x as u32..b.x as u32 + b.w {
                        count[(y * win.0 + x) as usize] += 1;
                    }
                }
            }
            assert!(count.iter().all(|&c| c == 1), "{pic:?} in {win:?}: {r:?}");
        }
    }

    #[test]
    fn opens_at_the_picture_size_at_most_1280_wide() {
        assert_eq!(opening_size(640, 480), (640, 480));
        assert_eq!(opening_size(1280, 720), (1280, 720));
        assert_eq!(opening_size(1920, 1080), (1280, 720));
        assert_eq!(opening_size(4000, 1), (1280, 1), "at least one pixel");
        assert_eq!(opening_size(0, 0), (1, 1));
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(action(keysym::Q), Some(Action::Quit));
        assert_eq!(action(keysym::ESCAPE), Some(Action::Quit));
        assert_eq!(action(keysym::F), Some(Action::FullScreen));
        assert_eq!(action(keysym::H), Some(Action::Overlay));
        assert_eq!(action(0x51), Some(Action::Quit), "Q as q");
        assert_eq!(action(0x48), Some(Action::Overlay), "H as h");
        assert_eq!(action(0x61), None, "a");
        assert_eq!(action(0xff0d), None, "Return");
        assert_eq!(action(0x1000071), None, "not a Latin-1 keysym");
    }

    #[test]
    fn keymap_reads_the_first_keysym_of_a_keycode() {
        // Keycodes 8.., two keysyms each: 8 = q Q, 9 = Escape, 10 = nothing.
        let map = Keymap {
            min: 8,
            per: 2,
            syms: vec![0x71, 0x51, 0xff1b, 0, 0, 0],
        };
        assert_eq!(map.keysym(8), Some(0x71));
        assert_eq!(map.keysym(9), Some(0xff1b));
        assert_eq!(map.keysym(10), None, "no keysym");
        assert_eq!(map.keysym(11), None, "past the map");
        assert_eq!(map.keysym(7), None, "below the first keycode");
        assert_eq!(Keymap::default().keysym(8), None, "an empty map");
    }

    #[test]
    fn visuals_other_than_xrgb8888_are_refused() {
        let masks = (0xff0000, 0xff00, 0xff);
        let lsb = if cfg!(target_endian = "little") {
            ImageOrder::LSB_FIRST
        } else {
            ImageOrder::MSB_FIRST
        };
        let other = if lsb == ImageOrder::LSB_FIRST {
            ImageOrder::MSB_FIRST
        } else {
            ImageOrder::LSB_FIRST
        };
        let tc = VisualClass::TRUE_COLOR;
        assert_eq!(check_visual(24, Some(32), tc, masks, lsb), Ok(()));
        assert_eq!(check_visual(32, Some(32), tc, masks, lsb), Ok(()));
        let refused = |r: Result<(), String>, says: &str| {
            let why = r.expect_err(says);
            assert!(why.contains(says), "{why}");
        };
        refused(check_visual(16, Some(16), tc, masks, lsb), "depth is 16");
        refused(
            check_visual(24, Some(32), VisualClass::PSEUDO_COLOR, masks, lsb),
            "PSEUDO_COLOR",
        );
        refused(
            check_visual(24, Some(32), VisualClass::DIRECT_COLOR, masks, lsb),
            "DIRECT_COLOR",
        );
        refused(
            check_visual(24, Some(32), tc, (0xff, 0xff00, 0xff0000), lsb),
            "red 0xff green",
        );
        refused(check_visual(24, Some(24), tc, masks, lsb), "Some(24) bits");
        refused(check_visual(24, None, tc, masks, lsb), "None bits");
        refused(check_visual(24, Some(32), tc, masks, other), "byte order");
    }

    #[test]
    fn titles_fall_back_to_latin1_for_wm_name() {
        assert_eq!(latin1("cam — 10.0.0.2:7878"), b"cam - 10.0.0.2:7878");
        assert_eq!(latin1("café"), b"caf\xe9");
        assert_eq!(latin1("日本"), b"??");
    }
}
