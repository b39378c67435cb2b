//! `train probe`: per-layer activation and gradient statistics at initialisation.
//!
//! He et al. (2015) show that with Var(W) = c / fan_in the second moment of a ReLU net's
//! activations changes by a factor c / 2 per layer: constant for He (c = 2), halving for
//! Xavier and LeCun on square layers (c = 1), and falling by 6× for PyTorch's default
//! (c = 1/3). The probe measures that on a real batch and draws the prediction beside it.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use kaiming_cifar::{CifarDataset, Loader, LoaderConfig, Normalization, Split, locate_data_dir};
use kaiming_init::{InitPlan, LayerKind, Scheme};
use kaiming_resnet::{Branch, ModelConfig};
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::plot::{Colour, Panel, Series, save_figure};
use crate::signals::{std_of, trace};

/// One line of `probe.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// Scheme name, with the residual branch where it is not the standard one (`he + fixup`).
    pub init: String,
    /// 0-based position of the layer in the trace.
    pub layer_index: usize,
    /// The model's name for the layer or block output.
    pub layer: String,
    /// Standard deviation of the layer's output over the batch.
    pub activation_std: f64,
    /// Standard deviation of ∂loss/∂output over the batch.
    pub gradient_std: f64,
    /// He et al.'s prediction for `activation_std` (plain conv nets only), from the layer-0
    /// value and each layer's fan_in · Var(W) / 2; empty in the CSV elsewhere. Kept in the
    /// file because it needs the weights: the figure is redrawn from the file alone.
    pub predicted_std: Option<f64>,
}

/// What to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The model, with its norm setting.
    pub model: ModelConfig,
    /// Schemes to compare.
    pub inits: Vec<Scheme>,
    /// Residual branches to compare (each with every scheme); one for most probes.
    pub residuals: Vec<Branch>,
    /// Images in the batch.
    pub batch_size: usize,
    /// N(0, 1) inputs and uniform random labels instead of CIFAR-10.
    pub synthetic: bool,
    /// CIFAR-10 folder, else the usual search.
    pub data_dir: Option<std::path::PathBuf>,
    /// Seed of weights and batch.
    pub seed: u64,
    /// Device to compute on (autodiff is added).
    pub device: Device,
}

/// Runs the probe for every scheme and returns the rows, in scheme then layer order.
pub fn probe(config: &ProbeConfig) -> Result<Vec<ProbeRow>> {
    ensure!(
        config.batch_size > 1,
        "--batch-size must be at least 2 for a standard deviation"
    );
    let models = config
        .residuals
        .iter()
        .map(|&residual| {
            let model = config.model.clone().with_branch(residual);
            model.validate().map(|()| model)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let device = config.device.clone().autodiff();
    let (images, labels) = batch(config, &device)?;

    let mut rows = Vec::new();
    let cases = models
        .iter()
        .flat_map(|model| config.inits.iter().map(move |&scheme| (model, scheme)));
    for (model_config, scheme) in cases {
        let (model, report) =
            model_config.init_with(&device, &InitPlan::new(scheme), config.seed)?;
        let label = match model_config.branch {
            Branch::Standard => scheme.to_string(),
            residual => format!("{scheme} + {residual}"),
        };
        let signals = trace(&model, images.clone(), labels.clone());

        // He et al. 2015, eq. (10): the ratio of second moments of consecutive layers.
        let gains: Vec<f64> = report
            .rows
            .iter()
            .filter(|row| row.layer == Some(LayerKind::Conv) && row.path.ends_with("weight"))
            .filter_map(|row| Some(row.fan_in? as f64 * row.std?.powi(2) / 2.0))
            .collect();
        let plain = matches!(config.model.name, kaiming_resnet::ModelName::PlainCnn);
        let mut first_std = None;
        for (index, signal) in signals.into_iter().enumerate() {
            let activation_std = scalar(std_of(signal.output));
            let gradient_std = signal.gradient.map_or(f64::NAN, |g| scalar(std_of(g)));
            let layer = signal.name;
            let first = *first_std.get_or_insert(activation_std);
            let predicted_std = (plain && index < gains.len())
                .then(|| first * gains[1..=index].iter().product::<f64>().sqrt());
            rows.push(ProbeRow {
                init: label.clone(),
                layer_index: index,
                layer,
                activation_std,
                gradient_std,
                predicted_std,
            });
        }
    }
    Ok(rows)
}

fn scalar(tensor: Tensor<1>) -> f64 {
    tensor.into_scalar::<f64>()
}

/// The probe batch: the first `batch_size` CIFAR-10 training images in a seeded order,
/// normalised with the training statistics, or N(0, 1) noise with random labels.
fn batch(config: &ProbeConfig, device: &Device) -> Result<(Tensor<4>, Tensor<1, Int>)> {
    if config.synthetic {
        device.seed(config.seed);
        let images = Tensor::random(
            [config.batch_size, 3, 32, 32],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let labels = (0..config.batch_size as i64)
            .map(|i| i % 10)
            .collect::<Vec<_>>();
        let labels = Tensor::from_data(TensorData::new(labels, [config.batch_size]), device);
        return Ok((images, labels));
    }
    let located = locate_data_dir(config.data_dir.as_deref())
        .context("the probe needs CIFAR-10 (or --synthetic)")?;
    let train = CifarDataset::load(&located.dir, Split::Train)?;
    let normalization = Normalization::from_dataset(&train)?;
    let mut loader_config = LoaderConfig::eval(config.batch_size);
    loader_config.shuffle = true;
    loader_config.seed = config.seed;
    let loader = Loader::new(train, normalization, loader_config)?;
    let batch = loader
        .epoch(0)
        .batch(0)
        .context("the training set is empty")?
        .into_batch(device);
    Ok((batch.images, batch.labels))
}

/// The probe as a table: one line per layer, activation and gradient std per scheme.
pub fn table(rows: &[ProbeRow]) -> Table {
    let inits: Vec<&str> = unique(rows.iter().map(|row| row.init.as_str()));
    let mut header = vec!["#".to_string(), "layer".to_string()];
    for init in &inits {
        header.push(format!("{init} act std"));
        header.push(format!("{init} grad std"));
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header(header);
    let layers = rows.iter().filter(|row| row.init == inits[0]);
    for layer in layers {
        let mut line = vec![layer.layer_index.to_string(), layer.layer.clone()];
        for init in &inits {
            let row = rows
                .iter()
                .find(|row| row.init == *init && row.layer_index == layer.layer_index);
            line.push(row.map_or("-".into(), |r| format!("{:.3e}", r.activation_std)));
            line.push(row.map_or("-".into(), |r| format!("{:.3e}", r.gradient_std)));
        }
        table.add_row(line);
    }
    table
}

fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// Writes `probe.csv`, `probe.svg` and `probe.png` into `out`.
pub fn write(rows: &[ProbeRow], out: &Path, title: &str) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in rows {
        csv.serialize(row)?;
    }
    write_atomic(&out.join("probe.csv"), &csv.into_inner()?)?;
    draw(rows, out, title)
}

/// The rows of a `probe.csv`.
pub fn read(path: &Path) -> Result<Vec<ProbeRow>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(line, row)| row.with_context(|| format!("{}: row {}", path.display(), line + 1)))
        .collect()
}

/// Draws `rows` to `probe.svg` and `probe.png` in `out`: activation and gradient std per layer,
/// one line per scheme, the prediction dashed beside it where there is one.
pub fn draw(rows: &[ProbeRow], out: &Path, title: &str) -> Result<()> {
    let inits = unique(rows.iter().map(|row| row.init.as_str()));
    let mut activations = Vec::new();
    let mut gradients = Vec::new();
    for (color, init) in inits.iter().enumerate() {
        let of = |value: fn(&ProbeRow) -> Option<f64>| -> Vec<(f64, f64)> {
            rows.iter()
                .filter(|row| row.init == *init)
                .filter_map(|row| Some((row.layer_index as f64, value(row)?)))
                .collect()
        };
        let line = |label: String, points, dashed| Series {
            label,
            color: Colour::Palette(color),
            points,
            band: None,
            dashed,
        };
        activations.push(line(
            init.to_string(),
            of(|r| Some(r.activation_std)),
            false,
        ));
        let predicted = of(|r| r.predicted_std);
        if !predicted.is_empty() {
            activations.push(line(format!("{init} theory"), predicted, true));
        }
        gradients.push(line(init.to_string(), of(|r| Some(r.gradient_std)), false));
    }
    save_figure(
        &[
            Panel {
                title: format!("{title}: activation std at init"),
                x_label: "layer".into(),
                y_label: "std (log scale)".into(),
                log_y: true,
                series: activations,
            },
            Panel {
                title: format!("{title}: gradient std at init"),
                x_label: "layer".into(),
                y_label: "std (log scale)".into(),
                log_y: true,
                series: gradients,
            },
        ],
        &out.join("probe"),
    )
}
