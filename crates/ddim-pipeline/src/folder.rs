//! A diffusers Stable Diffusion model folder: `model_index.json`, its components, their config
//! files and their safetensors weights; found by path or in the local Hugging Face cache.
//!
//! A diffusers pipeline folder (what `DiffusionPipeline.save_pretrained` writes and what the
//! Hugging Face cache holds under `models--ORG--NAME/snapshots/<commit>/`) looks like
//!
//! ```text
//! model_index.json            {"_class_name": "StableDiffusionPipeline",
//!                              "unet": ["diffusers", "UNet2DConditionModel"], ...}
//! unet/config.json            unet/diffusion_pytorch_model[.fp16].safetensors
//! vae/config.json             vae/diffusion_pytorch_model[.fp16].safetensors
//! text_encoder/config.json    text_encoder/model[.fp16].safetensors
//! tokenizer/                  vocab.json, merges.txt, tokenizer_config.json (tokenizer.json)
//! scheduler/scheduler_config.json
//! safety_checker/, feature_extractor/   (ignored)
//! ```
//!
//! ## What is accepted
//!
//! `_class_name` must be one of [`SUPPORTED_PIPELINES`]: the SD 1.x / 2.x pipelines whose
//! folders hold exactly the text-to-image components (a 4-channel `UNet2DConditionModel`, an
//! `AutoencoderKL`, a CLIP text encoder and tokenizer, a scheduler). Inpainting, depth,
//! instruct-pix2pix and upscaling folders (other UNet inputs), SDXL (two text encoders), SD 3,
//! Flux, Kandinsky, AltDiffusion (an XLM-R text encoder) and the rest are refused with one line
//! naming the class and the supported ones.
//!
//! The components [`Component::ALL`] are required: each needs its `model_index.json` entry
//! (not `[null, null]`), its sub-folder and its config file. The classes named in
//! `model_index.json` are checked for the model components (see [`Component::classes`]); the
//! scheduler's class is not, since the pipeline replaces it with DDIM built from its config.
//!
//! `safety_checker` and `feature_extractor` are ignored on purpose: this crate never runs the
//! safety checker (as diffusers with `safety_checker=None`), so neither is read nor needed.
//!
//! ## Reading limits
//!
//! Every JSON file is read through [`read_text_capped`] (at most [`MAX_JSON_BYTES`], regular
//! files only), so a hostile `config.json` that is a link to `/dev/zero` or a FIFO cannot
//! exhaust memory or hang. Weights files are checked to start like safetensors
//! ([`check_safetensors_header`]) before anything heavy is done with them.

mod weights;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use weights::{check_safetensors_header, MAX_SAFETENSORS_HEADER_BYTES};

use crate::error::{Error, Result};

/// The pipeline classes (`_class_name` in `model_index.json`) this crate runs: SD 1.x and 2.x
/// text-to-image and img2img folders, and the text-to-image variants whose folders hold the
/// same components (saved by their pipelines from a plain SD checkpoint).
pub const SUPPORTED_PIPELINES: [&str; 5] = [
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionSAGPipeline",
    "StableDiffusionAttendAndExcitePipeline",
    "StableDiffusionPanoramaPipeline",
];

/// The largest JSON file ([`read_text_capped`]) read: 16 MiB. Real configs are a few kB,
/// a CLIP `tokenizer.json` about 2 MB.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// A component of a Stable Diffusion pipeline folder that this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Component {
    /// `unet/`: the denoiser, `UNet2DConditionModel` (diffusers).
    Unet,
    /// `vae/`: the autoencoder, `AutoencoderKL` (diffusers).
    Vae,
    /// `text_encoder/`: the CLIP text model (transformers).
    TextEncoder,
    /// `tokenizer/`: the CLIP tokenizer files (transformers).
    Tokenizer,
    /// `scheduler/`: the scheduler config (its class is replaced by DDIM).
    Scheduler,
}

impl Component {
    /// Every required component, in `model_index.json` order.
    pub const ALL: [Component; 5] = [
        Component::Unet,
        Component::Vae,
        Component::TextEncoder,
        Component::Tokenizer,
        Component::Scheduler,
    ];

    /// The key in `model_index.json`, which is also the sub-folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Unet => "unet",
            Component::Vae => "vae",
            Component::TextEncoder => "text_encoder",
            Component::Tokenizer => "tokenizer",
            Component::Scheduler => "scheduler",
        }
    }

    /// The component named `name` (`"unet"`, `"text_encoder"`, ...), if it is one.
    pub fn from_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The config file inside the component's folder: `config.json`, the scheduler's
    /// `scheduler_config.json`, the tokenizer's `tokenizer_config.json`.
    pub fn config_file(self) -> &'static str {
        match self {
            Component::Scheduler => "scheduler_config.json",
            Component::Tokenizer => "tokenizer_config.json",
            _ => "config.json",
        }
    }

    /// The classes accepted in the `model_index.json` entry (`None`: any, the scheduler).
    pub fn classes(self) -> Option<&'static [&'static str]> {
        match self {
            Component::Unet => Some(&["UNet2DConditionModel"]),
            Component::Vae => Some(&["AutoencoderKL"]),
            Component::TextEncoder => Some(&["CLIPTextModel"]),
            Component::Tokenizer => Some(&["CLIPTokenizer", "CLIPTokenizerFast"]),
            Component::Scheduler => None,
        }
    }

    /// The weights file's stem: `diffusion_pytorch_model` for diffusers models, `model` for
    /// transformers ones; `None` for components without weights (tokenizer, scheduler).
    pub fn weights_stem(self) -> Option<&'static str> {
        match self {
            Component::Unet | Component::Vae => Some("diffusion_pytorch_model"),
            Component::TextEncoder => Some("model"),
            Component::Tokenizer | Component::Scheduler => None,
        }
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One `model_index.json` entry: `[library, class]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentSpec {
    /// The library (`"diffusers"`, `"transformers"`).
    pub library: String,
    /// The class (`"UNet2DConditionModel"`, `"CLIPTextModel"`, ...).
    pub class: String,
}

/// A Stable Diffusion pipeline folder whose `model_index.json`, components and config files
/// were checked (see the [module docs](self)).
///
/// ```no_run
/// use ddim_pipeline::folder::{Component, PipelineFolder};
/// let folder = PipelineFolder::open_or_cached("runwayml/stable-diffusion-v1-5", None)?;
/// let (path, unet_config) = folder.config_text(Component::Unet)?;
/// let unet_weights = folder.weights(Component::Unet, Some("fp16"))?;
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PipelineFolder {
    root: PathBuf,
    class_name: String,
    components: BTreeMap<Component, ComponentSpec>,
}

fn folder_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Folder {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a text file of at most [`MAX_JSON_BYTES`]: a regular file (after following links),
/// valid UTF-8. Refuses devices, FIFOs and folders before opening them and stops reading past
/// the limit, so no file can exhaust memory.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be opened or read; [`Error::Config`] when it is not a
/// regular file, is larger than the limit or is not UTF-8.
pub fn read_text_capped(path: &Path) -> Result<String> {
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string().to_lowercase(),
    };
    let config = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(config("not a regular file".to_owned()));
    }
    let too_large = || {
        config(format!(
            "larger than the {} MiB limit for a json file",
            MAX_JSON_BYTES >> 20
        ))
    };
    if meta.len() > MAX_JSON_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| {
        config(format!(
            "not utf-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Parses a JSON object read by [`read_text_capped`].
fn read_json_object(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text = read_text_capped(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        reason: format!("not valid json: {e}"),
    })?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(Error::Config {
            path: path.to_path_buf(),
            reason: "expected a json object at the top level".to_owned(),
        }),
    }
}

impl PipelineFolder {
    /// Opens a diffusers Stable Diffusion folder: reads `model_index.json`, checks the pipeline
    /// class and that every required component has its entry, sub-folder and config file.
    /// Weights are looked up later, by [`PipelineFolder::weights`].
    ///
    /// # Errors
    ///
    /// [`Error::Folder`] for a path that is not a folder, a missing `model_index.json`, an
    /// unsupported pipeline class, a missing or unexpected component; [`Error::Config`] for a
    /// `model_index.json` that is not a JSON object or is too large.
    pub fn open(path: &Path) -> Result<PipelineFolder> {
        let meta = std::fs::metadata(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            reason: e.to_string().to_lowercase(),
        })?;
        if !meta.is_dir() {
            return Err(folder_error(
                path,
                "not a folder: a diffusers pipeline is a folder holding model_index.json",
            ));
        }
        let index_path = path.join("model_index.json");
        if !index_path.exists() {
            return Err(folder_error(
                path,
                "no model_index.json: not a diffusers pipeline folder",
            ));
        }
        let index = read_json_object(&index_path)?;
        let class_name = match index.get("_class_name") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => {
                return Err(Error::Config {
                    path: index_path,
                    reason: "no `_class_name` string naming the pipeline class".to_owned(),
                })
            }
        };
        if !SUPPORTED_PIPELINES.contains(&class_name.as_str()) {
            return Err(folder_error(
                &index_path,
                format!(
                    "pipeline class `{class_name}` is not supported: this crate runs stable \
                     diffusion 1.x/2.x folders ({})",
                    SUPPORTED_PIPELINES.join(", ")
                ),
            ));
        }
        let mut components = BTreeMap::new();
        for component in Component::ALL {
            let spec = component_spec(&index, &index_path, component)?;
            let dir = path.join(component.name());
            if !dir.is_dir() {
                return Err(folder_error(
                    path,
                    format!("missing the `{component}` sub-folder named in model_index.json"),
                ));
            }
            if component != Component::Tokenizer {
                let config = dir.join(component.config_file());
                if !config.is_file() {
                    return Err(folder_error(
                        &dir,
                        format!(
                            "missing {} of the `{component}` component",
                            component.config_file()
                        ),
                    ));
                }
            }
            components.insert(component, spec);
        }
        Ok(PipelineFolder {
            root: path.to_path_buf(),
            class_name,
            components,
        })
    }

    /// Opens the pipeline folder of `model_id` at `revision` (default `main`) in the local
    /// Hugging Face cache of this process's environment, as
    /// `DiffusionPipeline.from_pretrained(model_id, revision=..., local_files_only=True)` finds
    /// it; the lookup is [`ddim::config::hub`]'s. Never uses the network.
    ///
    /// # Errors
    ///
    /// [`Error::Scheduler`] wrapping `ddim`'s invalid id / revision / not-in-cache errors
    /// (naming every cache folder searched), then as [`PipelineFolder::open`].
    pub fn from_hf_cache(model_id: &str, revision: Option<&str>) -> Result<PipelineFolder> {
        let dirs = ddim::config::hub::HubEnv::from_process().cache_dirs();
        Self::from_cache_dirs(&dirs, model_id, revision)
    }

    /// [`PipelineFolder::from_hf_cache`] searching the given cache folders, in order.
    ///
    /// # Errors
    ///
    /// As [`PipelineFolder::from_hf_cache`].
    pub fn from_cache_dirs(
        cache_dirs: &[PathBuf],
        model_id: &str,
        revision: Option<&str>,
    ) -> Result<PipelineFolder> {
        let scheduler_config =
            ddim::config::hub::find_scheduler_config(cache_dirs, model_id, revision)?;
        // <snapshot>/scheduler/scheduler_config.json: the snapshot is two levels up (the path
        // is not canonicalised, so a symlinked file into blobs/ still has its snapshot here).
        let snapshot = scheduler_config
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| folder_error(&scheduler_config, "no snapshot folder above it"))?;
        Self::open(snapshot)
    }

    /// A path or a model id: if `path_or_id` names something that exists on disk, it is a
    /// folder ([`PipelineFolder::open`]) and `revision` must be `None`; otherwise, if it looks
    /// like a path (absolute, starting with `.` or `~`, or with a `\` or more than one `/`),
    /// it is a missing folder; otherwise it is a model id in the Hugging Face cache
    /// ([`PipelineFolder::from_hf_cache`]). A folder in the working directory wins over a model
    /// id of the same name, as in diffusers' `from_pretrained`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a revision given with a path; [`Error::Folder`] for a
    /// path-like argument that does not exist; otherwise as the two functions above.
    pub fn open_or_cached(path_or_id: &str, revision: Option<&str>) -> Result<PipelineFolder> {
        let dirs = ddim::config::hub::HubEnv::from_process().cache_dirs();
        Self::open_or_cached_in(&dirs, path_or_id, revision)
    }

    /// [`PipelineFolder::open_or_cached`] with the cache folders given.
    ///
    /// # Errors
    ///
    /// As [`PipelineFolder::open_or_cached`].
    pub fn open_or_cached_in(
        cache_dirs: &[PathBuf],
        path_or_id: &str,
        revision: Option<&str>,
    ) -> Result<PipelineFolder> {
        let path = Path::new(path_or_id);
        if std::fs::symlink_metadata(path).is_ok() {
            if let Some(revision) = revision {
                return Err(Error::InvalidArgument {
                    name: "revision",
                    reason: format!(
                        "`{revision}` cannot be used with a local path ({path_or_id}): a \
                         revision selects a snapshot of a model id in the hugging face cache"
                    ),
                });
            }
            return Self::open(path);
        }
        let path_like = path.is_absolute()
            || path_or_id.starts_with('.')
            || path_or_id.starts_with('~')
            || path_or_id.contains('\\')
            || path_or_id.matches('/').count() > 1;
        if path_like {
            return Err(folder_error(path, "no such folder"));
        }
        Self::from_cache_dirs(cache_dirs, path_or_id, revision)
    }

    /// The folder (as given, or the cache snapshot).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `_class_name` from `model_index.json`.
    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// The `[library, class]` entry of `model_index.json` for `component`.
    pub fn spec(&self, component: Component) -> Option<&ComponentSpec> {
        self.components.get(&component)
    }

    /// The component's sub-folder (checked to exist when the folder was opened).
    pub fn component_dir(&self, component: Component) -> PathBuf {
        self.root.join(component.name())
    }

    /// The component's config file ([`Component::config_file`]) and its text, read through
    /// [`read_text_capped`]. For the tokenizer, whose folder was only checked to exist, a
    /// missing `tokenizer_config.json` is an error here.
    ///
    /// # Errors
    ///
    /// As [`read_text_capped`].
    pub fn config_text(&self, component: Component) -> Result<(PathBuf, String)> {
        let path = self.component_dir(component).join(component.config_file());
        let text = read_text_capped(&path)?;
        Ok((path, text))
    }

    /// The component's safetensors weights files: one file, or the distinct shards of a
    /// sharded checkpoint sorted by name, from its index's `weight_map`.
    ///
    /// With `variant = Some("fp16")` the variant files are required
    /// (`diffusion_pytorch_model.fp16.safetensors`, `model.fp16.safetensors`, shards indexed by
    /// `*.safetensors.index.fp16.json`); when they are absent this is an error naming the file
    /// looked for, as diffusers' `from_pretrained(variant=...)` errors, not a silent fallback
    /// to the full-precision files. Each file is checked with [`check_safetensors_header`].
    /// Only `*.bin`/`*.ckpt`/`*.pt`/`*.pth`/`*.pkl` files (PyTorch pickles) are refused: they
    /// can run code when loaded, and are never read.
    ///
    /// # Errors
    ///
    /// [`Error::Folder`] when no weights file is found (naming the file looked for, and the
    /// pickles present if any), or for the tokenizer/scheduler, or for a bad variant name;
    /// [`Error::Config`] for a shard index that is not usable; [`Error::Weights`] for a file
    /// that is not safetensors.
    pub fn weights(&self, component: Component, variant: Option<&str>) -> Result<Vec<PathBuf>> {
        let dir = self.component_dir(component);
        let stem = component.weights_stem().ok_or_else(|| {
            folder_error(&dir, format!("the `{component}` component has no weights"))
        })?;
        weights::find_weights(&dir, stem, variant)
    }
}

/// The `[library, class]` entry of `component` in `model_index.json`, checked.
fn component_spec(
    index: &serde_json::Map<String, serde_json::Value>,
    index_path: &Path,
    component: Component,
) -> Result<ComponentSpec> {
    let name = component.name();
    let missing = || {
        folder_error(
            index_path,
            format!(
                "no `{name}` component: a stable diffusion pipeline needs {}",
                Component::ALL.map(Component::name).join(", ")
            ),
        )
    };
    let entry = index.get(name).ok_or_else(missing)?;
    let pair = match entry.as_array().map(Vec::as_slice) {
        Some([serde_json::Value::Null, serde_json::Value::Null]) => return Err(missing()),
        Some([serde_json::Value::String(l), serde_json::Value::String(c)]) => ComponentSpec {
            library: l.clone(),
            class: c.clone(),
        },
        _ => {
            return Err(Error::Config {
                path: index_path.to_path_buf(),
                reason: format!(
                    "`{name}` must be a [library, class] pair of strings, found {entry}"
                ),
            })
        }
    };
    if let Some(classes) = component.classes() {
        if !classes.contains(&pair.class.as_str()) {
            return Err(folder_error(
                index_path,
                format!(
                    "`{name}` is a `{}`; this crate runs {}",
                    pair.class,
                    classes.join(" or ")
                ),
            ));
        }
    }
    Ok(pair)
}
