//! The candle backend's tensor helpers against the slice path they mirror, on the CPU, every
//! element type: guidance (`classifier_free_guidance`, `rescale_noise_cfg`, `guide`; fused and
//! op forms, contiguous and strided tensors), torch-seeded latents and per-step noise
//! (`randn_latents`, `step_with_generator`), `From<ddim::Error> for candle_core::Error`, and
//! candle-transformers' `Scheduler` trait (feature `candle-transformers`).
#![cfg(feature = "candle")]

mod common;

use candle_core::{DType, Device, Tensor, WithDType};
use common::pseudo_random;
use ddim::backend::candle as dc;
use ddim::backend::TensorStepOptions;
use ddim::rng::TorchCpuGenerator;
use ddim::{DdimConfig, DdimScheduler, Element, StepOptions};

fn elems<T: Element>(v: &[f32]) -> Vec<T> {
    use ddim::element::Compute;
    v.iter()
        .map(|&x| T::from_compute(<T::Compute as Compute>::from_f32(x)))
        .collect()
}

fn bits<T: Element + WithDType>(t: &Tensor) -> Vec<u64> {
    use ddim::element::Compute;
    t.flatten_all()
        .unwrap()
        .to_vec1::<T>()
        .unwrap()
        .iter()
        .map(|v| v.to_compute().to_f64().to_bits())
        .collect()
}

fn slice_bits<T: Element>(v: &[T]) -> Vec<u64> {
    use ddim::element::Compute;
    v.iter()
        .map(|v| v.to_compute().to_f64().to_bits())
        .collect()
}

/// Guidance on tensors equals the slice functions bit for bit (fused path, strided input,
/// and the op form for the guidance itself); the op form's rescale stays within a few ulps.
fn guidance_for<T: Element + WithDType>() {
    let shape = (2usize, 4usize, 8usize, 8usize);
    let n = 2 * 4 * 8 * 8;
    // Means far from zero, as real predictions can have: the rescale's std is then sensitive.
    let u: Vec<T> = elems(&pseudo_random(n, 21));
    let t: Vec<T> = elems(
        &pseudo_random(n, 22)
            .iter()
            .map(|v| v * 0.7 + 0.3)
            .collect::<Vec<_>>(),
    );
    let dev = Device::Cpu;
    let (ut, tt) = (
        Tensor::from_vec(u.clone(), shape, &dev).unwrap(),
        Tensor::from_vec(t.clone(), shape, &dev).unwrap(),
    );
    let zero = elems::<T>(&[0.0])[0];
    let mut want = vec![zero; n];
    ddim::guidance::classifier_free_guidance(&u, &t, 7.5, &mut want).unwrap();
    let got = dc::classifier_free_guidance(&ut, &tt, 7.5).unwrap();
    assert_eq!(bits::<T>(&got), slice_bits(&want), "cfg");
    // Strided views (a transposed copy transposed back) take the same numbers.
    let ut_strided = ut
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    assert!(!ut_strided.is_contiguous());
    let got = dc::classifier_free_guidance(&ut_strided, &tt, 7.5).unwrap();
    assert_eq!(bits::<T>(&got), slice_bits(&want), "cfg strided");
    let mut want_rescaled = want.clone();
    ddim::guidance::rescale_noise_cfg(&mut want_rescaled, &t, 0.7, 2).unwrap();
    let cfg_t = Tensor::from_vec(want.clone(), shape, &dev).unwrap();
    let got = dc::rescale_noise_cfg(&cfg_t, &tt, 0.7).unwrap();
    assert_eq!(bits::<T>(&got), slice_bits(&want_rescaled), "rescale");
    // `guide` on the batch [uncond; text].
    let both = Tensor::cat(&[&ut, &tt], 0).unwrap();
    let got = dc::guide(&both, 7.5, 0.7).unwrap();
    assert_eq!(got.dims(), &[2, 4, 8, 8]);
    assert_eq!(bits::<T>(&got), slice_bits(&want_rescaled), "guide");
    let got = dc::guide(&both, 7.5, 0.0).unwrap();
    assert_eq!(bits::<T>(&got), slice_bits(&want), "guide without rescale");
    // The op form (what other devices run): the guidance bit for bit, the rescale close.
    let ops = dc::guide_with_ops(&both, 7.5, 0.0).unwrap();
    assert_eq!(bits::<T>(&ops), slice_bits(&want), "ops cfg");
    let ops = dc::guide_with_ops(&both, 7.5, 0.7).unwrap();
    use ddim::element::Compute;
    let worst = ops
        .flatten_all()
        .unwrap()
        .to_vec1::<T>()
        .unwrap()
        .iter()
        .zip(&want_rescaled)
        .map(|(a, b)| {
            let (a, b) = (a.to_compute().to_f64(), b.to_compute().to_f64());
            (a - b).abs() / b.abs().max(1e-3)
        })
        .fold(0.0f64, f64::max);
    let roundoff = match T::DTYPE {
        DType::F16 => 2f64.powi(-11),
        DType::BF16 => 2f64.powi(-8),
        DType::F64 => 2f64.powi(-53),
        _ => 2f64.powi(-24),
    };
    eprintln!(
        "{:?}: guidance fused == slices bit for bit; ops rescale largest relative error {worst:.3e} ({:.1} unit roundoffs)",
        T::DTYPE,
        worst / roundoff
    );
    assert!(worst <= 16.0 * roundoff, "{worst}");
}

#[test]
fn guidance_on_tensors_equals_slices() {
    guidance_for::<f32>();
    guidance_for::<f64>();
    guidance_for::<half::f16>();
    guidance_for::<half::bf16>();
}

#[test]
fn guidance_errors() {
    let dev = Device::Cpu;
    let x = Tensor::ones((2, 3), DType::F32, &dev).unwrap();
    let odd = Tensor::ones((3, 3), DType::F32, &dev).unwrap();
    assert!(matches!(
        dc::guide(&odd, 7.5, 0.0),
        Err(ddim::Error::InvalidShape { .. })
    ));
    assert!(matches!(
        dc::classifier_free_guidance(&x, &odd, 7.5),
        Err(ddim::Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        dc::classifier_free_guidance(&x, &x, f32::NAN),
        Err(ddim::Error::InvalidStepOption { .. })
    ));
    // A constant guided sample has no spread to rescale by.
    assert!(matches!(
        dc::rescale_noise_cfg(&x, &x, 0.7),
        Err(ddim::Error::ZeroStdCfg { sample: 0 })
    ));
    let ints = Tensor::zeros((2, 3), DType::U32, &dev).unwrap();
    assert!(matches!(
        dc::guide(&ints, 7.5, 0.0),
        Err(ddim::Error::UnsupportedDtype { .. })
    ));
}

fn noise_for<T: ddim::rng::RandnElement + WithDType>() {
    let shape = [2usize, 4, 8, 8];
    let want: Vec<T> = ddim::rng::randn_latents(&shape, &mut TorchCpuGenerator::new(7)).unwrap();
    let got = dc::randn_latents(
        &shape,
        T::DTYPE,
        &Device::Cpu,
        &mut TorchCpuGenerator::new(7),
    )
    .unwrap();
    assert_eq!(got.dims(), &shape);
    assert_eq!(bits::<T>(&got), slice_bits(&want));
    let want: Vec<T> = ddim::rng::randn_latents_per_item(
        &shape,
        &mut [TorchCpuGenerator::new(1), TorchCpuGenerator::new(2)],
    )
    .unwrap();
    let got = dc::randn_latents_per_item(
        &shape,
        T::DTYPE,
        &Device::Cpu,
        &mut [TorchCpuGenerator::new(1), TorchCpuGenerator::new(2)],
    )
    .unwrap();
    assert_eq!(bits::<T>(&got), slice_bits(&want));

    // A seeded η = 1 loop: tensors and slices draw the same noise and land on the same bits.
    let mut scheduler = DdimScheduler::new(DdimConfig::stable_diffusion()).unwrap();
    scheduler.set_timesteps(5).unwrap();
    let n: usize = shape.iter().product();
    let m: Vec<T> = elems(&pseudo_random(n, 3));
    let (mut gs, mut gt) = (TorchCpuGenerator::new(9), TorchCpuGenerator::new(9));
    let mut xs: Vec<T> = ddim::rng::randn_latents(&shape, &mut gs).unwrap();
    let mut xt = dc::randn_latents(&shape, T::DTYPE, &Device::Cpu, &mut gt).unwrap();
    let mt = Tensor::from_vec(m.clone(), &shape[..], &Device::Cpu).unwrap();
    for &t in scheduler.timesteps() {
        let options = StepOptions {
            eta: 1.0,
            batch_size: Some(2),
            ..Default::default()
        };
        xs = scheduler
            .step_with_generator(&m, t, &xs, &options, &mut gs)
            .unwrap()
            .prev_sample;
        let options = TensorStepOptions {
            eta: 1.0,
            ..Default::default()
        };
        xt = dc::step_with_generator(&scheduler, &mt, t, &xt, &options, &mut gt)
            .unwrap()
            .prev_sample;
    }
    assert_eq!(bits::<T>(&xt), slice_bits(&xs), "{:?}", T::DTYPE);
}

#[test]
fn torch_seeded_noise_as_tensors_equals_slices() {
    noise_for::<f32>();
    noise_for::<f64>();
    noise_for::<half::f16>();
    noise_for::<half::bf16>();
}

#[test]
fn step_with_generator_checks_before_drawing() {
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    scheduler.set_timesteps(10).unwrap();
    let x = Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
    let bad = Tensor::ones((3, 2), DType::F32, &Device::Cpu).unwrap();
    let options = TensorStepOptions {
        eta: 1.0,
        ..Default::default()
    };
    let (mut g, mut fresh) = (TorchCpuGenerator::new(1), TorchCpuGenerator::new(1));
    assert!(dc::step_with_generator(&scheduler, &bad, 900, &x, &options, &mut g).is_err());
    let with_noise = TensorStepOptions {
        variance_noise: Some(&x),
        ..options
    };
    assert!(matches!(
        dc::step_with_generator(&scheduler, &x, 900, &x, &with_noise, &mut g),
        Err(ddim::Error::NoiseAndGenerator)
    ));
    use ddim::rng::NoiseGenerator;
    let (mut a, mut b) = ([0f32; 3], [0f32; 3]);
    g.fill_randn_f32(&mut a);
    fresh.fill_randn_f32(&mut b);
    assert_eq!(a, b, "a failed call drew nothing");
}

#[test]
fn ddim_errors_convert_to_candle_errors() {
    fn in_candle_code(scheduler: &DdimScheduler, x: &Tensor) -> candle_core::Result<Tensor> {
        // `?` on a ddim::Result inside a function returning candle_core::Result.
        Ok(ddim::backend::candle::step(scheduler, x, 900, x, &Default::default())?.prev_sample)
    }
    let scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    let x = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
    let e = in_candle_code(&scheduler, &x).unwrap_err();
    assert!(e.to_string().contains("set_timesteps"), "{e}");
    // A candle error inside ddim's comes back as itself.
    let inner: ddim::Error = candle_core::Error::Msg("boom".into()).into();
    let back: candle_core::Error = inner.into();
    assert!(matches!(back, candle_core::Error::Msg(ref m) if m == "boom"));
}

/// candle-transformers' `Scheduler` trait: a loop written against `Box<dyn Scheduler>` (as
/// candle's SD example is) runs on this DDIM and lands on the bits of our own tensor steps,
/// with η = 0 and with seeded η = 1 noise.
#[cfg(feature = "candle-transformers")]
#[test]
fn candle_transformers_scheduler_trait() {
    use candle_transformers::models::stable_diffusion::schedulers::{Scheduler, SchedulerConfig};
    use dc::{TransformersDdim, TransformersDdimConfig};
    let shape = (1usize, 4usize, 8usize, 8usize);
    let dev = Device::Cpu;
    for (eta, dtype) in [(0.0f32, DType::F32), (1.0, DType::F32), (1.0, DType::F16)] {
        let config = TransformersDdimConfig {
            eta,
            seed: 11,
            ..TransformersDdimConfig::new(DdimConfig::stable_diffusion())
        };
        // The one line that changes in candle's example: the scheduler's construction.
        let mut scheduler: Box<dyn Scheduler> = config.build(6).unwrap();
        let x0 = Tensor::randn(0f32, 1.0, shape, &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let model = |x: &Tensor| (x * 0.3).unwrap();
        let mut latents = (&x0 * scheduler.init_noise_sigma()).unwrap();
        for &t in scheduler.timesteps().to_vec().iter() {
            let input = scheduler.scale_model_input(latents.clone(), t).unwrap();
            let eps = model(&input);
            latents = scheduler.step(&eps, t, &latents).unwrap();
        }
        // Our own tensor steps.
        let mut ours = DdimScheduler::new(DdimConfig::stable_diffusion()).unwrap();
        ours.set_timesteps(6).unwrap();
        let mut g = TorchCpuGenerator::new(11);
        let mut x = x0.clone();
        let options = TensorStepOptions {
            eta,
            ..Default::default()
        };
        for &t in ours.timesteps() {
            let eps = model(&x);
            x = dc::step_with_generator(&ours, &eps, t, &x, &options, &mut g)
                .unwrap()
                .prev_sample;
        }
        let a = latents.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        let b = x.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
        assert_eq!(
            a.to_vec1::<f64>().unwrap(),
            b.to_vec1::<f64>().unwrap(),
            "eta {eta} {dtype:?}"
        );
        // add_noise through the trait equals ours.
        let noise = x0.ones_like().unwrap();
        let via_trait = scheduler.add_noise(&x0, noise.clone(), 500).unwrap();
        let direct = dc::add_noise(&ours, &x0, &noise, &[500]).unwrap();
        assert_eq!(
            via_trait
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            direct
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        );
    }
    // Errors reach candle's error type with ddim's message.
    let mut s = TransformersDdim::from_config(DdimConfig::default(), 10).unwrap();
    let x = Tensor::ones(4, DType::F32, &dev).unwrap();
    let e = s.step(&x, 5000, &x).unwrap_err();
    assert!(e.to_string().contains("5000"), "{e}");
}

fn inverse_and_batch_for<T: Element + WithDType>() {
    let shape = [2usize, 4, 4, 4];
    let n: usize = shape.iter().product();
    let (m, x): (Vec<T>, Vec<T>) = (elems(&pseudo_random(n, 31)), elems(&pseudo_random(n, 32)));
    let (mt, xt) = (
        Tensor::from_vec(m.clone(), &shape[..], &Device::Cpu).unwrap(),
        Tensor::from_vec(x.clone(), &shape[..], &Device::Cpu).unwrap(),
    );
    let mut inverse = ddim::DdimInverseScheduler::new(ddim::DdimInverseConfig::default()).unwrap();
    inverse.set_timesteps(10).unwrap();
    for &t in inverse.timesteps() {
        let want = inverse.step(&m, t, &x).unwrap();
        let got = dc::inverse_step(&inverse, &mt, t, &xt).unwrap();
        assert_eq!(bits::<T>(&got.prev_sample), slice_bits(&want.prev_sample));
        assert_eq!(
            bits::<T>(&got.pred_original_sample),
            slice_bits(&want.pred_original_sample)
        );
        // A strided view gives the same numbers.
        let strided = xt
            .transpose(2, 3)
            .unwrap()
            .contiguous()
            .unwrap()
            .transpose(2, 3)
            .unwrap();
        let got = dc::inverse_step(&inverse, &mt, t, &strided).unwrap();
        assert_eq!(bits::<T>(&got.prev_sample), slice_bits(&want.prev_sample));
    }
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    scheduler.set_timesteps(10).unwrap();
    let zero = elems::<T>(&[0.0])[0];
    let mut want = vec![zero; n];
    scheduler
        .batch_step_no_noise(&m, &[901, 1], &x, true, &mut want)
        .unwrap();
    let got = dc::batch_step_no_noise(&scheduler, &mt, &[901, 1], &xt, true).unwrap();
    assert_eq!(bits::<T>(&got), slice_bits(&want));
    assert!(dc::batch_step_no_noise(&scheduler, &mt, &[901, 1, 2], &xt, true).is_err());
    // One timestep for every item of axis 0.
    let mut want = vec![zero; n];
    scheduler
        .batch_step_no_noise(&m, &[901, 901], &x, true, &mut want)
        .unwrap();
    let got = dc::batch_step_no_noise(&scheduler, &mt, &[901], &xt, true).unwrap();
    assert_eq!(bits::<T>(&got), slice_bits(&want));
    // A count that divides the elements but is not axis 0's length is refused, not taken as
    // the batch size.
    let four = mt.reshape((4, n / 4)).unwrap();
    assert!(matches!(
        dc::batch_step_no_noise(&scheduler, &four, &[901, 1], &four, true),
        Err(ddim::Error::TimestepCountMismatch {
            batch_size: 4,
            got: 2
        })
    ));
    assert_eq!(
        bits::<T>(&dc::scale_model_input(&scheduler, &xt, 901)),
        slice_bits(scheduler.scale_model_input(&x, 901))
    );
}

#[test]
fn inverse_batch_and_scale_on_tensors_equal_slices() {
    inverse_and_batch_for::<f32>();
    inverse_and_batch_for::<f64>();
    inverse_and_batch_for::<half::f16>();
    inverse_and_batch_for::<half::bf16>();
}

#[test]
fn check_finite_on_tensors() {
    use ddim::backend::candle::{CandleBackend, Dispatch};
    let mut scheduler = DdimScheduler::new(DdimConfig::default()).unwrap();
    scheduler.set_timesteps(10).unwrap();
    let x = Tensor::new(&[[0.5f32, 1.0], [f32::INFINITY, 2.0]], &Device::Cpu).unwrap();
    let m = Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap();
    let options = TensorStepOptions {
        check_finite: true,
        ..Default::default()
    };
    for dispatch in [Dispatch::Auto, Dispatch::Ops] {
        let e = CandleBackend { dispatch }
            .step(&scheduler, &m, 901, &x, &options)
            .unwrap_err();
        assert!(
            matches!(
                e,
                ddim::Error::NonFinite {
                    buffer: "sample",
                    index: 2,
                    ..
                }
            ),
            "{dispatch:?}: {e}"
        );
        // Off by default: the step runs (with clip_sample, the ∞ is clamped, as in torch).
        assert!(CandleBackend { dispatch }
            .step(&scheduler, &m, 901, &x, &Default::default())
            .is_ok());
    }
}

/// `step_in_place` on tensors writes exactly what `step` returns into the sample and the model
/// output, for every dtype and mode, on contiguous CPU tensors (the fused kernel) and on
/// strided ones (`step` then `slice_set`); clones see the write; on error nothing changes.
fn in_place_for<T: Element + WithDType>() {
    let shape = (2usize, 4usize, 8usize, 8usize);
    let n = 2 * 4 * 8 * 8;
    let dev = Device::Cpu;
    let tensor =
        |seed: u32| Tensor::from_vec(elems::<T>(&pseudo_random(n, seed)), shape, &dev).unwrap();
    for (mode, s) in common::mode_schedulers(&DdimConfig::default(), 20) {
        let z = tensor(3);
        for (eta, ucmo) in [(0.0, false), (1.0, true)] {
            let options = TensorStepOptions {
                eta,
                use_clipped_model_output: ucmo,
                variance_noise: Some(&z),
                ..Default::default()
            };
            let (m, x) = (tensor(1), tensor(2));
            let want = dc::step(&s, &m, 651, &x, &options).unwrap();
            // Contiguous: the fused in-place kernel. A clone shares the storage.
            let (m_in, x_in) = (m.copy().unwrap(), x.copy().unwrap());
            let x_clone = x_in.clone();
            dc::step_in_place(&s, &m_in, 651, &x_in, &options).unwrap();
            let id = format!("{:?} {mode} eta={eta}", T::DTYPE);
            assert_eq!(bits::<T>(&x_in), bits::<T>(&want.prev_sample), "{id}");
            assert_eq!(
                bits::<T>(&m_in),
                bits::<T>(&want.pred_original_sample),
                "{id} x0"
            );
            assert_eq!(
                bits::<T>(&x_clone),
                bits::<T>(&want.prev_sample),
                "{id} clone"
            );
            // Strided views (of transposed storage) are refused, and left as they were.
            let strided = |t: &Tensor| {
                t.transpose(2, 3)
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .transpose(2, 3)
                    .unwrap()
            };
            let (m_s, x_s) = (strided(&m), strided(&x));
            let e = dc::step_in_place(&s, &m_s, 651, &x_s, &options).unwrap_err();
            assert!(e.to_string().contains("only supports contiguous"), "{e}");
            assert_eq!(bits::<T>(&x_s), bits::<T>(&x), "{id} strided untouched");
            // A strided noise tensor is read through the op path, with the same result.
            let (m_in, x_in) = (m.copy().unwrap(), x.copy().unwrap());
            let z_s = strided(&z);
            let strided_noise = TensorStepOptions {
                variance_noise: Some(&z_s),
                ..options
            };
            dc::step_in_place(&s, &m_in, 651, &x_in, &strided_noise).unwrap();
            assert_eq!(
                bits::<T>(&x_in),
                bits::<T>(&want.prev_sample),
                "{id} strided z"
            );
        }
    }
}

#[test]
fn step_in_place_on_tensors_equals_step() {
    in_place_for::<f32>();
    in_place_for::<f64>();
    in_place_for::<half::f16>();
    in_place_for::<half::bf16>();
}

#[test]
fn step_in_place_on_tensors_refuses_shared_storage_and_changes_nothing_on_error() {
    let dev = Device::Cpu;
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    s.set_timesteps(10).unwrap();
    let x = Tensor::from_vec(pseudo_random(32, 1), (2, 16), &dev).unwrap();
    let m = Tensor::from_vec(pseudo_random(32, 2), (2, 16), &dev).unwrap();
    let before = (bits::<f32>(&x), bits::<f32>(&m));
    let opts = TensorStepOptions::default();
    // A clone, and a view of the same storage.
    let e = dc::step_in_place(&s, &x.clone(), 900, &x, &opts).unwrap_err();
    assert!(
        matches!(
            e,
            ddim::Error::SharedStorage {
                name: "model_output",
                with: "sample"
            }
        ),
        "{e}"
    );
    let e = dc::step_in_place(
        &s,
        &x.reshape((4, 8)).unwrap().reshape((2, 16)).unwrap(),
        900,
        &x,
        &opts,
    )
    .unwrap_err();
    assert!(matches!(e, ddim::Error::SharedStorage { .. }), "{e}");
    let noisy = TensorStepOptions {
        eta: 1.0,
        variance_noise: Some(&m),
        ..Default::default()
    };
    let e = dc::step_in_place(&s, &m, 900, &x, &noisy).unwrap_err();
    assert!(
        matches!(
            e,
            ddim::Error::SharedStorage {
                name: "variance_noise",
                with: "model_output"
            }
        ),
        "{e}"
    );
    // Errors of the step itself leave both tensors as they were.
    for (t, o) in [
        (1000, opts),
        (
            900,
            TensorStepOptions {
                eta: 1.0,
                ..Default::default()
            },
        ),
    ] {
        assert!(dc::step_in_place(&s, &m, t, &x, &o).is_err());
    }
    let nan = Tensor::from_vec(vec![f32::NAN; 32], (2, 16), &dev).unwrap();
    let checked = TensorStepOptions {
        check_finite: true,
        ..Default::default()
    };
    assert!(matches!(
        dc::step_in_place(&s, &nan, 900, &x, &checked),
        Err(ddim::Error::NonFinite { .. })
    ));
    assert_eq!((bits::<f32>(&x), bits::<f32>(&m)), before);
}
