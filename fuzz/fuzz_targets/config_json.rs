//! `scheduler_config.json` from arbitrary bytes: load, build, set timesteps, save, reload.
//! Invariants: no panic; a config that builds saves to text that loads back to the same config.
#![no_main]

use ddim::{DdimConfig, DdimScheduler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = DdimConfig::from_json_str(text) else {
        return;
    };
    // Saving never fails, and what was loaded reloads identically.
    let saved = config.to_json_string();
    let reloaded = DdimConfig::from_json_str(&saved).expect("saved config reloads");
    assert_eq!(
        reloaded.to_json_string(),
        saved,
        "save → load → save is not stable"
    );
    if config.num_train_timesteps > ddim_fuzz::MAX_T {
        return; // a legitimate huge allocation (see MAX_T)
    }
    let Ok(mut scheduler) = DdimScheduler::new(config) else {
        return;
    };
    let t = scheduler.config().num_train_timesteps;
    for n in [1, 2, 3, 7, 50, t / 3, t - 1, t, t + 1] {
        if let Ok(()) = scheduler.set_timesteps(n) {
            let ts = scheduler.timesteps();
            assert_eq!(ts.len(), n);
            assert!(ts.windows(2).all(|w| w[0] > w[1]), "{ts:?}");
            assert!(ts.iter().all(|&s| s < t), "{ts:?}");
        }
    }
});
