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
//!
//! The files: `display` (the connection, the screen's checks, the window),
//! `keys`, `shm` (how pictures reach the server), `paint` (frame to picture);
//! here the registration and [`X11Sink`], which lives on the thread that opened
//! it (the viewer's calling thread, or a server's `sink-NAME`).

mod display;
mod keys;
mod paint;
mod shm;

use std::io;
use std::time::{Duration, Instant};

use serde::Deserialize;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::Event;

use super::{Flow, FrameSink, Live, SinkBackend, StreamMeta};
use crate::backend::table::BackendConfig;
use crate::backend::Availability;
use crate::error::{BackendError, SinkError};
use crate::media::frame::Frame;
use display::{connect, load_keymap, opening_size, x_error, Display, Win};
use keys::{action, Action};
use paint::{clear_bars, fit, Painter, Rect};
use shm::{put_plain, put_shm, segment, Store};

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

/// What is on screen, to draw again on Expose: the picture's size, and for
/// shared memory the segment that holds it.
#[derive(Clone, Copy, Debug)]
struct Shown {
    w: u32,
    h: u32,
    segment: usize,
}

/// The `x11` sink: one window, opened at the first stream and kept across
/// reconnections, and where its pictures go before the server takes them.
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
    /// Makes the window for the stream's first picture, titles it and shows it.
    fn open_window(&mut self, meta: &StreamMeta) -> Result<(), SinkError> {
        let size = opening_size(meta.info.frame.width, meta.info.frame.height);
        let win = self.x.create_window(size)?;
        let id = win.id;
        self.window = Some(win);
        self.x.set_title(id, meta)?;
        self.x
            .conn
            .map_window(id)
            .map_err(x_error("showing the window"))?;
        self.x.flush()
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
                self.x.wait_readable(left);
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

impl FrameSink for X11Sink {
    fn start(&mut self, meta: &StreamMeta) -> Result<(), SinkError> {
        self.codec = meta.codec.clone();
        if self.window.is_none() {
            self.store = Store::new(&mut self.x);
            self.open_window(meta)?;
        } else if let Some(win) = &self.window {
            self.x.set_title(win.id, meta)?;
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
