//! The ndarray backend's helpers against the slice path they mirror, bit for bit, in every
//! element type (f32, f64, f16, bf16) and in standard and non-standard layouts (permuted
//! storage, Fortran order, every other item of a larger array in reverse): `step_in_place`,
//! `inverse_step`, `batch_step_no_noise`, guidance (`classifier_free_guidance`,
//! `rescale_noise_cfg`, `guide`), torch-seeded latents and noise (`randn_latents`,
//! `randn_latents_per_item`, `step_with_generator`) and `scale_model_input`; and their errors
//! (a failing `step_in_place` changes nothing, a failing `step_with_generator` draws nothing).
#![cfg(feature = "ndarray")]

mod common;

use common::pseudo_random;
use ddim::backend::ndarray as dn;
use ddim::backend::TensorStepOptions;
use ddim::element::Compute;
use ddim::rng::{NoiseGenerator, RandnElement, TorchCpuGenerator};
use ddim::{
    DdimConfig, DdimInverseConfig, DdimInverseScheduler, DdimScheduler, Element, Error,
    PredictionType, StepOptions,
};
use ndarray::{Array, Array4, ArrayView4, ArrayViewMut4, Axis, ShapeBuilder, Slice};

/// The shape of the test arrays: a batch of 2 on axis 0.
const SHAPE: (usize, usize, usize, usize) = (2, 3, 4, 5);
const LEN: usize = 2 * 3 * 4 * 5;

fn elems<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter()
        .map(|&x| T::from_compute(<T::Compute as Compute>::from_f32(x)))
        .collect()
}

/// The bits of each value, widened exactly to f64 (injective for every element type).
fn bits<'a, T: Element + 'a>(values: impl IntoIterator<Item = &'a T>) -> Vec<u64> {
    values
        .into_iter()
        .map(|v| v.to_compute().to_f64().to_bits())
        .collect()
}

fn array<T: Element>(seed: u32) -> Array4<T> {
    Array4::from_shape_vec(SHAPE, elems(&pseudo_random(LEN, seed))).unwrap()
}

/// The slice options of a batch of `batch` items. (`.into()` keeps this valid whether
/// `StepOptions::batch_size` is a `usize` or an `Option<usize>`.)
#[allow(clippy::useless_conversion)]
fn slice_options<T>(
    eta: f32,
    use_clipped_model_output: bool,
    variance_noise: Option<&[T]>,
    batch: usize,
) -> StepOptions<'_, T> {
    StepOptions {
        eta,
        use_clipped_model_output,
        variance_noise,
        batch_size: batch.into(),
        ..Default::default()
    }
}

/// Where an array's logical values live: four memory layouts of the same values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// Row-major: `as_slice()` is `Some`.
    Standard,
    /// Stored with axes 1 and 3 swapped, viewed back (a transposed view).
    Permuted,
    /// Column-major.
    Fortran,
    /// Every other item of an array twice as long on axis 0, in reverse (negative stride).
    Reversed,
}

const LAYOUTS: [Layout; 4] = [
    Layout::Standard,
    Layout::Permuted,
    Layout::Fortran,
    Layout::Reversed,
];

impl Layout {
    /// The storage holding `a`'s logical values in this layout.
    fn store<T: Element>(self, a: &Array4<T>) -> Array4<T> {
        let zero = T::from_compute(<T::Compute as Compute>::ZERO);
        let mut s = match self {
            Layout::Standard => return a.clone(),
            Layout::Permuted => {
                return a
                    .view()
                    .permuted_axes([0, 3, 2, 1])
                    .as_standard_layout()
                    .into_owned()
            }
            Layout::Fortran => Array4::from_elem(a.raw_dim().f(), zero),
            Layout::Reversed => {
                let (b, c, h, w) = a.dim();
                Array4::from_elem((2 * b, c, h, w), zero)
            }
        };
        self.view_mut(&mut s).assign(a);
        s
    }

    fn view<T>(self, s: &Array4<T>) -> ArrayView4<'_, T> {
        match self {
            Layout::Standard | Layout::Fortran => s.view(),
            Layout::Permuted => s.view().permuted_axes([0, 3, 2, 1]),
            Layout::Reversed => s.slice_axis(Axis(0), Slice::new(0, None, -2)),
        }
    }

    fn view_mut<T>(self, s: &mut Array4<T>) -> ArrayViewMut4<'_, T> {
        match self {
            Layout::Standard | Layout::Fortran => s.view_mut(),
            Layout::Permuted => s.view_mut().permuted_axes([0, 3, 2, 1]),
            Layout::Reversed => s.slice_axis_mut(Axis(0), Slice::new(0, None, -2)),
        }
    }
}

/// The layouts are what they claim: the same logical values, standard layout only for
/// `Standard`.
#[test]
fn layouts_hold_the_same_logical_values() {
    let a = array::<f32>(1);
    for layout in LAYOUTS {
        let s = layout.store(&a);
        let v = layout.view(&s);
        assert_eq!(v, a.view(), "{layout:?}");
        assert_eq!(
            v.is_standard_layout(),
            layout == Layout::Standard,
            "{layout:?}"
        );
    }
}

fn scheduler(prediction_type: PredictionType, thresholding: bool, clip: bool) -> DdimScheduler {
    let config = DdimConfig {
        prediction_type,
        thresholding,
        clip_sample: clip,
        ..DdimConfig::default()
    };
    let mut s = DdimScheduler::new(config).unwrap();
    s.set_timesteps(10).unwrap();
    s
}

/// The configs the step tests run: every prediction type, with none, clipping and dynamic
/// thresholding (which is per item of axis 0).
fn schedulers() -> Vec<DdimScheduler> {
    let mut out = Vec::new();
    for p in PredictionType::ALL.iter().copied() {
        for (thresholding, clip) in [(false, false), (false, true), (true, false)] {
            out.push(scheduler(p, thresholding, clip));
        }
    }
    out
}

fn step_in_place_for<T: Element>() {
    let (m, x, z) = (array::<T>(1), array::<T>(2), array::<T>(3));
    let (ms, xs, zs) = (
        m.as_slice().unwrap(),
        x.as_slice().unwrap(),
        z.as_slice().unwrap(),
    );
    for s in schedulers() {
        for (eta, ucmo) in [(0.0f32, false), (0.5, true), (1.0, false)] {
            let t = s.timesteps()[3];
            let (mut want_m, mut want_x) = (ms.to_vec(), xs.to_vec());
            s.step_in_place(
                &mut want_m,
                t,
                &mut want_x,
                &slice_options(eta, ucmo, Some(zs), 2),
            )
            .unwrap();
            for lm in LAYOUTS {
                for lx in LAYOUTS {
                    let (mut m_store, mut x_store, z_store) =
                        (lm.store(&m), lx.store(&x), lx.store(&z));
                    let options = TensorStepOptions {
                        eta,
                        use_clipped_model_output: ucmo,
                        variance_noise: Some(lx.view(&z_store)),
                        ..Default::default()
                    };
                    let what = format!("{:?} eta {eta} {lm:?}/{lx:?}", s.config().prediction_type);
                    // The out-of-place step on the same views lands on the same bits.
                    let out =
                        dn::step(&s, lm.view(&m_store), t, lx.view(&x_store), &options).unwrap();
                    assert_eq!(bits(&out.prev_sample), bits(&want_x), "step {what}");
                    dn::step_in_place(
                        &s,
                        lm.view_mut(&mut m_store),
                        t,
                        lx.view_mut(&mut x_store),
                        &options,
                    )
                    .unwrap();
                    assert_eq!(bits(lx.view(&x_store)), bits(&want_x), "{what}");
                    assert_eq!(bits(lm.view(&m_store)), bits(&want_m), "x̂₀ {what}");
                    assert_eq!(bits(&out.pred_original_sample), bits(&want_m), "{what}");
                }
            }
        }
    }
}

#[test]
fn step_in_place_equals_slices() {
    step_in_place_for::<f32>();
    step_in_place_for::<f64>();
    step_in_place_for::<half::f16>();
    step_in_place_for::<half::bf16>();
}

/// Any dimension: a 2-d array and a dynamic-dimension array step as the flat slice.
#[test]
fn step_in_place_any_dimension() {
    let s = scheduler(PredictionType::Epsilon, true, false);
    let (m, x): (Vec<f32>, Vec<f32>) = (pseudo_random(24, 5), pseudo_random(24, 6));
    let (mut want_m, mut want_x) = (m.clone(), x.clone());
    s.step_in_place(
        &mut want_m,
        901,
        &mut want_x,
        &slice_options(0.0, false, None, 3),
    )
    .unwrap();
    let options = TensorStepOptions::default();
    let (mut m2, mut x2) = (
        Array::from_shape_vec((3, 8), m.clone()).unwrap(),
        Array::from_shape_vec((3, 8), x.clone()).unwrap(),
    );
    dn::step_in_place(&s, m2.view_mut(), 901, x2.view_mut(), &options).unwrap();
    assert_eq!(bits(&x2), bits(&want_x));
    let (mut md, xd) = (
        Array::from_shape_vec(&[3, 2, 4][..], m).unwrap(),
        Array::from_shape_vec(&[3, 2, 4][..], x).unwrap(),
    );
    // Fortran-ordered sample of the same logical values.
    let mut xf = Array::from_elem(xd.raw_dim().f(), 0.0f32);
    xf.assign(&xd);
    dn::step_in_place(
        &s,
        md.view_mut(),
        901,
        xf.view_mut(),
        &TensorStepOptions::default(),
    )
    .unwrap();
    assert_eq!(bits(&md), bits(&want_m));
    assert_eq!(bits(&xf), bits(&want_x));
}

/// Every refusal of `step_in_place` leaves both arrays as they were, in every layout.
#[test]
fn step_in_place_changes_nothing_on_error() {
    let s = scheduler(PredictionType::Epsilon, true, false);
    let unset = DdimScheduler::new(DdimConfig::default()).unwrap();
    let (m, mut x) = (array::<f32>(1), array::<f32>(2));
    x[[1, 2, 3, 4]] = f32::NAN;
    let wrong = Array4::<f32>::zeros((2, 3, 5, 4));
    for layout in LAYOUTS {
        let (mut m_store, mut x_store) = (layout.store(&m), layout.store(&x));
        let before = (bits(&m_store), bits(&x_store));
        let mut check = |scheduler: &DdimScheduler,
                         t: usize,
                         options: &TensorStepOptions<ndarray::ArrayView4<'_, f32>>,
                         want: &dyn Fn(&Error) -> bool| {
            let e = dn::step_in_place(
                scheduler,
                layout.view_mut(&mut m_store),
                t,
                layout.view_mut(&mut x_store),
                options,
            )
            .unwrap_err();
            assert!(want(&e), "{layout:?}: {e}");
            assert_eq!((bits(&m_store), bits(&x_store)), before, "{layout:?}: {e}");
        };
        let plain = TensorStepOptions::default();
        check(&s, 1000, &plain, &|e| {
            matches!(e, Error::TimestepOutOfRange { .. })
        });
        check(&unset, 901, &plain, &|e| {
            matches!(e, Error::TimestepsNotSet)
        });
        let eta = TensorStepOptions {
            eta: 1.0,
            ..Default::default()
        };
        check(&s, 901, &eta, &|e| matches!(e, Error::MissingNoise { .. }));
        let finite = TensorStepOptions {
            check_finite: true,
            ..Default::default()
        };
        check(&s, 901, &finite, &|e| {
            matches!(
                e,
                Error::NonFinite {
                    buffer: "sample",
                    index: 119,
                    ..
                }
            )
        });
        let bad_noise = TensorStepOptions {
            eta: 1.0,
            variance_noise: Some(wrong.view()),
            ..Default::default()
        };
        check(&s, 901, &bad_noise, &|e| {
            matches!(
                e,
                Error::ShapeMismatch {
                    name: "variance_noise",
                    ..
                }
            )
        });
    }
    // A model output of another shape.
    let (mut m_wrong, mut x2) = (wrong.clone(), x.clone());
    let e = dn::step_in_place(
        &s,
        m_wrong.view_mut(),
        901,
        x2.view_mut(),
        &TensorStepOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::ShapeMismatch {
                name: "model_output",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(bits(&m_wrong), bits(&wrong));
    assert_eq!(bits(&x2), bits(&x));
}

fn inverse_and_batch_for<T: Element>() {
    let (m, x) = (array::<T>(31), array::<T>(32));
    let (ms, xs) = (m.as_slice().unwrap(), x.as_slice().unwrap());
    let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default()).unwrap();
    inverse.set_timesteps(10).unwrap();
    let s = scheduler(PredictionType::Epsilon, true, false);
    let zero = T::from_compute(<T::Compute as Compute>::ZERO);
    let mut want_batch = vec![zero; LEN];
    s.batch_step_no_noise(ms, &[901, 1], xs, true, &mut want_batch)
        .unwrap();
    let mut want_one = vec![zero; LEN];
    s.batch_step_no_noise(ms, &[501, 501], xs, false, &mut want_one)
        .unwrap();
    for layout in LAYOUTS {
        let (m_store, x_store) = (layout.store(&m), layout.store(&x));
        let (mv, xv) = (layout.view(&m_store), layout.view(&x_store));
        for &t in inverse.timesteps() {
            let want = inverse.step(ms, t, xs).unwrap();
            let got = dn::inverse_step(&inverse, mv, t, xv).unwrap();
            assert_eq!(
                bits(&got.prev_sample),
                bits(&want.prev_sample),
                "{layout:?}"
            );
            assert_eq!(
                bits(&got.pred_original_sample),
                bits(&want.pred_original_sample),
                "{layout:?}"
            );
            assert!(got.prev_sample.is_standard_layout());
        }
        let got = dn::batch_step_no_noise(&s, mv, &[901, 1], xv, true).unwrap();
        assert_eq!(bits(&got), bits(&want_batch), "{layout:?}");
        // One timestep for every item of axis 0.
        let got = dn::batch_step_no_noise(&s, mv, &[501], xv, false).unwrap();
        assert_eq!(bits(&got), bits(&want_one), "{layout:?}");
        // scale_model_input is the sample itself.
        let input = dn::scale_model_input(&s, xv, 901);
        assert_eq!(bits(input), bits(s.scale_model_input(xs, 901)));
        assert_eq!(input.as_ptr(), xv.as_ptr());
    }
}

#[test]
fn inverse_batch_and_scale_on_arrays_equal_slices() {
    inverse_and_batch_for::<f32>();
    inverse_and_batch_for::<f64>();
    inverse_and_batch_for::<half::f16>();
    inverse_and_batch_for::<half::bf16>();
}

#[test]
fn inverse_and_batch_errors() {
    let mut inverse = DdimInverseScheduler::new(DdimInverseConfig::default()).unwrap();
    let s = scheduler(PredictionType::Epsilon, false, true);
    let x = array::<f32>(1);
    let wrong = Array4::<f32>::zeros((2, 3, 5, 4));
    assert!(matches!(
        dn::inverse_step(&inverse, x.view(), 1, x.view()),
        Err(Error::TimestepsNotSet)
    ));
    inverse.set_timesteps(10).unwrap();
    assert!(matches!(
        dn::inverse_step(&inverse, wrong.view(), 1, x.view()),
        Err(Error::ShapeMismatch {
            name: "model_output",
            ..
        })
    ));
    assert!(matches!(
        dn::batch_step_no_noise(&s, wrong.view(), &[901, 1], x.view(), false),
        Err(Error::ShapeMismatch {
            name: "model_output",
            ..
        })
    ));
    // Axis 0 is the batch: 3 timesteps for 2 items are refused, and so is an empty list.
    for ts in [&[901, 1, 2][..], &[]] {
        assert!(matches!(
            dn::batch_step_no_noise(&s, x.view(), ts, x.view(), false),
            Err(Error::TimestepCountMismatch { batch_size: 2, .. })
        ));
    }
    assert!(matches!(
        dn::batch_step_no_noise(&s, x.view(), &[901, 1000], x.view(), false),
        Err(Error::TimestepOutOfRange { .. })
    ));
}

fn guidance_for<T: Element>() {
    // Means far from zero, as real predictions can have: the rescale's std is then sensitive.
    let u = array::<T>(21);
    let t = Array4::from_shape_vec(
        SHAPE,
        elems::<T>(
            &pseudo_random(LEN, 22)
                .iter()
                .map(|v| v * 0.7 + 0.3)
                .collect::<Vec<_>>(),
        ),
    )
    .unwrap();
    let (us, ts) = (u.as_slice().unwrap(), t.as_slice().unwrap());
    let zero = T::from_compute(<T::Compute as Compute>::ZERO);
    let mut want = vec![zero; LEN];
    ddim::guidance::classifier_free_guidance(us, ts, 7.5, &mut want).unwrap();
    let mut want_rescaled = want.clone();
    ddim::guidance::rescale_noise_cfg(&mut want_rescaled, ts, 0.7, 2).unwrap();
    let cfg = Array4::from_shape_vec(SHAPE, want.clone()).unwrap();
    // [uncond; text] on axis 0.
    let both = ndarray::concatenate(Axis(0), &[u.view(), t.view()]).unwrap();
    for layout in LAYOUTS {
        let (u_store, t_store, cfg_store, both_store) = (
            layout.store(&u),
            layout.store(&t),
            layout.store(&cfg),
            layout.store(&both),
        );
        let (uv, tv) = (layout.view(&u_store), layout.view(&t_store));
        let got = dn::classifier_free_guidance(uv, tv, 7.5).unwrap();
        assert_eq!(bits(&got), bits(&want), "cfg {layout:?}");
        let got = dn::rescale_noise_cfg(layout.view(&cfg_store), tv, 0.7).unwrap();
        assert_eq!(bits(&got), bits(&want_rescaled), "rescale {layout:?}");
        let got = dn::guide(layout.view(&both_store), 7.5, 0.7).unwrap();
        assert_eq!(got.dim(), SHAPE);
        assert_eq!(bits(&got), bits(&want_rescaled), "guide {layout:?}");
        let got = dn::guide(layout.view(&both_store), 7.5, 0.0).unwrap();
        assert_eq!(bits(&got), bits(&want), "guide without rescale {layout:?}");
        // Mixed layouts.
        let got = dn::classifier_free_guidance(u.view(), tv, 7.5).unwrap();
        assert_eq!(bits(&got), bits(&want), "cfg standard/{layout:?}");
    }
}

#[test]
fn guidance_on_arrays_equals_slices() {
    guidance_for::<f32>();
    guidance_for::<f64>();
    guidance_for::<half::f16>();
    guidance_for::<half::bf16>();
}

#[test]
fn guidance_errors() {
    let x = Array::from_elem((2, 3), 1.0f32);
    let odd = Array::from_elem((3, 3), 1.0f32);
    let text = Array::from_shape_vec((2, 3), vec![0.1f32, 0.2, 0.3, 0.4, 0.5, 0.7]).unwrap();
    assert!(matches!(
        dn::guide(odd.view(), 7.5, 0.0),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        dn::guide(ndarray::arr0(1.0f32).view(), 7.5, 0.0),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        dn::classifier_free_guidance(x.view(), odd.view(), 7.5),
        Err(Error::ShapeMismatch {
            name: "noise_pred_text",
            ..
        })
    ));
    assert!(matches!(
        dn::classifier_free_guidance(x.view(), x.view(), f32::NAN),
        Err(Error::InvalidStepOption { .. })
    ));
    // A constant guided sample has no spread to rescale by.
    assert!(matches!(
        dn::rescale_noise_cfg(x.view(), text.view(), 0.7),
        Err(Error::ZeroStdCfg { sample: 0 })
    ));
    assert!(matches!(
        dn::rescale_noise_cfg(text.view(), text.view(), f32::INFINITY),
        Err(Error::InvalidStepOption { .. })
    ));
    assert!(matches!(
        dn::rescale_noise_cfg(text.view(), x.view().reversed_axes(), 0.7),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        dn::rescale_noise_cfg(ndarray::arr0(1.0f32).view(), ndarray::arr0(1.0).view(), 0.7),
        Err(Error::InvalidShape { .. })
    ));
    // Items of one element have no unbiased standard deviation.
    let column = Array::from_shape_vec((2, 1), vec![0.1f32, 0.2]).unwrap();
    assert!(matches!(
        dn::rescale_noise_cfg(column.view(), column.view(), 0.7),
        Err(Error::SampleTooSmall { .. })
    ));
}

fn noise_for<T: RandnElement>() {
    let shape = [2usize, 3, 4, 5];
    let want: Vec<T> = ddim::rng::randn_latents(&shape, &mut TorchCpuGenerator::new(7)).unwrap();
    let got: Array4<T> = dn::randn_latents(SHAPE, &mut TorchCpuGenerator::new(7)).unwrap();
    assert!(got.is_standard_layout());
    assert_eq!(bits(&got), bits(&want));
    // A dynamic shape gives the same values.
    let got: ndarray::ArrayD<T> =
        dn::randn_latents(&shape[..], &mut TorchCpuGenerator::new(7)).unwrap();
    assert_eq!(got.shape(), &shape);
    assert_eq!(bits(&got), bits(&want));
    let want: Vec<T> = ddim::rng::randn_latents_per_item(
        &shape,
        &mut [TorchCpuGenerator::new(1), TorchCpuGenerator::new(2)],
    )
    .unwrap();
    let got: Array4<T> = dn::randn_latents_per_item(
        SHAPE,
        &mut [TorchCpuGenerator::new(1), TorchCpuGenerator::new(2)],
    )
    .unwrap();
    assert_eq!(bits(&got), bits(&want));

    // A seeded η = 1 loop: arrays (in every layout) and slices draw the same noise and land on
    // the same bits.
    let mut s = DdimScheduler::new(DdimConfig::stable_diffusion()).unwrap();
    s.set_timesteps(5).unwrap();
    let m = array::<T>(3);
    let ms = m.as_slice().unwrap();
    let mut gs = TorchCpuGenerator::new(9);
    let mut xs: Vec<T> = ddim::rng::randn_latents(&shape, &mut gs).unwrap();
    for &t in s.timesteps() {
        xs = s
            .step_with_generator(ms, t, &xs, &slice_options(1.0, false, None, 2), &mut gs)
            .unwrap()
            .prev_sample;
    }
    for layout in LAYOUTS {
        let mut g = TorchCpuGenerator::new(9);
        let mut x: Array4<T> = dn::randn_latents(SHAPE, &mut g).unwrap();
        let m_store = layout.store(&m);
        let options = TensorStepOptions {
            eta: 1.0,
            ..Default::default()
        };
        for &t in s.timesteps() {
            let x_store = layout.store(&x);
            x = dn::step_with_generator(
                &s,
                layout.view(&m_store),
                t,
                layout.view(&x_store),
                &options,
                &mut g,
            )
            .unwrap()
            .prev_sample;
        }
        assert_eq!(bits(&x), bits(&xs), "{layout:?}");
    }
    // η = 0 draws nothing and is the plain step.
    let mut g = TorchCpuGenerator::new(4);
    let x = array::<T>(4);
    let options = TensorStepOptions::default();
    let a = dn::step_with_generator(&s, m.view(), 801, x.view(), &options, &mut g).unwrap();
    let b = dn::step(&s, m.view(), 801, x.view(), &options).unwrap();
    assert_eq!(bits(&a.prev_sample), bits(&b.prev_sample));
    assert_eq!(
        first_draw(&mut g),
        first_draw(&mut TorchCpuGenerator::new(4))
    );
}

/// The generator's next value (to see whether it was advanced).
fn first_draw(g: &mut TorchCpuGenerator) -> u32 {
    let mut v = [0f32; 1];
    g.fill_randn_f32(&mut v);
    v[0].to_bits()
}

#[test]
fn torch_seeded_noise_as_arrays_equals_slices() {
    noise_for::<f32>();
    noise_for::<f64>();
    noise_for::<half::f16>();
    noise_for::<half::bf16>();
}

#[test]
fn noise_errors_and_step_with_generator_checks_before_drawing() {
    let s = scheduler(PredictionType::Epsilon, false, true);
    let x = array::<f32>(1);
    let wrong = Array4::<f32>::zeros((2, 3, 5, 4));
    let options = TensorStepOptions {
        eta: 1.0,
        ..Default::default()
    };
    let mut g = TorchCpuGenerator::new(1);
    assert!(matches!(
        dn::step_with_generator(&s, wrong.view(), 901, x.view(), &options, &mut g),
        Err(Error::ShapeMismatch {
            name: "model_output",
            ..
        })
    ));
    let with_noise = TensorStepOptions {
        variance_noise: Some(x.view()),
        ..options
    };
    assert!(matches!(
        dn::step_with_generator(&s, x.view(), 901, x.view(), &with_noise, &mut g),
        Err(Error::NoiseAndGenerator)
    ));
    assert!(matches!(
        dn::step_with_generator(&s, x.view(), 1000, x.view(), &options, &mut g),
        Err(Error::TimestepOutOfRange { .. })
    ));
    assert_eq!(
        first_draw(&mut g),
        first_draw(&mut TorchCpuGenerator::new(1)),
        "a failed call drew nothing"
    );
    // Latents need a batch axis, and one generator or one per item of axis 0.
    assert!(matches!(
        dn::randn_latents::<f32, _, _>((), &mut g),
        Err(Error::InvalidShape { .. })
    ));
    let mut three = [
        TorchCpuGenerator::new(1),
        TorchCpuGenerator::new(2),
        TorchCpuGenerator::new(3),
    ];
    assert!(matches!(
        dn::randn_latents_per_item::<f32, _, _>((2, 4), &mut three),
        Err(Error::GeneratorCountMismatch {
            generators: 3,
            batch_size: 2
        })
    ));
    assert!(matches!(
        dn::randn_latents::<f32, _, _>(&[usize::MAX, 2][..], &mut g),
        Err(Error::InvalidShape { .. })
    ));
}
