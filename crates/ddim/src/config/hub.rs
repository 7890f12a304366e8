//! Loading a model's scheduler config from the local Hugging Face cache, by model id, without
//! the network.
//!
//! `huggingface_hub` (2.4) stores a downloaded repository as
//!
//! ```text
//! <cache>/models--{org}--{name}/refs/{branch}            the commit hash the branch points to
//! <cache>/models--{org}--{name}/snapshots/{commit}/...   the files at that commit
//! ```
//!
//! and a diffusers model keeps its scheduler config at `scheduler/scheduler_config.json`.
//!
//! ## Which cache
//!
//! `huggingface_hub/constants.py` picks one cache folder, the first of these that is set:
//!
//! 1. `$HF_HUB_CACHE`
//! 2. `$HUGGINGFACE_HUB_CACHE` (the legacy name)
//! 3. `$HF_HOME/hub`
//! 4. `$XDG_CACHE_HOME/huggingface/hub`
//! 5. `~/.cache/huggingface/hub` (`~` is `$HOME`, or `%USERPROFILE%` on Windows)
//!
//! applying `~` and `$VAR` expansion to the value (`os.path.expanduser`, then
//! `os.path.expandvars`). [`HubEnv::cache_dirs`] lists the same folders in the same order and
//! the lookup searches them all, first hit wins: where huggingface_hub would find the model,
//! this finds the same file; a model kept in another of these caches (say `~/.cache` while
//! `HF_HOME` points elsewhere) is found too instead of being an error. An empty variable counts
//! as unset.
//!
//! ## Which revision
//!
//! As `hf_hub_download(..., local_files_only=True)` and `try_to_load_from_cache`: the revision
//! defaults to `main`; a revision that names a file under `refs/` (a branch or tag, e.g. `main`
//! or `refs/pr/1`) is replaced by the commit hash written in it; anything else (a commit hash)
//! names a folder under `snapshots/` directly. Nothing is downloaded, ever.
//!
//! ## Model ids
//!
//! Checked as `huggingface_hub.utils.validate_repo_id` does: `name` or `namespace/name`, each
//! part 1 to 96 characters of ASCII letters, digits, `-`, `_` and `.`, starting and ending with
//! a letter, digit or `_`; no `--` or `..`; not ending in `.git`. So an id can never reach
//! outside its cache folder.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::{DdimConfig, LoadedConfig};
use crate::error::{Error, Result};

/// Where a diffusers model keeps its scheduler config, inside a snapshot.
pub const SCHEDULER_CONFIG_PATH: [&str; 2] = ["scheduler", "scheduler_config.json"];

/// The revision used when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// The environment variables that decide where the Hugging Face cache is (a snapshot, so that
/// tests and callers can pass their own instead of the process's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubEnv {
    vars: BTreeMap<String, OsString>,
}

impl HubEnv {
    /// The current process's environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))))
    }

    /// An environment made of the given variables only (the others count as unset).
    ///
    /// ```
    /// use ddim::config::hub::HubEnv;
    /// let env = HubEnv::from_vars([("HF_HOME", "/data/hf"), ("HOME", "/home/me")]);
    /// assert_eq!(env.cache_dirs()[0], std::path::Path::new("/data/hf/hub"));
    /// # Ok::<(), ddim::Error>(())
    /// ```
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<OsString>,
    {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Self { vars }
    }

    fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(name).map(OsString::as_os_str)
    }

    /// The cache folders to search, in huggingface_hub's order of precedence (see the
    /// [module docs](self)), without duplicates. The first is the one huggingface_hub uses.
    pub fn cache_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut push = |dir: PathBuf| {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        };
        for name in ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"] {
            if let Some(v) = self.get(name) {
                push(self.expand(v));
            }
        }
        if let Some(v) = self.get("HF_HOME") {
            push(self.expand(v).join("hub"));
        }
        if let Some(v) = self.get("XDG_CACHE_HOME") {
            push(self.expand(v).join("huggingface").join("hub"));
        }
        if let Some(home) = self.home() {
            push(home.join(".cache").join("huggingface").join("hub"));
        }
        dirs
    }

    /// The home folder as Python's `os.path.expanduser` finds it: `$USERPROFILE` on Windows,
    /// `$HOME` elsewhere.
    fn home(&self) -> Option<PathBuf> {
        let name = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        self.get(name).map(PathBuf::from)
    }

    /// `os.path.expandvars(os.path.expanduser(value))`: a leading `~` (alone or before a
    /// separator) becomes the home folder, then `$NAME` and `${NAME}` become the variables of
    /// this environment that are set (others are left as written).
    fn expand(&self, value: &OsStr) -> PathBuf {
        // Values that are not UTF-8 are used as they are.
        let Some(text) = value.to_str() else {
            return PathBuf::from(value);
        };
        let mut out = String::new();
        let rest = match (text.strip_prefix('~'), self.home()) {
            (Some(after), Some(home))
                if after.is_empty() || after.starts_with('/') || after.starts_with('\\') =>
            {
                out.push_str(&home.to_string_lossy());
                after
            }
            _ => text,
        };
        self.expand_vars(rest, &mut out);
        PathBuf::from(out)
    }

    fn expand_vars(&self, mut rest: &str, out: &mut String) {
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        while let Some(pos) = rest.find('$') {
            let (before, from_dollar) = rest.split_at(pos);
            out.push_str(before);
            let after = from_dollar.get(1..).unwrap_or_default();
            let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(end) => (braced.get(..end).unwrap_or_default(), end + 3),
                    None => ("", 1),
                }
            } else {
                let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
                (after.get(..end).unwrap_or_default(), end + 1)
            };
            let token = from_dollar.get(..consumed).unwrap_or(from_dollar);
            match self.get(name).filter(|_| !name.is_empty()) {
                Some(value) => out.push_str(&value.to_string_lossy()),
                None => out.push_str(token),
            }
            rest = from_dollar.get(consumed..).unwrap_or_default();
        }
        out.push_str(rest);
    }
}

/// Checks a model id as `huggingface_hub.utils.validate_repo_id` does (see the
/// [module docs](self)) and returns its cache folder name, `models--{org}--{name}`.
///
/// ```
/// use ddim::config::hub::repo_folder_name;
/// assert_eq!(repo_folder_name("stabilityai/stable-diffusion-2-1")?,
///            "models--stabilityai--stable-diffusion-2-1");
/// assert!(repo_folder_name("../etc").is_err());
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidModelId`] naming the rule the id breaks.
pub fn repo_folder_name(model_id: &str) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidModelId {
        model_id: model_id.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = model_id.split('/').collect();
    if parts.len() > 2 {
        return Err(invalid(
            "must be `name` or `namespace/name` (one `/` at most)",
        ));
    }
    for part in &parts {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let ok_len = (1..=96).contains(&part.len());
        let ok_chars = part.chars().all(|c| word(c) || c == '-' || c == '.');
        let ok_ends = part.starts_with(word) && part.ends_with(word);
        if !(ok_len && ok_chars && ok_ends) {
            return Err(invalid(
                "each part must be 1 to 96 ASCII letters, digits, `-`, `_` or `.`, starting \
                 and ending with a letter, digit or `_`",
            ));
        }
    }
    if model_id.contains("--") || model_id.contains("..") {
        return Err(invalid("cannot contain `--` or `..`"));
    }
    if model_id.ends_with(".git") {
        return Err(invalid("cannot end in `.git`"));
    }
    Ok(format!("models--{}", parts.join("--")))
}

/// Checks a revision (a branch, tag or commit, possibly `refs/pr/1`) and returns its path
/// components: non-empty, no `.` or `..`, no `\`, so it stays inside `refs/` or `snapshots/`.
fn revision_components(revision: &str) -> Result<Vec<&str>> {
    let components: Vec<&str> = revision.split('/').collect();
    let bad = components
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == ".." || c.contains(['\\', '\0', ':']));
    if bad {
        return Err(Error::InvalidRevision {
            revision: revision.to_owned(),
            reason: "must be a branch, tag or commit name: `/`-separated parts that are not \
                     empty, `.` or `..` and hold no `\\`, `:` or NUL"
                .to_owned(),
        });
    }
    Ok(components)
}

/// Finds `scheduler/scheduler_config.json` of `model_id` at `revision` (default `main`) in the
/// given cache folders, first hit wins (see the [module docs](self) for the layout and the
/// revision rules). Reads only the file system.
///
/// ```
/// use ddim::config::hub::{find_scheduler_config, HubEnv};
/// let dirs = HubEnv::from_vars([("HF_HUB_CACHE", "/nonexistent/hub")]).cache_dirs();
/// let err = find_scheduler_config(&dirs, "org/model", None).unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/hub"));
/// # Ok::<(), ddim::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidModelId`], [`Error::InvalidRevision`], and [`Error::ModelNotInCache`]
/// naming every folder searched and what was missing in each.
pub fn find_scheduler_config(
    cache_dirs: &[PathBuf],
    model_id: &str,
    revision: Option<&str>,
) -> Result<PathBuf> {
    let folder = repo_folder_name(model_id)?;
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    let components = revision_components(revision)?;
    let mut missing = Vec::with_capacity(cache_dirs.len());
    for dir in cache_dirs {
        match find_in(dir, &folder, revision, &components) {
            Ok(path) => return Ok(path),
            Err(what) => missing.push(what),
        }
    }
    Err(Error::ModelNotInCache {
        model_id: model_id.to_owned(),
        revision: revision.to_owned(),
        searched: cache_dirs.to_vec(),
        missing,
    })
}

/// The config file in one cache folder, or what is missing there (relative to the folder).
fn find_in(
    dir: &Path,
    folder: &str,
    revision: &str,
    components: &[&str],
) -> std::result::Result<PathBuf, String> {
    let repo = dir.join(folder);
    if !repo.is_dir() {
        return Err(format!("no {folder}"));
    }
    let ref_file = components
        .iter()
        .fold(repo.join("refs"), |path, c| path.join(c));
    let ref_name = format!("{folder}/refs/{revision}");
    let is_ref = ref_file.is_file();
    let commit = if is_ref {
        // A ref holds a 40-character hash; 4 kB is plenty and bounds the read.
        let text = super::load::read_capped(&ref_file, 4096)
            .map_err(|e| format!("cannot read {ref_name}: {e}"))?;
        let commit = text.trim().to_owned();
        let valid = !commit.is_empty()
            && commit != "."
            && commit != ".."
            && !commit.contains(['/', '\\', '\0', ':']);
        if !valid {
            return Err(format!("{ref_name} does not hold a commit hash"));
        }
        commit
    } else {
        // Not a branch or tag: a commit, named directly under snapshots/.
        revision.to_owned()
    };
    let snapshot = commit
        .split('/')
        .fold(repo.join("snapshots"), |path, c| path.join(c));
    let snapshot_name = format!("{folder}/snapshots/{commit}");
    if !snapshot.is_dir() {
        return Err(if is_ref {
            format!("no {snapshot_name}, where {ref_name} points")
        } else {
            format!("no {ref_name} or {snapshot_name}")
        });
    }
    let file = SCHEDULER_CONFIG_PATH
        .iter()
        .fold(snapshot, |path, c| path.join(c));
    if file.is_file() {
        Ok(file)
    } else {
        Err(format!(
            "no {snapshot_name}/{}",
            SCHEDULER_CONFIG_PATH.join("/")
        ))
    }
}

/// [`find_scheduler_config`] in the cache folders of the process's environment
/// ([`HubEnv::from_process`]).
///
/// # Errors
///
/// As [`find_scheduler_config`].
pub fn scheduler_config_path(model_id: &str, revision: Option<&str>) -> Result<PathBuf> {
    find_scheduler_config(&HubEnv::from_process().cache_dirs(), model_id, revision)
}

impl DdimConfig {
    /// Loads the scheduler config of a model in the local Hugging Face cache, by model id
    /// (`org/name`) and revision (default `main`), as `DDIMScheduler.from_pretrained(model_id,
    /// subfolder="scheduler", revision=revision, local_files_only=True)` would find it; see
    /// [`hub`](self) for the cache folders searched. Never uses the network.
    ///
    /// ```no_run
    /// // after `huggingface-cli download stabilityai/stable-diffusion-2-1`, or any diffusers
    /// // from_pretrained of it
    /// let config = ddim::DdimConfig::from_hf_cache("stabilityai/stable-diffusion-2-1", None)?;
    /// let mut scheduler = ddim::DdimScheduler::new(config)?;
    /// scheduler.set_timesteps(50)?;
    /// # Ok::<(), ddim::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`find_scheduler_config`], then as [`DdimConfig::from_file`].
    pub fn from_hf_cache(model_id: &str, revision: Option<&str>) -> Result<Self> {
        Ok(Self::load_hf_cache(model_id, revision)?.config)
    }

    /// Like [`DdimConfig::from_hf_cache`], and also returns the load warnings.
    ///
    /// # Errors
    ///
    /// As [`DdimConfig::from_hf_cache`].
    pub fn load_hf_cache(model_id: &str, revision: Option<&str>) -> Result<LoadedConfig> {
        Self::load_file(scheduler_config_path(model_id, revision)?)
    }
}
