//! `ddim schedule`: the inference timesteps of a config with their noise levels.

use std::io::Write;
use std::path::PathBuf;

use ddim::DdimScheduler;
use serde_json::json;

use crate::config_args::ConfigArgs;
use crate::policy_args::PolicyArgs;

/// Arguments of `ddim schedule`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Number of inference steps.
    #[arg(long, short = 'n', default_value_t = 50, value_parser = crate::bounds::steps)]
    steps: usize,
    /// η of the σ_t column (0 = deterministic DDIM).
    #[arg(long, default_value_t = 0.0, value_parser = crate::bounds::eta, allow_negative_numbers = true)]
    eta: f32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also draw log-SNR against t, with the inference timesteps marked, to this PNG.
    #[arg(long, value_name = "PNG", value_parser = crate::atomic::parse_output)]
    plot: Option<PathBuf>,
    /// Another curve for --plot: `zero-snr` (this config rescaled to zero terminal SNR) or a
    /// scheduler_config.json path. Repeatable.
    #[arg(long, value_name = "zero-snr|PATH", requires = "plot")]
    compare: Vec<String>,
}

/// One row of the table.
struct Row {
    step: usize,
    coefficients: ddim::StepCoefficients,
}

impl Row {
    /// σ_t: exactly 0 at η = 0, also where diffusers' variance is 0/0 = NaN (ᾱ_t = ᾱ_prev =
    /// 0, or ᾱ_t = 1), which its `eta * variance ** 0.5` turns into NaN.
    fn sigma(&self, eta: f32) -> f32 {
        if eta == 0.0 {
            0.0
        } else {
            self.coefficients.std_dev_t
        }
    }

    /// log-SNR = ln(ᾱ/(1 − ᾱ)), computed in f64 (−∞ at ᾱ = 0).
    fn log_snr(&self) -> f64 {
        let a = f64::from(self.coefficients.alpha_prod_t);
        (a / (1.0 - a)).ln()
    }
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    if let Some(path) = &args.plot {
        crate::atomic::check_writable(path)?;
    }
    let config = args.config.load_and_warn()?;
    let scheduler = args.policy.for_inspection().scheduler(config, args.steps)?;
    let rows = scheduler
        .timesteps()
        .iter()
        .enumerate()
        .map(|(step, &t)| {
            Ok(Row {
                step,
                coefficients: scheduler.step_coefficients(t, args.eta)?,
            })
        })
        .collect::<ddim::Result<Vec<_>>>()?;
    if args.json {
        write_json(&scheduler, args, &rows, out)?;
    } else {
        write_table(&scheduler, args, &rows, out)?;
    }
    if let Some(path) = &args.plot {
        let policy = args.policy.for_inspection();
        let warnings = super::plot::schedule::write_plot(
            path,
            &scheduler,
            &args.policy.spacing_label(scheduler.config()),
            &args.compare,
            &|config| policy.scheduler(config, args.steps),
        )?;
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn write_table(
    scheduler: &DdimScheduler,
    args: &Args,
    rows: &[Row],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let c = scheduler.config();
    writeln!(
        out,
        "# {} steps, {}{}, {} betas, T = {}, eta = {}{}",
        rows.len(),
        args.policy.spacing_label(c),
        args.policy.describe(),
        c.beta_schedule,
        c.num_train_timesteps,
        args.eta,
        if c.rescale_betas_zero_snr {
            ", zero terminal SNR"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "{:>5} {:>5} {:>6} {:>12} {:>12} {:>12} {:>9}",
        "step", "t", "t_prev", "alpha_bar_t", "alpha_bar_prev", "sigma_t", "log_snr"
    )?;
    for row in rows {
        let k = &row.coefficients;
        let prev = k
            .prev_timestep
            .map_or("final".to_string(), |p| p.to_string());
        writeln!(
            out,
            "{:>5} {:>5} {:>6} {:>12.6e} {:>14.6e} {:>12.6e} {:>9.4}",
            row.step,
            k.timestep,
            prev,
            k.alpha_prod_t,
            k.alpha_prod_t_prev,
            row.sigma(args.eta),
            row.log_snr()
        )?;
    }
    Ok(())
}

fn write_json(
    scheduler: &DdimScheduler,
    args: &Args,
    rows: &[Row],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let finite = |x: f64| if x.is_finite() { json!(x) } else { json!(null) };
    let steps: Vec<_> = rows
        .iter()
        .map(|row| {
            let k = &row.coefficients;
            json!({
                "step": row.step,
                "timestep": k.timestep,
                "prev_timestep": k.prev_timestep,
                "alpha_bar": k.alpha_prod_t,
                "alpha_bar_prev": k.alpha_prod_t_prev,
                "sigma": finite(f64::from(row.sigma(args.eta))),
                "log_snr": finite(row.log_snr()),
            })
        })
        .collect();
    let doc = json!({
        "config": scheduler.config().to_json_object(),
        "num_inference_steps": rows.len(),
        "prev_timestep_rule": format!("{:?}", scheduler.prev_timestep_rule()),
        "eta_policy": format!("{:?}", scheduler.eta_policy()),
        "variance": format!("{:?}", scheduler.variance_kind()),
        "eta": args.eta,
        "steps": steps,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}
