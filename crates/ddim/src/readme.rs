// The README, compiled: each Rust code block of README.md runs as a doctest (cfg(doctest) only).
#![doc = include_str!("../../../README.md")]
