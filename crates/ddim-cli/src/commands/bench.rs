//! `ddim bench`: the speed of one DDIM step against a plain memory copy of the same bytes,
//! measured in the same run.
//!
//! A step reads the model output and the sample (and the noise when η > 0) and writes x̂₀ and
//! x_{t_prev}: `k` full-size f32 arrays, `k = 4` or `5`. The copy reference moves the same
//! number of bytes (reads `k/2` arrays' worth, writes as much) with the same threading rule as
//! the step (rayon above `PARALLEL_MIN_LEN` elements), so "% of copy" is how close the step
//! comes to the memory bound.
//!
//! Each row also times the in-place step, the allocating step, and the candle backend's
//! allocating `step` and `step_in_place` on CPU tensors of the same shape (F32).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ddim::{DdimConfig, DdimScheduler, StepOptions};
use serde_json::json;

/// Arguments of `ddim bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only the two smallest shapes, shorter timing.
    #[arg(long)]
    quick: bool,
    /// Seconds of timing per row (step and copy, measured alternately).
    #[arg(long, default_value_t = 0.5, value_parser = crate::bounds::seconds, allow_negative_numbers = true)]
    seconds: f64,
    /// Run the portable step kernels (SSE2 on x86-64) instead of the widest the CPU has.
    #[arg(long)]
    portable: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH", value_parser = crate::atomic::parse_output)]
    json: Option<PathBuf>,
}

/// The benchmark shapes (B, C, H, W); the last is larger than any last-level cache.
const SHAPES: [[usize; 4]; 5] = [
    [1, 4, 64, 64],
    [1, 4, 128, 128],
    [4, 4, 128, 128],
    [16, 4, 128, 128],
    [16, 4, 1024, 1024],
];

struct Row {
    shape: [usize; 4],
    eta: f32,
    thresholding: bool,
    /// `step_into`, the caller's buffers.
    step: Duration,
    copy: Duration,
    bytes: usize,
    /// `step_in_place` plus the refresh of its two inputs (a copy of each, which the in-place
    /// step overwrites), and the refresh alone.
    in_place_with_refresh: Duration,
    refresh: Duration,
    /// The allocating `step` (two fresh output vectors per call), dropped each time.
    alloc_step: Duration,
    /// `backend::candle::step` on CPU tensors (two fresh output tensors per call).
    candle_step: Duration,
    /// `backend::candle::step_in_place` plus restoring its two input tensors (`slice_set`).
    candle_in_place_with_refresh: Duration,
}

impl Row {
    fn gb_per_s(&self) -> f64 {
        self.bytes as f64 / self.step.as_secs_f64() / 1e9
    }

    fn percent_of_copy(&self) -> f64 {
        100.0 * self.copy.as_secs_f64() / self.step.as_secs_f64()
    }
}

/// The median times of `f` and `g`, measured alternately for about `budget` after a warm-up
/// call of each, so both see the same machine state (frequency, other load). Each measurement
/// times a batch of back-to-back calls (≥ 2 ms, as the baselines are timed), so caches are as
/// warm as the shape allows.
fn time_pair(budget: Duration, mut f: impl FnMut(), mut g: impl FnMut()) -> (Duration, Duration) {
    let batch_for = |h: &mut dyn FnMut()| {
        let t = Instant::now();
        h();
        let once = t.elapsed().max(Duration::from_nanos(50));
        (Duration::from_millis(2).as_nanos() / once.as_nanos()).clamp(1, 100_000) as u32
    };
    let (kf, kg) = (batch_for(&mut f), batch_for(&mut g));
    let (mut tf, mut tg) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while tf.len() < 5 || (start.elapsed() < budget && tf.len() < 10_000) {
        // One untimed call first: the other function has just run, and the baselines are
        // timed back to back (warm caches), so each batch is too.
        f();
        let t = Instant::now();
        for _ in 0..kf {
            f();
        }
        tf.push(t.elapsed() / kf);
        g();
        let t = Instant::now();
        for _ in 0..kg {
            g();
        }
        tg.push(t.elapsed() / kg);
    }
    tf.sort_unstable();
    tg.sort_unstable();
    (tf[tf.len() / 2], tg[tg.len() / 2])
}

/// Deterministic pseudo-random values in [-2, 2) (the values do not affect the speed).
fn fill(buffer: &mut [f32], seed: u32) {
    let mut state = seed;
    for v in buffer {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *v = (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0;
    }
}

/// A plain copy, split over rayon's threads exactly when the step of the same shape is.
fn copy(src: &[f32], dst: &mut [f32], parallel: bool) {
    if parallel {
        use rayon::prelude::*;
        dst.par_chunks_mut(1 << 15)
            .zip(src.par_chunks(1 << 15))
            .for_each(|(d, s)| d.copy_from_slice(s));
    } else {
        dst.copy_from_slice(src);
    }
}

fn bench_shape(shape: [usize; 4], budget: Duration) -> anyhow::Result<Vec<Row>> {
    let n: usize = shape.iter().product();
    let (mut m, mut x, mut z) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    fill(&mut m, 1);
    fill(&mut x, 2);
    fill(&mut z, 3);
    let (mut prev, mut x0) = (vec![0.0f32; n], vec![0.0f32; n]);
    let (src, mut dst) = (vec![1.0f32; n * 5 / 2], vec![0.0f32; n * 5 / 2]);
    let mut rows = Vec::new();
    for thresholding in [false, true] {
        let config = DdimConfig {
            clip_sample: false,
            thresholding,
            ..DdimConfig::default()
        };
        let mut scheduler = DdimScheduler::new(config)?;
        scheduler.set_timesteps(50)?;
        let t = scheduler.timesteps()[10];
        for eta in [0.0f32, 1.0] {
            let options = StepOptions {
                eta,
                batch_size: Some(shape[0]),
                variance_noise: Some(&z),
                ..Default::default()
            };
            let arrays = if eta > 0.0 { 5 } else { 4 };
            // Read k/2 arrays, write k/2 arrays: the step's traffic.
            let len = n * arrays / 2;
            let (step, copy_time) = time_pair(
                budget,
                || {
                    scheduler
                        .step_into(&m, t, &x, &options, &mut prev, &mut x0)
                        .expect("inputs were checked on the first call");
                },
                || copy(&src[..len], &mut dst[..len], n >= ddim::PARALLEL_MIN_LEN),
            );
            // The in-place step overwrites its inputs: each call starts from fresh copies
            // (timed with it; the copies alone are timed against it).
            let (mut mw, mut xw) = (m.clone(), x.clone());
            let (mut mr, mut xr) = (m.clone(), x.clone());
            // The refresh is split over the threads as the step is (as a multi-threaded model
            // writes its output): a copy by the calling thread alone would leave half of the
            // data in the other core's cache for the step, which a loop does not do.
            let parallel = n >= ddim::PARALLEL_MIN_LEN;
            let (in_place_with_refresh, refresh) = time_pair(
                budget,
                || {
                    copy(&m, &mut mw, parallel);
                    copy(&x, &mut xw, parallel);
                    scheduler
                        .step_in_place(&mut mw, t, &mut xw, &options)
                        .expect("inputs were checked on the first call");
                },
                || {
                    copy(&m, &mut mr, parallel);
                    copy(&x, &mut xr, parallel);
                },
            );
            let (alloc_step, _) = time_pair(
                budget / 2,
                || {
                    let out = scheduler
                        .step(&m, t, &x, &options)
                        .expect("inputs were checked on the first call");
                    std::hint::black_box(out);
                },
                || {},
            );
            std::hint::black_box((&mw, &xw, &mr, &xr));
            let (candle_step, candle_in_place_with_refresh) =
                bench_candle(&scheduler, t, shape, (&m, &x, &z), eta, budget)?;
            rows.push(Row {
                shape,
                eta,
                thresholding,
                step,
                copy: copy_time,
                bytes: arrays * n * std::mem::size_of::<f32>(),
                in_place_with_refresh,
                refresh,
                alloc_step,
                candle_step,
                candle_in_place_with_refresh,
            });
        }
    }
    // Keep the inputs observable so the steps are not optimised away.
    std::hint::black_box((&mut m, &mut x, &prev, &x0, &dst));
    Ok(rows)
}

/// The candle backend's allocating step and its in-place step (with the refresh of its two
/// inputs), alternately, on F32 CPU tensors holding the same values as the slices.
fn bench_candle(
    scheduler: &DdimScheduler,
    t: usize,
    shape: [usize; 4],
    (m, x, z): (&[f32], &[f32], &[f32]),
    eta: f32,
    budget: Duration,
) -> anyhow::Result<(Duration, Duration)> {
    use ddim::backend::{candle as dc, TensorStepOptions};
    use ddim::candle_core::{Device, Tensor};
    let tensor = |v: &[f32]| Tensor::from_slice(v, &shape[..], &Device::Cpu);
    let (mt, xt, zt) = (tensor(m)?, tensor(x)?, tensor(z)?);
    let (mw, xw) = (mt.copy()?, xt.copy()?);
    let options = TensorStepOptions {
        eta,
        variance_noise: Some(&zt),
        ..Default::default()
    };
    let (step, in_place) = time_pair(
        budget / 2,
        || {
            let out = dc::step(scheduler, &mt, t, &xt, &options);
            std::hint::black_box(out.expect("inputs were checked by the slice step"));
        },
        || {
            mw.slice_set(&mt, 0, 0)
                .expect("same shape, dtype and device");
            xw.slice_set(&xt, 0, 0)
                .expect("same shape, dtype and device");
            dc::step_in_place(scheduler, &mw, t, &xw, &options)
                .expect("inputs were checked by the slice step");
        },
    );
    Ok((step, in_place))
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        crate::atomic::check_writable(path)?;
    }
    let shapes = if args.quick {
        &SHAPES[..2]
    } else {
        &SHAPES[..]
    };
    let budget = Duration::from_secs_f64(if args.quick {
        args.seconds.min(0.1)
    } else {
        args.seconds
    });
    let threads = rayon::current_num_threads();
    ddim::force_portable_kernels(args.portable);
    let kernel = ddim::kernel_path();
    writeln!(
        out,
        "# one DDIM step (f32, epsilon, t = 780 of 50 leading steps), {threads} rayon threads, \
         {kernel} kernels\n\
         # us/step: step_into; in-place+ref: step_in_place plus copying its 2 inputs back \
         (refresh: the copies alone); alloc step: the allocating step; candle step / \
         candle in-place+ref: backend::candle's step and step_in_place (+ refresh), F32 CPU"
    )?;
    writeln!(
        out,
        "{:<18} {:>4} {:>9} {:>12} {:>9} {:>11} {:>9} {:>14} {:>11} {:>12} {:>12} {:>20}",
        "shape",
        "eta",
        "threshold",
        "us/step",
        "GB/s",
        "copy us",
        "% copy",
        "in-place+ref",
        "refresh",
        "alloc step",
        "candle step",
        "candle in-place+ref"
    )?;
    let mut rows = Vec::new();
    for &shape in shapes {
        for row in bench_shape(shape, budget)? {
            writeln!(
                out,
                "{:<18} {:>4} {:>9} {:>12.2} {:>9.2} {:>11.2} {:>8.1}% {:>14.2} {:>11.2} {:>12.2} {:>12.2} {:>20.2}",
                shape.map(|d| d.to_string()).join("x"),
                row.eta,
                row.thresholding,
                row.step.as_secs_f64() * 1e6,
                row.gb_per_s(),
                row.copy.as_secs_f64() * 1e6,
                row.percent_of_copy(),
                row.in_place_with_refresh.as_secs_f64() * 1e6,
                row.refresh.as_secs_f64() * 1e6,
                row.alloc_step.as_secs_f64() * 1e6,
                row.candle_step.as_secs_f64() * 1e6,
                row.candle_in_place_with_refresh.as_secs_f64() * 1e6
            )?;
            out.flush()?;
            rows.push(row);
        }
    }
    if let Some(path) = &args.json {
        let results: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "shape": r.shape,
                    "elements": r.shape.iter().product::<usize>(),
                    "eta": r.eta,
                    "thresholding": r.thresholding,
                    "us_per_step": r.step.as_secs_f64() * 1e6,
                    "gb_per_s": r.gb_per_s(),
                    "copy_us": r.copy.as_secs_f64() * 1e6,
                    "percent_of_copy": r.percent_of_copy(),
                    "in_place_with_refresh_us": r.in_place_with_refresh.as_secs_f64() * 1e6,
                    "refresh_us": r.refresh.as_secs_f64() * 1e6,
                    "alloc_step_us": r.alloc_step.as_secs_f64() * 1e6,
                    "candle_step_us": r.candle_step.as_secs_f64() * 1e6,
                    "candle_in_place_with_refresh_us": r.candle_in_place_with_refresh.as_secs_f64() * 1e6,
                })
            })
            .collect();
        let doc = json!({"implementation": "ddim", "threads": threads, "kernel_path": kernel.as_str(), "results": results});
        crate::atomic::write(
            path,
            (serde_json::to_string_pretty(&doc)? + "\n").as_bytes(),
        )?;
    }
    Ok(())
}
