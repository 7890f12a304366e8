//! The crate's one error type.
//!
//! Every public function that can meet bad input returns [`Result`]. Messages are lower-case,
//! name the offending value and the limit it broke, and never suggest a panic happened.

use std::path::PathBuf;

/// Everything that can go wrong in `ddim`.
///
/// Variants carry the values involved, so callers can react to them without parsing text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A config value is outside what the scheduler can work with.
    #[error("invalid config: `{key}` {reason}")]
    InvalidConfig {
        /// The `scheduler_config.json` key.
        key: &'static str,
        /// What is wrong with its value, e.g. "must be at least 1, got 0".
        reason: String,
    },

    /// A `scheduler_config.json` text could not be read as a DDIM config.
    #[error("{source_name}: {reason}")]
    ConfigParse {
        /// The file the text came from, or `<string>`.
        source_name: String,
        /// What is wrong, with a line number where one is known.
        reason: String,
    },

    /// A config file or model folder could not be read.
    #[error("cannot read {path}: {reason}")]
    ConfigIo {
        /// The path that was tried.
        path: PathBuf,
        /// The operating system's message, or which files were looked for.
        reason: String,
    },

    /// `set_timesteps` was asked for a step count it cannot produce.
    #[error("invalid number of inference steps: {requested} ({reason})")]
    InvalidStepCount {
        /// The requested number of inference steps.
        requested: usize,
        /// Why it is refused.
        reason: String,
    },

    /// `step` (or a coefficient query) was called before `set_timesteps`.
    #[error("number of inference steps is not set: call set_timesteps before step")]
    TimestepsNotSet,

    /// A timestep is not an index into the training schedule `[0, num_train_timesteps)`.
    #[error("timestep {timestep} is outside [0, {num_train_timesteps})")]
    TimestepOutOfRange {
        /// The timestep given.
        timestep: i64,
        /// The number of training timesteps `T`.
        num_train_timesteps: usize,
    },

    /// A timestep is not in the inference schedule (only where the schedule is consulted).
    #[error("timestep {timestep} is not one of the {num_inference_steps} inference timesteps")]
    TimestepNotScheduled {
        /// The timestep given.
        timestep: usize,
        /// The number of inference steps set.
        num_inference_steps: usize,
    },

    /// Two buffers that must have the same length do not.
    #[error("length mismatch: `{name}` has {got} elements, expected {expected}")]
    LengthMismatch {
        /// Which argument is wrong.
        name: &'static str,
        /// The length required.
        expected: usize,
        /// The length given.
        got: usize,
    },

    /// The batch size does not split the buffer into equal samples.
    #[error("batch size {batch_size} does not divide the {len} elements of the sample")]
    BatchSizeMismatch {
        /// The batch size given.
        batch_size: usize,
        /// The number of elements in the buffer.
        len: usize,
    },

    /// A step option is out of range.
    #[error("invalid step option: `{name}` {reason}")]
    InvalidStepOption {
        /// The option's name.
        name: &'static str,
        /// Why it is refused.
        reason: String,
    },

    /// Both explicit `variance_noise` and a random generator were given for one step.
    #[error("cannot use both a random generator and variance_noise: give one or the other")]
    NoiseAndGenerator,

    /// `eta > 0` needs noise, but neither `variance_noise` nor a generator was given.
    #[error("eta = {eta} > 0 needs noise: pass variance_noise or use step_with_rng")]
    MissingNoise {
        /// The eta of the step.
        eta: f32,
    },

    /// With [`StepOptions::check_finite`](crate::StepOptions::check_finite), an input of the
    /// step holds NaN or ±∞ (the first one is named).
    #[error("non-finite input: `{buffer}`[{index}] is {value} at timestep {timestep}")]
    NonFinite {
        /// Which buffer: `model_output`, `sample` or `variance_noise`.
        buffer: &'static str,
        /// The index of its first NaN or ±∞ value.
        index: usize,
        /// That value, widened to `f64`.
        value: f64,
        /// The timestep of the step.
        timestep: usize,
    },
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
