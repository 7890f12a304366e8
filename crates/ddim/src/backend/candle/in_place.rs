//! [`step_in_place`]: the DDIM step written into the caller's tensors, through candle's own
//! in-place op API (`Tensor::inplace_op1`, as `slice_set` writes), with no allocation for
//! contiguous CPU tensors.

use std::cell::{Cell, RefCell};

use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Storage, Tensor, WithDType};

use super::kernels::cpu_slice;
use super::{check_step_inputs, unsupported, CandleBackend};
use crate::backend::{batch_of, TensorStepOptions};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::scheduler::{DdimScheduler, StepOptions};

/// One DDIM step written into the tensors: `sample` becomes x_{t_prev} and `model_output`
/// becomes x̂₀ (after clipping or thresholding), bit for bit what [`step`](super::step)
/// returns:
///
/// x_{t_prev} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ_t²)·ε̂ + σ_t·z.
///
/// This is the loop to write on the CPU: for contiguous CPU tensors it runs the crate's fused
/// in-place kernel ([`DdimScheduler::step_in_place`]) on the tensors' storage and allocates
/// no buffer (below [`PARALLEL_MIN_LEN`](crate::PARALLEL_MIN_LEN) elements; candle's op API
/// makes two allocations of a few bytes per call for its overlap check), where
/// [`step`](super::step) allocates two output tensors per call. Tensors on other devices
/// (CUDA, Metal) are stepped by `step` and the results copied in with `slice_set`. Strided
/// views are refused (`Error::Candle` of candle's `RequiresContiguous`): call `.contiguous()`
/// first, or use `step`.
///
/// **The tensors' storage is written**, as candle's own `slice_set` and `inplace_op*` write
/// it: every clone of `sample` or `model_output`, and every view of their storage, sees the
/// new values. Use [`step`](super::step) to keep the inputs.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use ddim::backend::{candle::step_in_place, TensorStepOptions};
///
/// let mut scheduler = ddim::DdimScheduler::new(ddim::DdimConfig::stable_diffusion())?;
/// scheduler.set_timesteps(10)?;
/// let latents = Tensor::ones((1, 4, 8, 8), DType::F32, &Device::Cpu)?;
/// for &t in scheduler.timesteps() {
///     let eps = (&latents * 0.1)?; // the model's prediction, a new tensor
///     step_in_place(&scheduler, &eps, t, &latents, &TensorStepOptions::default())?;
///     // `latents` holds x_{t_prev}; `eps` holds x̂₀
/// }
/// assert!(latents.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| v.is_finite()));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// As [`step`](super::step), and [`Error::SharedStorage`] when two of `model_output`,
/// `sample` and the noise share their storage (a step cannot read and write the same memory
/// element by element). On error neither tensor is changed.
pub fn step_in_place(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
    options: &TensorStepOptions<&Tensor>,
) -> Result<()> {
    check_step_inputs(sample, model_output, options)?;
    if !sample.is_contiguous() || !model_output.is_contiguous() {
        return Err(candle_core::Error::RequiresContiguous {
            op: "ddim step_in_place",
        }
        .into());
    }
    check_distinct("model_output", model_output, "sample", sample)?;
    if let Some(z) = options.variance_noise {
        check_distinct("variance_noise", z, "sample", sample)?;
        check_distinct("variance_noise", z, "model_output", model_output)?;
    }
    let fused = by_dtype!(
        "sample",
        sample.dtype(),
        fused_in_place,
        scheduler,
        model_output,
        timestep,
        sample,
        options
    )?;
    if !fused {
        let out =
            CandleBackend::default().step(scheduler, model_output, timestep, sample, options)?;
        write_into(sample, &out.prev_sample)?;
        write_into(model_output, &out.pred_original_sample)?;
    }
    Ok(())
}

/// `destination`'s elements replaced by `values` (of its shape and dtype). A result of the op
/// path can be its input itself (x̂₀ of `sample` prediction is the model output): such a
/// tensor is copied out first, as `slice_set` refuses a source that shares its storage.
fn write_into(destination: &Tensor, values: &Tensor) -> Result<()> {
    if storage_address(destination) == storage_address(values) {
        destination.slice_set(&values.copy()?, 0, 0)?;
    } else {
        destination.slice_set(values, 0, 0)?;
    }
    Ok(())
}

/// Where a tensor's storage lives, to tell tensors that share it (their clones and views).
fn storage_address(t: &Tensor) -> usize {
    let (storage, _) = t.storage_and_layout();
    std::ptr::from_ref::<Storage>(&*storage).addr()
}

fn check_distinct(name: &'static str, a: &Tensor, with: &'static str, b: &Tensor) -> Result<()> {
    if storage_address(a) == storage_address(b) {
        return Err(Error::SharedStorage { name, with });
    }
    Ok(())
}

/// Mutable access to a CPU storage's elements of type `T`.
trait CpuElements: Element + WithDType {
    fn elements(storage: &mut CpuStorage) -> Option<&mut [Self]>;
}

macro_rules! cpu_elements {
    ($t:ty, $variant:ident) => {
        impl CpuElements for $t {
            fn elements(storage: &mut CpuStorage) -> Option<&mut [Self]> {
                match storage {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
cpu_elements!(half::f16, F16);
cpu_elements!(half::bf16, BF16);
cpu_elements!(f32, F32);
cpu_elements!(f64, F64);

/// The contiguous elements a layout addresses in a CPU storage.
fn contiguous_mut<'s, T: CpuElements>(
    storage: &'s mut CpuStorage,
    layout: &Layout,
) -> Option<&'s mut [T]> {
    let (start, end) = layout.contiguous_offsets()?;
    T::elements(storage)?.get_mut(start..end)
}

/// The fused in-place kernel on contiguous CPU tensors (`sample` and `model_output` are
/// checked contiguous); `Ok(false)` (nothing done) when a tensor is not one.
fn fused_in_place<T: CpuElements>(
    scheduler: &DdimScheduler,
    model_output: &Tensor,
    timestep: usize,
    sample: &Tensor,
    options: &TensorStepOptions<&Tensor>,
) -> Result<bool> {
    let is_cpu_contiguous = |t: &Tensor| t.device().is_cpu() && t.is_contiguous();
    if !sample.device().is_cpu()
        || !model_output.device().is_cpu()
        || !options.variance_noise.is_none_or(is_cpu_contiguous)
    {
        return Ok(false);
    }
    // The noise is only read: a shared lock for the whole step (distinct storage checked).
    let noise_guard = options.variance_noise.map(Tensor::storage_and_layout);
    let noise = match &noise_guard {
        Some((storage, layout)) => match cpu_slice::<T>(storage, layout) {
            Some(z) => Some(z),
            None => return Ok(false),
        },
        None => None,
    };
    let slice_options = StepOptions {
        eta: options.eta,
        use_clipped_model_output: options.use_clipped_model_output,
        variance_noise: noise,
        batch_size: Some(batch_of(sample.dims())),
        check_finite: options.check_finite,
    };
    // The sample's storage is locked for writing by candle, and inside that the model
    // output's; the step itself runs in the inner op, its result carried out in `outcome`.
    let outcome = Cell::new(None);
    let outer = OuterOp::<T> {
        scheduler,
        model_output,
        timestep,
        options: &slice_options,
        outcome: &outcome,
    };
    sample.inplace_op1(&outer)?;
    match outcome.into_inner() {
        Some(result) => result.map(|()| true),
        None => Ok(false),
    }
}

/// Holds the sample's storage (written by candle's lock) while the model output's is taken.
struct OuterOp<'a, 'o, T> {
    scheduler: &'a DdimScheduler,
    model_output: &'a Tensor,
    timestep: usize,
    options: &'a StepOptions<'o, T>,
    /// `None`: the tensors were not the expected storage (nothing written); otherwise the
    /// step's result.
    outcome: &'a Cell<Option<Result<()>>>,
}

impl<T: CpuElements> InplaceOp1 for OuterOp<'_, '_, T> {
    fn name(&self) -> &'static str {
        "ddim-step-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let Some(sample) = contiguous_mut::<T>(storage, layout) else {
            return Ok(());
        };
        let inner = InnerOp {
            outer: self,
            sample: RefCell::new(sample),
        };
        self.model_output.inplace_op1(&inner)
    }
}

/// Runs the step with both storages held.
struct InnerOp<'a, 'b, 'o, 's, T> {
    outer: &'b OuterOp<'a, 'o, T>,
    sample: RefCell<&'s mut [T]>,
}

impl<T: CpuElements> InplaceOp1 for InnerOp<'_, '_, '_, '_, T> {
    fn name(&self) -> &'static str {
        "ddim-step-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let Some(model_output) = contiguous_mut::<T>(storage, layout) else {
            return Ok(());
        };
        let mut sample = self.sample.borrow_mut();
        let o = self.outer;
        let result = o
            .scheduler
            .step_in_place(model_output, o.timestep, &mut sample, o.options);
        o.outcome.set(Some(result));
        Ok(())
    }
}
