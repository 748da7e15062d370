//! The X connection and the window: connecting to `$DISPLAY` (again when a
//! resetting server drops the first try), checking that the screen takes
//! native-endian 0x00RRGGBB words, whether MIT-SHM can be used, the atoms and
//! the keyboard map; then making, titling and full-screening the window.
//!
//! Used on the thread that owns the sink (the viewer's calling thread, or a
//! server's `sink-NAME`); `probe` connects from whichever thread lists backends.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::shm;
use x11rb::protocol::xproto::{
    self, AtomEnum, ClientMessageEvent, ConnectionExt as _, CreateGCAux, CreateWindowAux,
    EventMask, ImageOrder, PropMode, VisualClass, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use super::keys::Keymap;
use crate::error::{BackendError, SinkError};
use crate::sinks::window::NO_DISPLAY;
use crate::sinks::StreamMeta;

x11rb::atom_manager! {
    pub(super) Atoms: AtomsCookie {
        WM_PROTOCOLS,
        WM_DELETE_WINDOW,
        _NET_WM_NAME,
        _NET_WM_STATE,
        _NET_WM_STATE_FULLSCREEN,
        UTF8_STRING,
    }
}

/// Wraps an X failure as a sink error that keeps it as its cause.
pub(super) fn x_error<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
) -> impl FnOnce(E) -> SinkError + '_ {
    move |e| SinkError::Io {
        what: format!("the x11 window: {what}"),
        source: io::Error::other(e),
    }
}

/// Wraps an X failure while setting up as a backend error that keeps it as its
/// cause.
pub(super) fn setup_error<E: std::error::Error + Send + Sync + 'static>(
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
pub(super) fn connect() -> Result<(RustConnection, usize), BackendError> {
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
pub(super) fn no_x_display() -> String {
    if std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty()) {
        "no X display (DISPLAY is not set); on Wayland use --sink minifb".into()
    } else {
        NO_DISPLAY.into()
    }
}

/// The connection and what the sink learnt from the server when it connected.
pub(super) struct Display {
    pub(super) conn: RustConnection,
    root: xproto::Window,
    visual: xproto::Visualid,
    pub(super) depth: u8,
    black: u32,
    pub(super) screen_size: (u32, u32),
    pub(super) atoms: Atoms,
    pub(super) keymap: Keymap,
    /// MIT-SHM with fd passing can be used (local server, version 1.2+); turned
    /// off when the first segment cannot be made.
    pub(super) shm: bool,
}

impl Display {
    pub(super) fn new(
        conn: RustConnection,
        screen: usize,
        want_shm: bool,
    ) -> Result<Display, BackendError> {
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
            None => Err(Unfit::NoRootVisual),
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

    pub(super) fn flush(&self) -> Result<(), SinkError> {
        self.conn.flush().map_err(x_error("sending"))
    }

    /// Asks the window manager to toggle full screen (EWMH `_NET_WM_STATE`).
    pub(super) fn toggle_full_screen(&self, window: xproto::Window) -> Result<(), SinkError> {
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

    /// Makes (without showing) a window for a `w` x `h` picture, centred on the
    /// screen, black behind the picture, closable by the window manager.
    pub(super) fn create_window(&self, (w, h): (u16, u16)) -> Result<Win, SinkError> {
        let conn = &self.conn;
        let id = conn.generate_id().map_err(x_error("window id"))?;
        let aux = CreateWindowAux::new()
            .background_pixel(self.black)
            .event_mask(
                EventMask::EXPOSURE
                    | EventMask::STRUCTURE_NOTIFY
                    | EventMask::KEY_PRESS
                    | EventMask::KEY_RELEASE,
            );
        // Centred on the screen (where a window manager, if any, does not place
        // it itself), so under the pointer on a fresh X server.
        let (sw, sh) = self.screen_size;
        let (x, y) = (
            i16_of((sw as i32 - w as i32).max(0) / 2),
            i16_of((sh as i32 - h as i32).max(0) / 2),
        );
        conn.create_window(
            self.depth,
            id,
            self.root,
            x,
            y,
            w,
            h,
            0,
            WindowClass::INPUT_OUTPUT,
            self.visual,
            &aux,
        )
        .map_err(x_error("creating the window"))?;
        let gc = conn.generate_id().map_err(x_error("graphics context id"))?;
        // No GraphicsExposure events: the sink never copies between drawables.
        conn.create_gc(gc, id, &CreateGCAux::new().graphics_exposures(0))
            .map_err(x_error("graphics context"))?;
        let atoms = self.atoms;
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
        Ok(Win {
            id,
            gc,
            size: (w as u32, h as u32),
        })
    }

    /// Titles the window after the stream, in UTF-8 and (for older window
    /// managers) Latin-1.
    pub(super) fn set_title(
        &self,
        window: xproto::Window,
        meta: &StreamMeta,
    ) -> Result<(), SinkError> {
        let title = format!("{} — {}", meta.name, meta.address);
        self.conn
            .change_property8(
                PropMode::REPLACE,
                window,
                self.atoms._NET_WM_NAME,
                self.atoms.UTF8_STRING,
                title.as_bytes(),
            )
            .map_err(x_error("_NET_WM_NAME"))?;
        self.conn
            .change_property8(
                PropMode::REPLACE,
                window,
                AtomEnum::WM_NAME,
                AtomEnum::STRING,
                &latin1(&title),
            )
            .map_err(x_error("WM_NAME"))?;
        Ok(())
    }

    /// Blocks until the server has sent something or `timeout` passes.
    pub(super) fn wait_readable(&self, timeout: Duration) {
        let mut p = libc::pollfd {
            fd: self.conn.stream().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd; an error or EINTR just means "look again".
        unsafe { libc::poll(&mut p, 1, ms) };
    }
}

/// The window and its size, as the server last told it.
pub(super) struct Win {
    pub(super) id: xproto::Window,
    pub(super) gc: xproto::Gcontext,
    pub(super) size: (u32, u32),
}

/// Reads the server's keyboard map.
pub(super) fn load_keymap(conn: &RustConnection) -> Result<Keymap, SinkError> {
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

/// The size a window opens at for a `w` x `h` picture: the picture's, at most 1280
/// wide (the aspect kept).
pub(super) fn opening_size(w: u32, h: u32) -> (u16, u16) {
    let scale = (1280.0 / w.max(1) as f64).min(1.0);
    let side = |v: u32| ((v as f64 * scale) as u32).clamp(1, u16::MAX as u32) as u16;
    (side(w), side(h))
}

/// Why the screen cannot take the sink's pixels (native-endian 0x00RRGGBB words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Unfit {
    #[error("the screen's root visual is not listed")]
    NoRootVisual,
    #[error("the screen's depth is {0} bits (24 or 32 wanted)")]
    Depth(u8),
    #[error("the screen's visual is {0:?} (TrueColor wanted)")]
    Class(VisualClass),
    #[error(
        "the screen's colour masks are red {red:#x} green {green:#x} blue {blue:#x} \
         (0xff0000 0xff00 0xff wanted)"
    )]
    Masks { red: u32, green: u32, blue: u32 },
    #[error("depth {depth} images take {bits_per_pixel:?} bits per pixel (32 wanted)")]
    BitsPerPixel {
        depth: u8,
        bits_per_pixel: Option<u8>,
    },
    #[error("the server's image byte order is {server:?}, this machine's {native:?}")]
    ByteOrder {
        server: ImageOrder,
        native: ImageOrder,
    },
}

/// Whether the sink can write pixels for a visual as native-endian 0x00RRGGBB
/// words: a TrueColor visual of depth 24 or 32 with 8-bit channels at the usual
/// masks, stored in 32 bits per pixel, in this machine's byte order. `Err` says
/// what the display has instead.
fn check_visual(
    depth: u8,
    bits_per_pixel: Option<u8>,
    class: VisualClass,
    (red, green, blue): (u32, u32, u32),
    order: ImageOrder,
) -> Result<(), Unfit> {
    let native = if cfg!(target_endian = "little") {
        ImageOrder::LSB_FIRST
    } else {
        ImageOrder::MSB_FIRST
    };
    if depth != 24 && depth != 32 {
        return Err(Unfit::Depth(depth));
    }
    // DirectColor goes through a colormap that need not be the identity.
    if class != VisualClass::TRUE_COLOR {
        return Err(Unfit::Class(class));
    }
    if (red, green, blue) != (0xff0000, 0xff00, 0xff) {
        return Err(Unfit::Masks { red, green, blue });
    }
    if bits_per_pixel != Some(32) {
        return Err(Unfit::BitsPerPixel {
            depth,
            bits_per_pixel,
        });
    }
    if order != native {
        return Err(Unfit::ByteOrder {
            server: order,
            native,
        });
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

/// A request's coordinates are 16-bit: pictures and windows beyond that are cut.
pub(super) fn u16_of(v: u32) -> u16 {
    v.min(u16::MAX as u32) as u16
}

pub(super) fn i16_of(v: i32) -> i16 {
    v.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_the_picture_size_at_most_1280_wide() {
        assert_eq!(opening_size(640, 480), (640, 480));
        assert_eq!(opening_size(1280, 720), (1280, 720));
        assert_eq!(opening_size(1920, 1080), (1280, 720));
        assert_eq!(opening_size(4000, 1), (1280, 1), "at least one pixel");
        assert_eq!(opening_size(0, 0), (1, 1));
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
        let refused = |r: Result<(), Unfit>, says: &str| {
            let why = r.expect_err(says).to_string();
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
