//! Restoring a run from its folder and settings: the data, the devices, the model (initialised,
//! from a weights file, after LSUV, or from the latest checkpoint set), the progress so far and
//! the logs made to agree with it. The loop that goes on from there is in the parent module.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use burn::tensor::Device;
use kaiming_cifar::{
    CifarDataset, DownloadConfig, Loader, LoaderConfig, Normalization, Split, locate_or_download,
};
use kaiming_init::InitPlan;
use kaiming_resnet::{LoadOptions, Model, classifier_classes, load_weights};

use super::{Run, RunOptions};
use crate::backend::describe;
use crate::checkpoint::{Checkpoints, Progress};
use crate::config::RunConfig;
use crate::feed::Feed;
use crate::logs::RunLogs;
use crate::metrics::Metrics;
use crate::monitor::{Monitor, fixed_batch};
use crate::store::RunFolder;
use crate::trainer::{Trainer, TrainerParts, sgd};

impl<'a> Run<'a> {
    /// Data, device, model and trainer; restored from the latest set when there is one.
    pub(super) fn start(
        config: RunConfig,
        folder: RunFolder,
        options: &'a RunOptions,
    ) -> Result<Self> {
        kaiming_kernels::configure(config.kernels.choice())
            .map_err(|error| anyhow::anyhow!("--conv-isa {}: {error}", config.kernels.isa))?;
        let (train, eval, eval_split) = load_data(&config, options)?;
        let replicas: Vec<Device> = match &options.devices {
            Some(indices) => {
                anyhow::ensure!(
                    indices.len() == config.replicas,
                    "--devices names {} GPUs for {} replicas",
                    indices.len(),
                    config.replicas
                );
                indices
                    .iter()
                    .map(|&i| Ok(config.backend.device(Some(i))?.autodiff()))
                    .collect::<Result<_>>()?
            }
            None => {
                let device = config.backend.device(options.device)?.autodiff();
                vec![device; config.replicas]
            }
        };
        let device = replicas[0].clone();
        config.precision.ensure_supported(&device)?;
        device.seed(config.seed);
        let on_device = config.backend.is_gpu();
        let monitor_batch = (config.monitor.every > 0)
            .then(|| {
                fixed_batch(
                    train.dataset(),
                    train.normalization(),
                    config.monitor.batch_size,
                    &device,
                )
            })
            .transpose()?;
        let normalization = train.normalization();
        let lsuv_batch = config
            .lsuv()
            .map(|_| {
                let plain = device.clone().without_autodiff();
                fixed_batch(
                    train.dataset(),
                    normalization,
                    config.data.batch_size,
                    &plain,
                )
            })
            .transpose()?;
        let train = Feed::new(train, &device, on_device);
        let eval = Feed::new(eval, &device.clone().without_autodiff(), on_device);

        let model_config = config.model_config();
        let (model, _) =
            model_config.init_with(&device, &InitPlan::new(config.init), config.seed)?;
        let checkpoints = Checkpoints::new(folder.files().checkpoints(), options.keep_checkpoints);
        let resuming = checkpoints.latest()?;
        let model = match (&config.model.weights, &resuming) {
            (Some(weights), None) => start_from(model, weights)?,
            _ => model,
        };
        let model = match (config.lsuv(), lsuv_batch, &resuming) {
            (Some(lsuv), Some(batch), None) => {
                let (model, report) = lsuv
                    .apply(model, batch.images)
                    .map_err(|error| anyhow::anyhow!("LSUV: {error}"))?;
                for layer in report.dead() {
                    tracing::warn!(
                        "LSUV: {} gives a constant output on the first batch (a dead or \
                         zero-initialised layer); left as it was",
                        layer.path
                    );
                }
                for layer in report.overflowed() {
                    tracing::warn!(
                        "LSUV: {} overflows on the first batch (variance {}); left as it was",
                        layer.path,
                        layer.variance
                    );
                }
                for layer in report.unconverged() {
                    tracing::warn!(
                        "LSUV: {} ends at variance {:.4} after {} rescalings, outside the \
                         tolerance {} (raise --lsuv-max-iterations)",
                        layer.path,
                        layer.variance,
                        layer.iterations,
                        lsuv.tolerance
                    );
                }
                tracing::info!("LSUV on the first training batch:\n{report}");
                crate::atomic::write_atomic(&folder.files().lsuv(), report.to_string().as_bytes())?;
                model
            }
            _ => model,
        };
        let mut trainer = Trainer::new(TrainerParts {
            model,
            optimizer: sgd(&config.optimizer),
            schedule: config.schedule(train.batches_per_epoch()),
            precision: config.precision,
        })
        .with_label_smoothing(config.loss.label_smoothing)
        .with_replicas(replicas.clone())?;
        let (progress, metrics) = match resuming {
            Some(set) => {
                let model = set.load_model(trainer.model().clone())?;
                let optimizer = set.load_optimizer(trainer.optimizer().clone())?;
                trainer.restore(model, optimizer, set.progress.step, set.progress.scaler);
                tracing::info!(
                    "resuming {} at epoch {}, step {}",
                    folder.path().display(),
                    set.progress.epoch + 1,
                    set.progress.step
                );
                (set.progress, set.metrics)
            }
            None => {
                if folder.files().metrics().exists() {
                    tracing::info!(
                        "{} has no checkpoint yet: starting it from the beginning",
                        folder.path().display()
                    );
                }
                let progress = Progress {
                    scaler: trainer.scaler(),
                    ..Progress::default()
                };
                (progress, Metrics::default())
            }
        };
        let logs = RunLogs::open(
            folder.files(),
            &metrics,
            progress.step,
            monitor_batch.is_some(),
        )?;
        let monitor = monitor_batch.map(|batch| Monitor::new(config.monitor, batch));
        // Trainable parameters: burn's `num_params` also counts BatchNorm running statistics.
        let parameters = model_config.num_params();
        let device_name = describe(&device);
        let device_names = replicas.iter().map(describe).collect();
        tracing::info!(
            "{}: {} ({} parameters), init {}, {} on {device_name}",
            folder.name(),
            config.model.name,
            parameters,
            config.init,
            config.backend,
        );
        Ok(Run {
            config,
            folder,
            options,
            trainer,
            train: Arc::new(train),
            eval,
            eval_split,
            metrics,
            progress,
            checkpoints,
            monitor,
            logs,
            device_name,
            device_names,
            parameters,
            normalization,
        })
    }
}

/// `model` with the weights of `file`; a classifier with another class count than the model's is
/// left out and keeps its initialisation (fine-tuning).
fn start_from(model: Model, file: &Path) -> Result<Model> {
    let classes = classifier_classes(file)?;
    let model_classes = model_classes(&model);
    let options = LoadOptions {
        skip_classifier: classes != model_classes,
    };
    let (model, report) = load_weights(model, file, options)?;
    tracing::info!("weights from {}: {report}", file.display());
    if options.skip_classifier {
        tracing::info!(
            "its {classes}-class classifier is left out: the {model_classes}-class head starts from --init"
        );
    }
    Ok(model)
}

/// The class count of a model's classifier.
fn model_classes(model: &Model) -> usize {
    match model {
        Model::ResNet(net) => net.fc.weight.dims()[1],
        Model::PlainCnn(net) => net.fc.weight.dims()[1],
    }
}

/// The train loader and the evaluation loader with the evaluation split's name.
fn load_data(config: &RunConfig, options: &RunOptions) -> Result<(Loader, Loader, &'static str)> {
    let download = (!options.no_download).then(|| DownloadConfig {
        progress: !options.quiet,
        ..DownloadConfig::default()
    });
    let dir = options.data_dir.as_deref().or(config.data.dir.as_deref());
    let located = locate_or_download(dir, download.as_ref())?;
    tracing::info!(
        "CIFAR-10 from {} ({:?})",
        located.dir.display(),
        located.source
    );
    let (train, eval, split) = splits(config, &located.dir)?;
    let normalization = Normalization::from_dataset(&train)?;
    let train_loader = Loader::new(
        train,
        normalization,
        LoaderConfig::train(config.data.batch_size, config.seed),
    )?;
    let eval_loader = Loader::new(eval, normalization, LoaderConfig::eval(500))?;
    Ok((train_loader, eval_loader, split))
}

/// The images a run trains on and the ones it evaluates on, with the evaluation split's name:
/// the training set less the validation images it holds out (else the test set), each cut to
/// its limit. The normalisation statistics come from the first.
pub fn splits(
    config: &RunConfig,
    dir: &Path,
) -> Result<(CifarDataset, CifarDataset, &'static str)> {
    let data = &config.data;
    let train = CifarDataset::load(dir, Split::Train)?;
    let (train, eval, split) = if data.val_split > 0 {
        let (train, val) = train.split_validation(data.val_split, config.seed)?;
        (train, val, "val")
    } else {
        (train, CifarDataset::load(dir, Split::Test)?, "test")
    };
    let train = match data.train_limit {
        Some(limit) => train.limit(limit),
        None => train,
    };
    let eval = match data.eval_limit {
        Some(limit) => eval.limit(limit),
        None => eval,
    };
    Ok((train, eval, split))
}
