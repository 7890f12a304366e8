//! `ddim bench --quick --json`: every row has every timing (the slice steps, the copy
//! reference, the in-place and allocating steps, and the candle backend's two steps), and the
//! kernel path it ran is reported.

use std::process::Command;

#[test]
fn bench_reports_every_timing_and_the_kernel_path() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_ddim"))
        .args([
            "bench",
            "--quick",
            "--seconds",
            "0.01",
            "--portable",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("portable kernels"), "{stdout}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["kernel_path"], "portable");
    let rows = doc["results"].as_array().unwrap();
    // Two shapes × (η = 0, 1) × (thresholding off, on).
    assert_eq!(rows.len(), 8);
    for row in rows {
        for key in [
            "us_per_step",
            "copy_us",
            "in_place_with_refresh_us",
            "refresh_us",
            "alloc_step_us",
            "candle_step_us",
            "candle_in_place_with_refresh_us",
        ] {
            let v = row[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{key} = {v} in {row}");
        }
    }
}
