//! torchvision state dicts: torchvision's ResNet weights (`.pth` as `torch.save` writes them, or
//! `.safetensors`) loaded into this crate's ResNets, and ours exported under torchvision's names.
//!
//! The names map one to one — `conv1`/`bn1` ↔ `stem.conv`/`stem.bn`, `layer{i+1}.{j}` ↔
//! `stages.{i}.blocks.{j}`, `downsample.0`/`downsample.1` ↔ `shortcut.conv`/`shortcut.bn`,
//! `fc` ↔ `fc` — and burn-store's adapters turn PyTorch's conventions into burn's (a batch
//! norm's `weight`/`bias` are γ/β; a linear weight is `[out, in]` in PyTorch, `[in, out]` in
//! burn). The CIFAR ResNets of He et al. (2016), which torchvision has no class for, use the
//! same scheme over their three stages; `plaincnn` keeps its own paths (`layers.{i}.conv`, …).
//!
//! A weights file comes from the internet, so it is checked before burn-store reads a tensor:
//! its container (a safetensors header, or a `torch.save` zip whose pickle holds nothing but
//! tensors — no object is ever constructed, nothing is executed), that its tensors fit inside
//! the file, and that every key the model needs is there with the shape the model expects. A
//! file that does not fit is one error naming the key and both shapes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use burn::store::pytorch_reader::{DType as ReaderDType, FileFormat, PickleValue, PytorchReader};
use burn::store::{
    BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::DType;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::spec::Model;

/// What can go wrong with a weights file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file cannot be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why: written into the message, not chained as its source, so that a report of the
        /// whole chain says it once.
        cause: std::io::Error,
    },
    /// Not a weights file of a known kind, or a damaged one.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file's tensors do not fit the model.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which key, and the expected and found shapes.
        reason: String,
    },
    /// The classifier has another class count, and it was not left out.
    #[error(
        "{path}: its classifier has {found} classes, the model {expected}; to fine-tune, leave the \
         classifier out (train --weights loads everything else and initialises a new head)"
    )]
    Classes {
        /// The file.
        path: PathBuf,
        /// The file's class count.
        found: usize,
        /// The model's.
        expected: usize,
    },
}

/// How to load.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Leave the classifier (`fc.*`) as initialised, for a head with another class count.
    pub skip_classifier: bool,
}

/// What a load did, by torchvision key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Keys whose tensors were loaded.
    pub loaded: Vec<String>,
    /// Keys in the file that were left out on request (the classifier).
    pub skipped: Vec<String>,
    /// Keys in the file the model has no place for (`num_batches_tracked`).
    pub ignored: Vec<String>,
    /// Model parameters the file did not provide: they keep their initialisation.
    pub initialised: Vec<String>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tensors loaded, {} skipped, {} ignored, {} left initialised",
            self.loaded.len(),
            self.skipped.len(),
            self.ignored.len(),
            self.initialised.len()
        )?;
        if !self.initialised.is_empty() {
            write!(f, " ({})", self.initialised.join(", "))?;
        }
        Ok(())
    }
}

/// A tensor as a file declares it.
#[derive(Debug, Clone, PartialEq)]
struct Declared {
    shape: Vec<usize>,
    dtype: DType,
}

/// The torchvision key of one of the model's parameter paths (burn-store's paths without enum
/// variants): see the module docs.
pub fn torchvision_key(path: &str) -> String {
    let mut key = if let Some(rest) = path.strip_prefix("stem.conv.") {
        format!("conv1.{rest}")
    } else if let Some(rest) = path.strip_prefix("stem.bn.") {
        format!("bn1.{rest}")
    } else if let Some(rest) = path.strip_prefix("stages.") {
        match rest.split_once(".blocks.") {
            Some((stage, tail)) => match stage.parse::<usize>() {
                Ok(stage) => format!("layer{}.{tail}", stage + 1),
                Err(_) => path.to_string(),
            },
            None => path.to_string(),
        }
    } else {
        path.to_string()
    };
    key = key
        .replace(".shortcut.conv.", ".downsample.0.")
        .replace(".shortcut.bn.", ".downsample.1.");
    key
}

/// The model's tensors under torchvision's names, in PyTorch's layout, with their shapes.
fn expected(model: &Model) -> BTreeMap<String, Vec<usize>> {
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|t| (torchvision_key(&t.name), t.shape.to_vec()))
        .collect()
}

/// Loads torchvision weights from `path` into `model` (freshly built: it gives the architecture
/// and the device, and its initialisation stays where the file provides nothing).
pub fn load_weights(
    model: Model,
    path: &Path,
    options: LoadOptions,
) -> Result<(Model, LoadReport), WeightsError> {
    let declared = inspect(path)?;
    let expected = expected(&model);
    let mismatch = |reason: String| WeightsError::Mismatch {
        path: path.to_path_buf(),
        reason,
    };
    let is_classifier = |key: &str| key.starts_with("fc.");

    if !options.skip_classifier
        && let (Some(want), Some(found)) = (expected.get("fc.weight"), declared.get("fc.weight"))
        && found.shape.len() == 2
        && want.len() == 2
        && found.shape[0] != want[0]
    {
        return Err(WeightsError::Classes {
            path: path.to_path_buf(),
            found: found.shape[0],
            expected: want[0],
        });
    }
    let mut report = LoadReport::default();
    for (key, shape) in &expected {
        if options.skip_classifier && is_classifier(key) {
            report.initialised.push(key.clone());
            continue;
        }
        let Some(found) = declared.get(key) else {
            return Err(mismatch(format!(
                "no tensor `{key}` (the model needs it with shape {shape:?})"
            )));
        };
        if &found.shape != shape {
            return Err(mismatch(format!(
                "`{key}` has shape {:?}, the model expects {shape:?}",
                found.shape
            )));
        }
        if found.dtype != DType::F32 {
            return Err(mismatch(format!(
                "`{key}` is {:?}; weights are read as float32",
                found.dtype
            )));
        }
        report.loaded.push(key.clone());
    }
    for key in declared.keys().filter(|k| !expected.contains_key(*k)) {
        if key.ends_with(".num_batches_tracked") {
            report.ignored.push(key.clone());
        } else {
            return Err(mismatch(format!(
                "`{key}` has no place in the model (is the file for another architecture?)"
            )));
        }
    }
    report.skipped = declared
        .keys()
        .filter(|k| options.skip_classifier && is_classifier(k))
        .cloned()
        .collect();

    let mut model = model;
    let store_error = |e: &dyn fmt::Display| WeightsError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let stages = stage_count(&expected);
    let result = match Kind::of(path)? {
        Kind::Pytorch => {
            let mut store = remapped_pytorch(PytorchStore::from_file(path), stages)
                .skip_enum_variants(true)
                .map_indices_contiguous(false)
                .allow_partial(true);
            if options.skip_classifier {
                store = store.with_predicate(|path, _| !path.starts_with("fc."));
            }
            model.load_from(&mut store).map_err(|e| store_error(&e))?
        }
        Kind::Safetensors => {
            let mut store = remapped_safetensors(SafetensorsStore::from_file(path), stages)
                .with_from_adapter(PyTorchToBurnAdapter)
                .skip_enum_variants(true)
                .allow_partial(true);
            if options.skip_classifier {
                store = store.with_predicate(|path, _| !path.starts_with("fc."));
            }
            model.load_from(&mut store).map_err(|e| store_error(&e))?
        }
    };
    if let Some(error) = result.errors.first() {
        return Err(mismatch(format!("{error:?}")));
    }
    let applied = result.applied.len();
    if applied != report.loaded.len() {
        return Err(mismatch(format!(
            "{applied} tensors applied where {} were checked",
            report.loaded.len()
        )));
    }
    Ok((model, report))
}

/// The class count of the classifier in a weights file (`fc.weight` is `[classes, features]`).
pub fn classifier_classes(path: &Path) -> Result<usize, WeightsError> {
    let declared = inspect(path)?;
    match declared.get("fc.weight") {
        Some(fc) if fc.shape.len() == 2 => Ok(fc.shape[0]),
        _ => Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            reason: "no classifier `fc.weight` of rank 2".to_string(),
        }),
    }
}

/// Writes `model` to `path` (`.safetensors`) under torchvision's names, in PyTorch's layout, so
/// that `torchvision.models.resnet18(num_classes=…).load_state_dict(load_file(path),
/// strict=True)` takes it. Every batch norm also gets the `num_batches_tracked` torchvision
/// keeps (0: this crate does not count them; PyTorch uses it only with `momentum=None`).
/// `metadata` goes into the file's header beside `format = pt` (safetensors' string map, which
/// `safe_open(path, "pt").metadata()` reads in Python), e.g. the input normalisation the model
/// was trained with. Written to a temporary file and renamed, so a reader never sees half a file.
pub fn export_weights(
    model: &Model,
    path: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<(), WeightsError> {
    let io = |cause| WeightsError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let tensors = model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true);
    let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for tensor in tensors {
        let key = torchvision_key(&tensor.name);
        let shape = tensor.shape.to_vec();
        let dtype = match tensor.dtype {
            DType::F32 => Dtype::F32,
            other => {
                return Err(WeightsError::Format {
                    path: path.to_path_buf(),
                    reason: format!("`{key}` is {other:?}; only float32 models are exported"),
                });
            }
        };
        let bytes = tensor.to_bytes().map_err(|e| WeightsError::Format {
            path: path.to_path_buf(),
            reason: format!("`{key}`: {e}"),
        })?;
        if key.ends_with(".running_var") {
            let prefix = key.trim_end_matches("running_var");
            entries.push((
                format!("{prefix}num_batches_tracked"),
                Dtype::I64,
                Vec::new(),
                0i64.to_le_bytes().to_vec(),
            ));
        }
        entries.push((key, dtype, shape, bytes.to_vec()));
    }
    let views = entries
        .iter()
        .map(|(key, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (key.clone(), view))
                .map_err(|e| WeightsError::Format {
                    path: path.to_path_buf(),
                    reason: format!("`{key}`: {e}"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut header: HashMap<String, String> = metadata.clone().into_iter().collect();
    header.insert("format".to_string(), "pt".to_string());
    let data = safetensors::serialize(views, Some(header)).map_err(|e| WeightsError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let staged = path.with_extension("safetensors.partial");
    std::fs::write(&staged, data).map_err(io)?;
    std::fs::rename(&staged, path).map_err(io)
}

/// The string metadata in a `.safetensors` file's header (empty for a file without any, and for
/// `.pth` files, which have no such map).
pub fn weights_metadata(path: &Path) -> Result<BTreeMap<String, String>, WeightsError> {
    if Kind::of(path)? == Kind::Pytorch {
        return Ok(BTreeMap::new());
    }
    let bytes = std::fs::read(path).map_err(|cause| WeightsError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| WeightsError::Format {
        path: path.to_path_buf(),
        reason: format!("not a valid safetensors file: {e}"),
    })?;
    Ok(metadata
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// The file kinds read, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pytorch,
    Safetensors,
}

impl Kind {
    fn of(path: &Path) -> Result<Kind, WeightsError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("pth" | "pt" | "bin") => Ok(Kind::Pytorch),
            Some("safetensors") => Ok(Kind::Safetensors),
            _ => Err(WeightsError::Format {
                path: path.to_path_buf(),
                reason: "not a weights file: expected .pth, .pt or .safetensors".to_string(),
            }),
        }
    }
}

/// The tensors a file declares, by key, after checking its container and that every tensor
/// lies inside the file.
fn inspect(path: &Path) -> Result<BTreeMap<String, Declared>, WeightsError> {
    let format = |reason: String| WeightsError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let kind = Kind::of(path)?;
    let length = std::fs::metadata(path)
        .map_err(|cause| WeightsError::Io {
            path: path.to_path_buf(),
            cause,
        })?
        .len() as usize;
    let declared = match kind {
        Kind::Safetensors => {
            let bytes = std::fs::read(path).map_err(|cause| WeightsError::Io {
                path: path.to_path_buf(),
                cause,
            })?;
            // The crate checks the header's size and every offset against the buffer.
            let file = SafeTensors::deserialize(&bytes)
                .map_err(|e| format(format!("not a valid safetensors file: {e}")))?;
            file.tensors()
                .into_iter()
                .map(|(name, view)| {
                    let dtype = match view.dtype() {
                        Dtype::F32 => DType::F32,
                        Dtype::F64 => DType::F64,
                        Dtype::F16 => DType::F16,
                        Dtype::BF16 => DType::BF16,
                        Dtype::I64 => DType::I64,
                        Dtype::I32 => DType::I32,
                        other => return Err(format(format!("`{name}` has dtype {other:?}"))),
                    };
                    Ok((
                        name,
                        Declared {
                            shape: view.shape().to_vec(),
                            dtype,
                        },
                    ))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?
        }
        Kind::Pytorch => {
            let reader = guarded(path, || PytorchReader::new(path))?;
            if reader.metadata().format_type != FileFormat::Zip {
                return Err(format(
                    "not a zip-format state dict (torch.save since PyTorch 1.6); legacy and \
                     plain pickle files are not read"
                        .to_string(),
                ));
            }
            match guarded(path, || PytorchReader::read_pickle_data(path, None))? {
                PickleValue::Dict(entries) => {
                    if let Some((key, value)) = entries
                        .iter()
                        .find(|(key, value)| !is_tensor(value) && key.as_str() != "_metadata")
                    {
                        return Err(format(format!(
                            "`{key}` is {}, not a tensor: a state dict holds tensors only",
                            describe(value)
                        )));
                    }
                }
                other => {
                    return Err(format(format!(
                        "the pickle holds {}, not a state dict",
                        describe(&other)
                    )));
                }
            }
            let mut total = 0usize;
            let mut declared = BTreeMap::new();
            for (name, tensor) in reader.tensors() {
                total = total.saturating_add(tensor.byte_len());
                let dtype = match tensor.dtype() {
                    ReaderDType::F64 => DType::F64,
                    ReaderDType::F32 => DType::F32,
                    ReaderDType::F16 => DType::F16,
                    ReaderDType::BF16 => DType::BF16,
                    ReaderDType::I64 => DType::I64,
                    ReaderDType::I32 => DType::I32,
                    other => return Err(format(format!("`{name}` has dtype {other:?}"))),
                };
                declared.insert(
                    name.clone(),
                    Declared {
                        shape: tensor.shape().to_vec(),
                        dtype,
                    },
                );
            }
            if total > length {
                return Err(format(format!(
                    "its tensors declare {total} bytes, more than the file's {length}"
                )));
            }
            declared
        }
    };
    if declared.is_empty() {
        return Err(format("holds no tensors".to_string()));
    }
    Ok(declared)
}

/// Runs a reader, turning a panic inside it into an error naming the file.
fn guarded<T, E: fmt::Display>(
    path: &Path,
    read: impl FnOnce() -> Result<T, E>,
) -> Result<T, WeightsError> {
    let format = |reason: String| WeightsError::Format {
        path: path.to_path_buf(),
        reason,
    };
    match crate::quiet::catch_quietly(read) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format(format!("not a readable PyTorch file: {error}"))),
        Err(_) => Err(format(
            "not a readable PyTorch file (the reader failed)".to_string(),
        )),
    }
}

fn is_tensor(value: &PickleValue) -> bool {
    matches!(value, PickleValue::Unsupported(kind) if kind.ends_with("Tensor"))
}

fn describe(value: &PickleValue) -> String {
    match value {
        PickleValue::None => "None".to_string(),
        PickleValue::Bool(_) => "a bool".to_string(),
        PickleValue::Int(_) => "an int".to_string(),
        PickleValue::Float(_) => "a float".to_string(),
        PickleValue::String(_) => "a string".to_string(),
        PickleValue::List(_) => "a list".to_string(),
        PickleValue::Dict(_) => "a dict".to_string(),
        PickleValue::Bytes(_) => "bytes".to_string(),
        PickleValue::Unsupported(kind) => format!("an object of type `{kind}`"),
    }
}

/// How many `layer{n}` stages the expected keys have.
fn stage_count(expected: &BTreeMap<String, Vec<usize>>) -> usize {
    expected
        .keys()
        .filter_map(|k| {
            k.strip_prefix("layer")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// The torchvision → burn renames, in the order they apply.
fn renames(stages: usize) -> Vec<(String, String)> {
    let mut renames = vec![
        (r"^conv1\.".to_string(), "stem.conv.".to_string()),
        (r"^bn1\.".to_string(), "stem.bn.".to_string()),
    ];
    for stage in 0..stages {
        renames.push((
            format!(r"^layer{}\.([0-9]+)\.", stage + 1),
            format!("stages.{stage}.blocks.$1."),
        ));
    }
    renames.push((
        r"\.downsample\.0\.".to_string(),
        ".shortcut.conv.".to_string(),
    ));
    renames.push((
        r"\.downsample\.1\.".to_string(),
        ".shortcut.bn.".to_string(),
    ));
    renames
}

fn remapped_pytorch(mut store: PytorchStore, stages: usize) -> PytorchStore {
    for (from, to) in renames(stages) {
        store = store.with_key_remapping(from, to);
    }
    store
}

fn remapped_safetensors(mut store: SafetensorsStore, stages: usize) -> SafetensorsStore {
    for (from, to) in renames(stages) {
        store = store.with_key_remapping(from, to);
    }
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_keys() {
        for (ours, theirs) in [
            ("stem.conv.weight", "conv1.weight"),
            ("stem.bn.running_var", "bn1.running_var"),
            ("stages.0.blocks.1.conv2.weight", "layer1.1.conv2.weight"),
            (
                "stages.1.blocks.0.shortcut.conv.weight",
                "layer2.0.downsample.0.weight",
            ),
            (
                "stages.3.blocks.0.shortcut.bn.weight",
                "layer4.0.downsample.1.weight",
            ),
            ("fc.bias", "fc.bias"),
            ("layers.3.conv.weight", "layers.3.conv.weight"),
        ] {
            assert_eq!(torchvision_key(ours), theirs);
        }
    }
}
