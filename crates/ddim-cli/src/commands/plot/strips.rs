//! Labelled rows of images: a round trip (originals, latents, reconstructions) or an
//! interpolation strip.

use super::images::draw_image;
use super::{font, Area};

/// Screen pixels per image pixel.
const SCALE: i32 = 4;
/// Space between images.
const GAP: i32 = 6;
const MARGIN: i32 = 16;
const HEADER: i32 = 64;
/// Height of a row's label.
const LABEL: i32 = 24;

/// What the picture shows.
pub(crate) struct ImageRows {
    /// First title line.
    pub(crate) title: String,
    /// Second title line.
    pub(crate) subtitle: String,
    /// Each row: its label and its images, batch-major, `width·height` values each, in about
    /// [−1, 1] (drawn as gray level (v + 1)/2).
    pub(crate) rows: Vec<(String, Vec<f32>)>,
    /// Image width in pixels.
    pub(crate) width: usize,
    /// Image height in pixels.
    pub(crate) height: usize,
}

impl ImageRows {
    fn cell(&self) -> (i32, i32) {
        (
            self.width as i32 * SCALE + GAP,
            self.height as i32 * SCALE + GAP,
        )
    }

    fn columns(&self) -> usize {
        let pixels = (self.width * self.height).max(1);
        self.rows
            .iter()
            .map(|(_, images)| images.len() / pixels)
            .max()
            .unwrap_or(0)
    }

    /// The picture size that fits the rows and the titles (at least 640 pixels wide, for the
    /// title).
    pub(crate) fn size(&self) -> (u32, u32) {
        let (cw, ch) = self.cell();
        let width = (2 * MARGIN + self.columns() as i32 * cw).max(640);
        let height = HEADER + self.rows.len() as i32 * (LABEL + ch) + MARGIN;
        (width as u32, height as u32)
    }
}

/// Draws the titles, then each row under its label.
pub(crate) fn draw(area: &Area<'_>, picture: &ImageRows) -> anyhow::Result<()> {
    area.draw_text(&picture.title, &font(20.0), (MARGIN, 8))?;
    area.draw_text(&picture.subtitle, &font(14.0), (MARGIN, 38))?;
    let pixels = picture.width * picture.height;
    let (cw, ch) = picture.cell();
    for (r, (label, images)) in picture.rows.iter().enumerate() {
        let top = HEADER + r as i32 * (LABEL + ch);
        area.draw_text(label, &font(14.0), (MARGIN, top + 2))?;
        for (c, image) in images.chunks_exact(pixels).enumerate() {
            draw_image(
                area,
                image,
                picture.width,
                (MARGIN + c as i32 * cw, top + LABEL),
            )?;
        }
    }
    Ok(())
}
