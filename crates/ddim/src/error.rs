//! The crate's one error type.
//!
//! Every public function that can meet bad input returns [`Result`]. Messages are lower-case,
//! name the offending value and the limit it broke, and never suggest a panic happened.

use std::path::PathBuf;

/// `x` for a one-line message: as `Display` prints it where that is short (0, and magnitudes
/// in [1e-5, 1e16)), else in scientific notation: `f64::MIN_POSITIVE` is `2.2250738585072014e-308`,
/// not 300 digits.
pub(crate) fn short_float(x: f64) -> String {
    let m = x.abs();
    if m == 0.0 || !m.is_finite() || (1e-5..1e16).contains(&m) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// `text` for a one-line message: control characters (a line break in a model id given on a
/// command line) escaped as Rust writes them (`\n`).
pub(crate) fn one_line(text: &str) -> String {
    if text.contains(char::is_control) {
        text.escape_debug().to_string()
    } else {
        text.to_string()
    }
}

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
    #[error("number of inference steps is not set: call set_timesteps first")]
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

    /// A step whose result depends on the batch size was called without one
    /// ([`StepOptions::batch_size`](crate::StepOptions::batch_size) is `None`).
    #[error("`batch_size` is not set, and {needs_it}: set StepOptions::batch_size to Some(number of samples in the buffer)")]
    BatchSizeRequired {
        /// What makes the batch size matter.
        needs_it: &'static str,
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
    #[error(
        "eta = {eta} > 0 needs noise: pass variance_noise, or draw it with step_with_generator \
         (torch-compatible; slices and backend::candle), step_with_rng (slices) or \
         step_with_device_noise (backend::candle)"
    )]
    MissingNoise {
        /// The eta of the step.
        eta: f32,
    },

    /// [`slerp`](crate::slerp) or [`lerp`](crate::lerp) got a `t` or an input that is not finite.
    #[error("invalid interpolation: {reason}")]
    InvalidInterpolation {
        /// What is wrong, naming the value.
        reason: String,
    },
    /// A sample is too small for a per-sample statistic (the unbiased standard deviation of
    /// `rescale_noise_cfg` needs at least 2 elements).
    #[error("each sample has {per_sample} element(s); at least {minimum} are needed")]
    SampleTooSmall {
        /// The number of elements in one sample.
        per_sample: usize,
        /// The fewest elements the operation needs.
        minimum: usize,
    },

    /// `rescale_noise_cfg` met a constant sample of `noise_cfg`: its standard deviation is 0,
    /// so std_text / std_cfg is undefined (diffusers returns NaN/inf there).
    #[error(
        "cannot rescale sample {sample}: noise_cfg is constant there (standard deviation 0), \
         so std_text / std_cfg is undefined"
    )]
    ZeroStdCfg {
        /// The index of the sample in the batch.
        sample: usize,
    },

    /// A Hugging Face model id is not of the form `name` or `namespace/name` that
    /// huggingface_hub accepts.
    #[error("invalid model id `{}`: {reason}", one_line(.model_id))]
    InvalidModelId {
        /// The id given.
        model_id: String,
        /// The rule it breaks.
        reason: String,
    },

    /// A revision (branch, tag or commit) would leave the model's cache folder.
    #[error("invalid revision `{}`: {reason}", one_line(.revision))]
    InvalidRevision {
        /// The revision given.
        revision: String,
        /// The rule it breaks.
        reason: String,
    },

    /// A model's scheduler config is not in any local Hugging Face cache folder searched.
    #[error(
        "{model_id} (revision {revision}) has no scheduler/scheduler_config.json in the local \
         hugging face cache (nothing is downloaded): {}",
        not_in_cache_details(.searched, .missing)
    )]
    ModelNotInCache {
        /// The model id.
        model_id: String,
        /// The revision looked for.
        revision: String,
        /// The cache folders searched, in order.
        searched: Vec<PathBuf>,
        /// What was missing in each folder searched (same order).
        missing: Vec<String>,
    },

    /// Caller-given timesteps are not a valid schedule (see
    /// [`DdimScheduler::set_timesteps_custom`](crate::DdimScheduler::set_timesteps_custom)).
    #[error("invalid custom timesteps: {reason}")]
    InvalidTimesteps {
        /// What is wrong, naming the position and value.
        reason: String,
    },

    /// ε-prediction on a schedule that reaches ᾱ_t = 0 (zero terminal SNR) divides by
    /// √ᾱ_t = 0 (refused under [`ZeroSnrGuard::Refuse`](crate::ZeroSnrGuard::Refuse)).
    #[error(
        "prediction_type epsilon at timestep {timestep}, where alpha_bar = 0 (zero terminal snr), \
         divides by sqrt(alpha_bar) = 0: use prediction_type v_prediction with \
         rescale_betas_zero_snr (the model must be trained for it), or ZeroSnrGuard::Off for \
         diffusers' behaviour"
    )]
    ZeroTerminalSnr {
        /// The first scheduled timestep with ᾱ_t = 0.
        timestep: usize,
    },

    /// A list of generators is neither one generator nor one per batch item.
    #[error("got {generators} random generators for a batch of {batch_size}: give one, or one per batch item")]
    GeneratorCountMismatch {
        /// The number of generators given.
        generators: usize,
        /// The batch size they should match.
        batch_size: usize,
    },

    /// A tensor shape cannot be used (no batch dimension, or too many elements).
    #[error("invalid shape {shape:?}: it {reason}")]
    InvalidShape {
        /// The shape given.
        shape: Vec<usize>,
        /// What is wrong with it.
        reason: String,
    },

    /// A buffer whose size comes from the caller (`num_train_timesteps`, a step count, a
    /// shape) cannot be allocated: the machine (or the process's memory limit) cannot hold it.
    #[error(
        "out of memory: `{what}` needs {len} values ({bytes} bytes), more than this process \
         can allocate"
    )]
    OutOfMemory {
        /// The buffer, e.g. `alphas_cumprod`.
        what: &'static str,
        /// Its number of values.
        len: usize,
        /// Its size in bytes.
        bytes: u128,
    },

    /// GPU properties with which torch would launch no thread.
    #[error("invalid gpu properties: {multiprocessor_count} multiprocessors with {max_threads_per_multiprocessor} threads each (need at least 1 multiprocessor and 256 threads)")]
    InvalidGpuProperties {
        /// `multiProcessorCount` given.
        multiprocessor_count: u32,
        /// `maxThreadsPerMultiProcessor` given.
        max_threads_per_multiprocessor: u32,
    },
    /// Two arrays or tensors that must have the same shape do not (tensor backends).
    #[error("shape mismatch: `{name}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which argument is wrong.
        name: &'static str,
        /// The shape required (that of the sample).
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },

    /// `add_noise`/`get_velocity` on an array or tensor got neither one timestep nor one per
    /// batch item (axis 0).
    #[error("`timesteps` has {got} entries, expected 1 or the batch size {batch_size}")]
    TimestepCountMismatch {
        /// The length of axis 0 of the sample.
        batch_size: usize,
        /// The number of timesteps given.
        got: usize,
    },

    /// A tensor's element type is not one the scheduler steps (f16, bf16, f32, f64), or does
    /// not match the sample's.
    #[error("unsupported dtype: `{name}` is {got}, expected {expected}")]
    UnsupportedDtype {
        /// Which argument is wrong.
        name: &'static str,
        /// The dtype required.
        expected: String,
        /// The dtype given.
        got: String,
    },

    /// An in-place step was given two tensors that share their storage (clones or views of
    /// one tensor): it would read elements it has already overwritten.
    #[error("`{name}` shares its storage with `{with}`: an in-place step needs tensors that do not overlap (clone one, or use step)")]
    SharedStorage {
        /// The tensor named first.
        name: &'static str,
        /// The tensor it shares storage with.
        with: &'static str,
    },

    /// An operation of the tensor framework failed (device errors, out of memory, a device
    /// that lacks an operation).
    #[cfg(feature = "candle")]
    #[cfg_attr(docsrs, doc(cfg(feature = "candle")))]
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
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

fn not_in_cache_details(searched: &[PathBuf], missing: &[String]) -> String {
    if searched.is_empty() {
        return "no cache folder is known (set HF_HUB_CACHE, HF_HOME or HOME)".to_owned();
    }
    let folders: Vec<String> = searched
        .iter()
        .zip(
            missing
                .iter()
                .map(String::as_str)
                .chain(std::iter::repeat("")),
        )
        .map(|(dir, what)| {
            if what.is_empty() {
                dir.display().to_string()
            } else {
                format!("{} ({what})", dir.display())
            }
        })
        .collect();
    format!("searched {}", folders.join("; "))
}
