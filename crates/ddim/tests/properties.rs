//! Property tests (proptest) over valid configs: the timestep schedule, ᾱ, determinism, the
//! η > 0 step without noise, the config JSON round trip, quad and custom timesteps, and the
//! inverse step undoing the forward step. Case counts are kept small so the
//! file runs in seconds in a debug build; `PROPTEST_CASES=30000 PROPTEST_MAX_GLOBAL_REJECTS=1000000 cargo
//! test -p ddim --test properties` runs a deeper search (RELIABILITY.md).

use ddim::{
    BetaSchedule, DdimConfig, DdimInverseScheduler, DdimScheduler, Error, PredictionType,
    PrevTimestepRule, SpacingOverride, StepOptions, TimestepSpacing, ZeroSnrGuard,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, FileFailurePersistence};

fn spacing() -> impl Strategy<Value = TimestepSpacing> {
    prop::sample::select(TimestepSpacing::ALL)
}

/// A config `DdimScheduler::new` accepts, with `T` in `1..=max_t` and every mode (β at
/// least 1e-6, so that the zero-SNR rescale is defined: it divides by √ᾱ₀ − √ᾱ_{T−1}).
fn valid_config(max_t: usize) -> impl Strategy<Value = DdimConfig> {
    (1..=max_t)
        .prop_flat_map(|t| {
            (
                Just(t),
                (1e-6f64..0.01, 0.0f64..0.05),
                prop::sample::select(BetaSchedule::ALL),
                prop::option::weighted(0.2, prop::collection::vec(1e-4f64..0.02, t)),
                (any::<bool>(), any::<bool>(), 0usize..3),
                prop::sample::select(PredictionType::ALL),
                (any::<bool>(), 0.0f64..=1.0, 0.1f64..5.0, 0.1f64..5.0),
                (spacing(), any::<bool>()),
            )
        })
        .prop_map(
            |(t, (start, extra), schedule, trained, (clip, one, offset), prediction, th, sp)| {
                DdimConfig {
                    num_train_timesteps: t,
                    beta_start: start,
                    beta_end: start + extra,
                    beta_schedule: schedule,
                    trained_betas: trained,
                    clip_sample: clip,
                    set_alpha_to_one: one,
                    steps_offset: offset,
                    prediction_type: prediction,
                    thresholding: th.0,
                    dynamic_thresholding_ratio: th.1,
                    clip_sample_range: th.2,
                    sample_max_value: th.3,
                    timestep_spacing: sp.0,
                    // The rescale needs two distinct ᾱ (validate refuses T = 1).
                    rescale_betas_zero_snr: sp.1 && t > 1,
                    ..DdimConfig::default()
                }
            },
        )
}

/// The buffers hold one sample (dynamic thresholding, which random configs turn on, needs
/// the batch size).
const ONE_SAMPLE: StepOptions<'static> = StepOptions {
    eta: 0.0,
    use_clipped_model_output: false,
    variance_noise: None,
    batch_size: Some(1),
    check_finite: false,
};

fn finite_vec(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-4.0f32..4.0, len)
}

proptest! {
    // Failures are kept next to this file (the default looks for a lib.rs above it first and
    // says so on every failure).
    #![proptest_config(RunnerConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..RunnerConfig::default()
    })]

    /// For every n in 1..=T: exactly n timesteps, strictly decreasing, in [0, T); `leading`
    /// with a `steps_offset` that reaches T is the one refusal. Both prev-timestep rules land
    /// where they say.
    #[test]
    fn every_n_gives_n_decreasing_timesteps_in_range(config in valid_config(120)) {
        let t = config.num_train_timesteps;
        let (spacing, offset) = (config.timestep_spacing, config.steps_offset);
        // The zero-SNR guard (tested in options.rs) would refuse ε on a zero-SNR schedule;
        // this property is about the timesteps alone.
        let scheduler = DdimScheduler::new(config).unwrap().with_zero_snr_guard(ZeroSnrGuard::Off);
        for rule in [PrevTimestepRule::Stride, PrevTimestepRule::NextInSchedule] {
            let mut s = scheduler.clone().with_prev_timestep_rule(rule);
            for n in 1..=t {
                match s.set_timesteps(n) {
                    Ok(()) => {}
                    Err(Error::InvalidStepCount { requested, .. }) => {
                        prop_assert_eq!(requested, n);
                        prop_assert_eq!(spacing, TimestepSpacing::Leading);
                        prop_assert!((n - 1) * (t / n) + offset >= t, "n = {}", n);
                        continue;
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
                let ts = s.timesteps().to_vec();
                prop_assert_eq!(ts.len(), n);
                prop_assert!(ts.windows(2).all(|w| w[0] > w[1]), "{:?}", ts);
                prop_assert!(ts[0] < t);
                for (i, &step) in ts.iter().enumerate() {
                    let prev = s.prev_timestep(step).unwrap();
                    match rule {
                        PrevTimestepRule::Stride => prop_assert_eq!(prev, step.checked_sub(t / n)),
                        _ => prop_assert_eq!(prev, ts.get(i + 1).copied()),
                    }
                    let c = s.step_coefficients(step, 0.0).unwrap();
                    prop_assert_eq!(c.prev_timestep, prev);
                }
            }
            prop_assert!(s.set_timesteps(0).is_err());
            prop_assert!(s.set_timesteps(t + 1).is_err());
        }
    }

    /// ᾱ is non-increasing and in [0, 1]; β in [0, 1].
    #[test]
    fn alphas_cumprod_non_increasing_in_unit_interval(config in valid_config(2000)) {
        let s = DdimScheduler::new(config).unwrap();
        let ac = s.alphas_cumprod();
        prop_assert!(ac.iter().all(|a| (0.0..=1.0).contains(a)), "{:?}", ac);
        prop_assert!(ac.windows(2).all(|w| w[1] <= w[0]));
        prop_assert!(s.betas().iter().all(|b| (0.0..=1.0).contains(b)));
        prop_assert!((0.0..=1.0).contains(&s.final_alpha_cumprod()));
    }

    /// η = 0 is deterministic: the same inputs give bit-identical outputs, whatever noise is
    /// passed (unused at η = 0), and `step_into` agrees with `step`.
    #[test]
    fn eta_zero_step_is_deterministic(
        config in valid_config(200),
        n in 1usize..60,
        pick in any::<prop::sample::Index>(),
        (batch, m, x, z) in (1usize..4, 1usize..40).prop_flat_map(|(batch, per_item)| {
            let len = batch * per_item;
            (Just(batch), finite_vec(len), finite_vec(len), finite_vec(len))
        }),
    ) {
        let len = m.len();
        let mut s = DdimScheduler::new(config).unwrap();
        prop_assume!(s.set_timesteps(n.min(s.config().num_train_timesteps)).is_ok());
        let t = s.timesteps()[pick.index(s.timesteps().len())];
        let plain = StepOptions { batch_size: Some(batch), ..Default::default() };
        let with_noise = StepOptions { variance_noise: Some(&z[..]), ..plain };
        let a = s.step(&m, t, &x, &plain).unwrap();
        let b = s.step(&m, t, &x, &plain).unwrap();
        let c = s.step(&m, t, &x, &with_noise).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&a.prev_sample), bits(&b.prev_sample));
        prop_assert_eq!(bits(&a.prev_sample), bits(&c.prev_sample));
        prop_assert_eq!(bits(&a.pred_original_sample), bits(&c.pred_original_sample));
        let (mut p, mut o) = (vec![0.0f32; len], vec![0.0f32; len]);
        s.step_into(&m, t, &x, &plain, &mut p, &mut o).unwrap();
        prop_assert_eq!(bits(&a.prev_sample), bits(&p));
    }

    /// An η > 0 step with zero noise is the deterministic part of that step: x̂₀ is the η = 0
    /// step's, and x_{t_prev}(z) − x_{t_prev}(0) = σ_t·z. Where σ_t = 0 (the last step with
    /// `set_alpha_to_one`, and any step with η = 0) it equals the η = 0 step exactly. (In
    /// general it does not: σ_t also shrinks the direction coefficient √(1 − ᾱ_prev − σ_t²).)
    #[test]
    fn eta_with_zero_noise_is_the_deterministic_part(
        config in valid_config(200),
        n in 1usize..60,
        pick in any::<prop::sample::Index>(),
        eta in 0.0f32..=1.0,
        m in finite_vec(16),
        x in finite_vec(16),
        z in finite_vec(16),
    ) {
        let mut s = DdimScheduler::new(config).unwrap();
        prop_assume!(s.set_timesteps(n.min(s.config().num_train_timesteps)).is_ok());
        let t = s.timesteps()[pick.index(s.timesteps().len())];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let zeros = [0.0f32; 16];
        let eta0 = s.step(&m, t, &x, &ONE_SAMPLE).unwrap();
        let quiet = StepOptions { eta, variance_noise: Some(&zeros[..]), ..ONE_SAMPLE };
        let noisy = StepOptions { variance_noise: Some(&z[..]), ..quiet };
        let (q, r) = match (s.step(&m, t, &x, &quiet), s.step(&m, t, &x, &noisy)) {
            (Ok(q), Ok(r)) => (q, r),
            // η ≤ 1 is always valid; the error is only for σ_t² > 1 − ᾱ_prev.
            (Err(e), _) | (_, Err(e)) => return Err(TestCaseError::fail(e.to_string())),
        };
        prop_assert_eq!(bits(&q.pred_original_sample), bits(&eta0.pred_original_sample));
        let c = s.step_coefficients(t, eta).unwrap();
        for ((a, b), zi) in q.prev_sample.iter().zip(&r.prev_sample).zip(&z) {
            if a.is_finite() && b.is_finite() {
                let want = c.std_dev_t * zi;
                let tol = 1e-5 * (1.0 + a.abs() + b.abs());
                prop_assert!((b - a - want).abs() <= tol, "{} - {} vs {}", b, a, want);
            }
        }
        if c.std_dev_t == 0.0 {
            prop_assert_eq!(bits(&q.prev_sample), bits(&eta0.prev_sample));
        }
        // The last step of a set_alpha_to_one schedule has σ_t = 0.
        let last = *s.timesteps().last().unwrap();
        if s.config().set_alpha_to_one && s.prev_timestep(last).unwrap().is_none() {
            let a = s.step(&m, last, &x, &quiet).unwrap();
            let b = s.step(&m, last, &x, &ONE_SAMPLE).unwrap();
            prop_assert_eq!(bits(&a.prev_sample), bits(&b.prev_sample));
        }
    }

    /// Save then load gives the same config (the saved form adds `_class_name` and
    /// `_diffusers_version`), and saving that again gives the same text. Any finite numbers,
    /// not only valid ones.
    #[test]
    fn config_json_round_trip_is_identity(
        config in valid_config(50),
        floats in prop::array::uniform5(any::<f64>().prop_filter("finite", |v| v.is_finite())),
        (t, offset) in (any::<u64>(), any::<u64>()),
        trained in prop::option::of(prop::collection::vec(
            any::<f64>().prop_filter("finite", |v| v.is_finite()), 0..8)),
    ) {
        let config = DdimConfig {
            num_train_timesteps: t as usize,
            steps_offset: offset as usize,
            beta_start: floats[0],
            beta_end: floats[1],
            dynamic_thresholding_ratio: floats[2],
            clip_sample_range: floats[3],
            sample_max_value: floats[4],
            trained_betas: trained,
            ..config
        };
        let text = config.to_json_string();
        let loaded = DdimConfig::from_json_str(&text).unwrap();
        prop_assert_eq!(loaded.extra.len(), 2);
        prop_assert_eq!(&loaded.extra["_class_name"], "DDIMScheduler");
        prop_assert_eq!(&loaded.extra["_diffusers_version"], ddim::DIFFUSERS_VERSION);
        prop_assert_eq!(&DdimConfig { extra: config.extra.clone(), ..loaded.clone() }, &config);
        prop_assert_eq!(loaded.to_json_string(), text);
    }

    /// Quad spacing (the DDIM paper's quadratic timesteps) for every n in 1..=T: n timesteps,
    /// strictly decreasing, in [0, T), each stepping to the next; with `steps_offset` = 0 it
    /// never refuses (de-duplication ends at most at max(n − 1, ⌊0.8·T⌋) < T); an offset may
    /// push it to T, refused as `InvalidStepCount`.
    #[test]
    fn quad_spacing_gives_n_decreasing_timesteps_in_range(config in valid_config(120)) {
        let t = config.num_train_timesteps;
        let offset = config.steps_offset;
        let mut s = DdimScheduler::new(config)
            .unwrap()
            .with_zero_snr_guard(ZeroSnrGuard::Off)
            .with_spacing_override(SpacingOverride::Quad);
        for n in 1..=t {
            match s.set_timesteps(n) {
                Ok(()) => {}
                Err(Error::InvalidStepCount { requested, .. }) if offset > 0 => {
                    prop_assert_eq!(requested, n);
                    continue;
                }
                Err(e) => return Err(TestCaseError::fail(format!("n = {n}: {e}"))),
            }
            let ts = s.timesteps().to_vec();
            prop_assert_eq!(&ts, &ddim::timesteps::quad_timesteps(t, offset, n).unwrap());
            prop_assert_eq!(ts.len(), n);
            prop_assert!(ts.windows(2).all(|w| w[0] > w[1]), "{:?}", ts);
            prop_assert!(ts[0] < t && ts[n - 1] >= offset.min(t - 1), "{:?}", ts);
            for (i, &step) in ts.iter().enumerate() {
                prop_assert_eq!(s.prev_timestep(step).unwrap(), ts.get(i + 1).copied());
            }
        }
        prop_assert!(s.set_timesteps(0).is_err());
    }

    /// Custom timesteps: accepted exactly when the list is non-empty, strictly decreasing and
    /// in [0, T); then the schedule is that list, each step goes to the next, and a step at
    /// each of them succeeds. A refused list leaves the scheduler as it was.
    #[test]
    fn custom_timesteps_accepted_iff_decreasing_and_in_range(
        config in valid_config(200),
        list in prop::collection::vec(0usize..210, 0..12),
        sorted in any::<bool>(),
        m in finite_vec(8),
        x in finite_vec(8),
    ) {
        let t = config.num_train_timesteps;
        let mut list = list;
        if sorted {
            list.sort_unstable_by(|a, b| b.cmp(a));
            list.dedup();
            list.retain(|&v| v < t);
        }
        let mut s = DdimScheduler::new(config).unwrap().with_zero_snr_guard(ZeroSnrGuard::Off);
        // Give the scheduler a schedule of its own where one exists (T = 1 with leading spacing
        // and steps_offset 1 has none: timestep 1 is out of range); a refused list must leave
        // whatever it holds untouched.
        let _ = s.set_timesteps(1);
        let before = s.timesteps().to_vec();
        let valid = !list.is_empty()
            && list.iter().all(|&v| v < t)
            && list.windows(2).all(|w| w[0] > w[1]);
        match s.set_timesteps_custom(&list) {
            Ok(()) => {
                prop_assert!(valid, "{:?} accepted with T = {}", list, t);
                prop_assert_eq!(s.timesteps(), &list[..]);
                for (i, &step) in list.iter().enumerate() {
                    prop_assert_eq!(s.prev_timestep(step).unwrap(), list.get(i + 1).copied());
                    prop_assert!(s.step(&m, step, &x, &ONE_SAMPLE).is_ok());
                }
            }
            Err(Error::InvalidTimesteps { .. }) => {
                prop_assert!(!valid, "{:?} refused with T = {}", list, t);
                prop_assert_eq!(s.timesteps(), &before[..]);
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        }
    }

    /// The inverse undoes the forward step: for ε-prediction without clipping (any spacing,
    /// prev-timestep rule, quad or the config's timesteps), a forward η = 0 step from t with
    /// a fixed model output ε, then the matching inverse step at t with the same ε, returns
    /// x_t: both pass through the same x̂₀ = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t (in f64, up to the
    /// rounding that 1/√ᾱ amplifies).
    #[test]
    fn inverse_step_undoes_forward_step(
        config in valid_config(200),
        n in 1usize..60,
        next_in_schedule in any::<bool>(),
        quad in any::<bool>(),
        pick in any::<prop::sample::Index>(),
        eps in prop::collection::vec(-4.0f64..4.0, 8),
        x in prop::collection::vec(-4.0f64..4.0, 8),
    ) {
        let config = DdimConfig {
            prediction_type: PredictionType::Epsilon,
            clip_sample: false,
            thresholding: false,
            rescale_betas_zero_snr: false,
            ..config
        };
        let mut forward = DdimScheduler::new(config).unwrap();
        if next_in_schedule {
            forward = forward.with_prev_timestep_rule(PrevTimestepRule::NextInSchedule);
        }
        if quad {
            forward = forward.with_spacing_override(SpacingOverride::Quad);
        }
        prop_assume!(forward.set_timesteps(n.min(forward.config().num_train_timesteps)).is_ok());
        let inverse = DdimInverseScheduler::matching(&forward).unwrap();
        let t = forward.timesteps()[pick.index(forward.timesteps().len())];
        let down = forward.step(&eps, t, &x, &StepOptions::<f64> { batch_size: Some(1), ..Default::default() }).unwrap();
        let up = inverse.step(&eps, t, &down.prev_sample).unwrap();
        let levels = inverse.step_levels(t).unwrap();
        prop_assert_eq!(levels.source_timestep, forward.prev_timestep(t).unwrap());
        let amplification = 1.0 / f64::from(levels.alpha_prod_source.min(levels.alpha_prod_target)).sqrt();
        for (i, (&back, &orig)) in up.prev_sample.iter().zip(&x).enumerate() {
            let tol = 1e-6 * amplification * (1.0 + orig.abs() + eps[i].abs());
            prop_assert!((back - orig).abs() <= tol, "x[{}] = {} came back as {} (t = {})", i, orig, back, t);
        }
    }
}
