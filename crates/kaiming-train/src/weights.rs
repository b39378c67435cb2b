//! `train eval` and `train export`: a run's checkpoint or a weights file, evaluated on the
//! CIFAR-10 test split, or written for PyTorch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use kaiming_cifar::{CifarDataset, Loader, LoaderConfig, Normalization, Split, locate_data_dir};
use kaiming_init::InitPlan;
use kaiming_resnet::{
    LoadOptions, Model, ModelConfig, classifier_classes, export_weights, load_weights,
    weights_metadata,
};
use serde::Serialize;

use crate::backend::Backend;
use crate::checkpoint::{Checkpoints, LoadedSet, read_set};
use crate::config::RunConfig;
use crate::feed::Feed;
use crate::precision::Precision;
use crate::run::splits;
use crate::store::RunFiles;
use crate::summary::Summary;
use crate::trainer::evaluate;

/// Which checkpoint set of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The set after the best evaluation.
    Best,
    /// The newest set.
    Latest,
}

/// What `train eval` prints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// Mean cross-entropy per image.
    pub loss: f64,
    /// Top-1 accuracy in [0, 1].
    pub accuracy: f64,
    /// Images evaluated.
    pub images: usize,
}

/// The run in `dir`: its settings, and its model with the weights of the chosen set.
pub fn run_model(dir: &Path, which: Which, device: &Device) -> Result<(RunConfig, Model)> {
    let files = RunFiles::new(dir);
    let config = RunConfig::read(&files.config())
        .with_context(|| format!("{} is not a run folder", dir.display()))?;
    let checkpoints = Checkpoints::new(files.checkpoints(), usize::MAX);
    let set: LoadedSet = match which {
        Which::Latest => checkpoints.latest()?,
        Which::Best => checkpoints
            .best()?
            .map(|path| read_set(&path))
            .transpose()?,
    }
    .with_context(|| format!("{} has no checkpoint set yet", dir.display()))?;
    let (model, _) =
        config
            .model_config()
            .init_with(device, &InitPlan::new(config.init), config.seed)?;
    Ok((config, set.load_model(model)?))
}

/// A `--model` with the weights of `file`, its class count taken from the file's classifier.
pub fn file_model(config: ModelConfig, file: &Path, device: &Device) -> Result<Model> {
    let classes = classifier_classes(file)?;
    let (model, _) =
        config
            .with_num_classes(classes)
            .init_with(device, &InitPlan::torchvision(), 0)?;
    let (model, report) = load_weights(model, file, LoadOptions::default())?;
    tracing::info!("{}: {report}", file.display());
    Ok(model)
}

/// Where and how much to evaluate.
#[derive(Debug, Clone)]
pub struct EvalData {
    /// CIFAR-10 folder, else the usual search.
    pub data_dir: Option<PathBuf>,
    /// The first N test images only.
    pub eval_limit: Option<usize>,
}

/// Evaluates `model` (on a device without autodiff) on the CIFAR-10 test split, normalised with
/// `normalization` where given (what an export records), else with the statistics of the run's
/// training images (all 50,000 without a run).
pub fn evaluate_on_test(
    model: &Model,
    run: Option<&RunConfig>,
    normalization: Option<Normalization>,
    data: &EvalData,
    precision: Precision,
    backend: Backend,
    device: &Device,
) -> Result<Evaluation> {
    let dir = data
        .data_dir
        .as_deref()
        .or(run.and_then(|config| config.data.dir.as_deref()));
    let located = locate_data_dir(dir)?;
    let normalization = match (normalization, run) {
        (Some(normalization), _) => normalization,
        (None, Some(config)) => Normalization::from_dataset(&splits(config, &located.dir)?.0)?,
        (None, None) => {
            Normalization::from_dataset(&CifarDataset::load(&located.dir, Split::Train)?)?
        }
    };
    let test = CifarDataset::load(&located.dir, Split::Test)?;
    let test = match data.eval_limit {
        Some(0) => bail!("--eval-limit must be at least 1"),
        Some(limit) => test.limit(limit),
        None => test,
    };
    let loader = Loader::new(test, normalization, LoaderConfig::eval(500))?;
    let feed = Feed::new(loader, device, backend.is_gpu());
    let tally = evaluate(model, &feed, precision);
    Ok(Evaluation {
        loss: tally.mean_loss(),
        accuracy: tally.accuracy(),
        images: tally.images,
    })
}

/// The metadata keys of an export's input normalisation, each a JSON array (red, green, blue).
const MEAN_KEY: &str = "input_mean";
const STD_KEY: &str = "input_std";

/// `train export`: the run's chosen set as a safetensors file with torchvision's names, and the
/// run's input normalisation in its metadata.
pub fn export_run(dir: &Path, which: Which, out: &Path) -> Result<()> {
    if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!("--out {}: the export is a .safetensors file", out.display());
    }
    let (_, model) = run_model(dir, which, &Device::flex())?;
    let summary = Summary::read(&RunFiles::new(dir).summary())?;
    let mut metadata = BTreeMap::new();
    match summary.input_normalization {
        Some(n) => {
            metadata.insert(MEAN_KEY.to_string(), serde_json::to_string(&n.mean)?);
            metadata.insert(STD_KEY.to_string(), serde_json::to_string(&n.std)?);
        }
        None => tracing::warn!(
            "{}: the run predates recorded input normalisation, so the export carries none; \
             `train eval --weights` will normalise with the full training set's statistics",
            dir.display()
        ),
    }
    export_weights(&model, out, &metadata)?;
    Ok(())
}

/// The input normalisation a weights file records (an export of this project does), if any.
pub fn file_normalization(file: &Path) -> Result<Option<Normalization>> {
    let metadata = weights_metadata(file)?;
    let read = |key: &str| -> Result<Option<[f32; 3]>> {
        metadata
            .get(key)
            .map(|value| {
                serde_json::from_str(value).with_context(|| {
                    format!(
                        "{}: metadata {key} = {value} is not three numbers",
                        file.display()
                    )
                })
            })
            .transpose()
    };
    match (read(MEAN_KEY)?, read(STD_KEY)?) {
        (Some(mean), Some(std)) => Ok(Some(Normalization { mean, std })),
        (None, None) => Ok(None),
        _ => bail!(
            "{}: its metadata holds only one of {MEAN_KEY} and {STD_KEY}",
            file.display()
        ),
    }
}
