//! CLIP's byte-level BPE tokenizer, id for id as the installed transformers' `CLIPTokenizer` when
//! diffusers' `StableDiffusionPipeline.encode_prompt` calls it:
//!
//! ```python
//! tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
//!           truncation=True, return_tensors="pt")
//! ```
//!
//! # What transformers 5 runs
//!
//! In transformers 5 (5.25 measured) `CLIPTokenizer` *is* the former fast tokenizer: one class
//! backed by the `tokenizers` library (the same Rust library used here). There is no ftfy, no HTML
//! unescaping and no Python regex any more. Whatever the folder holds (`tokenizer.json`, or
//! `vocab.json` + `merges.txt`), transformers takes only the vocabulary and the merges from it and
//! rebuilds the same pipeline, which [`ClipTokenizer`] rebuilds too:
//!
//! 1. added (special) tokens are split out first, on the raw text or on the normalised text as
//!    each token's `normalized` flag says (see `special.rs` for which tokens a folder declares);
//! 2. normaliser: Unicode NFC, every run of `\s` replaced by one space, lower-casing
//!    (`char::to_lowercase`);
//! 3. pre-tokeniser: the pieces of
//!    `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
//!    (everything else, i.e. spaces, dropped), then GPT-2's byte-to-character mapping;
//! 4. BPE with the folder's merges, `</w>` appended to the last symbol of each piece, unknown
//!    symbols as `unk_token`;
//! 5. `<|startoftext|>` … `<|endoftext|>` around the pieces' ids (the folder's `bos`/`eos`).
//!
//! The call above then cuts the ids to `model_max_length` (the content to
//! `model_max_length − 2`, then BOS/EOS) and pads on the right with the folder's `pad_token` to
//! exactly `model_max_length` ids.
//!
//! One difference in principle: `tokenizers` is built here with its pure-Rust regex back end
//! (`fancy-regex` over `regex`), where the Python wheel uses Oniguruma. Both follow Unicode's
//! `White_Space`, `L` and `N`; the fixtures' prompts (tabs, no-break and ideographic spaces, NEL,
//! zero-width characters, CJK, emoji, combining marks) give the same ids.
//!
//! # Truncation warning
//!
//! diffusers tokenizes the prompt a second time without truncation and, when that is longer,
//! logs `The following part of your input was truncated because CLIP can only handle sequences
//! up to {model_max_length} tokens: {removed}` with `removed = tokenizer.batch_decode(ids[:,
//! model_max_length - 1 : -1])`. [`TokenizedPrompt::truncated`] is that `removed` text (byte-level
//! decoding, `</w>` → space, stripped); the library prints nothing.

mod special;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BpeBuilder, Vocab, BPE};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormalizerSequence, NFC};
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use crate::error::{Error, Result};
use special::{Sources, Spec};

/// transformers' `CLIPTokenizer` pre-tokeniser pattern.
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// `model_max_length` when `tokenizer_config.json` does not give it (every SD folder does: 77).
///
/// transformers would take "unlimited" (`VERY_LARGE_INTEGER`) there, and diffusers' padding to
/// that length would fail; CLIP's text encoders all have 77 positions.
pub const DEFAULT_MODEL_MAX_LENGTH: usize = 77;

/// A prompt as diffusers hands it to the text encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedPrompt {
    /// `<|startoftext|>`, the prompt's tokens, `<|endoftext|>`, then the pad token: exactly
    /// [`ClipTokenizer::model_max_length`] ids.
    pub ids: Vec<u32>,
    /// The text cut off by truncation, decoded as diffusers decodes it for its warning; `None`
    /// when the prompt fitted.
    pub truncated: Option<String>,
}

impl TokenizedPrompt {
    /// diffusers' warning for a truncated prompt, for the caller to show:
    /// `The following part of your input was truncated because CLIP can only handle sequences up
    /// to 77 tokens: {removed}` (diffusers prints `removed` as a one-element Python list; here it
    /// is the plain text). `None` when nothing was cut.
    ///
    /// ```no_run
    /// # fn main() -> ddim_pipeline::Result<()> {
    /// # let tokenizer = ddim_pipeline::tokenizer::ClipTokenizer::from_folder("t".as_ref())?;
    /// let prompt = tokenizer.encode(&"a lion ".repeat(60))?;
    /// if let Some(warning) = prompt.truncation_warning() {
    ///     eprintln!("warning: {warning}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn truncation_warning(&self) -> Option<String> {
        self.truncated.as_ref().map(|removed| {
            format!(
                "The following part of your input was truncated because CLIP can only handle \
                 sequences up to {} tokens: {removed}",
                self.ids.len()
            )
        })
    }
}

/// CLIP's BPE tokenizer, loaded from a diffusers `tokenizer/` folder (module docs).
///
/// ```no_run
/// use ddim_pipeline::tokenizer::ClipTokenizer;
/// # fn main() -> ddim_pipeline::Result<()> {
/// let tokenizer = ClipTokenizer::from_folder("model/tokenizer".as_ref())?;
/// let prompt = tokenizer.encode("a photograph of an astronaut riding a horse")?;
/// assert_eq!(prompt.ids.len(), tokenizer.model_max_length());
/// if let Some(removed) = &prompt.truncated {
///     eprintln!("truncated: {removed}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
    model_max_length: usize,
    folder: PathBuf,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        reason: format!("invalid json: {e}"),
    })
}

fn json_object(value: Value, path: &Path) -> Result<Map<String, Value>> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Error::Config {
            path: path.to_path_buf(),
            reason: "expected a json object".into(),
        }),
    }
}

fn config_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The vocabulary and merges of a `tokenizer.json` (`model.vocab`, `model.merges` as
/// `"a b"` strings or `["a", "b"]` pairs), as transformers extracts them.
fn bpe_from_tokenizer_json(json: &Value, path: &Path) -> Result<BpeBuilder> {
    let model = json
        .get("model")
        .ok_or_else(|| config_err(path, "no `model` key"))?;
    if let Some(kind) = model.get("type").and_then(Value::as_str) {
        if kind != "BPE" {
            return Err(config_err(path, format!("model type `{kind}` is not BPE")));
        }
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| config_err(path, "`model.vocab` is not an object"))?;
    let mut map = Vocab::default();
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| config_err(path, format!("vocab entry `{token}` has no u32 id")))?;
        map.insert(token.clone(), id);
    }
    let merges = model
        .get("merges")
        .and_then(Value::as_array)
        .ok_or_else(|| config_err(path, "`model.merges` is not a list"))?;
    let mut pairs = Vec::with_capacity(merges.len());
    for (i, merge) in merges.iter().enumerate() {
        let pair = match merge {
            Value::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string())),
            Value::Array(parts) => match parts.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        };
        pairs.push(pair.ok_or_else(|| config_err(path, format!("merge {i} is not a pair")))?);
    }
    Ok(BPE::builder().vocab_and_merges(map, pairs))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| config_err(path, "path is not valid utf-8"))
}

impl ClipTokenizer {
    /// Loads a diffusers `tokenizer/` folder: `tokenizer.json` when present, otherwise
    /// `vocab.json` + `merges.txt`; `tokenizer_config.json` (`model_max_length`, named special
    /// tokens, `added_tokens_decoder`) and `special_tokens_map.json` as transformers reads them.
    ///
    /// A missing vocabulary is [`Error::Io`] naming the file; unusable content is
    /// [`Error::Config`] naming the file and the key.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Io {
                path: dir.to_path_buf(),
                reason: "not a folder".into(),
            });
        }
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            json_object(read_json(&config_path)?, &config_path)?
        } else {
            Map::new()
        };
        let map_path = dir.join("special_tokens_map.json");
        let special_map = if map_path.is_file() {
            Some(json_object(read_json(&map_path)?, &map_path)?)
        } else {
            None
        };
        let json_path = dir.join("tokenizer.json");
        let tokenizer_json = if json_path.is_file() {
            Some(read_json(&json_path)?)
        } else {
            None
        };

        let model_max_length = match config.get("model_max_length") {
            None | Some(Value::Null) => DEFAULT_MODEL_MAX_LENGTH,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n >= 2)
                .ok_or_else(|| {
                    config_err(
                        &config_path,
                        format!("`model_max_length` must be an integer >= 2, found {v}"),
                    )
                })?,
        };

        let resolved = special::resolve(&Sources {
            config: &config,
            config_path: &config_path,
            special_map: special_map.as_ref().map(|m| (m, map_path.as_path())),
            tokenizer_json: tokenizer_json.as_ref().map(|j| (j, json_path.as_path())),
        })?;
        let name = |key: &str| -> Result<String> {
            resolved
                .named
                .get(key)
                .map(|s: &Spec| s.content().to_string())
                .ok_or_else(|| config_err(&config_path, format!("no `{key}`")))
        };
        let (bos, eos, unk, pad) = (
            name("bos_token")?,
            name("eos_token")?,
            name("unk_token")?,
            name("pad_token")?,
        );

        let (builder, vocab_file) = match &tokenizer_json {
            Some(json) => (
                bpe_from_tokenizer_json(json, &json_path)?,
                json_path.clone(),
            ),
            None => {
                let vocab = dir.join("vocab.json");
                let merges = dir.join("merges.txt");
                for f in [&vocab, &merges] {
                    if !f.is_file() {
                        return Err(Error::Io {
                            path: f.clone(),
                            reason: "missing (a tokenizer folder needs tokenizer.json or vocab.json + merges.txt)".into(),
                        });
                    }
                }
                (BPE::from_file(path_str(&vocab)?, path_str(&merges)?), vocab)
            }
        };
        let bpe = builder
            .dropout(0.0)
            .unk_token(unk)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .fuse_unk(false)
            .build()
            .map_err(|e| config_err(&vocab_file, format!("cannot build the bpe model: {e}")))?;

        let mut tokenizer = Tokenizer::new(bpe);
        let internal = |e: Box<dyn std::error::Error + Send + Sync>| config_err(dir, e);
        let normalizer = NormalizerSequence::new(vec![
            NormalizerWrapper::NFC(NFC),
            NormalizerWrapper::Replace(
                Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(internal)?,
            ),
            NormalizerWrapper::Lowercase(Lowercase),
        ]);
        tokenizer
            .with_normalizer(Some(NormalizerWrapper::Sequence(normalizer)))
            .map_err(internal)?;
        let split = Split::new(
            SplitPattern::Regex(CLIP_PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(internal)?;
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(
            PreTokenizerSequence::new(vec![
                PreTokenizerWrapper::Split(split),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
            ]),
        )));
        tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        tokenizer.add_tokens(resolved.to_add).map_err(internal)?;

        let id = |token: &str, key: &str| -> Result<u32> {
            tokenizer.token_to_id(token).ok_or_else(|| {
                config_err(
                    &vocab_file,
                    format!("{key} `{token}` is not in the vocabulary"),
                )
            })
        };
        let bos_id = id(&bos, "bos_token")?;
        let eos_id = id(&eos, "eos_token")?;
        let pad_id = id(&pad, "pad_token")?;
        Ok(Self {
            tokenizer,
            bos_id,
            eos_id,
            pad_id,
            model_max_length,
            folder: dir.to_path_buf(),
        })
    }

    /// Tokenizes `text` as `encode_prompt` does: BOS, the prompt's tokens cut to
    /// `model_max_length − 2`, EOS, then padding to `model_max_length` ids; the cut-off text in
    /// [`TokenizedPrompt::truncated`].
    pub fn encode(&self, text: &str) -> Result<TokenizedPrompt> {
        let content = self.content_ids(text)?;
        let keep = self.model_max_length - 2;
        let mut ids = Vec::with_capacity(self.model_max_length);
        ids.push(self.bos_id);
        ids.extend_from_slice(&content[..content.len().min(keep)]);
        ids.push(self.eos_id);
        ids.resize(self.model_max_length, self.pad_id);
        let truncated = if content.len() > keep {
            Some(self.decode(&content[keep..])?)
        } else {
            None
        };
        Ok(TokenizedPrompt { ids, truncated })
    }

    /// The ids of `text` without BOS/EOS, truncation or padding.
    pub fn content_ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| config_err(&self.folder, format!("cannot tokenize the prompt: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// transformers' `decode` for CLIP: byte-level decoding, `</w>` → space, then Python's
    /// `str.strip()`; special tokens are kept.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self
            .tokenizer
            .decode(ids, false)
            .map_err(|e| config_err(&self.folder, format!("cannot decode token ids: {e}")))?;
        let text = text.replace("</w>", " ");
        Ok(text.trim_matches(python_isspace).to_string())
    }

    /// The number of ids [`encode`](Self::encode) returns (`model_max_length` of
    /// `tokenizer_config.json`; [`DEFAULT_MODEL_MAX_LENGTH`] when absent).
    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }

    /// The id of the folder's `pad_token` (`<|endoftext|>` in SD 1.x folders, `!` in SD 2.x).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The id of `bos_token` (`<|startoftext|>`).
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The id of `eos_token` (`<|endoftext|>`).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
}

/// Python's `str.isspace` (Rust's `char::is_whitespace` plus the separators U+001C..U+001F).
fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}
