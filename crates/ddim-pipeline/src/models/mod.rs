//! The networks of a Stable Diffusion pipeline on candle-nn (being written).
