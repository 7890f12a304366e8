//! The options beyond diffusers, shared by `sample`, `eval` and `schedule`: each flag sets one
//! of the library's `ddim::policy` settings. Defaults are diffusers' behaviour, except the
//! zero-SNR guard, which the command line turns on (see `--zero-snr-guard`).

use std::str::FromStr;

use ddim::{
    DdimConfig, DdimScheduler, EtaPolicy, PrevTimestepRule, SpacingOverride, VarianceKind,
    ZeroSnrGuard,
};

/// The timesteps to sample at, when not the config's spacing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimestepsArg {
    /// The DDIM paper's quadratic spacing with `--steps` timesteps.
    Quad,
    /// The caller's list (strictly decreasing, in [0, T)).
    Custom(Vec<usize>),
}

impl FromStr for TimestepsArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "quad" {
            return Ok(Self::Quad);
        }
        text.split(',')
            .map(|t| {
                t.trim()
                    .parse::<usize>()
                    .map_err(|e| format!("`{t}` is not a timestep ({e}); give `quad` or a list"))
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|list| {
                // Non-empty and strictly decreasing does not depend on the config: a usage
                // error here (the config's T is checked when the scheduler is built).
                ddim::timesteps::check_custom_timesteps(usize::MAX, &list)
                    .map_err(|e| e.to_string())?;
                Ok(Self::Custom(list))
            })
    }
}

/// The library's error, with the command line's spelling of the zero-SNR guard's advice.
pub(crate) fn explain_zero_snr(e: ddim::Error) -> anyhow::Error {
    match e {
        ddim::Error::ZeroTerminalSnr { .. } => {
            anyhow::anyhow!("{e} (here: --prediction-type v_prediction, or --zero-snr-guard off)")
        }
        e => e.into(),
    }
}

/// The options beyond diffusers.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PolicyArgs {
    /// How a step finds t_prev: diffusers' `t − T//n` (stride) or the next scheduled timestep.
    #[arg(long, value_enum, default_value_t = PrevTimestepRule::Stride)]
    pub(crate) prev_timestep: PrevTimestepRule,
    /// `quad` (the DDIM paper's quadratic spacing, --steps of them) or a comma-separated list
    /// of timesteps, strictly decreasing (then --steps is ignored). Either steps along the
    /// schedule (next-in-schedule). Default: the config's timestep_spacing.
    #[arg(long, value_name = "quad|T1,T2,...")]
    pub(crate) timesteps: Option<TimestepsArg>,
    /// Where 1 − ᾱ_prev − σ_t² < 0 (η > 1): `strict` refuses, `diffusers` gives NaN as
    /// diffusers does, `clamp-sigma` clamps σ_t to √(1 − ᾱ_prev).
    #[arg(long, value_enum, default_value_t = EtaPolicy::Strict)]
    pub(crate) eta_policy: EtaPolicy,
    /// The noise of a step: DDIM's σ_t(η) or DDPM's larger σ̂_t = η·√(1 − ᾱ_t/ᾱ_prev).
    #[arg(long, value_enum, default_value_t = VarianceKind::Ddim)]
    pub(crate) variance: VarianceKind,
    /// `refuse`: stop before sampling when epsilon prediction meets ᾱ_t = 0 (zero terminal
    /// SNR), naming the fix; `off`: run anyway, as diffusers (x̂₀ is ±∞ there) [default:
    /// refuse for sample and eval, off for schedule, which only inspects].
    #[arg(long, value_enum)]
    pub(crate) zero_snr_guard: Option<ZeroSnrGuard>,
}

impl PolicyArgs {
    /// The same options with the zero-SNR guard off unless it was asked for: for commands
    /// that inspect a schedule rather than sample with it.
    pub(crate) fn for_inspection(&self) -> Self {
        Self {
            zero_snr_guard: Some(self.zero_snr_guard.unwrap_or(ZeroSnrGuard::Off)),
            ..self.clone()
        }
    }

    /// A scheduler for `config` with these options and its timesteps set (`steps` of them,
    /// unless `--timesteps` gives a list).
    pub(crate) fn scheduler(
        &self,
        config: DdimConfig,
        steps: usize,
    ) -> anyhow::Result<DdimScheduler> {
        self.scheduler_with(config, steps, self.variance)
    }

    /// As [`PolicyArgs::scheduler`], with another [`VarianceKind`].
    pub(crate) fn scheduler_with(
        &self,
        config: DdimConfig,
        steps: usize,
        variance: VarianceKind,
    ) -> anyhow::Result<DdimScheduler> {
        let spacing = match self.timesteps {
            Some(TimestepsArg::Quad) => SpacingOverride::Quad,
            _ => SpacingOverride::Config,
        };
        let mut scheduler = DdimScheduler::new(config)?
            .with_prev_timestep_rule(self.prev_timestep)
            .with_spacing_override(spacing)
            .with_eta_policy(self.eta_policy)
            .with_variance_kind(variance)
            .with_zero_snr_guard(self.zero_snr_guard.unwrap_or(ZeroSnrGuard::Refuse));
        let set = match &self.timesteps {
            Some(TimestepsArg::Custom(list)) => scheduler.set_timesteps_custom(list),
            _ => scheduler.set_timesteps(steps),
        };
        set.map_err(explain_zero_snr)?;
        Ok(scheduler)
    }

    /// How the timesteps were chosen, for titles: `quad spacing`, `custom timesteps` or the
    /// config's `… spacing`.
    pub(crate) fn spacing_label(&self, config: &DdimConfig) -> String {
        match &self.timesteps {
            Some(TimestepsArg::Quad) => "quad spacing".into(),
            Some(TimestepsArg::Custom(_)) => "custom timesteps".into(),
            None => format!("{} spacing", config.timestep_spacing),
        }
    }

    /// The other options that differ from diffusers' behaviour, for titles ("" when none do).
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.prev_timestep != PrevTimestepRule::Stride {
            parts.push("t_prev next in schedule".to_string());
        }
        if self.eta_policy != EtaPolicy::Strict {
            if let Some(v) = clap::ValueEnum::to_possible_value(&self.eta_policy) {
                parts.push(format!("eta policy {}", v.get_name()));
            }
        }
        if self.variance == VarianceKind::DdpmLarger {
            parts.push("DDPM σ̂".into());
        }
        parts.iter().map(|p| format!(", {p}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_parse_as_quad_or_a_list() {
        assert_eq!("quad".parse(), Ok(TimestepsArg::Quad));
        assert_eq!(
            " 999, 500,3".parse(),
            Ok(TimestepsArg::Custom(vec![999, 500, 3]))
        );
        let err = "999,x".parse::<TimestepsArg>().unwrap_err();
        assert!(err.contains("`x` is not a timestep"), "{err}");
        assert!("".parse::<TimestepsArg>().is_err());
    }
}
