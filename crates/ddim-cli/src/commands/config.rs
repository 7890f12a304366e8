//! `ddim config`: a config file as DDIM loads it, written as diffusers saves it.

use std::io::Write;

use crate::config_args::ConfigArgs;

/// Arguments of `ddim config`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    config: ConfigArgs,
}

pub(crate) fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let config = args.config.load_and_warn()?;
    // A config no scheduler can be built from is an error (exit 1), not a warning: it
    // would fail in every command that uses it.
    ddim::DdimScheduler::new(config.clone())
        .map_err(|e| anyhow::anyhow!("no scheduler can be built from this config: {e}"))?;
    out.write_all(config.to_json_string().as_bytes())?;
    Ok(())
}
