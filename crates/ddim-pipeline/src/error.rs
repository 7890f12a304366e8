//! The pipeline crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a pipeline.
///
/// Messages are lower-case, one line, and name the file, tensor or value involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The path that was tried.
        path: PathBuf,
        /// The operating system's message.
        reason: String,
    },

    /// A folder is not a pipeline this crate can run, or lacks a part of one.
    #[error("{path}: {reason}")]
    Folder {
        /// The folder or file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A `config.json`, `model_index.json` or tokenizer file holds something unusable.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },

    /// A weights file is unreadable, or a tensor in it is missing or has the wrong shape.
    #[error("{path}: {reason}")]
    Weights {
        /// The weights file (or the first of a sharded set).
        path: PathBuf,
        /// What is wrong, naming the tensor.
        reason: String,
    },

    /// An image could not be read, written or used.
    #[error("{path}: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A pipeline argument is out of range (height not a multiple of 8, strength outside (0, 1], ...).
    #[error("invalid argument: `{name}` {reason}")]
    InvalidArgument {
        /// The argument's name, as diffusers spells it.
        name: &'static str,
        /// What is wrong, naming the value and the limit.
        reason: String,
    },

    /// The scheduler refused something.
    #[error(transparent)]
    Scheduler(#[from] ddim::Error),

    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
