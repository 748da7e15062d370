//! Every conversion against values worked out by hand from the formula, and the
//! fast paths against the reference on a photo.

use super::*;

/// Reference values computed independently with floating point from the JFIF
/// equations (ITU-T T.871).
fn reference_yuv(r: f64, g: f64, b: f64) -> (f64, f64, f64) {
    (
        0.299 * r + 0.587 * g + 0.114 * b,
        -0.168_735_891_6 * r - 0.331_264_108_4 * g + 0.5 * b + 128.0,
        0.5 * r - 0.418_687_589_2 * g - 0.081_312_410_8 * b + 128.0,
    )
}

#[test]
fn rgb_yuv_matches_reference_within_rounding() {
    for r in (0..=255).step_by(15) {
        for g in (0..=255).step_by(17) {
            for b in (0..=255).step_by(51) {
                let (y, u, v) = rgb_to_yuv(r, g, b);
                let (ry, ru, rv) = reference_yuv(r as f64, g as f64, b as f64);
                for (got, want) in [(y, ry), (u, ru), (v, rv)] {
                    let want = want.round().clamp(0.0, 255.0);
                    assert!(
                        (got as f64 - want).abs() <= 1.0,
                        "rgb {r},{g},{b}: {got} vs {want}"
                    );
                }
            }
        }
    }
    assert_eq!(rgb_to_yuv(255, 255, 255), (255, 128, 128));
    assert_eq!(rgb_to_yuv(0, 0, 0), (0, 128, 128));
    assert_eq!(rgb_to_yuv(255, 0, 0), (76, 85, 255));
}

#[test]
fn yuv_rgb_round_trip_is_close() {
    for r in (0..=255).step_by(5) {
        for g in (0..=255).step_by(7) {
            for b in [0u8, 60, 128, 200, 255] {
                let (y, u, v) = rgb_to_yuv(r, g, b);
                let (r2, g2, b2) = yuv_to_rgb(y, u, v);
                for (a, c) in [(r, r2), (g, g2), (b, b2)] {
                    assert!(
                        (a as i32 - c as i32).abs() <= 2,
                        "{r},{g},{b} -> {r2},{g2},{b2}"
                    );
                }
            }
        }
    }
}

fn two_by_two() -> Vec<u8> {
    // red, green / blue, white
    vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]
}

/// The reference's own rounding, value for value: 4:2:x chroma is the rounded mean
/// of the pixels' U and V (the fast path averages RGB first: see the bars tests).
#[test]
fn reference_from_rgb_every_format() {
    let src = two_by_two();
    let mut f = Frame::empty();
    let from = reference::from_rgb24;
    from(&src, 2, 2, PixelFormat::Bgr24, &mut f);
    assert_eq!(&f.data[..6], &[0, 0, 255, 0, 255, 0]);
    from(&src, 2, 2, PixelFormat::Xrgb32, &mut f);
    assert_eq!(&f.data[..4], &[0, 0, 255, 255]);
    from(&src, 2, 2, PixelFormat::Rgba32, &mut f);
    assert_eq!(&f.data[4..8], &[0, 255, 0, 255]);
    from(&src, 2, 2, PixelFormat::Grey, &mut f);
    assert_eq!(f.data, vec![76, 150, 29, 255]);
    from(&src, 2, 2, PixelFormat::Yuyv, &mut f);
    // Row 0: red (76,85,255) and green (150,44,21): chroma averaged.
    assert_eq!(&f.data[..4], &[76, 65, 150, 138]);
    from(&src, 2, 2, PixelFormat::Uyvy, &mut f);
    assert_eq!(&f.data[..4], &[65, 76, 138, 150]);
    from(&src, 2, 2, PixelFormat::I420, &mut f);
    assert_eq!(&f.data[..4], &[76, 150, 29, 255]);
    // U = mean(85, 44, 255, 128) = 128, V = mean(255, 21, 107, 128) = 128.
    assert_eq!(&f.data[4..], &[128, 128]);
    from(&src, 2, 2, PixelFormat::Nv12, &mut f);
    assert_eq!(&f.data[4..], &[128, 128]);
}

#[test]
fn to_rgb_inverts_from_rgb() {
    let (w, h) = (16, 8);
    // Smooth content: 4:2:x subsampling loses little.
    let src: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            [(x * 12) as u8, (y * 25) as u8, 128 + (x * 3) as u8]
        })
        .collect();
    let mut f = Frame::empty();
    let mut back = Vec::new();
    for format in PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed()) {
        from_rgb24(&src, w as u32, h as u32, format, &mut f);
        assert!(to_rgb24(&f, &mut back), "{format}");
        assert_eq!(back.len(), src.len());
        let max = src
            .iter()
            .zip(&back)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        let bound = match format {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Xrgb32 | PixelFormat::Rgba32 => {
                0
            }
            PixelFormat::Grey => 255, // colour is gone; checked below
            _ => 24,
        };
        assert!(max <= bound, "{format}: max error {max}");
    }
    // Grey: every channel equals the luma.
    from_rgb24(&src, w as u32, h as u32, PixelFormat::Grey, &mut f);
    to_rgb24(&f, &mut back);
    assert!(back
        .chunks_exact(3)
        .zip(&f.data)
        .all(|(p, &g)| p == [g, g, g]));
    // Exact values for one YUYV pair: Y 76 (red) and 150 (green) share U 65, V 138.
    f.reset(FrameInfo::packed(PixelFormat::Yuyv, 2, 1).unwrap());
    f.data.copy_from_slice(&[76, 128, 150, 128]);
    to_rgb24(&f, &mut back);
    assert_eq!(back, vec![76, 76, 76, 150, 150, 150]);
}

#[test]
fn xrgb_u32_from_every_format() {
    let src = two_by_two();
    let (mut f, mut rgb, mut out) = (Frame::empty(), Vec::new(), Vec::new());
    for format in [
        PixelFormat::Rgb24,
        PixelFormat::Bgr24,
        PixelFormat::Xrgb32,
        PixelFormat::Rgba32,
    ] {
        from_rgb24(&src, 2, 2, format, &mut f);
        assert!(to_xrgb_u32(&f, &mut rgb, &mut out));
        assert_eq!(
            out,
            vec![0xFF0000, 0x00FF00, 0x0000FF, 0xFFFFFF],
            "{format}"
        );
    }
    from_rgb24(&src, 2, 2, PixelFormat::Grey, &mut f);
    to_xrgb_u32(&f, &mut rgb, &mut out);
    assert_eq!(out, vec![0x4C4C4C, 0x969696, 0x1D1D1D, 0xFFFFFF]);
}

#[test]
fn xrgb_u32_into_a_caller_sized_slice() {
    let (mut rgb, mut whole) = (Vec::new(), Vec::new());
    for format in uncompressed_formats() {
        let (w, h) = bar_sizes(format)[0];
        let f = bars_frame(format, w, h, 2);
        assert!(to_xrgb_u32(&f, &mut rgb, &mut whole), "{format}");
        // Stale contents are overwritten, every word.
        let mut into = vec![0xDEAD_BEEF; (w * h) as usize];
        assert!(to_xrgb_u32_into(&f, &mut rgb, &mut into), "{format}");
        assert_eq!(into, whole, "{format}: same words as to_xrgb_u32");
        let mut plain = vec![0xDEAD_BEEF; (w * h) as usize];
        assert!(reference::to_xrgb_u32_into(&f, &mut rgb, &mut plain));
        assert!(
            into.iter().zip(&plain).all(|(a, b)| a
                .to_le_bytes()
                .iter()
                .zip(b.to_le_bytes())
                .all(|(x, y)| x.abs_diff(y) <= TOLERANCE)),
            "{format}: the fast path within TOLERANCE of the plain loops"
        );
        // A slice of any other length is refused and left alone.
        for len in [(w * h) as usize - 1, (w * h) as usize + 1] {
            let mut wrong = vec![7; len];
            assert!(
                !to_xrgb_u32_into(&f, &mut rgb, &mut wrong),
                "{format} {len}"
            );
            assert!(!reference::to_xrgb_u32_into(&f, &mut rgb, &mut wrong));
            assert!(wrong.iter().all(|&p| p == 7), "{format}: untouched");
        }
    }
}

#[test]
fn planar_layouts_deinterleave() {
    let mut f = Frame::empty();
    f.reset(FrameInfo::packed(PixelFormat::Yuyv, 2, 1).unwrap());
    f.data.copy_from_slice(&[10, 20, 30, 40]);
    let mut out = Vec::new();
    assert_eq!(to_planar(&f, &mut out), Some(Planar::Yuv422));
    assert_eq!(out, vec![10, 30, 20, 40]);
    f.reset(FrameInfo::packed(PixelFormat::Nv12, 2, 2).unwrap());
    f.data.copy_from_slice(&[1, 2, 3, 4, 50, 60]);
    assert_eq!(to_planar(&f, &mut out), Some(Planar::Yuv420));
    assert_eq!(out, vec![1, 2, 3, 4, 50, 60]);
    // Padded stride: only the visible bytes are written.
    f.reset(FrameInfo {
        format: PixelFormat::Grey,
        width: 2,
        height: 2,
        stride: 4,
    });
    f.data.copy_from_slice(&[1, 2, 0, 0, 3, 4, 0, 0]);
    assert_eq!(to_planar(&f, &mut out), Some(Planar::Mono));
    assert_eq!(out, vec![1, 2, 3, 4]);
    f.reset(FrameInfo::packed(PixelFormat::Rgb24, 1, 1).unwrap());
    f.data.copy_from_slice(&[255, 0, 0]);
    assert_eq!(to_planar(&f, &mut out), Some(Planar::Yuv444));
    assert_eq!(out, vec![76, 85, 255]);
}

#[test]
fn luma_reads_every_format() {
    let src = two_by_two();
    let mut f = Frame::empty();
    for format in PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed()) {
        from_rgb24(&src, 2, 2, format, &mut f);
        let white = luma_at(&f, 1, 1).unwrap();
        assert!(white >= 254, "{format}: {white}");
        assert_eq!(luma_at(&f, 2, 0), None);
    }
}

// ---------------------------------------------------------------------------
// Colour bars laid out by hand in every format, against values from the formula.

/// A colour and its full-range BT.601 Y, U, V worked out from the float formula
/// (Y = 0.299R + 0.587G + 0.114B, U = 128 - 0.168736R - 0.331264G + 0.5B,
/// V = 128 + 0.5R - 0.418688G - 0.081312B), rounded half up, clamped to 0-255.
struct Bar {
    name: &'static str,
    rgb: [u8; 3],
    yuv: [u8; 3],
}

const fn bar(name: &'static str, rgb: [u8; 3], yuv: [u8; 3]) -> Bar {
    Bar { name, rgb, yuv }
}

/// The eight SMPTE bars (75%), full white, mid grey, and full red and blue, whose
/// V and U land past 255 (exact values in the comments).
const BARS: [Bar; 12] = [
    bar("75% white", [191, 191, 191], [191, 128, 128]), // 191.000 128.000 128.000
    bar("75% yellow", [191, 191, 0], [169, 33, 144]),   // 169.226  32.500 143.531
    bar("75% cyan", [0, 191, 191], [134, 160, 33]),     // 133.891 160.229  32.500
    bar("75% green", [0, 191, 0], [112, 65, 48]),       // 112.117  64.729  48.031
    bar("75% magenta", [191, 0, 191], [79, 191, 208]),  //  78.883 191.271 207.969
    bar("75% red", [191, 0, 0], [57, 96, 224]),         //  57.109  95.771 223.500
    bar("75% blue", [0, 0, 191], [22, 224, 112]),       //  21.774 223.500 112.469
    bar("black", [0, 0, 0], [0, 128, 128]),             //   0.000 128.000 128.000
    bar("white", [255, 255, 255], [255, 128, 128]),     // 255.000 128.000 128.000
    bar("grey", [128, 128, 128], [128, 128, 128]),      // 128.000 128.000 128.000
    bar("red", [255, 0, 0], [76, 85, 255]),             //  76.245  84.972 255.500
    bar("blue", [0, 0, 255], [29, 255, 107]),           //  29.070 255.500 107.265
];

/// RGB → YUV against the literals: 1 level (halves round either way; the fast
/// path's 13-bit fixed point).
const ENCODE_TOLERANCE: i32 = 1;
/// YUV literals → RGB against the colour they came from: the literals' rounding
/// (up to 1 level after the inverse matrix) plus the fast path's precision.
const DECODE_TOLERANCE: i32 = 2;

#[test]
fn bar_literals_match_the_formula() {
    for b in &BARS {
        let [r, g, bl] = b.rgb.map(f64::from);
        let (y, u, v) = reference_yuv(r, g, bl);
        for (lit, exact) in b.yuv.iter().zip([y, u, v]) {
            let exact = exact.clamp(0.0, 255.0);
            assert!(
                (*lit as f64 - exact).abs() <= 0.5 + 1e-9,
                "{}: literal {lit} vs {exact:.3}",
                b.name
            );
        }
    }
}

/// The bar covering pixel (x, y): 2x2 blocks of one colour, so 4:2:x chroma is
/// exactly the colour's.
fn bar_at(x: usize, y: usize, width: usize) -> &'static Bar {
    &BARS[(x / 2 + (y / 2) * width.div_ceil(2)) % BARS.len()]
}

/// Junk in the padding of every row: a conversion that reads it shows.
const PAD: u8 = 0xEE;

/// The bars picture laid out in `format` byte by byte, each row followed by `pad`
/// bytes of junk (I420 chroma rows: `pad / 2`). Xrgb32's X byte is junk too.
fn bars_frame(format: PixelFormat, width: u32, height: u32, pad: u32) -> Frame {
    let stride = format.min_stride(width).unwrap() + pad;
    let info = FrameInfo {
        format,
        width,
        height,
        stride,
    };
    let mut f = Frame::empty();
    f.reset(info);
    assert_eq!(f.data.len(), info.byte_len(), "{format} {width}x{height}");
    f.data.fill(PAD);
    let (w, h, s) = (width as usize, height as usize, stride as usize);
    let d = &mut f.data;
    for y in 0..h {
        for x in 0..w {
            let c = bar_at(x, y, w);
            let ([r, g, b], [yy, u, v]) = (c.rgb, c.yuv);
            let row = y * s;
            let (even_x, even_y) = (x % 2 == 0, y % 2 == 0);
            match format {
                PixelFormat::Rgb24 => d[row + x * 3..][..3].copy_from_slice(&[r, g, b]),
                PixelFormat::Bgr24 => d[row + x * 3..][..3].copy_from_slice(&[b, g, r]),
                PixelFormat::Xrgb32 => d[row + x * 4..][..4].copy_from_slice(&[b, g, r, PAD]),
                PixelFormat::Rgba32 => d[row + x * 4..][..4].copy_from_slice(&[r, g, b, 255]),
                PixelFormat::Grey => d[row + x] = yy,
                PixelFormat::Yuyv => {
                    // Y0 U Y1 V
                    d[row + x * 2] = yy;
                    if even_x {
                        d[row + x * 2 + 1] = u;
                        d[row + x * 2 + 3] = v;
                    }
                }
                PixelFormat::Uyvy => {
                    // U Y0 V Y1
                    d[row + x * 2 + 1] = yy;
                    if even_x {
                        d[row + x * 2] = u;
                        d[row + x * 2 + 2] = v;
                    }
                }
                PixelFormat::Nv12 => {
                    d[row + x] = yy;
                    if even_x && even_y {
                        let c = s * h + (y / 2) * s + x;
                        d[c] = u;
                        d[c + 1] = v;
                    }
                }
                PixelFormat::I420 => {
                    d[row + x] = yy;
                    if even_x && even_y {
                        let (cs, ch) = (s / 2, h / 2);
                        d[s * h + (y / 2) * cs + x / 2] = u;
                        d[s * h + cs * ch + (y / 2) * cs + x / 2] = v;
                    }
                }
                PixelFormat::Jpeg | PixelFormat::H264 => unreachable!(),
            }
        }
    }
    f
}

fn uncompressed_formats() -> impl Iterator<Item = PixelFormat> {
    PixelFormat::ALL.into_iter().filter(|f| !f.is_compressed())
}

/// Sizes to lay bars out at: odd width and height where the format allows them.
fn bar_sizes(format: PixelFormat) -> [(u32, u32); 2] {
    match format {
        PixelFormat::Nv12 | PixelFormat::I420 => [(6, 4), (10, 6)],
        PixelFormat::Yuyv | PixelFormat::Uyvy => [(6, 3), (10, 5)],
        _ => [(5, 3), (9, 5)],
    }
}

/// Every bars frame: each format, size, and padding 0 and 6 bytes a row.
fn every_bars_frame() -> Vec<Frame> {
    let mut frames = Vec::new();
    for format in uncompressed_formats() {
        for (w, h) in bar_sizes(format) {
            for pad in [0, 6] {
                frames.push(bars_frame(format, w, h, pad));
            }
        }
    }
    frames
}

/// The RGB a decoded bars pixel should have: the colour, or for grey its luma.
fn decoded_bar(format: PixelFormat, x: usize, y: usize, w: usize) -> ([u8; 3], i32) {
    let c = bar_at(x, y, w);
    match format {
        PixelFormat::Grey => ([c.yuv[0]; 3], 0),
        PixelFormat::Rgb24 | PixelFormat::Bgr24 | PixelFormat::Xrgb32 | PixelFormat::Rgba32 => {
            (c.rgb, 0)
        }
        _ => (c.rgb, DECODE_TOLERANCE),
    }
}

fn assert_near(got: &[u8], want: &[u8], tolerance: i32, what: &dyn Fn() -> String) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as i32 - *w as i32).abs() <= tolerance,
            "{}: channel {i}: got {got:?}, want {want:?} ± {tolerance}",
            what()
        );
    }
}

#[test]
fn bars_decode_to_rgb24_in_every_format() {
    let mut out = Vec::new();
    for f in every_bars_frame() {
        let info = f.info;
        assert!(to_rgb24(&f, &mut out), "{info}");
        let w = info.width as usize;
        assert_eq!(out.len(), w * info.height as usize * 3, "{info}");
        for (i, px) in out.chunks_exact(3).enumerate() {
            let (x, y) = (i % w, i / w);
            let (want, tol) = decoded_bar(info.format, x, y, w);
            let what = || {
                let name = bar_at(x, y, w).name;
                format!("{info} stride {} ({x},{y}) {name}", info.stride)
            };
            assert_near(px, &want, tol, &what);
        }
    }
}

#[test]
fn bars_decode_to_xrgb_u32_in_every_format() {
    let (mut rgb, mut out) = (Vec::new(), Vec::new());
    for f in every_bars_frame() {
        let info = f.info;
        assert!(to_xrgb_u32(&f, &mut rgb, &mut out), "{info}");
        let w = info.width as usize;
        assert_eq!(out.len(), w * info.height as usize, "{info}");
        for (i, &px) in out.iter().enumerate() {
            let (x, y) = (i % w, i / w);
            let (want, tol) = decoded_bar(info.format, x, y, w);
            let what = || {
                let name = bar_at(x, y, w).name;
                format!("{info} stride {} ({x},{y}) {name}: {px:#010x}", info.stride)
            };
            assert_eq!(px >> 24, 0, "{}: top byte must be 0", what());
            let got = [(px >> 16) as u8, (px >> 8) as u8, px as u8];
            assert_near(&got, &want, tol, &what);
        }
    }
}

#[test]
fn bars_encode_from_rgb24_in_every_format() {
    let mut f = Frame::empty();
    for format in uncompressed_formats() {
        for (width, height) in bar_sizes(format) {
            let (w, h) = (width as usize, height as usize);
            let src: Vec<u8> = (0..w * h)
                .flat_map(|i| bar_at(i % w, i / w, w).rgb)
                .collect();
            from_rgb24(&src, width, height, format, &mut f);
            assert_eq!(
                f.info,
                FrameInfo::packed(format, width, height).unwrap(),
                "{format}"
            );
            // Read every sample back from where the format puts it.
            let d = &f.data;
            for y in 0..h {
                for x in 0..w {
                    let c = bar_at(x, y, w);
                    let ([r, g, b], [yy, u, v]) = (c.rgb, c.yuv);
                    let what = || format!("{format} {w}x{h} ({x},{y}) {}", c.name);
                    let (got, want, tol): (Vec<u8>, Vec<u8>, i32) = match format {
                        PixelFormat::Rgb24 => (d[(y * w + x) * 3..][..3].into(), vec![r, g, b], 0),
                        PixelFormat::Bgr24 => (d[(y * w + x) * 3..][..3].into(), vec![b, g, r], 0),
                        PixelFormat::Xrgb32 => {
                            (d[(y * w + x) * 4..][..4].into(), vec![b, g, r, 255], 0)
                        }
                        PixelFormat::Rgba32 => {
                            (d[(y * w + x) * 4..][..4].into(), vec![r, g, b, 255], 0)
                        }
                        PixelFormat::Grey => (vec![d[y * w + x]], vec![yy], ENCODE_TOLERANCE),
                        PixelFormat::Yuyv | PixelFormat::Uyvy => {
                            let pair = (y * w + x / 2 * 2) * 2;
                            let (yo, uo, vo) = match (format, x % 2) {
                                (PixelFormat::Yuyv, 0) => (0, 1, 3),
                                (PixelFormat::Yuyv, _) => (2, 1, 3),
                                (_, 0) => (1, 0, 2),
                                (_, _) => (3, 0, 2),
                            };
                            let got = vec![d[pair + yo], d[pair + uo], d[pair + vo]];
                            (got, vec![yy, u, v], ENCODE_TOLERANCE)
                        }
                        PixelFormat::Nv12 => {
                            let c = w * h + (y / 2) * w + x / 2 * 2;
                            let got = vec![d[y * w + x], d[c], d[c + 1]];
                            (got, vec![yy, u, v], ENCODE_TOLERANCE)
                        }
                        PixelFormat::I420 => {
                            let (cw, ch) = (w / 2, h / 2);
                            let c = w * h + (y / 2) * cw + x / 2;
                            let got = vec![d[y * w + x], d[c], d[c + cw * ch]];
                            (got, vec![yy, u, v], ENCODE_TOLERANCE)
                        }
                        PixelFormat::Jpeg | PixelFormat::H264 => unreachable!(),
                    };
                    assert_near(&got, &want, tol, &what);
                }
            }
        }
    }
}

#[test]
fn bars_to_planar_in_every_format() {
    let mut out = Vec::new();
    for f in every_bars_frame() {
        let info = f.info;
        let (w, h) = (info.width as usize, info.height as usize);
        let layout = to_planar(&f, &mut out).unwrap_or_else(|| panic!("{info}"));
        assert_eq!(Some(layout), Planar::for_format(info.format), "{info}");
        // Expected planes from the literals; chroma per 2x2 (4:2:0) or 2x1 block.
        let (cw, ch) = match layout {
            Planar::Yuv444 => (w, h),
            Planar::Yuv422 => (w / 2, h),
            Planar::Yuv420 => (w / 2, h / 2),
            Planar::Mono => (0, 0),
        };
        let (sx, sy) = (w / cw.max(1), h / ch.max(1));
        let mut want: Vec<u8> = (0..w * h).map(|i| bar_at(i % w, i / w, w).yuv[0]).collect();
        for plane in 1..3 {
            want.extend((0..cw * ch).map(|i| bar_at(i % cw * sx, i / cw * sy, w).yuv[plane]));
        }
        let tol = if layout == Planar::Yuv444 {
            ENCODE_TOLERANCE
        } else {
            0 // copies
        };
        assert_eq!(out.len(), want.len(), "{info} stride {}", info.stride);
        for (i, (got, want)) in out.iter().zip(&want).enumerate() {
            assert!(
                (*got as i32 - *want as i32).abs() <= tol,
                "{info} stride {}: byte {i} of the planes: {got} vs {want} ± {tol}",
                info.stride
            );
        }
    }
}

#[test]
fn bars_luma_in_every_format() {
    for f in every_bars_frame() {
        let info = f.info;
        let w = info.width as usize;
        for y in 0..info.height {
            for x in 0..info.width {
                let want = bar_at(x as usize, y as usize, w).yuv[0] as i32;
                let got = luma_at(&f, x, y).unwrap() as i32;
                assert!(
                    (got - want).abs() <= ENCODE_TOLERANCE,
                    "{info} ({x},{y}): {got} vs {want}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The fast paths against the reference on a photo.

/// `data/photos/coffee.png` (600x400) as RGB24, cropped to `width` columns.
fn photo(width: u32) -> (Vec<u8>, u32, u32) {
    let png = include_bytes!("../../../data/photos/coffee.png");
    let img = crate::sources::synthetic_camera::decode_png(png).unwrap();
    let (w, cw) = (img.width as usize, width as usize);
    let rgb = img
        .data
        .chunks_exact(w * 3)
        .flat_map(|row| &row[..cw * 3])
        .copied()
        .collect();
    (rgb, width, img.height)
}

/// `frame` re-laid with `pad` bytes of junk after every row (and `pad / 2` after
/// every I420 chroma row).
fn padded(frame: &Frame, pad: u32) -> Frame {
    let info = frame.info;
    let stride = info.stride + pad;
    let mut out = Frame::empty();
    out.reset(FrameInfo { stride, ..info });
    out.data.fill(PAD);
    let (s0, s1, h) = (info.stride as usize, stride as usize, info.height as usize);
    let mut copy = |src: usize, dst: usize, rows: usize, w0: usize, w1: usize| {
        for r in 0..rows {
            out.data[dst + r * w1..][..w0].copy_from_slice(&frame.data[src + r * w0..][..w0]);
        }
    };
    copy(0, 0, h, s0, s1);
    match info.format {
        PixelFormat::Nv12 => copy(s0 * h, s1 * h, h / 2, s0, s1),
        PixelFormat::I420 => {
            copy(s0 * h, s1 * h, h, s0 / 2, s1 / 2); // U then V: h/2 rows each
        }
        _ => {}
    }
    out
}

fn max_diff(a: &[u8], b: &[u8]) -> i32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as i32 - *y as i32).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn fast_paths_match_the_reference_on_a_photo() {
    let tol = TOLERANCE as i32;
    let (mut fast, mut plain) = (Frame::empty(), Frame::empty());
    let (mut a, mut b, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    let (mut a32, mut b32) = (Vec::new(), Vec::new());
    for format in uncompressed_formats() {
        // Odd width where the format allows it.
        let width = if FrameInfo::packed(format, 599, 400).is_ok() {
            599
        } else {
            600
        };
        let (rgb, w, h) = photo(width);

        from_rgb24(&rgb, w, h, format, &mut fast);
        reference::from_rgb24(&rgb, w, h, format, &mut plain);
        let d = max_diff(&fast.data, &plain.data);
        eprintln!("{format} {w}x{h}: from_rgb24 max diff {d}");
        assert!(d <= tol, "{format}: from_rgb24 differs by {d}");

        // The decoders get the reference's frame, packed and padded.
        for pad in [0, 10] {
            let src = padded(&plain, pad);
            let what = format!("{format} {w}x{h} stride {}", src.info.stride);

            assert!(to_rgb24(&src, &mut a) && reference::to_rgb24(&src, &mut b));
            let d = max_diff(&a, &b);
            eprintln!("{what}: to_rgb24 max diff {d}");
            assert!(d <= tol, "{what}: to_rgb24 differs by {d}");

            assert!(to_xrgb_u32(&src, &mut scratch, &mut a32));
            assert!(reference::to_xrgb_u32(&src, &mut scratch, &mut b32));
            let d = max_diff(bytemuck::cast_slice(&a32), bytemuck::cast_slice(&b32));
            eprintln!("{what}: to_xrgb_u32 max diff {d}");
            assert!(d <= tol, "{what}: to_xrgb_u32 differs by {d}");
            assert!(a32.iter().all(|p| p >> 24 == 0), "{what}: top byte set");

            let layout = to_planar(&src, &mut a);
            assert_eq!(layout, reference::to_planar(&src, &mut b), "{what}");
            let d = max_diff(&a, &b);
            eprintln!("{what}: to_planar max diff {d}");
            assert!(d <= tol, "{what}: to_planar differs by {d}");
        }
    }
}

/// SIMD libraries handle a row in blocks of 8 to 64 pixels and the rest apart:
/// every width up to 130, in every format and direction, against the reference.
#[test]
fn every_width_matches_the_reference() {
    let tol = TOLERANCE as i32;
    let (mut fast, mut plain) = (Frame::empty(), Frame::empty());
    let (mut a, mut b, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    let (mut a32, mut b32) = (Vec::new(), Vec::new());
    let mut failures = Vec::new();
    for format in uncompressed_formats() {
        for w in 1..=130u32 {
            let h = 4;
            if FrameInfo::packed(format, w, h).is_err() {
                continue;
            }
            let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 97 % 256) as u8).collect();
            from_rgb24(&rgb, w, h, format, &mut fast);
            reference::from_rgb24(&rgb, w, h, format, &mut plain);
            let mut check = |what: &str, d: i32| {
                if d > tol {
                    failures.push(format!("{format} width {w}: {what} differs by {d}"));
                }
            };
            check("from_rgb24", max_diff(&fast.data, &plain.data));
            for pad in [0, 2] {
                let src = padded(&plain, pad);
                to_rgb24(&src, &mut a);
                reference::to_rgb24(&src, &mut b);
                check("to_rgb24", max_diff(&a, &b));
                to_xrgb_u32(&src, &mut scratch, &mut a32);
                reference::to_xrgb_u32(&src, &mut scratch, &mut b32);
                check(
                    "to_xrgb_u32",
                    max_diff(bytemuck::cast_slice(&a32), bytemuck::cast_slice(&b32)),
                );
                to_planar(&src, &mut a);
                reference::to_planar(&src, &mut b);
                check("to_planar", max_diff(&a, &b));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Rows too wide for the stack scratch of RGB → YUYV go to the reference.
#[test]
fn rows_too_wide_for_the_scratch_use_the_reference() {
    let (w, h) = (16386u32, 2u32);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
    let (mut fast, mut plain) = (Frame::empty(), Frame::empty());
    from_rgb24(&rgb, w, h, PixelFormat::Yuyv, &mut fast);
    reference::from_rgb24(&rgb, w, h, PixelFormat::Yuyv, &mut plain);
    assert_eq!(fast.data, plain.data);
}

// ---------------------------------------------------------------------------
// One negative test per validation rule.

#[test]
fn jpeg_frames_are_not_converted() {
    let mut f = Frame::empty();
    f.reset(FrameInfo {
        format: PixelFormat::Jpeg,
        width: 16,
        height: 16,
        stride: 0,
    });
    f.data.truncate(100);
    let (mut rgb, mut px, mut planar) = (Vec::new(), Vec::new(), vec![1, 2, 3]);
    assert!(!to_rgb24(&f, &mut rgb));
    assert!(!to_xrgb_u32(&f, &mut rgb, &mut px));
    assert_eq!(to_planar(&f, &mut planar), None);
    assert!(planar.is_empty(), "to_planar clears its output");
    assert_eq!(luma_at(&f, 0, 0), None);
}

#[test]
fn short_buffers_are_refused() {
    for format in uncompressed_formats() {
        let mut f = bars_frame(format, bar_sizes(format)[0].0, bar_sizes(format)[0].1, 2);
        f.data.pop();
        let (mut rgb, mut px, mut planar) = (Vec::new(), Vec::new(), Vec::new());
        assert!(!to_rgb24(&f, &mut rgb), "{format}");
        assert!(!to_xrgb_u32(&f, &mut rgb, &mut px), "{format}");
        assert_eq!(to_planar(&f, &mut planar), None, "{format}");
    }
}

#[test]
fn invalid_geometry_is_refused() {
    // YUYV needs an even width; the buffer is long enough for any reading of it.
    let mut f = Frame::empty();
    f.info = FrameInfo {
        format: PixelFormat::Yuyv,
        width: 5,
        height: 2,
        stride: 10,
    };
    f.data = vec![128; 64];
    let (mut rgb, mut px, mut planar) = (Vec::new(), Vec::new(), Vec::new());
    assert!(!to_rgb24(&f, &mut rgb));
    assert!(!to_xrgb_u32(&f, &mut rgb, &mut px));
    assert_eq!(to_planar(&f, &mut planar), None);
}

#[test]
fn luma_outside_the_frame_is_none() {
    let f = bars_frame(PixelFormat::Nv12, 6, 4, 0);
    assert_eq!(luma_at(&f, 6, 0), None);
    assert_eq!(luma_at(&f, 0, 4), None);
    assert!(luma_at(&f, 5, 3).is_some());
}

#[test]
#[should_panic(expected = "JPEG is encoded by a codec")]
fn jpeg_is_not_a_conversion_target() {
    from_rgb24(&[0; 12], 2, 2, PixelFormat::Jpeg, &mut Frame::empty());
}

/// `to_i420` against independent paths: the frame's own planes (I420, NV12,
/// grey), `to_planar`'s 4:2:2 planes with each pair of chroma rows averaged
/// (YUYV, UYVY), and the reference RGB → I420 (the RGB formats), padded rows
/// and not.
#[test]
fn to_i420_matches_the_planes_it_comes_from() {
    for format in uncompressed_formats() {
        for pad in [0, 6] {
            let f = bars_frame(format, 10, 6, pad);
            let (mut rgb, mut out) = (Vec::new(), Vec::new());
            assert!(to_i420(&f, &mut rgb, &mut out), "{format}");
            let (w, h) = (10usize, 6usize);
            assert_eq!(out.len(), w * h * 3 / 2, "{format}");
            let (mut planar, mut want) = (Vec::new(), Vec::new());
            let tolerance = match format {
                PixelFormat::I420 | PixelFormat::Nv12 | PixelFormat::Grey => {
                    // Copies: the planes, tightly packed.
                    to_planar(&f, &mut planar).unwrap();
                    if format == PixelFormat::Grey {
                        want.extend_from_slice(&planar[..w * h]);
                        want.resize(w * h * 3 / 2, 128);
                    } else {
                        want.extend_from_slice(&planar[..w * h * 3 / 2]);
                    }
                    0
                }
                PixelFormat::Yuyv | PixelFormat::Uyvy => {
                    assert_eq!(to_planar(&f, &mut planar), Some(Planar::Yuv422));
                    want.extend_from_slice(&planar[..w * h]);
                    for plane in [&planar[w * h..w * h * 3 / 2], &planar[w * h * 3 / 2..]] {
                        for row in 0..h / 2 {
                            let (a, b) =
                                (&plane[2 * row * w / 2..], &plane[(2 * row + 1) * w / 2..]);
                            for x in 0..w / 2 {
                                want.push((a[x] as u16 + b[x] as u16).div_ceil(2) as u8);
                            }
                        }
                    }
                    0
                }
                _ => {
                    let mut reference_rgb = Vec::new();
                    assert!(reference::to_rgb24(&f, &mut reference_rgb));
                    let mut i420 = Frame::empty();
                    reference::from_rgb24(&reference_rgb, 10, 6, PixelFormat::I420, &mut i420);
                    want = i420.data;
                    TOLERANCE as i32
                }
            };
            assert_near(&out, &want, tolerance, &|| format!("{format}, pad {pad}"));
        }
    }
    // Odd sizes have no 4:2:0 layout.
    let odd = bars_frame(PixelFormat::Rgb24, 9, 5, 0);
    assert!(!to_i420(&odd, &mut Vec::new(), &mut Vec::new()));
}
