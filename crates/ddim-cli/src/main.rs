//! `ddim`: the command line of the ddim crate.
//!
//! Exit codes: 0 success, 1 runtime error (one line on stderr), 2 usage error.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod atomic;
mod bounds;
mod commands;
mod config_args;
mod policy_args;

/// DDIM diffusion sampling with diffusers' numbers: inspect schedules and configs, sample
/// from built-in exact models, evaluate.
#[derive(Debug, Parser)]
#[command(name = "ddim", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print each inference timestep with ᾱ_t, ᾱ_prev, σ_t and log-SNR.
    Schedule(commands::schedule::Args),
    /// Load a scheduler_config.json as diffusers' DDIMScheduler.from_config would and print
    /// it as diffusers saves it (warnings go to stderr).
    Config(commands::config::Args),
    /// Run DDIM on a built-in exact model (a Gaussian mixture with a closed-form denoiser),
    /// print quality metrics beside their noise floor and draw the samples to a PNG.
    Sample(commands::sample::Args),
    /// Experiments on the exact models: the DDIM paper's Table 1 (η against steps), or the
    /// zero-terminal-SNR tips (--experiment zero-snr). Markdown (or JSON) and a PNG.
    Eval(commands::eval::Args),
    /// Time one DDIM step per latent shape against a memory copy of the same bytes.
    Bench(commands::bench::Args),
    /// Encode exact image samples into their DDIM latents x_T (inversion) and decode them
    /// again; a PNG shows the samples, the latents and the reconstructions.
    Invert(commands::invert::Args),
    /// Decode latents slerp'd (and lerp'd) between two seeds' x_T into a PNG strip.
    Interpolate(commands::interpolate::Args),
    /// Stable Diffusion with the ddim scheduler on a diffusers folder or a cached model id:
    /// text-to-image, img2img (--init-image) or DDIM inversion (--invert); diffusers' image
    /// for the same prompt and seed.
    Generate(Box<commands::generate::Args>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: clap prints them to stdout (exit 0).
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // Usage errors: one line on stderr, exit 2.
            eprintln!("{}", usage_error_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    atomic::remove_temporary_files_on_signals();
    let mut stdout = std::io::stdout().lock();
    let result = match cli.command {
        Command::Schedule(args) => commands::schedule::run(&args, &mut stdout),
        Command::Config(args) => commands::config::run(&args, &mut stdout),
        Command::Sample(args) => commands::sample::run(&args, &mut stdout),
        Command::Eval(args) => commands::eval::run(&args, &mut stdout),
        Command::Bench(args) => commands::bench::run(&args, &mut stdout),
        Command::Invert(args) => commands::invert::run(&args, &mut stdout),
        Command::Interpolate(args) => commands::interpolate::run(&args, &mut stdout),
        Command::Generate(args) => commands::generate::run(&args, &mut stdout),
    };
    let result = result.and_then(|()| stdout.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// clap's usage error on one line: its lines up to the usage summary, joined, and a pointer
/// to `--help`.
fn usage_error_line(rendered: &str) -> String {
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    format!("{} (see --help)", lines.join(" "))
}

/// The error and its causes on one line (a line break inside a message, e.g. from a model
/// id given on the command line, is shown escaped as `\n`).
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
