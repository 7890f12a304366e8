//! The backends the conformance suite runs: one trait, one implementation per backend and
//! layout, generic over the element type.
//!
//! The suite hands every backend the same f64 values; each rounds them to its element type
//! with the same function ([`to_elem`]), so all backends of one dtype see identical inputs,
//! and widens its outputs back to f64 exactly.

#![allow(unreachable_pub)]

use std::marker::PhantomData;

use ddim::element::{Compute, Element};
use ddim::{DdimScheduler, StepOptions};

/// The element type a backend computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F16,
    Bf16,
    F32,
    F64,
}

impl Dtype {
    /// The unit roundoff of the element type.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Dtype::F16 => 2f64.powi(-11),
            Dtype::Bf16 => 2f64.powi(-8),
            Dtype::F32 => 2f64.powi(-24),
            Dtype::F64 => 2f64.powi(-53),
        }
    }
}

/// What one step returns: (x_{t_prev}, x̂₀), widened to f64.
pub type Outputs = ddim::Result<(Vec<f64>, Vec<f64>)>;

/// The inputs of one step, in f64 (each backend rounds them to its element type).
#[derive(Debug, Clone, Copy)]
pub struct StepInputs<'a> {
    /// The model output.
    pub m: &'a [f64],
    pub t: usize,
    /// The sample.
    pub x: &'a [f64],
    pub shape: &'a [usize],
    pub eta: f32,
    /// `use_clipped_model_output`.
    pub ucmo: bool,
    /// The variance noise.
    pub z: Option<&'a [f64]>,
}

impl StepInputs<'_> {
    /// The tensor backends' options with `noise` (the backend's own copy of `z`).
    #[cfg(any(feature = "ndarray", feature = "candle"))]
    fn tensor_options<N>(&self, noise: Option<N>) -> ddim::backend::TensorStepOptions<N> {
        ddim::backend::TensorStepOptions {
            eta: self.eta,
            use_clipped_model_output: self.ucmo,
            variance_noise: noise,
            ..Default::default()
        }
    }
}

/// One way of running the scheduler on the fixtures.
pub trait Backend {
    fn name(&self) -> String;
    fn dtype(&self) -> Dtype;
    /// Whether the backend must give the slice path's numbers bit for bit (CPU backends).
    fn exact(&self) -> bool {
        true
    }
    fn step(&self, s: &DdimScheduler, inputs: &StepInputs<'_>) -> Outputs;
    /// add_noise (`velocity` false) or get_velocity, one timestep per item of axis 0.
    fn combine(
        &self,
        s: &DdimScheduler,
        x: &[f64],
        z: &[f64],
        shape: &[usize],
        ts: &[usize],
        velocity: bool,
    ) -> ddim::Result<Vec<f64>>;
}

pub fn to_elem<T: Element>(v: &[f64]) -> Vec<T> {
    v.iter()
        .map(|&x| T::from_compute(<T::Compute as Compute>::from_f64(x)))
        .collect()
}

pub fn to_f64<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|x| x.to_compute().to_f64()).collect()
}

pub trait Typed: Element {
    const KIND: Dtype;
    const NAME: &'static str;
}
impl Typed for f32 {
    const KIND: Dtype = Dtype::F32;
    const NAME: &'static str = "f32";
}
impl Typed for f64 {
    const KIND: Dtype = Dtype::F64;
    const NAME: &'static str = "f64";
}
impl Typed for half::f16 {
    const KIND: Dtype = Dtype::F16;
    const NAME: &'static str = "f16";
}
impl Typed for half::bf16 {
    const KIND: Dtype = Dtype::Bf16;
    const NAME: &'static str = "bf16";
}

/// The slice path, `DdimScheduler::step` on flat buffers: the reference of its dtype.
pub struct Slice<T>(PhantomData<T>);

impl<T: Typed> Slice<T> {
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T: Typed> Backend for Slice<T> {
    fn name(&self) -> String {
        format!("slice {}", T::NAME)
    }
    fn dtype(&self) -> Dtype {
        T::KIND
    }
    fn step(&self, s: &DdimScheduler, i: &StepInputs<'_>) -> Outputs {
        let z = i.z.map(to_elem::<T>);
        #[allow(clippy::needless_update)] // StepOptions may gain fields
        let options = StepOptions {
            eta: i.eta,
            use_clipped_model_output: i.ucmo,
            variance_noise: z.as_deref(),
            batch_size: Some(i.shape[0]),
            ..Default::default()
        };
        let out = s.step(&to_elem::<T>(i.m), i.t, &to_elem::<T>(i.x), &options)?;
        Ok((to_f64(&out.prev_sample), to_f64(&out.pred_original_sample)))
    }
    fn combine(
        &self,
        s: &DdimScheduler,
        x: &[f64],
        z: &[f64],
        _shape: &[usize],
        ts: &[usize],
        velocity: bool,
    ) -> ddim::Result<Vec<f64>> {
        let (x, z) = (to_elem::<T>(x), to_elem::<T>(z));
        let out = if velocity {
            s.get_velocity(&x, &z, ts)?
        } else {
            s.add_noise(&x, &z, ts)?
        };
        Ok(to_f64(&out))
    }
}

#[cfg(feature = "ndarray")]
pub use self::nd::{NdLayout, Ndarray};

#[cfg(feature = "ndarray")]
mod nd {
    use super::*;
    use ddim::backend::ndarray as nd;
    use ndarray::{ArrayD, Axis, IxDyn};

    /// How the arrays are laid out in memory (the logical values are always the same).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum NdLayout {
        /// Row-major: the slice kernel runs on the arrays' memory.
        Standard,
        /// Column-major inputs, with axis 1 reversed (a negative stride); `step_into` into
        /// column-major outputs.
        Reversed,
    }

    pub struct Ndarray<T> {
        layout: NdLayout,
        _t: PhantomData<T>,
    }

    impl<T: Typed> Ndarray<T> {
        pub fn new(layout: NdLayout) -> Self {
            Self {
                layout,
                _t: PhantomData,
            }
        }

        fn array(&self, v: &[f64], shape: &[usize]) -> ArrayD<T> {
            let a = ArrayD::from_shape_vec(IxDyn(shape), to_elem::<T>(v)).unwrap();
            match self.layout {
                NdLayout::Standard => a,
                NdLayout::Reversed => {
                    // Column-major storage of the values with axis 1 flipped, viewed so that
                    // the logical values are `a`'s again.
                    let mut flipped = a;
                    if flipped.ndim() > 1 {
                        flipped.invert_axis(Axis(1));
                    }
                    let stored = flipped.reversed_axes().as_standard_layout().into_owned();
                    let mut b = stored.reversed_axes();
                    if b.ndim() > 1 {
                        b.invert_axis(Axis(1));
                    }
                    let spread = shape.iter().filter(|&&d| d > 1).count() > 1;
                    assert!(!spread || b.as_slice().is_none());
                    b
                }
            }
        }
    }

    impl<T: Typed> Backend for Ndarray<T> {
        fn name(&self) -> String {
            format!("ndarray {:?} {}", self.layout, T::NAME)
        }
        fn dtype(&self) -> Dtype {
            T::KIND
        }
        fn step(&self, s: &DdimScheduler, i: &StepInputs<'_>) -> Outputs {
            let (shape, t) = (i.shape, i.t);
            let (m, x) = (self.array(i.m, shape), self.array(i.x, shape));
            let z = i.z.map(|z| self.array(z, shape));
            let options = i.tensor_options(z.as_ref().map(|z| z.view()));
            let flat = |a: &ArrayD<T>| to_f64(&a.iter().copied().collect::<Vec<T>>());
            match self.layout {
                NdLayout::Standard => {
                    let out = nd::step(s, m.view(), t, x.view(), &options)?;
                    Ok((flat(&out.prev_sample), flat(&out.pred_original_sample)))
                }
                NdLayout::Reversed => {
                    let mut prev = self.array(&vec![0.0; x.len()], shape);
                    let mut x0 = self.array(&vec![0.0; x.len()], shape);
                    nd::step_into(
                        s,
                        m.view(),
                        t,
                        x.view(),
                        &options,
                        prev.view_mut(),
                        x0.view_mut(),
                    )?;
                    Ok((flat(&prev), flat(&x0)))
                }
            }
        }
        fn combine(
            &self,
            s: &DdimScheduler,
            x: &[f64],
            z: &[f64],
            shape: &[usize],
            ts: &[usize],
            velocity: bool,
        ) -> ddim::Result<Vec<f64>> {
            let (x, z) = (self.array(x, shape), self.array(z, shape));
            let out = if velocity {
                nd::get_velocity(s, x.view(), z.view(), ts)?
            } else {
                nd::add_noise(s, x.view(), z.view(), ts)?
            };
            Ok(to_f64(&out.iter().copied().collect::<Vec<T>>()))
        }
    }
}

#[cfg(feature = "candle")]
pub use self::cd::Candle;

#[cfg(feature = "candle")]
mod cd {
    use super::*;
    use candle_core::{Device, Tensor, WithDType};
    use ddim::backend::candle::{CandleBackend, Dispatch};

    /// The device the candle backends run on: `DDIM_TEST_DEVICE=cuda` (or `metal`) for a GPU
    /// (the crate must be built with candle's feature for it), else the CPU.
    pub fn device() -> Device {
        match std::env::var("DDIM_TEST_DEVICE").as_deref() {
            Ok("cuda") => Device::new_cuda(0).expect("a CUDA device"),
            Ok("metal") => Device::new_metal(0).expect("a Metal device"),
            _ => Device::Cpu,
        }
    }

    pub struct Candle<T> {
        dispatch: Dispatch,
        /// Inputs as non-contiguous views (reversed axes of a transposed copy).
        strided: bool,
        device: Device,
        _t: PhantomData<T>,
    }

    impl<T: Typed + WithDType> Candle<T> {
        pub fn new(dispatch: Dispatch, strided: bool) -> Self {
            Self {
                dispatch,
                strided,
                device: device(),
                _t: PhantomData,
            }
        }

        fn tensor(&self, v: &[f64], shape: &[usize]) -> Tensor {
            let t = Tensor::from_vec(to_elem::<T>(v), shape, &self.device).unwrap();
            if !self.strided || shape.len() < 2 {
                return t;
            }
            let reversed: Vec<usize> = (0..shape.len()).rev().collect();
            let s = t
                .permute(reversed.clone())
                .unwrap()
                .contiguous()
                .unwrap()
                .permute(reversed)
                .unwrap();
            assert!(!s.is_contiguous() || shape.iter().filter(|&&d| d > 1).count() < 2);
            s
        }

        fn backend(&self) -> CandleBackend {
            CandleBackend {
                dispatch: self.dispatch,
            }
        }
    }

    fn flat<T: Typed + WithDType>(t: &Tensor) -> Vec<f64> {
        to_f64(&t.flatten_all().unwrap().to_vec1::<T>().unwrap())
    }

    impl<T: Typed + WithDType> Backend for Candle<T> {
        fn name(&self) -> String {
            format!(
                "candle {:?}{} {} on {:?}",
                self.dispatch,
                if self.strided { " strided" } else { "" },
                T::NAME,
                self.device.location()
            )
        }
        fn dtype(&self) -> Dtype {
            T::KIND
        }
        fn exact(&self) -> bool {
            self.device.is_cpu()
        }
        fn step(&self, s: &DdimScheduler, i: &StepInputs<'_>) -> Outputs {
            let (m, x) = (self.tensor(i.m, i.shape), self.tensor(i.x, i.shape));
            let z = i.z.map(|z| self.tensor(z, i.shape));
            let options = i.tensor_options(z.as_ref());
            let out = self.backend().step(s, &m, i.t, &x, &options)?;
            assert_eq!(out.prev_sample.dtype(), <T as WithDType>::DTYPE);
            Ok((
                flat::<T>(&out.prev_sample),
                flat::<T>(&out.pred_original_sample),
            ))
        }
        fn combine(
            &self,
            s: &DdimScheduler,
            x: &[f64],
            z: &[f64],
            shape: &[usize],
            ts: &[usize],
            velocity: bool,
        ) -> ddim::Result<Vec<f64>> {
            let (x, z) = (self.tensor(x, shape), self.tensor(z, shape));
            let out = if velocity {
                self.backend().get_velocity(s, &x, &z, ts)?
            } else {
                self.backend().add_noise(s, &x, &z, ts)?
            };
            Ok(flat::<T>(&out))
        }
    }
}
