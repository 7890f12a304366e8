//! Which added tokens a CLIP tokenizer folder declares, resolved as transformers 5 resolves them.
//!
//! transformers' `CLIPTokenizer.from_pretrained` (5.25, `tokenization_utils_base.py` and
//! `tokenization_utils_tokenizers.py`) ends up adding, in order:
//!
//! 1. the entries of `added_tokens_decoder` in `tokenizer_config.json`, sorted by id; when that key
//!    is absent (the transformers-4 folders of SD 1.x/2.x repos), the `added_tokens` of
//!    `tokenizer.json` instead, and `special_tokens_map.json` overrides the config's named tokens;
//! 2. each named special token (`bos`, `eos`, `unk`, `sep`, `pad`, `cls`, `mask`, then the extra
//!    ones) whose text is not among (1) and which is not equal, flags included, to an entry already
//!    listed. A plain string becomes a special token matched on the raw text (`normalized = false`);
//!    a `{"__type": "AddedToken", ...}` keeps its flags.
//!
//! The `tokenizers` library then lets a later token with the same text but other flags replace an
//! earlier one. That is why SD 2.x's pad token `!` is split out of a prompt before BPE ("wow!!!" is
//! `wow`, `!`, `!`, `!` there and `wow`, `!!!` in an SD 1.x folder), and why a literal
//! `<|endoftext|>` in a prompt is the end-of-text token.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};
use tokenizers::AddedToken;

use crate::error::{Error, Result};

/// transformers' `SPECIAL_TOKENS_ATTRIBUTES`, in its order.
const NAMED: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// A special token as a folder states it: a plain string or an `AddedToken` with flags.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Spec {
    Plain(String),
    Added(AddedToken),
}

impl Spec {
    pub(crate) fn content(&self) -> &str {
        match self {
            Spec::Plain(s) => s,
            Spec::Added(t) => &t.content,
        }
    }
}

/// The named special tokens (after CLIP's defaults) and the added tokens, in the order to add them.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub(crate) named: BTreeMap<&'static str, Spec>,
    pub(crate) to_add: Vec<AddedToken>,
}

fn flag(obj: &Map<String, Value>, key: &str, default: bool, file: &Path) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Error::Config {
            path: file.to_path_buf(),
            reason: format!("added token flag `{key}` must be a boolean, found {other}"),
        }),
    }
}

/// Python's `AddedToken(**obj)`, optionally forcing `special`.
fn added_token(
    obj: &Map<String, Value>,
    force_special: Option<bool>,
    file: &Path,
) -> Result<AddedToken> {
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(Error::Config {
                path: file.to_path_buf(),
                reason: "added token without a string `content`".into(),
            })
        }
    };
    let special = match force_special {
        Some(s) => s,
        None => flag(obj, "special", false, file)?,
    };
    Ok(AddedToken {
        content,
        single_word: flag(obj, "single_word", false, file)?,
        lstrip: flag(obj, "lstrip", false, file)?,
        rstrip: flag(obj, "rstrip", false, file)?,
        normalized: flag(obj, "normalized", !special, file)?,
        special,
    })
}

/// A value of `tokenizer_config.json`/`special_tokens_map.json` for a named token.
/// `from_map` marks `special_tokens_map.json`, whose dicts are special tokens.
fn spec(value: &Value, from_map: bool, key: &str, file: &Path) -> Result<Option<Spec>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(Spec::Plain(s.clone()))),
        Value::Object(obj) if from_map => {
            Ok(Some(Spec::Added(added_token(obj, Some(true), file)?)))
        }
        Value::Object(obj) if obj.get("__type").and_then(Value::as_str) == Some("AddedToken") => {
            Ok(Some(Spec::Added(added_token(obj, None, file)?)))
        }
        other => Err(Error::Config {
            path: file.to_path_buf(),
            reason: format!("`{key}` must be a string or an AddedToken, found {other}"),
        }),
    }
}

fn extra_list(value: &Value, from_map: bool, key: &str, file: &Path) -> Result<Vec<Spec>> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                let item = match item {
                    Value::Object(obj) if !obj.contains_key("__type") => {
                        Spec::Added(added_token(obj, Some(true), file)?)
                    }
                    other => match spec(other, from_map, key, file)? {
                        Some(s) => s,
                        None => continue,
                    },
                };
                out.push(item);
            }
            Ok(out)
        }
        other => Err(Error::Config {
            path: file.to_path_buf(),
            reason: format!("`{key}` must be a list, found {other}"),
        }),
    }
}

/// The folder's token declarations, already parsed.
#[derive(Debug)]
pub(crate) struct Sources<'a> {
    pub(crate) config: &'a Map<String, Value>,
    pub(crate) config_path: &'a Path,
    pub(crate) special_map: Option<(&'a Map<String, Value>, &'a Path)>,
    pub(crate) tokenizer_json: Option<(&'a Value, &'a Path)>,
}

/// CLIP's defaults when a folder names no such token (`CLIPTokenizer.__init__`).
fn clip_default(key: &str) -> Option<&'static str> {
    match key {
        "bos_token" => Some("<|startoftext|>"),
        "eos_token" | "unk_token" | "pad_token" => Some("<|endoftext|>"),
        _ => None,
    }
}

/// Resolves the named special tokens and the added tokens as transformers does (module docs).
pub(crate) fn resolve(src: &Sources<'_>) -> Result<Resolved> {
    let mut decoder: BTreeMap<u32, AddedToken> = BTreeMap::new();
    let mut named: BTreeMap<&'static str, Spec> = BTreeMap::new();
    let mut extra: Vec<Spec> = Vec::new();
    let cfg_path = src.config_path;

    for key in NAMED {
        if let Some(v) = src.config.get(key) {
            if let Some(s) = spec(v, false, key, cfg_path)? {
                named.insert(key, s);
            }
        }
    }
    for key in ["extra_special_tokens", "additional_special_tokens"] {
        if let Some(v) = src.config.get(key) {
            if !v.is_object() {
                extra.extend(extra_list(v, false, key, cfg_path)?);
            }
        }
    }

    if let Some(dec) = src.config.get("added_tokens_decoder") {
        let Value::Object(entries) = dec else {
            return Err(Error::Config {
                path: cfg_path.to_path_buf(),
                reason: "`added_tokens_decoder` must be an object of id -> token".into(),
            });
        };
        for (id, tok) in entries {
            let id: u32 = id.parse().map_err(|_| Error::Config {
                path: cfg_path.to_path_buf(),
                reason: format!("`added_tokens_decoder` key `{id}` is not a token id"),
            })?;
            let Value::Object(obj) = tok else {
                return Err(Error::Config {
                    path: cfg_path.to_path_buf(),
                    reason: format!("`added_tokens_decoder` entry {id} is not an object"),
                });
            };
            decoder.insert(id, added_token(obj, None, cfg_path)?);
        }
    } else {
        if let Some((map, path)) = src.special_map {
            for (key, value) in map {
                if let Some(&name) = NAMED.iter().find(|n| **n == key.as_str()) {
                    match spec(value, true, key, path)? {
                        Some(s) => {
                            named.insert(name, s);
                        }
                        None => {
                            named.remove(name);
                        }
                    }
                } else if key == "extra_special_tokens" || key == "additional_special_tokens" {
                    for tok in extra_list(value, true, key, path)? {
                        if !extra.contains(&tok) {
                            extra.push(tok);
                        }
                    }
                }
            }
        }
        if let Some((json, path)) = src.tokenizer_json {
            if let Some(Value::Array(list)) = json.get("added_tokens") {
                for tok in list {
                    let Value::Object(obj) = tok else { continue };
                    let id =
                        obj.get("id")
                            .and_then(Value::as_u64)
                            .ok_or_else(|| Error::Config {
                                path: path.to_path_buf(),
                                reason: "an `added_tokens` entry has no integer `id`".into(),
                            })?;
                    let id = u32::try_from(id).map_err(|_| Error::Config {
                        path: path.to_path_buf(),
                        reason: format!("added token id {id} exceeds u32"),
                    })?;
                    decoder.insert(id, added_token(obj, None, path)?);
                }
            }
        }
    }

    // transformers: a named token whose text is an added token's text takes that token.
    if !decoder.is_empty() {
        for spec in named.values_mut() {
            if let Some(tok) = decoder.values().rev().find(|t| t.content == spec.content()) {
                *spec = Spec::Added(tok.clone());
            }
        }
    }
    for key in NAMED {
        if !named.contains_key(key) && !src.config.contains_key(key) {
            if let Some(default) = clip_default(key) {
                named.insert(key, Spec::Plain(default.to_string()));
            }
        }
    }

    let mut list: Vec<Spec> = decoder.values().cloned().map(Spec::Added).collect();
    let encoder: Vec<String> = list.iter().map(|s| s.content().to_string()).collect();
    let candidates = NAMED
        .iter()
        .filter_map(|k| named.get(k).cloned())
        .chain(extra.iter().cloned());
    for cand in candidates {
        if !encoder.iter().any(|e| e == cand.content()) && !list.contains(&cand) {
            list.push(cand);
        }
    }
    let named_texts: Vec<String> = named.values().map(|s| s.content().to_string()).collect();
    let to_add = list
        .into_iter()
        .map(|s| match s {
            Spec::Plain(content) => AddedToken::from(content, true),
            Spec::Added(mut tok) => {
                if !tok.special && named_texts.contains(&tok.content) {
                    tok.special = true;
                }
                tok
            }
        })
        .collect();
    Ok(Resolved { named, to_add })
}
