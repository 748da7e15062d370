//! `minifb`: a window on X11 or Wayland, loaded at run time (no build-time system
//! package). The picture scales to the window with its aspect ratio kept; `h`
//! toggles an overlay (fps, latency, bitrate, drops, size, codec); `q` or Esc
//! quits; closing the window ends the viewer normally.

use minifb::{Key, KeyRepeat, ScaleMode, Window, WindowOptions};

use super::window::display_probe;
use super::{overlay, Flow, FrameSink, Live, SinkBackend, StreamMeta};
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, SinkError};
use crate::media::convert;
use crate::media::frame::Frame;

inventory::submit! {
    SinkBackend {
        name: "minifb",
        summary: "a window (X11 or Wayland, loaded at run time)",
        probe: display_probe,
        open: |_: &BackendConfig| -> Result<Box<dyn FrameSink>, BackendError> { open() },
    }
}

fn open() -> Result<Box<dyn FrameSink>, BackendError> {
    super::window::require_display("minifb")?;
    Ok(Box::new(MinifbSink {
        window: None,
        size: (0, 0),
        codec: String::new(),
        overlay: false,
        pixels: Vec::new(),
        rgb: Vec::new(),
    }))
}

pub struct MinifbSink {
    window: Option<Window>,
    /// The size of the picture in `pixels`.
    size: (usize, usize),
    codec: String,
    overlay: bool,
    /// The picture as 0x00RRGGBB, reused frame to frame.
    pixels: Vec<u32>,
    rgb: Vec<u8>,
}

fn window_error(e: minifb::Error) -> SinkError {
    SinkError::Io {
        what: "the minifb window".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

impl MinifbSink {
    /// Handles keys and the close button, as of the last window update (call once
    /// per update: a key press is seen by one call only); `Stop` when the user is done.
    fn events(&mut self) -> Flow {
        let Some(w) = &self.window else {
            return Flow::Continue;
        };
        if !w.is_open() || w.is_key_down(Key::Escape) || w.is_key_down(Key::Q) {
            return Flow::Stop;
        }
        if w.is_key_pressed(Key::H, KeyRepeat::No) {
            self.overlay = !self.overlay;
        }
        if w.is_key_pressed(Key::F, KeyRepeat::No) {
            log::warn!("minifb cannot switch to full screen; the sdl2 sink can (--sink sdl2)");
        }
        Flow::Continue
    }
}

impl FrameSink for MinifbSink {
    fn start(&mut self, meta: &StreamMeta) -> Result<(), SinkError> {
        let (w, h) = (
            meta.info.frame.width as usize,
            meta.info.frame.height as usize,
        );
        self.codec = meta.codec.clone();
        if self.window.is_some() && self.size == (w, h) {
            return Ok(());
        }
        // Open at the picture's size, at most 1280 wide.
        let scale = (1280.0 / w as f64).min(1.0);
        let mut window = Window::new(
            &format!("{} — {}", meta.name, meta.address),
            ((w as f64 * scale) as usize).max(1),
            ((h as f64 * scale) as usize).max(1),
            WindowOptions {
                resize: true,
                scale_mode: ScaleMode::AspectRatioStretch,
                ..WindowOptions::default()
            },
        )
        .map_err(window_error)?;
        // Present as soon as a frame arrives: no rate limit inside minifb.
        window.set_target_fps(0);
        self.window = Some(window);
        self.size = (w, h);
        Ok(())
    }

    fn present(&mut self, frame: &Frame, live: &Live) -> Result<Flow, SinkError> {
        if !convert::to_xrgb_u32(frame, &mut self.rgb, &mut self.pixels) {
            return Err(SinkError::Unsupported {
                sink: "minifb",
                what: format!("{} frames", frame.info.format),
            });
        }
        let (w, h) = (frame.info.width as usize, frame.info.height as usize);
        if self.overlay {
            overlay::draw_live(
                &mut self.pixels,
                frame.info.width,
                frame.info.height,
                &self.codec,
                live,
            );
        }
        if let Some(window) = &mut self.window {
            window
                .update_with_buffer(&self.pixels, w, h)
                .map_err(window_error)?;
        }
        Ok(self.events())
    }

    fn idle(&mut self) -> Result<Flow, SinkError> {
        if let Some(window) = &mut self.window {
            window.update();
        }
        Ok(self.events())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.window = None;
        Ok(())
    }
}
