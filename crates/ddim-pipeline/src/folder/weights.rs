//! Finding a component's safetensors weights: single files, fp16 variants, sharded checkpoints;
//! refusing pickles; checking the safetensors header before anything heavy.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The largest safetensors header accepted by [`check_safetensors_header`]: 100 MB, the limit
/// of the `safetensors` crate itself.
pub const MAX_SAFETENSORS_HEADER_BYTES: u64 = 100_000_000;

/// File extensions of PyTorch pickles (and pickle-based checkpoints): never loaded.
const PICKLE_EXTENSIONS: [&str; 6] = ["bin", "ckpt", "pt", "pth", "pkl", "pickle"];

fn folder_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Folder {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks cheaply that `path` is a safetensors file: a regular file (after following links)
/// whose first 8 bytes, a little-endian `u64` N, give a header of at most
/// [`MAX_SAFETENSORS_HEADER_BYTES`] that fits in the file (8 + N ≤ file size) and starts with
/// `{`. Reads 9 bytes; a truncated or corrupt file is reported before it is mapped or parsed.
///
/// # Errors
///
/// [`Error::Weights`] naming the file and what is wrong; [`Error::Io`] when it cannot be read.
pub fn check_safetensors_header(path: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string().to_lowercase(),
    };
    let bad = |reason: String| Error::Weights {
        path: path.to_path_buf(),
        reason: format!("not a safetensors file: {reason}"),
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(bad("not a regular file".to_owned()));
    }
    let size = meta.len();
    if size < 10 {
        return Err(bad(format!("{size} bytes, too short for a header")));
    }
    let mut head = [0_u8; 9];
    std::fs::File::open(path)
        .map_err(io)?
        .read_exact(&mut head)
        .map_err(io)?;
    let mut len_bytes = [0_u8; 8];
    len_bytes.copy_from_slice(&head[..8]);
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_SAFETENSORS_HEADER_BYTES {
        return Err(bad(format!(
            "header length {n} is above the {MAX_SAFETENSORS_HEADER_BYTES}-byte limit"
        )));
    }
    if n < 2 || 8 + n > size {
        return Err(bad(format!(
            "header length {n} does not fit in the file of {size} bytes (truncated?)"
        )));
    }
    if head[8] != b'{' {
        return Err(bad("the header is not a json object".to_owned()));
    }
    Ok(())
}

/// A variant name is a plain token (`fp16`, `bf16`, `ema-only`): it becomes part of a file name.
fn check_variant(dir: &Path, variant: &str) -> Result<()> {
    let ok = !variant.is_empty()
        && variant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(folder_error(
            dir,
            format!("variant `{variant}` must be ascii letters, digits, `-` or `_` (e.g. fp16)"),
        ))
    }
}

/// `stem.safetensors`, or `stem.VARIANT.safetensors`.
fn single_name(stem: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) => format!("{stem}.{v}.safetensors"),
        None => format!("{stem}.safetensors"),
    }
}

/// The shard index names diffusers/transformers write (`stem.safetensors.index.VARIANT.json`),
/// then the older spelling `stem.VARIANT.safetensors.index.json`.
fn index_names(stem: &str, variant: Option<&str>) -> Vec<String> {
    match variant {
        Some(v) => vec![
            format!("{stem}.safetensors.index.{v}.json"),
            format!("{stem}.{v}.safetensors.index.json"),
        ],
        None => vec![format!("{stem}.safetensors.index.json")],
    }
}

/// The weights of the component in `dir` (see [`super::PipelineFolder::weights`]).
pub(super) fn find_weights(dir: &Path, stem: &str, variant: Option<&str>) -> Result<Vec<PathBuf>> {
    if let Some(v) = variant {
        check_variant(dir, v)?;
    }
    let single = dir.join(single_name(stem, variant));
    if single.exists() {
        check_safetensors_header(&single)?;
        return Ok(vec![single]);
    }
    for name in index_names(stem, variant) {
        let index = dir.join(&name);
        if index.exists() {
            let shards = read_shard_index(dir, &index)?;
            for shard in &shards {
                check_safetensors_header(shard)?;
            }
            return Ok(shards);
        }
    }
    let wanted = single_name(stem, variant);
    if let Some(v) = variant {
        let plain = single_name(stem, None);
        let plain_index = index_names(stem, None).remove(0);
        if dir.join(&plain).exists() || dir.join(&plain_index).exists() {
            return Err(folder_error(
                dir,
                format!(
                    "no {wanted} for variant `{v}` (nor its sharded index); the folder has the \
                     full-precision weights: load without the variant"
                ),
            ));
        }
    }
    let pickles = pickle_files(dir);
    if !pickles.is_empty() {
        return Err(folder_error(
            dir,
            format!(
                "holds only pytorch pickle weights ({}); safetensors is needed (pickles are \
                 never loaded: they can run code)",
                pickles.join(", ")
            ),
        ));
    }
    Err(folder_error(
        dir,
        format!("no weights file: expected {wanted} or its sharded index"),
    ))
}

/// The pickle files in `dir`, sorted by name.
fn pickle_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            Path::new(name)
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| PICKLE_EXTENSIONS.contains(&e))
        })
        .collect();
    names.sort();
    names
}

/// The distinct shard files named by an index's `weight_map`, sorted by name; each must be a
/// plain file name in `dir` (no folders, so an index cannot point outside it) and exist.
fn read_shard_index(dir: &Path, index: &Path) -> Result<Vec<PathBuf>> {
    let config = |reason: String| Error::Config {
        path: index.to_path_buf(),
        reason,
    };
    let text = super::read_text_capped(index)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| config(format!("not valid json: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| config("no `weight_map` object".to_owned()))?;
    let mut names: Vec<&str> = Vec::with_capacity(map.len());
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| config(format!("`weight_map` entry `{tensor}` is not a file name")))?;
        let plain = !file.is_empty()
            && file != "."
            && file != ".."
            && !file.contains(['/', '\\', '\0', ':']);
        if !plain {
            return Err(config(format!(
                "`weight_map` entry `{tensor}` names `{file}`, not a file name in the same folder"
            )));
        }
        names.push(file);
    }
    if names.is_empty() {
        return Err(config("`weight_map` is empty".to_owned()));
    }
    names.sort_unstable();
    names.dedup();
    let mut shards = Vec::with_capacity(names.len());
    for name in names {
        let shard = dir.join(name);
        if !shard.exists() {
            return Err(folder_error(
                dir,
                format!(
                    "missing shard {name} named by {}",
                    index
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("the index")
                ),
            ));
        }
        shards.push(shard);
    }
    Ok(shards)
}
