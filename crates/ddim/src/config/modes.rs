//! The enumerated config values, with diffusers' JSON spellings.

use std::fmt;
use std::str::FromStr;

macro_rules! json_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $key:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $json:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
        pub enum $name {
            $( $(#[$vmeta])* #[cfg_attr(feature = "clap", value(name = $json))] $variant, )+
        }

        impl $name {
            /// Every value, in diffusers' documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling used in `scheduler_config.json`.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $json,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;

            /// Parses diffusers' spelling.
            fn from_str(s: &str) -> crate::Result<Self> {
                match s {
                    $($json => Ok($name::$variant),)+
                    other => Err(crate::Error::InvalidConfig {
                        key: $key,
                        reason: format!(
                            "must be one of {}, got {:?}",
                            [$($json),+].join(", "),
                            other
                        ),
                    }),
                }
            }
        }
    };
}

json_enum! {
    /// How β_t goes from `beta_start` to `beta_end` over the `T` training steps.
    ///
    /// * `linear`: β_i = beta_start + i·(beta_end − beta_start)/(T − 1) (torch's f32 linspace);
    /// * `scaled_linear`: √β linear from √beta_start to √beta_end, then squared (Stable Diffusion);
    /// * `squaredcos_cap_v2`: β_i = min(1 − ᾱ(t_{i+1})/ᾱ(t_i), 0.999) with
    ///   ᾱ(t) = cos²((t + 0.008)/1.008 · π/2), t_i = i/T (Nichol & Dhariwal 2021).
    BetaSchedule, "beta_schedule" {
        #[default]
        /// β linear in t.
        Linear => "linear",
        /// √β linear in t.
        ScaledLinear => "scaled_linear",
        /// The cosine ᾱ schedule, β capped at 0.999.
        SquaredcosCapV2 => "squaredcos_cap_v2",
    }
}

json_enum! {
    /// What the model predicts from x_t, and so how x̂₀ and ε̂ are recovered
    /// (with a = ᾱ_t, b = 1 − ᾱ_t):
    ///
    /// * `epsilon`: m = ε̂; x̂₀ = (x_t − √b·m)/√a;
    /// * `sample`: m = x̂₀; ε̂ = (x_t − √a·x̂₀)/√b;
    /// * `v_prediction`: m = v̂ = √a·ε̂ − √b·x̂₀; x̂₀ = √a·x_t − √b·m; ε̂ = √a·m + √b·x_t.
    PredictionType, "prediction_type" {
        #[default]
        /// The noise ε.
        Epsilon => "epsilon",
        /// The clean sample x₀.
        Sample => "sample",
        /// The velocity v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022).
        VPrediction => "v_prediction",
    }
}

json_enum! {
    /// How `n` inference timesteps are chosen from `[0, T)` (Lin et al. 2023, Table 2).
    ///
    /// * `leading`: t_i = i·⌊T/n⌋ + steps_offset, i = n−1 … 0;
    /// * `linspace`: round-half-even of n points evenly spaced over [0, T−1], descending;
    /// * `trailing`: round-half-even(T − i·T/n) − 1, i = 0 … n−1 (always starts at T − 1).
    TimestepSpacing, "timestep_spacing" {
        #[default]
        /// Multiples of ⌊T/n⌋ from 0, plus `steps_offset` (diffusers' default).
        Leading => "leading",
        /// Evenly spaced over [0, T−1], both ends included.
        Linspace => "linspace",
        /// Evenly spaced down from T−1.
        Trailing => "trailing",
    }
}
