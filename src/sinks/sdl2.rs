//! `sdl2`: a window through SDL2 (feature `sdl2`, needs libsdl2-dev). The picture
//! scales to the window with its aspect ratio kept (SDL's logical size, on the GPU
//! when there is one); `f` toggles full screen, `h` the overlay, `q` or Esc quits;
//! closing the window ends the viewer normally.

use sdl2::event::{Event, WindowEvent};
use sdl2::keyboard::Keycode;
use sdl2::pixels::PixelFormatEnum;
use sdl2::render::{Texture, WindowCanvas};
use sdl2::video::FullscreenType;

use super::window::display_probe;
use super::{overlay, Flow, FrameSink, Live, SinkBackend, StreamMeta};
use crate::backend::table::BackendConfig;
use crate::error::{BackendError, SinkError};
use crate::media::convert;
use crate::media::frame::Frame;

inventory::submit! {
    SinkBackend {
        name: "sdl2",
        summary: "a window through SDL2: aspect kept, f full screen, h overlay",
        probe: display_probe,
        open: |_: &BackendConfig| -> Result<Box<dyn FrameSink>, BackendError> { open() },
    }
}

fn open() -> Result<Box<dyn FrameSink>, BackendError> {
    super::window::require_display("sdl2")?;
    let invalid = |why: String| BackendError::Invalid {
        what: "SDL".into(),
        why,
    };
    let sdl = sdl2::init().map_err(invalid)?;
    let video = sdl.video().map_err(invalid)?;
    let events = sdl.event_pump().map_err(invalid)?;
    sdl2::hint::set("SDL_RENDER_SCALE_QUALITY", "linear");
    Ok(Box::new(Sdl2Sink {
        _sdl: sdl,
        video,
        events,
        canvas: None,
        texture: None,
        size: (0, 0),
        codec: String::new(),
        overlay: false,
        pixels: Vec::new(),
        rgb: Vec::new(),
    }))
}

pub struct Sdl2Sink {
    _sdl: sdl2::Sdl,
    video: sdl2::VideoSubsystem,
    events: sdl2::EventPump,
    canvas: Option<WindowCanvas>,
    /// Streaming texture of the picture's size (destroyed before a new one).
    texture: Option<Texture>,
    size: (u32, u32),
    codec: String,
    overlay: bool,
    pixels: Vec<u32>,
    rgb: Vec<u8>,
}

fn sdl_error(what: &str, why: impl std::fmt::Display) -> SinkError {
    SinkError::Io {
        what: format!("SDL: {what}"),
        source: std::io::Error::other(why.to_string()),
    }
}

impl Sdl2Sink {
    /// Handles every pending event; `Stop` when the user is done.
    fn events(&mut self) -> Result<Flow, SinkError> {
        let mut redraw = false;
        for event in self.events.poll_iter() {
            match event {
                Event::Quit { .. }
                | Event::Window {
                    win_event: WindowEvent::Close,
                    ..
                } => return Ok(Flow::Stop),
                Event::KeyDown {
                    keycode: Some(Keycode::Q | Keycode::Escape),
                    ..
                } => return Ok(Flow::Stop),
                Event::KeyDown {
                    keycode: Some(Keycode::H),
                    repeat: false,
                    ..
                } => self.overlay = !self.overlay,
                Event::KeyDown {
                    keycode: Some(Keycode::F),
                    repeat: false,
                    ..
                } => {
                    if let Some(canvas) = &mut self.canvas {
                        let window = canvas.window_mut();
                        let next = match window.fullscreen_state() {
                            FullscreenType::Off => FullscreenType::Desktop,
                            _ => FullscreenType::Off,
                        };
                        window
                            .set_fullscreen(next)
                            .map_err(|e| sdl_error("full screen", e))?;
                        redraw = true;
                    }
                }
                Event::Window {
                    win_event: WindowEvent::SizeChanged(..) | WindowEvent::Exposed,
                    ..
                } => redraw = true,
                _ => {}
            }
        }
        if redraw {
            self.draw()?;
        }
        Ok(Flow::Continue)
    }

    /// Draws the current texture, letterboxed, and shows it.
    fn draw(&mut self) -> Result<(), SinkError> {
        let (Some(canvas), Some(texture)) = (&mut self.canvas, &self.texture) else {
            return Ok(());
        };
        canvas.clear();
        canvas
            .copy(texture, None, None)
            .map_err(|e| sdl_error("draw", e))?;
        canvas.present();
        Ok(())
    }
}

impl FrameSink for Sdl2Sink {
    fn start(&mut self, meta: &StreamMeta) -> Result<(), SinkError> {
        let (w, h) = (meta.info.frame.width, meta.info.frame.height);
        self.codec = meta.codec.clone();
        if self.canvas.is_none() {
            // Open at the picture's size, at most 1280 wide.
            let scale = (1280.0 / w as f64).min(1.0);
            let title = format!("{} — {}", meta.name, meta.address);
            let (ww, wh) = (
                ((w as f64 * scale) as u32).max(1),
                ((h as f64 * scale) as u32).max(1),
            );
            let build = |opengl: bool| {
                let mut builder = self.video.window(&title, ww, wh);
                builder.resizable().position_centered();
                if opengl {
                    builder.opengl();
                }
                builder.build()
            };
            // Made for OpenGL from the start: SDL's first choice of renderer
            // on a desktop is OpenGL, and given a window made without it, SDL
            // destroys the window and makes another (seen under Xvfb: the
            // window a test had found vanished). Without an
            // OpenGL library that fails; the plain window then goes through
            // SDL's own search (OpenGL ES, then software), which makes it
            // again on the way (five windows, where OpenGL was hidden).
            let window = build(true)
                .or_else(|e| {
                    log::debug!("sdl2: no OpenGL window ({e}), a plain one");
                    build(false)
                })
                .map_err(|e| sdl_error("window", e))?;
            let canvas = window
                .into_canvas()
                .build()
                .map_err(|e| sdl_error("renderer", e))?;
            log::debug!("sdl2: the {} renderer", canvas.info().name);
            self.canvas = Some(canvas);
        }
        if self.size != (w, h) || self.texture.is_none() {
            let Some(canvas) = &mut self.canvas else {
                return Ok(());
            };
            // Letterboxing by SDL: the picture keeps its aspect in any window.
            canvas
                .set_logical_size(w, h)
                .map_err(|e| sdl_error("logical size", e))?;
            let texture = canvas
                .create_texture_streaming(PixelFormatEnum::RGB888, w, h)
                .map_err(|e| sdl_error("texture", e))?;
            if let Some(old) = self.texture.replace(texture) {
                // SAFETY: the old texture is not used after this, and its renderer
                // (the canvas) is still alive.
                unsafe { old.destroy() };
            }
            self.size = (w, h);
        }
        Ok(())
    }

    fn present(&mut self, frame: &Frame, live: &Live) -> Result<Flow, SinkError> {
        if !convert::to_xrgb_u32(frame, &mut self.rgb, &mut self.pixels) {
            return Err(SinkError::Unsupported {
                sink: "sdl2",
                what: format!("{} frames", frame.info.format),
            });
        }
        let w = frame.info.width as usize;
        if self.overlay {
            overlay::draw_live(
                &mut self.pixels,
                frame.info.width,
                frame.info.height,
                &self.codec,
                live,
            );
        }
        if let Some(texture) = &mut self.texture {
            texture
                .update(None, bytemuck::cast_slice(&self.pixels), w * 4)
                .map_err(|e| sdl_error("texture update", e))?;
        }
        self.draw()?;
        self.events()
    }

    fn idle(&mut self) -> Result<Flow, SinkError> {
        self.events()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if let Some(texture) = self.texture.take() {
            // SAFETY: as in `start`; the canvas is dropped after this.
            unsafe { texture.destroy() };
        }
        self.canvas = None;
        Ok(())
    }
}

impl Drop for Sdl2Sink {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}
