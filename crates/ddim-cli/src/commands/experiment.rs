//! What the experiments of `ddim eval` share: their arguments, the experiment and metric
//! choices, and the chart they all draw. Each experiment is its own module (`table`,
//! `zero_snr`, `inversion`, `prev_timestep`); `eval` only dispatches.

use std::io::Write;
use std::path::PathBuf;

use ddim_exact::{Dataset, Metrics};

use super::plot;
use crate::config_args::ConfigArgs;
use crate::policy_args::PolicyArgs;

/// Which experiment to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Experiment {
    /// The DDIM paper's Table 1: a metric for each η and number of steps S.
    Table,
    /// Brightness bias of the default schedule against zero terminal SNR + v + trailing.
    ZeroSnr,
    /// The DDIM paper's Table 2: x₀ → x_T → x₀ reconstruction error against steps S
    /// (defaults: ring, S = 10,20,50,100,200,500,1000, 500 samples; η is 0).
    Inversion,
    /// diffusers' t_prev = t − T//n against the next scheduled timestep, for linspace and
    /// trailing at step counts that do not divide T.
    PrevTimestep,
}

/// The metric of the table's cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Metric {
    /// Sliced Wasserstein-2 distance to exact samples.
    SlicedW2,
    /// Total-variation distance between the share of samples per component and the weights.
    ModeTv,
    /// Mean log-likelihood under the true density (nats per sample).
    LogLikelihood,
}

impl Metric {
    pub(crate) fn pick(self, m: &Metrics) -> f64 {
        match self {
            Metric::SlicedW2 => m.sliced_w2,
            Metric::ModeTv => m.mode_tv,
            Metric::LogLikelihood => m.mean_log_likelihood,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Metric::SlicedW2 => "sliced W2 to exact samples (lower is better, down to the floor)",
            Metric::ModeTv => "mode TV distance (lower is better, down to the floor)",
            Metric::LogLikelihood => {
                "mean log-likelihood in nats (the floor is ideal; above it = too concentrated)"
            }
        }
    }

    pub(crate) fn short(self) -> &'static str {
        match self {
            Metric::SlicedW2 => "sliced W₂",
            Metric::ModeTv => "mode TV distance",
            Metric::LogLikelihood => "mean ln p (nats)",
        }
    }
}

/// Arguments of `ddim eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The experiment.
    #[arg(long, value_enum, default_value_t = Experiment::Table)]
    pub(crate) experiment: Experiment,
    /// The data set [default: spiral for table, bright for zero-snr].
    #[arg(long, value_enum)]
    pub(crate) dataset: Option<Dataset>,
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    /// Add the DDIM paper's σ̂ row to the table: η = 1 with DDPM's larger variance
    /// σ̂_t = √(1 − ᾱ_t/ᾱ_prev).
    #[arg(long)]
    pub(crate) sigma_hat: bool,
    /// The η rows of the table (comma-separated; zero-snr runs η = 0).
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [0.0f32, 0.2, 0.5, 1.0],
        value_parser = crate::bounds::eta,
        allow_negative_numbers = true
    )]
    pub(crate) etas: Vec<f32>,
    /// The step counts S (comma-separated) [default: 10,20,50,100,1000 for table;
    /// 10,50,200 for zero-snr].
    #[arg(long, value_delimiter = ',', value_parser = crate::bounds::steps)]
    pub(crate) steps: Vec<usize>,
    /// Number of seeds; cells show mean ± standard deviation over them.
    #[arg(long, default_value_t = 5, value_parser = crate::bounds::seeds)]
    pub(crate) seeds: u64,
    /// Samples per run (and exact reference samples) [default: 2000 for table, 500 for
    /// zero-snr].
    #[arg(long, value_parser = crate::bounds::samples)]
    pub(crate) samples: Option<usize>,
    /// The metric of the table's cells.
    #[arg(long, value_enum, default_value_t = Metric::SlicedW2)]
    pub(crate) metric: Metric,
    /// The PNG to write.
    #[arg(
        long,
        short = 'o',
        default_value = "ddim-eval.png",
        value_parser = crate::atomic::parse_output
    )]
    pub(crate) output: PathBuf,
    /// Print JSON instead of markdown.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Draws an experiment's chart to `--output` and, for text output, reports the wall time.
pub(crate) fn write_chart(
    args: &Args,
    chart: &plot::lines::LineChart,
    elapsed: f64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    plot::write_png(&args.output, plot::lines::SIZE, |area| {
        plot::lines::draw(area, chart)
    })?;
    if !args.json {
        writeln!(
            out,
            "\nwall time: {elapsed:.1} s on {} threads; wrote {}",
            rayon::current_num_threads(),
            args.output.display()
        )?;
    }
    Ok(())
}
