//! The networks of a Stable Diffusion pipeline on candle-nn (being written).

pub mod clip;
pub use clip::{ClipTextConfig, ClipTextModel};
