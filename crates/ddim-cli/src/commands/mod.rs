//! One module per subcommand.

pub(crate) mod bench;
pub(crate) mod config;
pub(crate) mod eval;
pub(crate) mod experiment;
pub(crate) mod generate;
pub(crate) mod interpolate;
pub(crate) mod inversion;
pub(crate) mod invert;
pub(crate) mod plot;
pub(crate) mod prev_timestep;
pub(crate) mod report;
pub(crate) mod sample;
pub(crate) mod schedule;
pub(crate) mod table;
pub(crate) mod zero_snr;
