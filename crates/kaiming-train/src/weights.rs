//! `train eval` and `train export`: a run's checkpoint or a weights file, evaluated on the
//! CIFAR-10 test split, or written for PyTorch.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use kaiming_cifar::{CifarDataset, Loader, LoaderConfig, Normalization, Split, locate_data_dir};
use kaiming_init::InitPlan;
use kaiming_resnet::{
    LoadOptions, Model, ModelConfig, classifier_classes, export_weights, load_weights,
};
use serde::Serialize;

use crate::backend::Backend;
use crate::checkpoint::{Checkpoints, LoadedSet, read_set};
use crate::config::RunConfig;
use crate::feed::Feed;
use crate::precision::Precision;
use crate::run::splits;
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
    let config = RunConfig::read(&dir.join("config.toml"))
        .with_context(|| format!("{} is not a run folder", dir.display()))?;
    let checkpoints = Checkpoints::new(dir.join("checkpoints"), usize::MAX);
    let set: LoadedSet = match which {
        Which::Latest => checkpoints.latest()?,
        Which::Best => checkpoints
            .best()?
            .map(|path| read_set(&path))
            .transpose()?,
    }
    .with_context(|| format!("{} has no checkpoint set yet", dir.display()))?;
    let (model, _) = config
        .model_config()
        .init_with(device, &InitPlan::new(config.init), config.seed)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok((config, set.load_model(model)?))
}

/// A `--model` with the weights of `file`, its class count taken from the file's classifier.
pub fn file_model(config: ModelConfig, file: &Path, device: &Device) -> Result<Model> {
    let classes = classifier_classes(file)?;
    let (model, _) = config
        .with_num_classes(classes)
        .init_with(device, &InitPlan::torchvision(), 0)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
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
/// the statistics of `train` (the run's training images; all of them for a weights file).
pub fn evaluate_on_test(
    model: &Model,
    run: Option<&RunConfig>,
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
    let train = match run {
        Some(config) => splits(config, &located.dir)?.0,
        None => CifarDataset::load(&located.dir, Split::Train)?,
    };
    let normalization = Normalization::from_dataset(&train)?;
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

/// `train export`: the run's chosen set as a safetensors file with torchvision's names.
pub fn export_run(dir: &Path, which: Which, out: &Path) -> Result<()> {
    if out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!("--out {}: the export is a .safetensors file", out.display());
    }
    let (_, model) = run_model(dir, which, &Device::flex())?;
    export_weights(&model, out)?;
    Ok(())
}
