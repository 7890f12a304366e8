//! Times candle-transformers' DDIM step (`candle_transformers::models::stable_diffusion::ddim`)
//! on the CPU at the shapes of ddim issue #4, as a baseline for `BENCHMARKS.md`.
//!
//! What is timed is exactly `Scheduler::step(&mut self, &model_output, timestep, &sample)` on a
//! scheduler built once per row (`DDIMScheduler::new` is private, so it is built through
//! `SchedulerConfig::build`). With eta > 0 candle draws its own noise inside `step` (a
//! `Tensor::randn` of the full shape, sequential, `rand::rng()`): that is part of its step and
//! is timed as is. candle's DDIM has no thresholding (and no clip_sample): rows are
//! thresholding=false only.
//!
//! Config: diffusers' `DDIMScheduler()` defaults where candle has the knob: linear betas
//! 0.0001..0.02, 1000 training steps, steps_offset 0, "leading" spacing, epsilon prediction;
//! 50 inference steps; the step at `timesteps()[10]` (780). (candle has no set_alpha_to_one;
//! it does not matter at t=780.)
//!
//! Threads: candle's element-wise binary ops (`sub`, `add`) split over its barrier pool above
//! 64K elements; the pool has `CANDLE_NUM_THREADS` threads, else `RAYON_NUM_THREADS`, else the
//! number of physical cores (Linux: `CANDLE_CPU_MASK` / preferred cores first). Scalar affine
//! ops (`tensor * f64`) and `randn` are single-threaded whatever the setting. "threads" in the
//! JSON is the pool's size as candle reports it (`barrier_pool().n_workers() + 1`).
//!
//! Timing: warm-up (>= 2 calls and ~0.2 s), then R repeats of K back-to-back calls;
//! `us_per_step` = median over repeats of (batch time / K), `us_per_step_min` = the minimum.
//!
//! Allocator: every candle op allocates its output `Vec`. With glibc's default (dynamic)
//! thresholds the heap is trimmed and re-faulted between steps, which dominates the step at
//! many shapes; `--tune-malloc` raises the mmap threshold (32 MiB) and the trim threshold
//! (1 GiB) with mallopt() first. Both are recorded (`malloc`, `tuned_malloc`).
//!
//! Contention: the share of the CPUs that *other* processes used during a row's timed part
//! (/proc/stat minus this process's own CPU time) is recorded as `foreign_cpu_percent`; a row
//! above --max-foreign (5 %) is retried after waiting for a quiet second, up to --retries
//! times, and the least disturbed attempt is kept (`contended: true` if none was quiet).
//!
//! Usage: candle-ddim-bench [--quick] [--json PATH] [--target SECONDS] [--repeats N]

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::{
    BetaSchedule, PredictionType, Scheduler, SchedulerConfig, TimestepSpacing,
};
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

const SHAPES: [[usize; 4]; 5] = [
    [1, 4, 64, 64],
    [1, 4, 128, 128],
    [4, 4, 128, 128],
    [16, 4, 128, 128],
    [16, 4, 1024, 1024], // 67,108,864 elements: 256 MiB per f32 tensor, larger than the LLC
];
const NUM_INFERENCE_STEPS: usize = 50;
const STEP_INDEX: usize = 10;
const SEED: u64 = 0;
const CARGO_LOCK: &str = include_str!("../Cargo.lock");

struct Args {
    quick: bool,
    json: Option<String>,
    target: Option<f64>,
    repeats: usize,
    max_foreign: f64,
    retries: usize,
    max_wait: f64,
    tune_malloc: bool,
}

fn usage(code: i32) -> ! {
    eprintln!(
        "usage: candle-ddim-bench [--quick] [--json PATH] [--target SECONDS] [--repeats N]\n\
         \x20                        [--max-foreign PERCENT] [--retries N] [--max-wait SECONDS] [--tune-malloc]\n\
         \n\
         Times candle-transformers' DDIMScheduler::step (CPU, f32) at the shapes of ddim issue #4.\n\
         --quick     only the two smallest shapes, ~0.3 s per row\n\
         --json      write the results as JSON to PATH\n\
         --target    seconds per row (default 2, quick 0.3)\n\
         --repeats   max repeats per row (default 15)\n\
         --max-foreign  retry a row when other processes used more than this % of the CPUs (default 5)\n\
         --retries   retries per disturbed row (default 4)\n\
         --max-wait  seconds to wait for a quiet machine before a retry (default 60)\n\
         --tune-malloc  mallopt: mmap threshold 32 MiB, trim threshold 1 GiB (see the README)\n\
         Threads: CANDLE_NUM_THREADS (else RAYON_NUM_THREADS, else physical cores)."
    );
    std::process::exit(code)
}

fn parse_args() -> Args {
    let mut a = Args {
        quick: false,
        json: None,
        target: None,
        repeats: 15,
        max_foreign: 5.0,
        retries: 4,
        max_wait: 60.0,
        tune_malloc: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--quick" => a.quick = true,
            "--json" => a.json = Some(it.next().unwrap_or_else(|| usage(2))),
            "--target" => {
                a.target = Some(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage(2)),
                )
            }
            "--repeats" => {
                a.repeats = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage(2))
            }
            "--max-foreign" => {
                a.max_foreign = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage(2))
            }
            "--retries" => {
                a.retries = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage(2))
            }
            "--max-wait" => {
                a.max_wait = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage(2))
            }
            "--tune-malloc" => a.tune_malloc = true,
            "-h" | "--help" => usage(0),
            _ => {
                eprintln!("unknown argument: {s}");
                usage(2)
            }
        }
    }
    a
}

/// Deterministic standard-normal f32 data (splitmix64 + Box-Muller), so inputs do not depend
/// on candle's unseedable CPU RNG.
fn randn_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let (u1, u2) = (next(), next());
        let r = (-2.0 * u1.ln()).sqrt();
        let th = 2.0 * std::f64::consts::PI * u2;
        v.push((r * th.cos()) as f32);
        if v.len() < n {
            v.push((r * th.sin()) as f32);
        }
    }
    v
}

extern "C" {
    // glibc's mallopt(3); the binary links glibc through std on linux-gnu.
    fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
}

/// Keep glibc malloc from returning freed memory to the kernel between steps: mmap threshold at
/// its maximum (32 MiB on 64-bit), trim threshold 1 GiB. Tensors above 32 MiB (the 64M-element
/// shape) are still mmap'ed fresh on every allocation.
fn tune_malloc() -> &'static str {
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: plain libc call, before any other thread allocates.
    let ok = unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    };
    if !ok {
        eprintln!("candle-ddim-bench: mallopt failed");
        std::process::exit(1);
    }
    "glibc, mallopt(M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=1 GiB)"
}

fn config(eta: f64) -> DDIMSchedulerConfig {
    DDIMSchedulerConfig {
        beta_start: 0.0001,
        beta_end: 0.02,
        beta_schedule: BetaSchedule::Linear,
        eta,
        steps_offset: 0,
        prediction_type: PredictionType::Epsilon,
        train_timesteps: 1000,
        timestep_spacing: TimestepSpacing::Leading,
    }
}

/// Checks that the candle scheduler runs diffusers' default schedule at the step timed:
/// with model_output = 0 and sample = 1 an eta = 0 step returns sqrt(ᾱ_prev / ᾱ_t) everywhere,
/// with ᾱ the cumulative product of 1 - linspace(0.0001, 0.02, 1000) (computed here in f64).
fn check_schedule(device: &Device) -> candle_core::Result<(usize, f64, f64)> {
    let mut sched: Box<dyn Scheduler> = config(0.0).build(NUM_INFERENCE_STEPS)?;
    let t = sched.timesteps()[STEP_INDEX];
    let prev = t - 1000 / NUM_INFERENCE_STEPS;
    let mut ac = Vec::with_capacity(1000);
    let mut acc = 1.0f64;
    for i in 0..1000 {
        acc *= 1.0 - (0.0001 + (0.02 - 0.0001) * i as f64 / 999.0);
        ac.push(acc);
    }
    let expected = (ac[prev] / ac[t]).sqrt();
    let zeros = Tensor::zeros((1, 4, 8, 8), DType::F32, device)?;
    let ones = Tensor::ones((1, 4, 8, 8), DType::F32, device)?;
    let got: Vec<f32> = sched.step(&zeros, t, &ones)?.flatten_all()?.to_vec1()?;
    let worst = got
        .iter()
        .map(|&v| ((v as f64 - expected) / expected).abs())
        .fold(0.0, f64::max);
    if worst > 1e-5 {
        eprintln!(
            "candle-ddim-bench: schedule check failed at t={t}: got {}, expected {expected}",
            got[0]
        );
        std::process::exit(1);
    }
    Ok((t, expected, got[0] as f64))
}

struct Timing {
    median_s: f64,
    min_s: f64,
    k: usize,
    repeats: usize,
    foreign_cpu_percent: f64,
    attempts: usize,
}

/// (all CPUs' total jiffies, all CPUs' busy jiffies, this process's jiffies), in USER_HZ.
fn cpu_jiffies() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return (0, 0, 0);
    }
    let total: u64 = v.iter().sum();
    let busy = total - v[3] - v[4]; // minus idle and iowait; steal counts as busy
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest: Vec<u64> = s
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|x| x.parse().ok())
                .collect();
            (rest.len() == 2).then(|| rest[0] + rest[1]) // utime + stime, all threads
        })
        .unwrap_or(0);
    (total, busy, own)
}

/// Percent of the machine's CPU capacity used by other processes between two snapshots.
fn foreign_percent(a: (u64, u64, u64), b: (u64, u64, u64)) -> f64 {
    let dt = b.0.saturating_sub(a.0);
    if dt == 0 {
        return 0.0;
    }
    let foreign = (b.1 - a.1) as f64 - (b.2 - a.2) as f64;
    (100.0 * foreign / dt as f64).max(0.0)
}

/// Wait (up to `max_wait_s`) for a 1-s window in which the machine is < `threshold` % busy.
fn wait_quiet(max_wait_s: f64, threshold: f64) {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < max_wait_s {
        let a = cpu_jiffies();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let b = cpu_jiffies();
        let busy = 100.0 * (b.1 - a.1) as f64 / (b.0 - a.0).max(1) as f64;
        if busy < threshold {
            return;
        }
    }
}

/// `time_row`, retried (after waiting for a quiet second) while other processes used more than
/// `max_foreign` % of the CPUs during the timed part; keeps the least disturbed attempt.
fn time_row_guarded(mut step: impl FnMut(), target_s: f64, args: &Args) -> Timing {
    let mut best: Option<Timing> = None;
    let mut attempt = 0;
    while attempt <= args.retries {
        attempt += 1;
        let t = time_row(&mut step, target_s, args.repeats);
        let f = t.foreign_cpu_percent;
        if best.as_ref().is_none_or(|b| f < b.foreign_cpu_percent) {
            best = Some(t);
        }
        if f <= args.max_foreign {
            break;
        }
        eprintln!("   (other processes used {f:.0} % of the CPUs; waiting, retrying)");
        wait_quiet(args.max_wait, args.max_foreign);
    }
    let mut best = best.expect("at least one attempt");
    best.attempts = attempt;
    best
}

fn time_row(step: &mut impl FnMut(), target_s: f64, max_repeats: usize) -> Timing {
    let t0 = Instant::now();
    let mut n = 0usize;
    let el = loop {
        step();
        n += 1;
        let el = t0.elapsed().as_secs_f64();
        if n >= 2 && el >= (target_s / 4.0).min(0.2) {
            break el;
        }
    };
    let per_call = el / n as f64;
    let total = ((target_s / per_call) as usize).max(3);
    let repeats = total.min(max_repeats).max(3);
    let k = (total / repeats).max(1);
    let c0 = cpu_jiffies();
    let mut batch: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..k {
                step();
            }
            t.elapsed().as_secs_f64() / k as f64
        })
        .collect();
    let c1 = cpu_jiffies();
    batch.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = batch.len();
    let median_s = if m % 2 == 1 {
        batch[m / 2]
    } else {
        0.5 * (batch[m / 2 - 1] + batch[m / 2])
    };
    Timing {
        median_s,
        min_s: batch[0],
        k,
        repeats,
        foreign_cpu_percent: foreign_percent(c0, c1),
        attempts: 1,
    }
}

fn lock_version(name: &str) -> String {
    let needle = format!("name = \"{name}\"\nversion = \"");
    CARGO_LOCK
        .find(&needle)
        .and_then(|i| {
            let rest = &CARGO_LOCK[i + needle.len()..];
            rest.find('"').map(|j| rest[..j].to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn env_opt(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) => json_str(&v),
        Err(_) => "null".into(),
    }
}

fn main() -> candle_core::Result<()> {
    let args = parse_args();
    let target = args.target.unwrap_or(if args.quick { 0.3 } else { 2.0 });
    let shapes: &[[usize; 4]] = if args.quick {
        &SHAPES[..2]
    } else {
        &SHAPES[..]
    };
    let malloc = if args.tune_malloc {
        tune_malloc()
    } else {
        "glibc default (dynamic mmap/trim thresholds)"
    };
    let device = Device::Cpu;

    // The element-wise pool that candle's binary ops use: its size is what the threading knobs
    // control (CANDLE_NUM_THREADS > RAYON_NUM_THREADS > physical cores).
    let threads = candle_core::utils::barrier_pool().n_workers() + 1;
    let rayon_threads = candle_core::utils::get_num_threads();
    let candle_version = lock_version("candle-core");
    let transformers_version = lock_version("candle-transformers");

    println!(
        "candle-core {candle_version} / candle-transformers {transformers_version}, \
         element-wise pool threads = {threads} (CANDLE_NUM_THREADS={}, RAYON_NUM_THREADS={}), \
         candle get_num_threads() = {rayon_threads}, malloc: {malloc}",
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
    );
    let (t_check, expected, got) = check_schedule(&device)?;
    println!(
        "schedule check: eta=0 step at t={t_check} with model_output=0, sample=1 gives {got:.7} \
         = sqrt(alphas_cumprod[prev] / alphas_cumprod[t]) = {expected:.7} (linear 0.0001..0.02): ok"
    );
    let hdr = format!(
        "{:>18} {:>10} {:>4} {:>6} {:>12} {:>12} {:>8} {:>7}",
        "shape", "elements", "eta", "thresh", "us/step", "min us", "K x R", "other %"
    );
    println!("{hdr}\n{}", "-".repeat(hdr.len()));

    let started = Instant::now();
    let mut rows = Vec::new();
    let mut timestep_used = 0usize;
    let mut n_contended = 0usize;
    for shape in shapes {
        let n: usize = shape.iter().product();
        let model_output = Tensor::from_vec(randn_vec(n, SEED), shape.as_slice(), &device)?;
        let sample = Tensor::from_vec(randn_vec(n, SEED + 1), shape.as_slice(), &device)?;
        assert_eq!(model_output.dtype(), DType::F32);
        for eta in [0.0f64, 1.0] {
            let mut sched: Box<dyn Scheduler> = config(eta).build(NUM_INFERENCE_STEPS)?;
            let t = sched.timesteps()[STEP_INDEX];
            timestep_used = t;
            // One checked call outside the timing: it must work and keep the shape.
            let out = sched.step(&model_output, t, &sample)?;
            assert_eq!(out.dims(), shape.as_slice());
            drop(out);
            let tm = time_row_guarded(
                || {
                    let out = sched
                        .step(black_box(&model_output), black_box(t), black_box(&sample))
                        .expect("candle DDIM step failed");
                    black_box(&out);
                },
                target,
                &args,
            );
            let contended = tm.foreign_cpu_percent > args.max_foreign;
            n_contended += contended as usize;
            let us = tm.median_s * 1e6;
            let us_min = tm.min_s * 1e6;
            println!(
                "{:>18} {:>10} {:>4.0} {:>6} {:>12.2} {:>12.2} {:>8} {:>6.1}{}",
                shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("x"),
                n,
                eta,
                "false",
                us,
                us_min,
                format!("{}x{}", tm.k, tm.repeats),
                tm.foreign_cpu_percent,
                if contended { "*" } else { "" }
            );
            rows.push(format!(
                "  {{\"shape\": [{}, {}, {}, {}], \"elements\": {n}, \"eta\": {eta:.1}, \
                 \"thresholding\": false, \"us_per_step\": {us}, \"us_per_step_min\": {us_min}, \
                 \"iterations\": {}, \"repeats\": {}, \"foreign_cpu_percent\": {:.1}, \
                 \"attempts\": {}, \"contended\": {contended}}}",
                shape[0],
                shape[1],
                shape[2],
                shape[3],
                tm.k,
                tm.repeats,
                tm.foreign_cpu_percent,
                tm.attempts
            ));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("total {elapsed:.1} s");
    if n_contended > 0 {
        eprintln!(
            "WARNING: {n_contended} row(s) (*) ran while other processes used > {} % of the CPUs \
             even after {} retries: their times are inflated.",
            args.max_foreign, args.retries
        );
    }

    if let Some(path) = args.json {
        let json = format!(
            "{{\n \"implementation\": \"candle\",\n \
             \"versions\": {{\"candle-core\": {}, \"candle-transformers\": {}}},\n \
             \"threads\": {threads},\n \
             \"threads_env\": {{\"CANDLE_NUM_THREADS\": {}, \"RAYON_NUM_THREADS\": {}}},\n \
             \"candle_get_num_threads\": {rayon_threads},\n \
             \"malloc\": {},\n \"tuned_malloc\": {},\n \
             \"config\": {{\"scheduler\": \"DDIMSchedulerConfig {{ beta_start: 0.0001, beta_end: 0.02, \
             beta_schedule: Linear, eta, steps_offset: 0, prediction_type: Epsilon, \
             train_timesteps: 1000, timestep_spacing: Leading }}, built with \
             SchedulerConfig::build(50)\", \"num_inference_steps\": {NUM_INFERENCE_STEPS}, \
             \"timestep\": {timestep_used}, \"call\": \"Scheduler::step(&mut self, &model_output, t, &sample)\", \
             \"variance_noise\": \"drawn inside step by Tensor::randn when eta > 0 (timed)\", \
             \"thresholding\": \"not available in candle's DDIM\", \"dtype\": \"float32\"}},\n \
             \"timing\": \"median over repeats of (time of K back-to-back calls / K), after warm-up; ~{target} s per row\",\n \
             \"contention\": \"foreign_cpu_percent: share of all CPUs used by other processes during the \
             timed part (/proc/stat); rows above {} % were retried up to {} times\",\n \
             \"quick\": {},\n \"elapsed_s\": {elapsed},\n \"results\": [\n{}\n ]\n}}\n",
            json_str(&candle_version),
            json_str(&transformers_version),
            env_opt("CANDLE_NUM_THREADS"),
            env_opt("RAYON_NUM_THREADS"),
            json_str(malloc),
            args.tune_malloc,
            args.max_foreign,
            args.retries,
            args.quick,
            rows.join(",\n")
        );
        std::fs::write(&path, json).map_err(candle_core::Error::wrap)?;
        println!("wrote {path}");
    }
    Ok(())
}
