//! Shared input types of the ddim fuzz targets: a config and its numbers drawn from arbitrary
//! bytes, so that NaN, ±∞, huge, zero and negative values all occur.

use arbitrary::Arbitrary;
use ddim::{BetaSchedule, DdimConfig, PredictionType, TimestepSpacing};

/// The largest `num_train_timesteps` a target builds: the schedule is `T` floats, and a
/// config asking for 2³¹ of them is a (legitimate) 16 GB allocation, not a bug.
pub const MAX_T: usize = 4096;

/// A [`DdimConfig`] with every field arbitrary (`T` below [`MAX_T`]).
#[derive(Debug, Arbitrary)]
pub struct FuzzConfig {
    pub num_train_timesteps: u16,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: u8,
    /// Mostly absent; when present its length is arbitrary (usually not `T`).
    pub trained_betas: Option<Vec<f64>>,
    pub clip_sample: bool,
    pub set_alpha_to_one: bool,
    pub steps_offset: u64,
    pub prediction_type: u8,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub clip_sample_range: f64,
    pub sample_max_value: f64,
    pub timestep_spacing: u8,
    pub rescale_betas_zero_snr: bool,
    /// Start from Stable Diffusion's settings (valid numbers) instead of the arbitrary ones.
    pub sane_numbers: bool,
}

fn pick<T: Copy>(all: &[T], i: u8) -> T {
    all[usize::from(i) % all.len()]
}

impl FuzzConfig {
    /// The config these fields describe.
    pub fn to_config(&self) -> DdimConfig {
        let base = if self.sane_numbers {
            DdimConfig::stable_diffusion()
        } else {
            DdimConfig {
                beta_start: self.beta_start,
                beta_end: self.beta_end,
                trained_betas: self.trained_betas.clone(),
                dynamic_thresholding_ratio: self.dynamic_thresholding_ratio,
                clip_sample_range: self.clip_sample_range,
                sample_max_value: self.sample_max_value,
                steps_offset: usize::try_from(self.steps_offset).unwrap_or(usize::MAX),
                ..DdimConfig::default()
            }
        };
        DdimConfig {
            num_train_timesteps: usize::from(self.num_train_timesteps) % (MAX_T + 1),
            beta_schedule: pick(BetaSchedule::ALL, self.beta_schedule),
            clip_sample: self.clip_sample,
            set_alpha_to_one: self.set_alpha_to_one,
            prediction_type: pick(PredictionType::ALL, self.prediction_type),
            thresholding: self.thresholding,
            timestep_spacing: pick(TimestepSpacing::ALL, self.timestep_spacing),
            rescale_betas_zero_snr: self.rescale_betas_zero_snr,
            ..base
        }
    }
}
