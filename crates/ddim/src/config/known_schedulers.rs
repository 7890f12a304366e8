//! What diffusers 0.42.1 knows about its scheduler classes, as far as config loading needs it.
//!
//! The table `known_schedulers.json` beside this file is written by `tools/gen_fixtures.py`
//! from the installed diffusers (never typed by hand): each scheduler class's `__init__` keys,
//! and the keys `DDIMScheduler.from_config` drops silently because compatible schedulers use them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::Deserialize;

const TABLE_JSON: &str = include_str!("known_schedulers.json");

#[derive(Debug, Deserialize)]
pub(crate) struct KnownSchedulers {
    #[cfg(test)]
    pub(crate) diffusers_version: String,
    pub(crate) compatible_only_keys: BTreeSet<String>,
    pub(crate) classes: BTreeMap<String, SchedulerClass>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SchedulerClass {
    pub(crate) init_keys: Vec<String>,
    pub(crate) has_beta_schedule: bool,
}

/// The parsed table; it is checked by a unit test, so the `expect` cannot fire in a build
/// whose tests passed.
pub(crate) fn known_schedulers() -> &'static KnownSchedulers {
    static TABLE: OnceLock<KnownSchedulers> = OnceLock::new();
    // The table is compiled in (not user input) and parsed by the unit test below.
    #[allow(clippy::expect_used)]
    TABLE.get_or_init(|| {
        serde_json::from_str(TABLE_JSON).expect("known_schedulers.json is generated and valid")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_and_matches_ddim() {
        let table = known_schedulers();
        assert_eq!(table.diffusers_version, crate::config::DIFFUSERS_VERSION);
        let ddim = &table.classes["DDIMScheduler"];
        assert_eq!(ddim.init_keys, crate::DdimConfig::KEYS);
        assert!(ddim.has_beta_schedule);
        assert!(table.compatible_only_keys.contains("skip_prk_steps"));
        assert!(!table.classes["FlowMatchEulerDiscreteScheduler"].has_beta_schedule);
    }
}
