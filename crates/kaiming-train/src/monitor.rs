//! The training-time signal monitor: whether an init is helping or creating new failure modes,
//! watched while a model trains.
//!
//! Every `every` steps the monitor measures, on one fixed batch of training images:
//! - for every traced layer: the mean and std of its output, the fraction of its channels that
//!   are dead (zero — or, before a ReLU, ≤ 0 — at every position of every image), and the std of
//!   the loss gradient with respect to the output;
//! - for every conv and linear weight and bias: its norm, the norm of the step's gradient and
//!   the update-to-weight ratio ‖Δw‖/‖w‖ of the step (lr·‖update‖/‖w‖, with momentum and weight
//!   decay included). Biases exist only without batch norm, where a bias that grows can kill a
//!   layer's units as surely as its weight can, so they are watched beside the weights.
//!
//! The fixed-batch pass runs on a copy of the model whose batch-norm running statistics are
//! its own (`valid().train()` gives fresh buffers), so monitoring never changes the run: with or
//! without it the losses are the same to the bit.
//!
//! From the measurements come diagnoses, each reported once, when it first appears:
//! **vanishing** and **exploding** signals (a layer's activation std below or above a ratio of
//! the first layer's; a layer's gradient std against the last layer's, where the backward pass
//! starts — a gradient that fades toward the input is what keeps the first layers from
//! learning), **dead ReLUs** (over a fraction of a layer's channels dead) and an **update ratio**
//! outside a range.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use kaiming_cifar::{Batch, CifarDataset, IMAGE_BYTES, Loader, LoaderConfig, Normalization};
use kaiming_resnet::Model;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::config::MonitorSettings;
use crate::signals::{std_of, trace};
use crate::trainer::StepObserver;

/// A quantity of `monitor.csv`, written there in snake case (`activation_std`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Mean of a layer's output.
    ActivationMean,
    /// Std of a layer's output.
    ActivationStd,
    /// Fraction of a layer's channels dead over the batch.
    DeadFraction,
    /// Std of ∂loss/∂output of a layer.
    GradientStd,
    /// ‖w‖ of a weight or bias tensor, before the step.
    WeightNorm,
    /// ‖∂loss/∂w‖ of the step.
    GradientNorm,
    /// ‖Δw‖/‖w‖ of the step.
    UpdateRatio,
}

impl Quantity {
    /// Every quantity, in the order of the plots' panels.
    pub const ALL: [Quantity; 7] = [
        Quantity::ActivationMean,
        Quantity::ActivationStd,
        Quantity::DeadFraction,
        Quantity::GradientStd,
        Quantity::WeightNorm,
        Quantity::GradientNorm,
        Quantity::UpdateRatio,
    ];

    /// The name `monitor.csv` and TensorBoard use.
    pub fn name(self) -> &'static str {
        match self {
            Quantity::ActivationMean => "activation_mean",
            Quantity::ActivationStd => "activation_std",
            Quantity::DeadFraction => "dead_fraction",
            Quantity::GradientStd => "gradient_std",
            Quantity::WeightNorm => "weight_norm",
            Quantity::GradientNorm => "gradient_norm",
            Quantity::UpdateRatio => "update_ratio",
        }
    }

    /// Whether it is a magnitude, drawn on a log scale (the mean and the dead fraction are
    /// often zero and are drawn on a linear one).
    pub fn is_magnitude(self) -> bool {
        !matches!(self, Quantity::ActivationMean | Quantity::DeadFraction)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of `monitor.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorRow {
    /// Optimizer steps done when measured (0: at initialisation).
    pub step: usize,
    /// Layer (activations, gradients) or parameter path (weights).
    pub layer: String,
    /// What was measured.
    pub quantity: Quantity,
    /// The value.
    pub value: f64,
}

/// `monitor.csv`: every measurement in long form (`step,layer,quantity,value`), appended one
/// monitored step at a time.
#[derive(Debug)]
pub struct MonitorLog {
    path: std::path::PathBuf,
}

const HEADER: &str = "step,layer,quantity,value\n";

impl MonitorLog {
    /// The log at `path`, keeping only the rows measured before step `resume_at` (the rows of
    /// steps a resumed run will measure again, and a line cut short by a crash, are dropped).
    /// Returns the log and the rows kept.
    pub fn open(path: &Path, resume_at: usize) -> Result<(Self, Vec<MonitorRow>)> {
        let kept: Vec<MonitorRow> = match std::fs::read(path) {
            Ok(bytes) => parse_rows(&bytes)
                .into_iter()
                .filter(|r| r.step < resume_at)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut text = HEADER.to_string();
        text.push_str(&to_lines(&kept));
        write_atomic(path, text.as_bytes())?;
        Ok((
            MonitorLog {
                path: path.to_path_buf(),
            },
            kept,
        ))
    }

    /// Appends the rows of one monitored step.
    pub fn append(&self, rows: &[MonitorRow]) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        file.write_all(to_lines(rows).as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Reads a whole `monitor.csv`, naming the file and line of any error.
    pub fn read(path: &Path) -> Result<Vec<MonitorRow>> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let header: Vec<String> = reader
            .headers()
            .with_context(|| format!("cannot read the header of {}", path.display()))?
            .iter()
            .map(String::from)
            .collect();
        anyhow::ensure!(
            header.join(",") + "\n" == HEADER,
            "{}: the header is not `{}`",
            path.display(),
            HEADER.trim()
        );
        reader
            .deserialize()
            .enumerate()
            .map(|(i, row)| row.with_context(|| format!("{}:{}: a bad row", path.display(), i + 2)))
            .collect()
    }
}

/// The rows of a log, up to the first that does not parse.
fn parse_rows(bytes: &[u8]) -> Vec<MonitorRow> {
    csv::Reader::from_reader(bytes)
        .deserialize()
        .map_while(|row: csv::Result<MonitorRow>| row.ok())
        .collect()
}

fn to_lines(rows: &[MonitorRow]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    for row in rows {
        writer.serialize(row).expect("writing to memory");
    }
    String::from_utf8(writer.into_inner().expect("writing to memory")).expect("UTF-8 rows")
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A signal fading with depth.
    Vanishing,
    /// A signal growing with depth.
    Exploding,
    /// Channels that never pass anything.
    DeadRelus,
    /// Steps too small to move the weights, or large enough to wreck them.
    UpdateRatio,
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignalKind::Vanishing => "vanishing",
            SignalKind::Exploding => "exploding",
            SignalKind::DeadRelus => "dead ReLUs",
            SignalKind::UpdateRatio => "update ratio",
        })
    }
}

/// A diagnosis, as `summary.json` lists it under `signals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// What.
    pub kind: SignalKind,
    /// Where.
    pub layer: String,
    /// The quantity it was read from.
    pub quantity: Quantity,
    /// When it first appeared (optimizer steps done).
    pub step: usize,
    /// The value that crossed the threshold: a ratio to the reference layer for vanishing and
    /// exploding, the dead fraction, or the update ratio. An overflowed signal's ratio is
    /// infinite; JSON has no number for that, so it is written as the string `"inf"`.
    #[serde(with = "json_float")]
    pub value: f64,
}

/// An `f64` in JSON that may be infinite or NaN: finite values as numbers, the others as the
/// strings `"inf"`, `"-inf"` and `"NaN"` (serde_json would write `null`, which reads back as
/// an error).
mod json_float {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_str(&value.to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Float {
            Number(f64),
            Text(String),
        }
        match Float::deserialize(deserializer)? {
            Float::Number(value) => Ok(value),
            Float::Text(text) => text
                .parse()
                .map_err(|_| D::Error::custom(format!("'{text}' is not a number"))),
        }
    }
}

/// The monitor of one run.
#[derive(Debug)]
pub struct Monitor {
    settings: MonitorSettings,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
}

/// The fixed batch: the first `size` training images, unaugmented, normalised as in training.
pub fn fixed_batch(
    train: &CifarDataset,
    normalization: Normalization,
    size: usize,
    device: &Device,
) -> Result<Batch> {
    let n = size.min(train.len()).max(1);
    let subset = CifarDataset::from_parts(
        train.images()[..n * IMAGE_BYTES].to_vec(),
        train.labels()[..n].to_vec(),
        train.classes().to_vec(),
    )?;
    let loader = Loader::new(subset, normalization, LoaderConfig::eval(n))?;
    let batch = loader.epoch(0).batch(0).expect("one batch of n ≥ 1 images");
    Ok(batch.into_batch(device))
}

impl Monitor {
    /// A monitor measuring on `batch`.
    pub fn new(settings: MonitorSettings, batch: Batch) -> Self {
        Monitor {
            settings,
            images: batch.images,
            labels: batch.labels,
        }
    }

    /// Whether the step that starts after `steps_done` steps is measured.
    pub fn due(&self, steps_done: usize) -> bool {
        self.settings.every > 0 && steps_done.is_multiple_of(self.settings.every)
    }

    /// Starts measuring the step that `model` is about to take: the layer signals of the fixed
    /// batch now, the weights and gradients through the returned observer.
    pub fn watch(&self, model: &Model, steps_done: usize) -> Watch {
        // Fresh batch-norm buffers: the pass must not move the run's running statistics.
        let copy = model.valid().train();
        let signals = trace(&copy, self.images.clone(), self.labels.clone());
        let mut values: Vec<Tensor<1>> = Vec::new();
        let mut names = Vec::new();
        for signal in &signals {
            let [batch, channels, height, width] = signal.output.dims();
            let output = signal.output.clone();
            let dead = output
                .clone()
                .swap_dims(0, 1)
                .reshape([channels, batch * height * width])
                .max_dim(1)
                .lower_equal_elem(0.0)
                .float()
                .mean();
            values.extend([output.clone().mean(), std_of(output), dead]);
            names.extend([
                (signal.name.clone(), Quantity::ActivationMean),
                (signal.name.clone(), Quantity::ActivationStd),
                (signal.name.clone(), Quantity::DeadFraction),
            ]);
            if let Some(gradient) = &signal.gradient {
                values.push(std_of(gradient.clone()));
                names.push((signal.name.clone(), Quantity::GradientStd));
            }
        }
        Watch {
            step: steps_done,
            layer_values: values,
            layer_names: names,
            before: weights(model),
            gradient_norms: Vec::new(),
        }
    }

    /// The diagnoses in `rows` (one monitored step) not already in `seen`, which they join.
    pub fn diagnose(&self, rows: &[MonitorRow], seen: &mut Vec<Signal>) -> Vec<Signal> {
        let s = &self.settings;
        let of = |quantity: Quantity| -> Vec<&MonitorRow> {
            rows.iter().filter(|r| r.quantity == quantity).collect()
        };
        let mut found = Vec::new();
        let mut relative = |rows: Vec<&MonitorRow>, reference: Option<&&MonitorRow>| {
            let Some(reference) = reference.filter(|r| r.value > 0.0 && r.value.is_finite()) else {
                return;
            };
            for row in &rows {
                let ratio = row.value / reference.value;
                let kind = if ratio < s.vanishing_below {
                    SignalKind::Vanishing
                } else if ratio > s.exploding_above {
                    SignalKind::Exploding
                } else {
                    continue;
                };
                found.push(signal(kind, row, ratio));
            }
        };
        let activations = of(Quantity::ActivationStd);
        let first = activations.first().copied();
        relative(activations, first.as_ref());
        let gradients = of(Quantity::GradientStd);
        let last = gradients.last().copied();
        relative(gradients, last.as_ref());
        for row in of(Quantity::DeadFraction) {
            if row.value > s.dead_above {
                found.push(signal(SignalKind::DeadRelus, row, row.value));
            }
        }
        // A weight that starts at zero (Fixup's last layers, a zero-initialised classifier) has
        // no update ratio: its ‖Δw‖/‖w‖ is infinite or 0/0, not a sign of a bad step size. A
        // bias starts at zero and stays small beside its steps, so its ratio is watched (in
        // monitor.csv) but not diagnosed.
        for row in of(Quantity::UpdateRatio)
            .into_iter()
            .filter(|r| r.value.is_finite() && !is_bias(&r.layer))
        {
            if !(s.update_ratio_min..=s.update_ratio_max).contains(&row.value) {
                found.push(signal(SignalKind::UpdateRatio, row, row.value));
            }
        }
        let known: BTreeSet<(SignalKind, String, Quantity)> = seen
            .iter()
            .map(|s| (s.kind, s.layer.clone(), s.quantity))
            .collect();
        let new: Vec<Signal> = found
            .into_iter()
            .filter(|s| !known.contains(&(s.kind, s.layer.clone(), s.quantity)))
            .collect();
        seen.extend(new.iter().cloned());
        new
    }
}

fn signal(kind: SignalKind, row: &MonitorRow, value: f64) -> Signal {
    Signal {
        kind,
        layer: row.layer.clone(),
        quantity: row.quantity,
        step: row.step,
        value,
    }
}

/// One monitored step in progress: observes its gradients, then [`Watch::finish`] reads it all.
#[derive(Debug)]
pub struct Watch {
    step: usize,
    layer_values: Vec<Tensor<1>>,
    layer_names: Vec<(String, Quantity)>,
    before: Vec<Weight>,
    gradient_norms: Vec<(ParamId, Tensor<1>)>,
}

impl StepObserver for Watch {
    fn gradients(&mut self, model: &Model, grads: &GradientsParams) {
        let mut norms = GradientNorms {
            grads,
            path: Vec::new(),
            norms: Vec::new(),
        };
        model.visit(&mut norms);
        self.gradient_norms = norms.norms;
    }
}

impl Watch {
    /// The rows of the step, given the model after it (all values read in one transfer).
    pub fn finish(self, after: &Model) -> Vec<MonitorRow> {
        let after = weights(after);
        let mut values = self.layer_values;
        let mut names: Vec<(String, Quantity)> = self.layer_names;
        for weight in &self.before {
            let norm = weight.tensor.clone().powi_scalar(2).sum().sqrt();
            values.push(norm.clone());
            names.push((weight.path.clone(), Quantity::WeightNorm));
            if let Some((_, g)) = self.gradient_norms.iter().find(|(id, _)| *id == weight.id) {
                values.push(g.clone());
                names.push((weight.path.clone(), Quantity::GradientNorm));
            }
            if let Some(new) = after.iter().find(|w| w.id == weight.id) {
                let change = (new.tensor.clone() - weight.tensor.clone())
                    .powi_scalar(2)
                    .sum()
                    .sqrt();
                values.push(change / norm);
                names.push((weight.path.clone(), Quantity::UpdateRatio));
            }
        }
        if values.is_empty() {
            return Vec::new();
        }
        let read: Vec<f32> = Tensor::cat(values, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 values");
        names
            .into_iter()
            .zip(read)
            .map(|((layer, quantity), value)| MonitorRow {
                step: self.step,
                layer,
                quantity,
                value: f64::from(value),
            })
            .collect()
    }
}

/// A weight tensor, flattened, with its path.
#[derive(Debug, Clone)]
struct Weight {
    path: String,
    id: ParamId,
    tensor: Tensor<1>,
}

/// Whether a parameter is watched: the conv and linear weights (rank 2 and 4) and their biases
/// (rank 1, named `bias`; batch norm's are `gamma` and `beta`, Fixup's scalars `bias1a`…).
fn watched(rank: usize, path: &[String]) -> bool {
    rank == 2 || rank == 4 || (rank == 1 && path.last().is_some_and(|name| name == "bias"))
}

/// Whether a parameter path names a bias.
fn is_bias(path: &str) -> bool {
    path.ends_with(".bias")
}

/// The watched parameters of `model` ([`watched`]), off the autodiff graph.
fn weights(model: &Model) -> Vec<Weight> {
    let mut collect = Weights {
        path: Vec::new(),
        found: Vec::new(),
    };
    model.visit(&mut collect);
    collect.found
}

struct Weights {
    path: Vec<String>,
    found: Vec<Weight>,
}

impl ModuleVisitor for Weights {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if watched(D, &self.path) {
            let tensor = param.val().without_autodiff().flatten::<1>(0, D - 1);
            // The first component is the `Model` variant (`ResNet`, `PlainCnn`): dropped, so a
            // weight is named as in the model's own type (`layers.0.conv.weight`).
            let path = self.path.get(1..).unwrap_or_default().join(".");
            self.found.push(Weight {
                path,
                id: param.id,
                tensor,
            });
        }
    }
}

struct GradientNorms<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    norms: Vec<(ParamId, Tensor<1>)>,
}

impl ModuleVisitor for GradientNorms<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if watched(D, &self.path)
            && let Some(grad) = self.grads.get::<D>(param.id)
        {
            self.norms
                .push((param.id, grad.powi_scalar(2).sum().sqrt().reshape([1])));
        }
    }
}

/// Warns of diagnoses seen for the first time: one line per kind and quantity, however many
/// layers it concerns, with the most extreme value.
pub fn warn_new_signals(new: &[Signal]) {
    let mut groups: Vec<(&Signal, Vec<&Signal>)> = Vec::new();
    for signal in new {
        match groups
            .iter_mut()
            .find(|(first, _)| first.kind == signal.kind && first.quantity == signal.quantity)
        {
            Some((_, members)) => members.push(signal),
            None => groups.push((signal, vec![signal])),
        }
    }
    for (first, members) in groups {
        let layers: Vec<&str> = members.iter().map(|s| s.layer.as_str()).collect();
        let extreme = members.iter().map(|s| s.value).fold(first.value, |a, b| {
            if (b.ln()).abs() > (a.ln()).abs() {
                b
            } else {
                a
            }
        });
        let what = match first.quantity {
            Quantity::ActivationStd => " activations",
            Quantity::GradientStd => " gradients",
            _ => "",
        };
        tracing::warn!(
            "{}{what} at step {} in {} layer(s): {} (most extreme {extreme:.3e})",
            first.kind,
            first.step,
            layers.len(),
            abbreviate(&layers),
        );
    }
}

/// `a, b, c` for up to four names, `a, b … y, z` beyond.
fn abbreviate(names: &[&str]) -> String {
    if names.len() <= 4 {
        names.join(", ")
    } else {
        format!(
            "{}, {} … {}, {}",
            names[0],
            names[1],
            names[names.len() - 2],
            names[names.len() - 1]
        )
    }
}
