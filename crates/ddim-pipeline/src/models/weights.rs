//! Loading safetensors weights into a [`VarBuilder`] without memory maps or `unsafe`.
//!
//! Files are read whole (`candle_core::safetensors::load`), every tensor is kept in its stored
//! dtype and converted to the model's dtype when a layer asks for it, and a missing tensor or a
//! tensor of the wrong shape becomes an error that names it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// The tensors of one or more safetensors files, answering a [`VarBuilder`]'s requests.
#[derive(Debug)]
struct TensorMap {
    tensors: HashMap<String, Tensor>,
}

impl candle_nn::var_builder::SimpleBackend for TensorMap {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, dev)?;
        if tensor.shape() != &s {
            return Err(candle_core::Error::Msg(format!(
                "tensor `{name}` has shape {:?}, expected {:?}",
                tensor.dims(),
                s.dims()
            )));
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("tensor `{name}` is missing")))?;
        tensor.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Reads safetensors `files` (one model, possibly sharded) into a [`VarBuilder`] whose tensors
/// come out in `dtype` on `device` (f16/bf16 files are converted on request).
///
/// The files are read into memory (no mmap). A file that is unreadable or not valid safetensors
/// gives [`Error::Weights`] naming it. A tensor a model asks for that is missing or has another
/// shape makes the model's `new` fail with a candle error whose message names it
/// (``tensor `conv_in.weight` has shape [32, 3, 3, 3], expected [32, 4, 3, 3]``);
/// [`crate::models::UNet2DConditionModel::load`] and [`crate::models::AutoencoderKl::load`]
/// turn that into [`Error::Weights`] naming the file. Tensors no layer asks for are ignored.
///
/// ```no_run
/// # use ddim_pipeline::models::load_weights;
/// # use candle_core::{DType, Device};
/// let vb = load_weights(&["unet/diffusion_pytorch_model.safetensors".into()], DType::F32, &Device::Cpu)?;
/// # Ok::<(), ddim_pipeline::Error>(())
/// ```
pub fn load_weights(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    if files.is_empty() {
        return Err(Error::Weights {
            path: PathBuf::new(),
            reason: "no weights files given".into(),
        });
    }
    let mut tensors = HashMap::new();
    for file in files {
        let data = std::fs::read(file).map_err(|e| Error::Io {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        let map = candle_core::safetensors::load_buffer(&data, &Device::Cpu).map_err(|e| {
            Error::Weights {
                path: file.clone(),
                reason: format!("not a valid safetensors file: {}", one_line(&e)),
            }
        })?;
        tensors.extend(map);
    }
    let backend: Box<dyn candle_nn::var_builder::SimpleBackend> = Box::new(TensorMap { tensors });
    Ok(VarBuilder::from_backend(backend, dtype, device.clone()))
}

/// Turns an error raised while building a model from a [`VarBuilder`] into [`Error::Weights`]
/// for `file` (the message names the tensor).
pub(crate) fn weights_error(file: &Path) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::Weights {
        path: file.to_path_buf(),
        reason: one_line(&e),
    }
}

/// A candle error as one line (candle sometimes appends a backtrace or context lines).
fn one_line(e: &candle_core::Error) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().trim().to_string()
}
