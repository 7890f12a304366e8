//! The bad-input catalogue, docs/errors.md, as a test: every row of its library tables is run
//! and must give exactly the documented error variant and message (or warnings), and every
//! variant of `ddim::Error` must have a row. The file is read at compile time, so the doc
//! cannot drift from the code. (tests/errors.rs and tests/real_configs.rs test the same
//! errors' values and the loading of the real configs in more depth.)

use ddim::{DdimConfig, DdimScheduler, Error, PrevTimestepRule, StepOptions, TimestepSpacing};

const CATALOGUE: &str = include_str!("../../../docs/errors.md");
const ERROR_RS: &str = include_str!("../src/error.rs");

/// A table cell without its code delimiters (`` `x` `` or ``` `` x `` ```).
fn code(cell: &str) -> &str {
    let cell = cell.trim();
    if let Some(inner) = cell.strip_prefix("`` ").and_then(|c| c.strip_suffix(" ``")) {
        inner
    } else {
        cell.trim_matches('`')
    }
}

/// The first code span of a cell: `Error::InvalidConfig` of "`Error::InvalidConfig` (T = 0)".
fn first_code(cell: &str) -> &str {
    cell.split('`').nth(1).unwrap_or(cell)
}

/// The rows (cells) of every table whose second column is a library input.
fn library_rows() -> Vec<Vec<&'static str>> {
    CATALOGUE
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| {
            let l = l.trim().trim_start_matches('|').trim_end_matches('|');
            l.split(" | ").map(str::trim).collect::<Vec<_>>()
        })
        .filter(|cells| {
            cells.len() == 3
                && ["json: ", "file: ", "call: "]
                    .iter()
                    .any(|p| code(cells[1]).starts_with(p))
        })
        .collect()
}

fn scheduler(n: usize) -> DdimScheduler {
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    s.set_timesteps(n).unwrap();
    s
}

/// The calls named `call: …` in the catalogue.
fn call(name: &str) -> Result<(), Error> {
    let x = [0.5f32, -0.25, 0.75, 1.0];
    let m = [0.1f32, 0.2, 0.3, 0.4];
    let s = scheduler(50);
    let opts = |eta: f32, batch_size: usize| StepOptions {
        eta,
        batch_size,
        ..Default::default()
    };
    match name {
        "nan-beta-end" => DdimScheduler::new(DdimConfig {
            beta_end: f64::NAN,
            ..DdimConfig::default()
        })
        .map(drop),
        "set-timesteps-0" => s.clone().set_timesteps(0),
        "set-timesteps-1001" => s.clone().set_timesteps(1001),
        "leading-offset-reaches-T" => DdimScheduler::new(DdimConfig {
            steps_offset: 1,
            timestep_spacing: TimestepSpacing::Leading,
            ..DdimConfig::default()
        })?
        .set_timesteps(1000),
        "step-before-set-timesteps" => DdimScheduler::new(DdimConfig::default())?
            .step(&m, 980, &x, &StepOptions::default())
            .map(drop),
        "step-at-1000" => s.step(&m, 1000, &x, &StepOptions::default()).map(drop),
        "next-in-schedule-at-999" => s
            .clone()
            .with_prev_timestep_rule(PrevTimestepRule::NextInSchedule)
            .step(&m, 999, &x, &StepOptions::default())
            .map(drop),
        "model-output-3-sample-4" => s.step(&m[..3], 980, &x, &opts(0.0, 1)).map(drop),
        "variance-noise-2-sample-4" => {
            let z = [0.0f32; 2];
            let o = StepOptions {
                variance_noise: Some(&z[..]),
                ..opts(1.0, 1)
            };
            s.step(&m, 980, &x, &o).map(drop)
        }
        "step-into-short-output" => {
            let (mut p, mut o) = ([0.0f32; 3], [0.0f32; 4]);
            s.step_into(&m, 980, &x, &opts(0.0, 1), &mut p, &mut o)
        }
        "add-noise-noise-3-sample-4" => s.add_noise(&x, &m[..3], &[10]).map(drop),
        "batch-3-of-4" => s.step(&m, 980, &x, &opts(0.0, 3)).map(drop),
        "batch-0" => s.step(&m, 980, &x, &opts(0.0, 0)).map(drop),
        "add-noise-no-timesteps" => s.add_noise(&x, &m, &[]).map(drop),
        "eta-negative" => s.step(&m, 980, &x, &opts(-1.0, 1)).map(drop),
        "eta-nan" => s.step(&m, 980, &x, &opts(f32::NAN, 1)).map(drop),
        "eta-5-at-500" => {
            let z = [0.0f32; 4];
            let o = StepOptions {
                variance_noise: Some(&z[..]),
                ..opts(5.0, 1)
            };
            s.step(&m, 500, &x, &o).map(drop)
        }
        "noise-and-generator" => {
            use rand::SeedableRng;
            let z = [0.0f32; 4];
            let o = StepOptions {
                variance_noise: Some(&z[..]),
                ..opts(1.0, 1)
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            s.step_with_rng(&m, 980, &x, &o, &mut rng).map(drop)
        }
        "eta-1-without-noise" => s.step(&m, 980, &x, &opts(1.0, 1)).map(drop),
        "check-finite-nan-model-output" => {
            let bad = [0.1f32, 0.2, f32::NAN, f32::INFINITY];
            let o = StepOptions {
                check_finite: true,
                ..Default::default()
            };
            s.step(&bad, 980, &x, &o).map(drop)
        }
        "check-finite-inf-sample" => {
            let bad = [f32::NEG_INFINITY, 0.2, 0.3, 0.4];
            let o = StepOptions {
                check_finite: true,
                ..Default::default()
            };
            s.step(&m, 980, &bad, &o).map(drop)
        }
        other => panic!("docs/errors.md names an unknown call `{other}`"),
    }
}

/// What a row's input does: the error, or the warnings of a config that loads (and builds).
fn run(input: &str) -> Result<Vec<String>, Error> {
    let loaded = if let Some(text) = input.strip_prefix("json: ") {
        DdimConfig::load_json_str(text)?
    } else if let Some(path) = input.strip_prefix("file: ") {
        DdimConfig::load_file(path)?
    } else {
        call(input.strip_prefix("call: ").unwrap())?;
        return Ok(Vec::new());
    };
    DdimScheduler::new(loaded.config)?;
    Ok(loaded.warnings.iter().map(ToString::to_string).collect())
}

#[test]
fn every_documented_error_has_its_message() {
    let rows = library_rows();
    assert!(rows.len() > 40, "the catalogue's tables were not found");
    let mut failures = Vec::new();
    for cells in &rows {
        let (what, input, want) = (first_code(cells[0]), code(cells[1]), code(cells[2]));
        let got = match (run(input), what.strip_prefix("Error::")) {
            (Err(e), Some(variant)) => {
                let debug = format!("{e:?}");
                let name = variant;
                if !debug.starts_with(name) {
                    failures.push(format!("{input}: expected Error::{name}, got {debug}"));
                }
                e.to_string()
            }
            (Err(e), None) => format!("unexpected error: {e}"),
            (Ok(warnings), _) if warnings.is_empty() => "(none)".to_string(),
            (Ok(warnings), _) => warnings.join("; "),
        };
        if got != want {
            failures.push(format!("{input}\n   doc: {want}\n  code: {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every variant declared in src/error.rs has at least one row.
#[test]
fn every_error_variant_is_catalogued() {
    let variants: Vec<&str> = ERROR_RS
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .filter_map(|l| l.split([' ', ',', '{', '(']).next())
        .collect();
    assert!(variants.contains(&"InvalidConfig") && variants.contains(&"NonFinite"));
    let documented: Vec<String> = library_rows()
        .iter()
        .map(|cells| first_code(cells[0]).to_string())
        .collect();
    for v in variants {
        let tag = format!("Error::{v}");
        assert!(
            documented.contains(&tag),
            "{tag} has no row in docs/errors.md"
        );
    }
}
