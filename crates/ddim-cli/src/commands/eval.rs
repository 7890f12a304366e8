//! `ddim eval`: dispatches to the experiments on the exact models. `table` is the DDIM
//! paper's Table 1, η against the number of steps (see [`super::table`]); `zero-snr`
//! measures the zero-terminal-SNR tips (see [`super::zero_snr`]); `inversion` is the paper's
//! Table 2 (see [`super::inversion`]); `prev-timestep` compares diffusers' stride rule with
//! the next scheduled timestep (see [`super::prev_timestep`]). What they share (arguments,
//! the chart) is in [`super::experiment`].

use std::io::Write;

pub(crate) use super::experiment::Args;
use super::experiment::Experiment;

/// Checks the output path, then runs the experiment `--experiment` names.
pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    crate::atomic::check_writable(&args.output)?;
    match args.experiment {
        Experiment::Table => super::table::run(args, out),
        Experiment::ZeroSnr => super::zero_snr::run(args, out),
        Experiment::Inversion => super::inversion::run(args, out),
        Experiment::PrevTimestep => super::prev_timestep::run(args, out),
    }
}
