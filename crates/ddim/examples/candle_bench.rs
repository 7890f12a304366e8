//! Times, in one process and alternately, this crate's candle backend against candle's own
//! code: one DDIM step (`ddim::backend::candle::step`, and `step_in_place` timed together with
//! restoring its two inputs by `slice_set` before each call, then less that restoring timed
//! alone, against candle-transformers' `DDIMScheduler::step`, η = 0, F32, CPU), one guided
//! prediction (`backend::candle::guide`: CFG 7.5 + `rescale_noise_cfg` 0.7, against the same
//! maths in plain candle ops), and one step of a guided loop (the guided prediction, then the
//! step).
//!
//! ```sh
//! cargo run --release -p ddim --example candle_bench --features candle-transformers
//! MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432 \
//!     cargo run --release -p ddim --example candle_bench --features candle-transformers
//! ```
//!
//! Prints one line per row: the two medians and their ratio.

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor, D};
use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::SchedulerConfig;

/// Median times of `f` and `g`, measured alternately for about `budget` (batches of ≥ 2 ms).
fn time_pair(
    budget: Duration,
    mut f: impl FnMut() -> candle_core::Result<()>,
    mut g: impl FnMut() -> candle_core::Result<()>,
) -> candle_core::Result<(f64, f64)> {
    let batch_for = |h: &mut dyn FnMut() -> candle_core::Result<()>| {
        let t = Instant::now();
        h()?;
        let once = t.elapsed().max(Duration::from_nanos(50));
        Ok::<u32, candle_core::Error>(
            (Duration::from_millis(2).as_nanos() / once.as_nanos()).clamp(1, 10_000) as u32,
        )
    };
    let (kf, kg) = (batch_for(&mut f)?, batch_for(&mut g)?);
    let (mut tf, mut tg) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while tf.len() < 5 || (start.elapsed() < budget && tf.len() < 1000) {
        f()?;
        let t = Instant::now();
        for _ in 0..kf {
            f()?;
        }
        tf.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(kf));
        g()?;
        let t = Instant::now();
        for _ in 0..kg {
            g()?;
        }
        tg.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(kg));
    }
    tf.sort_by(f64::total_cmp);
    tg.sort_by(f64::total_cmp);
    Ok((tf[tf.len() / 2], tg[tg.len() / 2]))
}

/// diffusers' CFG + rescale_noise_cfg written in plain candle ops (what a candle user would).
fn plain_guide(noise_pred: &Tensor, w: f64, phi: f64) -> candle_core::Result<Tensor> {
    let b = noise_pred.dim(0)? / 2;
    let (u, t) = (noise_pred.narrow(0, 0, b)?, noise_pred.narrow(0, b, b)?);
    let cfg = (&u + ((&t - &u)? * w)?)?;
    let std = |x: &Tensor| -> candle_core::Result<Tensor> {
        let flat = x.flatten_from(1)?;
        let n = flat.dim(1)? as f64;
        let mean = flat.mean_keepdim(D::Minus1)?;
        let var = (flat.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (n - 1.0))?;
        var.sqrt()
    };
    let ratio = (std(&t)? / std(&cfg)?)?.reshape((b, 1, 1, 1))?;
    let rescaled = cfg.broadcast_mul(&ratio)?;
    (rescaled * phi)? + (cfg * (1.0 - phi))?
}

fn main() -> candle_core::Result<()> {
    let budget = Duration::from_secs_f64(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    );
    let dev = Device::Cpu;
    let malloc = if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some() {
        "tuned"
    } else {
        "default"
    };
    println!("# candle backend vs candle's own code, F32 CPU, glibc malloc {malloc}");
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "row", "ddim us", "candle us", "x"
    );
    let mut ours = ddim::DdimScheduler::new(ddim::DdimConfig {
        clip_sample: false,
        ..ddim::DdimConfig::default()
    })?;
    ours.set_timesteps(50)?;
    let t = ours.timesteps()[10];
    let config = DDIMSchedulerConfig::default();
    let mut theirs = config.build(50)?;
    for shape in [(1, 4, 64, 64), (1, 4, 128, 128), (4, 4, 128, 128)] {
        let m = Tensor::randn(0f32, 1.0, shape, &dev)?;
        let x = Tensor::randn(0f32, 1.0, shape, &dev)?;
        let (a, b) = time_pair(
            budget,
            || {
                let out = ddim::backend::candle::step(&ours, &m, t, &x, &Default::default())?;
                std::hint::black_box(out);
                Ok(())
            },
            || {
                let out = theirs.step(&m, t, &x)?;
                std::hint::black_box(out);
                Ok(())
            },
        )?;
        let name = format!("step {}x{}x{}x{}", shape.0, shape.1, shape.2, shape.3);
        println!("{name:<34} {a:>12.1} {b:>12.1} {:>7.1}x", b / a);
        // The in-place step overwrites its inputs: each call first copies the originals back
        // (two copies of the sample's size, no allocation), and that time is counted as ours.
        let (m_io, x_io) = (m.copy()?, x.copy()?);
        let copies = || -> candle_core::Result<()> {
            m_io.slice_set(&m, 0, 0)?;
            x_io.slice_set(&x, 0, 0)
        };
        let in_place_with_copies = || {
            copies()?;
            ddim::backend::candle::step_in_place(&ours, &m_io, t, &x_io, &Default::default())?;
            Ok(())
        };
        let (a, b) = time_pair(budget, in_place_with_copies, || {
            std::hint::black_box(theirs.step(&m, t, &x)?);
            Ok(())
        })?;
        let name = format!(
            "step_in_place+copies {}x{}x{}x{}",
            shape.0, shape.1, shape.2, shape.3
        );
        println!("{name:<34} {a:>12.1} {b:>12.1} {:>7.1}x", b / a);
        // The copies alone, timed alternately with the in-place step and its copies: the
        // difference is the step as a loop pays it (a loop has nothing to restore).
        let (with_copies, copies) = time_pair(budget, in_place_with_copies, copies)?;
        let step = with_copies - copies;
        let name = format!(
            "step_in_place {}x{}x{}x{}",
            shape.0, shape.1, shape.2, shape.3
        );
        println!(
            "{name:<34} {step:>12.1} {b:>12.1} {:>7.1}x   ({with_copies:.1} with copies - {copies:.1})",
            b / step
        );
    }
    let noise_pred = Tensor::randn(0f32, 1.0, (4, 4, 64, 64), &dev)?;
    let check = (ddim::backend::candle::guide(&noise_pred, 7.5, 0.7)?
        - plain_guide(&noise_pred, 7.5, 0.7)?)?
    .abs()?
    .flatten_all()?
    .max(0)?
    .to_dtype(DType::F64)?
    .to_scalar::<f64>()?;
    let (a, b) = time_pair(
        budget,
        || {
            std::hint::black_box(ddim::backend::candle::guide(&noise_pred, 7.5, 0.7)?);
            Ok(())
        },
        || {
            std::hint::black_box(plain_guide(&noise_pred, 7.5, 0.7)?);
            Ok(())
        },
    )?;
    println!(
        "{:<34} {a:>12.1} {b:>12.1} {:>7.2}x   (max |diff| {check:.2e})",
        "guide 2x4x64x64 (cfg 7.5 + 0.7)",
        b / a
    );
    // One guided step of a loop, as a pipeline writes it: the guided prediction, then the
    // DDIM step on the latents. Ours: `guide` (bit-exact) and `step_in_place` (the latents
    // restored first, counted as ours); plain candle: the same maths in ops and
    // candle-transformers' step. Then the same with `guide_with_ops` (candle ops; the
    // rescale's σ within 2 ulps of torch's instead of bit-exact).
    type Guide = fn(&Tensor, f32, f32) -> ddim::Result<Tensor>;
    let guides: [(&str, Guide); 2] = [
        ("guided loop step 2x4x64x64", ddim::backend::candle::guide),
        (
            "guided loop step, guide_with_ops",
            ddim::backend::candle::guide_with_ops,
        ),
    ];
    let latents = Tensor::randn(0f32, 1.0, (2, 4, 64, 64), &dev)?;
    let latents_io = latents.copy()?;
    for (name, guide) in guides {
        let (a, b) = time_pair(
            budget,
            || {
                latents_io.slice_set(&latents, 0, 0)?;
                let eps = guide(&noise_pred, 7.5, 0.7)?;
                ddim::backend::candle::step_in_place(
                    &ours,
                    &eps,
                    t,
                    &latents_io,
                    &Default::default(),
                )?;
                Ok(())
            },
            || {
                let eps = plain_guide(&noise_pred, 7.5, 0.7)?;
                std::hint::black_box(theirs.step(&eps, t, &latents)?);
                Ok(())
            },
        )?;
        println!("{name:<34} {a:>12.1} {b:>12.1} {:>7.2}x", b / a);
    }
    let (a, b) = time_pair(
        budget,
        || {
            std::hint::black_box(ddim::backend::candle::guide_with_ops(
                &noise_pred,
                7.5,
                0.7,
            )?);
            Ok(())
        },
        || {
            std::hint::black_box(plain_guide(&noise_pred, 7.5, 0.7)?);
            Ok(())
        },
    )?;
    println!(
        "{:<34} {a:>12.1} {b:>12.1} {:>7.2}x",
        "guide_with_ops 2x4x64x64",
        b / a
    );
    let (a, b) = time_pair(
        budget,
        || {
            std::hint::black_box(ddim::backend::candle::guide(&noise_pred, 7.5, 0.0)?);
            Ok(())
        },
        || {
            let b = noise_pred.dim(0)? / 2;
            let (u, t) = (noise_pred.narrow(0, 0, b)?, noise_pred.narrow(0, b, b)?);
            std::hint::black_box((&u + ((&t - &u)? * 7.5)?)?);
            Ok(())
        },
    )?;
    println!(
        "{:<34} {a:>12.1} {b:>12.1} {:>7.2}x",
        "guide, cfg only 2x4x64x64",
        b / a
    );
    Ok(())
}
