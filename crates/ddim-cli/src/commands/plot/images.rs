//! A grid of generated images, with the mixture's component means beneath for reference.

use plotters::prelude::*;

use super::{font, Area};

/// Screen pixels per image pixel.
const SCALE: i32 = 4;
/// Space between images.
const GAP: i32 = 6;
const MARGIN: i32 = 16;
const HEADER: i32 = 64;

/// What the picture shows.
pub(crate) struct ImageGrid<'a> {
    /// First title line.
    pub(crate) title: String,
    /// Second title line.
    pub(crate) subtitle: String,
    /// The samples, batch-major, `width·height` values each, in about [−1, 1].
    pub(crate) samples: &'a [f32],
    /// The component means, drawn in a row under the samples.
    pub(crate) means: Vec<f32>,
    /// Image width in pixels.
    pub(crate) width: usize,
    /// Image height in pixels.
    pub(crate) height: usize,
    /// Samples per row of the grid.
    pub(crate) columns: usize,
    /// Rows of samples.
    pub(crate) rows: usize,
}

impl ImageGrid<'_> {
    fn cell(&self) -> (i32, i32) {
        (
            self.width as i32 * SCALE + GAP,
            self.height as i32 * SCALE + GAP,
        )
    }

    fn means_count(&self) -> usize {
        self.means.len() / (self.width * self.height)
    }

    /// The picture size that fits the grid, the means row and the titles.
    pub(crate) fn size(&self) -> (u32, u32) {
        let (cw, ch) = self.cell();
        let across = self.columns.max(self.means_count()).max(6) as i32;
        let width = 2 * MARGIN + across * cw;
        let height = HEADER + (self.rows as i32 + 1) * ch + 30 + MARGIN;
        (width as u32, height as u32)
    }
}

/// Draws the grid: value v maps to gray level (v + 1)/2, clamped to [0, 1].
pub(crate) fn draw(area: &Area<'_>, grid: &ImageGrid<'_>) -> anyhow::Result<()> {
    area.draw_text(&grid.title, &font(22.0), (MARGIN, 8))?;
    area.draw_text(&grid.subtitle, &font(15.0), (MARGIN, 38))?;
    let pixels = grid.width * grid.height;
    let (cw, ch) = grid.cell();
    let shown = (grid.samples.len() / pixels).min(grid.columns * grid.rows);
    for (i, image) in grid.samples.chunks_exact(pixels).take(shown).enumerate() {
        let (r, c) = ((i / grid.columns) as i32, (i % grid.columns) as i32);
        draw_image(area, image, grid.width, (MARGIN + c * cw, HEADER + r * ch))?;
    }
    let means_top = HEADER + grid.rows as i32 * ch + 6;
    area.draw_text(
        "component means of the true mixture",
        &font(14.0),
        (MARGIN, means_top),
    )?;
    for (k, image) in grid.means.chunks_exact(pixels).enumerate() {
        draw_image(
            area,
            image,
            grid.width,
            (MARGIN + k as i32 * cw, means_top + 24),
        )?;
    }
    Ok(())
}

pub(crate) fn draw_image(
    area: &Area<'_>,
    image: &[f32],
    width: usize,
    (left, top): (i32, i32),
) -> anyhow::Result<()> {
    for (j, &v) in image.iter().enumerate() {
        let level = if v.is_finite() {
            ((v + 1.0) * 0.5).clamp(0.0, 1.0)
        } else {
            0.0
        };
        let g = (level * 255.0).round() as u8;
        let (x, y) = (
            left + (j % width) as i32 * SCALE,
            top + (j / width) as i32 * SCALE,
        );
        area.draw(&Rectangle::new(
            [(x, y), (x + SCALE, y + SCALE)],
            RGBColor(g, g, g).filled(),
        ))?;
    }
    Ok(())
}
