//! `summary.json`: what a run was and how it ended.

use std::path::Path;

use anyhow::{Context, Result};
use kaiming_cifar::Normalization;
use kaiming_init::Scheme;
use kaiming_kernels::{ConvAlgorithm, KernelChoice};
use kaiming_resnet::ModelName;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::backend::Backend;
use crate::monitor::Signal;
use crate::precision::Precision;

/// How a run ended (or stands, while it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Still training (or killed without a chance to say otherwise).
    Running,
    /// Trained every epoch.
    Completed,
    /// Stopped on a NaN or infinite loss; everything before it is logged.
    Diverged,
    /// Stopped by Ctrl-C or `--stop-after`; continue with `--resume`.
    Interrupted,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Diverged => "diverged",
            Status::Interrupted => "interrupted",
        })
    }
}

/// The contents of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Run folder name.
    pub name: String,
    /// The model.
    pub model: ModelName,
    /// The init scheme.
    pub init: Scheme,
    /// The weights file the run started from, if any (its init then covers only what the file
    /// did not provide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// The backend.
    pub backend: Backend,
    /// Device the run computed on: the adapter's own name on GPUs.
    pub device: String,
    /// The devices of its replicas, the first being `device` (absent in runs made before
    /// replicas existed).
    #[serde(default)]
    pub devices: Vec<String>,
    /// Arithmetic precision (absent in runs made before it existed: f32).
    #[serde(default)]
    pub precision: Precision,
    /// Seed of the run.
    pub seed: u64,
    /// `git rev-parse HEAD` of the working tree the run started from, if any.
    pub git_commit: Option<String>,
    /// How the run ended.
    pub status: Status,
    /// Epochs finished.
    pub epochs_completed: usize,
    /// Optimizer steps done.
    pub steps: usize,
    /// Split evaluated each epoch (`test` or `val`).
    pub eval_split: String,
    /// Best evaluation accuracy over the epochs.
    pub best_accuracy: Option<f64>,
    /// Epoch of the best accuracy.
    pub best_epoch: Option<usize>,
    /// Evaluation accuracy after the last epoch.
    pub final_accuracy: Option<f64>,
    /// Mean training loss over the last epoch.
    pub final_train_loss: Option<f64>,
    /// Trainable parameters.
    pub parameters: usize,
    /// Seconds of training and evaluation, across resumes.
    pub total_time_s: f64,
    /// The signal monitor's diagnoses, each when it first appeared (absent in runs made before
    /// the monitor existed).
    #[serde(default)]
    pub signals: Vec<Signal>,
    /// The per-channel statistics the inputs were normalised with: those of the run's own
    /// training images (absent in runs made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_normalization: Option<InputNormalization>,
    /// How the CPU kernels computed, on the flex backend (absent on the others and in runs made
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<KernelsUsed>,
}

/// The kernels a flex run computed with: its `[kernels]` settings, the instruction set resolved
/// to the one this CPU used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelsUsed {
    /// The convolution algorithm asked for.
    pub conv: ConvAlgorithm,
    /// The direct kernels' instruction set: `avx512`, `avx2`, `avx512-emulated`, or `none` on a
    /// CPU without them.
    pub isa: String,
    /// Whether everything ran on burn's own operations instead.
    pub burn: bool,
}

impl std::fmt::Display for KernelsUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.burn {
            true => f.write_str("burn"),
            false => write!(f, "{} {}", self.conv, self.isa),
        }
    }
}

impl From<KernelChoice> for KernelsUsed {
    fn from(choice: KernelChoice) -> Self {
        KernelsUsed {
            conv: choice.conv.algorithm,
            isa: choice
                .isa_used()
                .map_or("none".to_string(), |isa| isa.to_string()),
            burn: choice.burn,
        }
    }
}

/// Per-channel mean and standard deviation on the [0, 1] pixel scale, as a run normalised its
/// inputs with them (`(v / 255 - mean) / std`); an export carries them, as torchvision's weights
/// carry their `transforms()`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputNormalization {
    /// Mean of red, green and blue.
    pub mean: [f32; 3],
    /// Standard deviation of red, green and blue.
    pub std: [f32; 3],
}

impl From<Normalization> for InputNormalization {
    fn from(n: Normalization) -> Self {
        InputNormalization {
            mean: n.mean,
            std: n.std,
        }
    }
}

impl From<InputNormalization> for Normalization {
    fn from(n: InputNormalization) -> Self {
        Normalization {
            mean: n.mean,
            std: n.std,
        }
    }
}

/// The final train loss below which, together with [`TRAINS_ACCURACY_ABOVE`], a run counts as
/// having trained (chance is ln 10 = 2.303).
pub const TRAINS_LOSS_BELOW: f64 = 2.0;
/// The final evaluation accuracy above which, together with [`TRAINS_LOSS_BELOW`], a run counts
/// as having trained (chance is 10 %).
pub const TRAINS_ACCURACY_ABOVE: f64 = 0.20;

impl Summary {
    /// Whether the run trained: it completed its budget with a final train loss below
    /// [`TRAINS_LOSS_BELOW`] and a final evaluation accuracy above [`TRAINS_ACCURACY_ABOVE`].
    /// The one criterion the published experiments apply (`docs/results`), so that "trains"
    /// means the same in every table.
    pub fn trained(&self) -> bool {
        self.status == Status::Completed
            && self
                .final_train_loss
                .is_some_and(|loss| loss < TRAINS_LOSS_BELOW)
            && self
                .final_accuracy
                .is_some_and(|accuracy| accuracy > TRAINS_ACCURACY_ABOVE)
    }

    /// Reads `summary.json`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run summary", path.display()))
    }

    /// Writes `summary.json` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("summary serialises");
        write_atomic(path, json.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use kaiming_kernels::{ConvChoice, IsaChoice};

    use super::*;

    /// What `train bench` prints in its kernels column and `summary.json` records.
    #[test]
    fn kernels_used_name_the_path_taken() {
        let forced = |algorithm, isa, burn| {
            KernelsUsed::from(KernelChoice {
                burn,
                conv: ConvChoice { algorithm, isa },
            })
        };
        let direct = forced(ConvAlgorithm::Direct, IsaChoice::Avx2, false);
        assert_eq!(direct.isa, "avx2");
        assert_eq!(direct.to_string(), "direct avx2");
        let fallback = forced(ConvAlgorithm::Auto, IsaChoice::None, false);
        assert_eq!(fallback.to_string(), "auto none");
        let burn = forced(ConvAlgorithm::Gemm, IsaChoice::Avx2, true);
        assert_eq!(burn.to_string(), "burn");
    }
}
