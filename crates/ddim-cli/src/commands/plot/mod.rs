//! PNG pictures: plotters draws on an in-memory RGB bitmap, `png` encodes it. Text uses the
//! embedded DejaVu Sans (see `assets/fonts/`), so nothing depends on the system's fonts, and
//! the same drawing gives the same bytes on every machine.

pub(crate) mod density;
pub(crate) mod images;
pub(crate) mod lines;
pub(crate) mod schedule;
pub(crate) mod strips;

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// DejaVu Sans (Bitstream Vera license, `assets/fonts/DejaVuSans-LICENSE.txt`).
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

/// The family name the embedded font is registered under.
pub(crate) const FONT_FAMILY: &str = "sans-serif";

/// A drawing area in pixels.
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Series colours (a colour-blind-friendly palette, Okabe & Ito 2008).
pub(crate) const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
];

/// A text style of the embedded font.
pub(crate) fn font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok()
    });
    anyhow::ensure!(ok, "the embedded font could not be loaded");
    Ok(())
}

/// Draws a `width`×`height` picture on a white background with `draw` and writes it to `path`
/// as an 8-bit RGB PNG.
pub(crate) fn write_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    register_font()?;
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    let png = encode_png(&rgb, width, height)?;
    crate::atomic::write(path, &png)
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Linear interpolation between colour stops `(t, rgb)` sorted by `t`, for `t` clamped to
/// the stops' range.
pub(crate) fn ramp(stops: &[(f64, [u8; 3])], t: f64) -> RGBColor {
    let t = t.clamp(stops[0].0, stops[stops.len() - 1].0);
    let i = stops
        .windows(2)
        .position(|w| t <= w[1].0)
        .unwrap_or(stops.len() - 2);
    let ((t0, c0), (t1, c1)) = (stops[i], stops[i + 1]);
    let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
    let mix = |a: u8, b: u8| (f64::from(a) + f * (f64::from(b) - f64::from(a))).round() as u8;
    RGBColor(mix(c0[0], c1[0]), mix(c0[1], c1[1]), mix(c0[2], c1[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_hits_its_stops_and_interpolates() {
        let stops = [(0.0, [0, 0, 0]), (1.0, [200, 100, 50])];
        assert_eq!(ramp(&stops, -1.0), RGBColor(0, 0, 0));
        assert_eq!(ramp(&stops, 0.5), RGBColor(100, 50, 25));
        assert_eq!(ramp(&stops, 2.0), RGBColor(200, 100, 50));
    }

    #[test]
    fn encoded_png_decodes_to_the_same_pixels() {
        let rgb: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
        let bytes = encode_png(&rgb, 4, 3).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (4, 3));
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
    }
}
