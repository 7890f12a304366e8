//! The built-in data sets: 2-D point clouds and small grayscale images.
//!
//! Every set lies inside [−1, 1] with a margin of at least four component standard deviations,
//! so diffusers' default `clip_sample` (x̂₀ clamped to ±1) almost never touches an exact
//! sample.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::mixture::GaussianMixture;

/// The hand-drawn digit bitmaps (see the file for its format).
const GLYPHS_TXT: &str = include_str!("../data/glyphs.txt");

/// Side of a glyph, in pixels.
pub const GLYPH_SIZE: usize = 16;

/// A built-in data set.
///
/// | set | d | K | components |
/// |---|---|---|---|
/// | `ring` | 2 | 8 | μ_k = 0.75·(cos 2πk/8, sin 2πk/8), s = 0.05, equal weights |
/// | `grid` | 2 | 25 | μ on {−0.8, −0.4, 0, 0.4, 0.8}², s = 0.04, equal weights |
/// | `spiral` | 2 | 72 | μ_k equally spaced in arc length on r = 0.15 + 0.65u, θ = 3πu; s = 0.03 |
/// | `glyphs` | 256 | 10 | 16×16 digits, background −0.75, ink +0.75, s = 0.06 per pixel |
/// | `bright` | 256 | 10 | the digits as dark ink (0.0) on a bright background (0.8), s = 0.05 |
///
/// ```
/// let ring = ddim_exact::Dataset::Ring.mixture();
/// assert_eq!((ring.dim(), ring.num_components()), (2, 8));
/// assert_eq!("bright".parse::<ddim_exact::Dataset>()?, ddim_exact::Dataset::Bright);
/// # Ok::<(), ddim_exact::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum Dataset {
    /// Eight Gaussians on a circle.
    Ring,
    /// A 5×5 grid of Gaussians.
    Grid,
    /// A spiral drawn by many small overlapping Gaussians.
    Spiral,
    /// 16×16 digit images, light ink on a dark background, values around ±0.75.
    Glyphs,
    /// 16×16 digit images, dark ink on a bright background: the data mean is far from zero.
    Bright,
}

/// How one sample of a data set is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A point (x, y) in the plane.
    Points2d,
    /// A grayscale image, row-major, values in about [−1, 1].
    Image {
        /// Pixels per row.
        width: usize,
        /// Rows.
        height: usize,
    },
}

impl Dataset {
    /// Every data set, in documentation order.
    pub const ALL: &'static [Dataset] = &[
        Dataset::Ring,
        Dataset::Grid,
        Dataset::Spiral,
        Dataset::Glyphs,
        Dataset::Bright,
    ];

    /// The name used on command lines.
    pub const fn name(self) -> &'static str {
        match self {
            Dataset::Ring => "ring",
            Dataset::Grid => "grid",
            Dataset::Spiral => "spiral",
            Dataset::Glyphs => "glyphs",
            Dataset::Bright => "bright",
        }
    }

    /// How a sample is laid out.
    pub const fn layout(self) -> Layout {
        match self {
            Dataset::Ring | Dataset::Grid | Dataset::Spiral => Layout::Points2d,
            Dataset::Glyphs | Dataset::Bright => Layout::Image {
                width: GLYPH_SIZE,
                height: GLYPH_SIZE,
            },
        }
    }

    /// The mixture of this data set (see the table in the type's docs).
    pub fn mixture(self) -> GaussianMixture {
        let (dim, means, std) = match self {
            Dataset::Ring => (2, ring_means(), 0.05),
            Dataset::Grid => (2, grid_means(), 0.04),
            Dataset::Spiral => (2, spiral_means(72), 0.03),
            Dataset::Glyphs => (GLYPH_SIZE * GLYPH_SIZE, glyph_means(-0.75, 0.75), 0.06),
            Dataset::Bright => (GLYPH_SIZE * GLYPH_SIZE, glyph_means(0.8, 0.0), 0.05),
        };
        let k = means.len() / dim;
        // The parameters are constants checked by this module's tests.
        GaussianMixture::new(dim, vec![1.0; k], means, vec![std; k])
            .expect("built-in data sets are valid mixtures")
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Dataset::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s)
            .ok_or_else(|| Error::InvalidMixture {
                reason: format!(
                    "unknown data set {s:?}, expected one of {}",
                    Dataset::ALL
                        .iter()
                        .map(|d| d.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

fn ring_means() -> Vec<f64> {
    (0..8)
        .flat_map(|k| {
            let angle = std::f64::consts::TAU * f64::from(k) / 8.0;
            [0.75 * angle.cos(), 0.75 * angle.sin()]
        })
        .collect()
}

fn grid_means() -> Vec<f64> {
    let ticks = [-0.8, -0.4, 0.0, 0.4, 0.8];
    ticks
        .iter()
        .flat_map(|&y| ticks.iter().flat_map(move |&x| [x, y]))
        .collect()
}

/// `n` points equally spaced in arc length along r = r₀ + c·u, θ = 3π·u, u ∈ [0, 1].
///
/// The arc length is s(u) = ∫ r dθ = 3π·(r₀·u + c·u²/2) (the radial part is neglected: it
/// is small next to r·dθ after the first half turn), inverted in closed form.
fn spiral_means(n: usize) -> Vec<f64> {
    let (r0, c, turns) = (0.15, 0.65, 3.0 * std::f64::consts::PI);
    let total = turns * (r0 + c / 2.0);
    (0..n)
        .flat_map(|i| {
            let s = total * i as f64 / (n - 1) as f64;
            let u = (-r0 + (r0 * r0 + 2.0 * c * s / turns).sqrt()) / c;
            let (r, theta) = (r0 + c * u, turns * u);
            [r * theta.cos(), r * theta.sin()]
        })
        .collect()
}

/// The ten glyphs as image means: `background` where the bitmap has '.', `ink` where '#'.
fn glyph_means(background: f64, ink: f64) -> Vec<f64> {
    parse_glyphs(GLYPHS_TXT)
        .expect("the embedded glyph file is well formed (checked by tests)")
        .into_iter()
        .flat_map(|(_, pixels)| {
            pixels
                .into_iter()
                .map(move |on| if on { ink } else { background })
        })
        .collect()
}

/// Parses the glyph file: comment lines start with ';', a glyph starts with "= NAME" and is
/// followed by 16 rows of 16 characters, '#' (ink) or '.' (background).
fn parse_glyphs(text: &str) -> Result<Vec<(String, Vec<bool>)>, String> {
    let mut glyphs: Vec<(String, Vec<bool>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix("= ") {
            glyphs.push((name.to_string(), Vec::new()));
            continue;
        }
        let (_, pixels) = glyphs
            .last_mut()
            .ok_or(format!("line {}: pixels before the first glyph", n + 1))?;
        if line.len() != GLYPH_SIZE {
            return Err(format!(
                "line {}: {} pixels, expected 16",
                n + 1,
                line.len()
            ));
        }
        for ch in line.chars() {
            match ch {
                '#' => pixels.push(true),
                '.' => pixels.push(false),
                other => return Err(format!("line {}: unexpected {other:?}", n + 1)),
            }
        }
    }
    match glyphs
        .iter()
        .find(|(_, p)| p.len() != GLYPH_SIZE * GLYPH_SIZE)
    {
        Some((name, p)) => Err(format!(
            "glyph {name} has {} rows, expected 16",
            p.len() / 16
        )),
        None => Ok(glyphs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_glyph_file_holds_ten_distinct_digits() {
        let glyphs = parse_glyphs(GLYPHS_TXT).unwrap();
        let names: Vec<&str> = glyphs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
        for (i, (_, a)) in glyphs.iter().enumerate() {
            let ink = a.iter().filter(|&&on| on).count();
            assert!((20..150).contains(&ink), "glyph {i}: {ink} ink pixels");
            for (_, b) in &glyphs[i + 1..] {
                // Distinct by a clear margin, so the mixture's modes are well separated.
                let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
                assert!(differ >= 10, "glyph {i} differs by {differ} pixels only");
            }
        }
    }

    #[test]
    fn the_glyph_parser_rejects_malformed_files() {
        assert!(parse_glyphs("................").is_err());
        assert!(parse_glyphs("= 0\n.......").is_err());
        assert!(parse_glyphs("= 0\n...............x").is_err());
        assert!(parse_glyphs("= 0\n................").is_err());
    }

    #[test]
    fn every_data_set_fits_the_clip_range_with_a_margin() {
        for &d in Dataset::ALL {
            let g = d.mixture();
            let s_max = g.stds().iter().copied().fold(0.0, f64::max);
            let m_max = g.means().iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(
                m_max + 4.0 * s_max <= 1.0 + 1e-12,
                "{d}: {m_max} + 4·{s_max}"
            );
            assert_eq!(d.name().parse::<Dataset>().unwrap(), d);
            let expected_dim = match d.layout() {
                Layout::Points2d => 2,
                Layout::Image { width, height } => width * height,
            };
            assert_eq!(g.dim(), expected_dim);
        }
    }

    #[test]
    fn the_spiral_components_are_evenly_spaced() {
        let g = Dataset::Spiral.mixture();
        let gaps: Vec<f64> = (1..g.num_components())
            .map(|k| {
                let (a, b) = (g.mean(k - 1), g.mean(k));
                ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
            })
            .collect();
        let (lo, hi) = gaps
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
        // Overlapping enough to read as a curve (gap ≲ 2.5 s), and roughly even.
        assert!(hi < 2.5 * 0.03 && lo > 0.5 * hi, "gaps from {lo} to {hi}");
    }

    #[test]
    fn bright_images_have_a_mean_far_from_zero() {
        let mean = Dataset::Bright.mixture().data_mean();
        let average = mean.iter().sum::<f64>() / mean.len() as f64;
        assert!(average > 0.6, "{average}");
    }
}
