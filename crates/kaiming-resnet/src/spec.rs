//! Model names as the command line and run configs spell them, one configuration for every
//! family, and one module type that holds any of them.

use std::fmt;
use std::str::FromStr;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::branch::Branch;
use crate::error::ModelError;
use crate::norm::Norm;
use crate::plain::{PlainCnn, PlainCnnConfig};
use crate::resnet::{ResNet, ResNetConfig};
use crate::shortcut::ShortcutKind;
use crate::stem::StemKind;
use crate::{Hook, Trace};

/// A model this crate builds, by name: `resnet18` … `resnet152`, the CIFAR ResNets and plain
/// nets of every depth `6n + 2` (`resnet8`, `resnet14`, `resnet20` … `plain8`, `plain14` …, as
/// He et al. 2016's family), `plain-resnet18` … `plain-resnet152`, `plaincnn`. The torchvision
/// names win where the two families share a depth: `resnet50` and `resnet152` are the ImageNet
/// layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelName {
    /// Torchvision-layout ResNet of depth 18, 34, 50, 101 or 152.
    ResNet(usize),
    /// Its plain twin.
    PlainResNet(usize),
    /// CIFAR ResNet of depth `6n + 2` (the paper reports 20, 32, 44, 56, 110 and 1202).
    CifarResNet(usize),
    /// Its plain twin.
    CifarPlain(usize),
    /// The deep plain ConvNet (depth and width are separate settings).
    PlainCnn,
}

impl ModelName {
    /// The named models, in the order `--help` lists them: the CIFAR families at the paper's
    /// depths (any other `6n + 2` parses too).
    pub fn all() -> Vec<ModelName> {
        let imagenet = ResNetConfig::IMAGENET_DEPTHS;
        let cifar = ResNetConfig::CIFAR_DEPTHS;
        imagenet
            .iter()
            .map(|&d| ModelName::ResNet(d))
            .chain(cifar.iter().map(|&d| ModelName::CifarResNet(d)))
            .chain(cifar.iter().map(|&d| ModelName::CifarPlain(d)))
            .chain(imagenet.iter().map(|&d| ModelName::PlainResNet(d)))
            .chain([ModelName::PlainCnn])
            .collect()
    }

    /// Whether the network has shortcuts.
    pub fn is_residual(self) -> bool {
        matches!(self, ModelName::ResNet(_) | ModelName::CifarResNet(_))
    }

    fn valid_names() -> String {
        let names = ModelName::all()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        format!("{names}, or resnetN / plainN for any CIFAR depth N = 6n + 2 (8, 14, 20, 26, …)")
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelName::ResNet(depth) | ModelName::CifarResNet(depth) => write!(f, "resnet{depth}"),
            ModelName::PlainResNet(depth) => write!(f, "plain-resnet{depth}"),
            ModelName::CifarPlain(depth) => write!(f, "plain{depth}"),
            ModelName::PlainCnn => f.write_str("plaincnn"),
        }
    }
}

impl FromStr for ModelName {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        let depth = |prefix: &str| name.strip_prefix(prefix)?.parse::<usize>().ok();
        let imagenet = |d: usize| ResNetConfig::IMAGENET_DEPTHS.contains(&d);
        let cifar = |d: usize| ResNetConfig::cifar(d).is_ok();
        let parsed = if name == "plaincnn" {
            Some(ModelName::PlainCnn)
        } else if let Some(d) = depth("plain-resnet").filter(|&d| imagenet(d)) {
            Some(ModelName::PlainResNet(d))
        } else if let Some(d) = depth("plain").filter(|&d| cifar(d)) {
            Some(ModelName::CifarPlain(d))
        } else {
            match depth("resnet") {
                Some(d) if imagenet(d) => Some(ModelName::ResNet(d)),
                Some(d) if cifar(d) => Some(ModelName::CifarResNet(d)),
                _ => None,
            }
        };
        parsed.ok_or_else(|| ModelError::UnknownModel {
            name: s.to_string(),
            valid: ModelName::valid_names(),
        })
    }
}

impl TryFrom<String> for ModelName {
    type Error = ModelError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ModelName> for String {
    fn from(name: ModelName) -> Self {
        name.to_string()
    }
}

/// Everything needed to build any model of this crate: the name plus the settings that apply to
/// its family. Settings that do not apply are ignored (`stem` for the CIFAR nets and `plaincnn`,
/// `depth` and `width` for all but `plaincnn`).
#[derive(Config, Debug)]
pub struct ModelConfig {
    /// Which model.
    pub name: ModelName,
    /// Output classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Normalisation after each convolution.
    #[config(default = "Norm::Batch")]
    pub norm: Norm,
    /// Stem of the torchvision-layout ResNets and their plain twins. The default is the layout
    /// the names come from; 32×32 inputs want `StemKind::Cifar`.
    #[config(default = "StemKind::ImageNet")]
    pub stem: StemKind,
    /// Shortcut option; `None` takes the family's own (A for the CIFAR ResNets as in the paper, B
    /// for the torchvision layout).
    #[config(default = "None")]
    pub shortcut: Option<ShortcutKind>,
    /// Weight layers of `plaincnn`.
    #[config(default = 30)]
    pub depth: usize,
    /// First-stage width of `plaincnn`.
    #[config(default = 16)]
    pub width: usize,
    /// Zero the γ of the last norm of every residual branch (see
    /// [`ResNetConfig::zero_init_residual`]); ignored by networks without shortcuts.
    #[config(default = false)]
    pub zero_init_residual: bool,
    /// How residual branches join their shortcuts (see [`ResNetConfig::branch`]); refused by
    /// [`validate`](Self::validate) on networks without shortcuts.
    #[config(default = "Branch::Standard")]
    pub branch: Branch,
}

/// The configuration of one family, as [`ModelConfig::family`] resolves it.
#[derive(Debug, Clone)]
pub enum FamilyConfig {
    /// Any ResNet or plain twin.
    ResNet(ResNetConfig),
    /// The deep plain ConvNet.
    PlainCnn(PlainCnnConfig),
}

impl ModelConfig {
    /// The family configuration this name and these settings describe.
    pub fn family(&self) -> FamilyConfig {
        let resnet = |config: ResNetConfig, residual: bool| {
            let config = config
                .with_num_classes(self.num_classes)
                .with_norm(self.norm)
                .with_residual(residual)
                .with_zero_init_residual(self.zero_init_residual)
                .with_branch(self.branch);
            let config = match self.shortcut {
                Some(shortcut) => config.with_shortcut(shortcut),
                None => config,
            };
            FamilyConfig::ResNet(config)
        };
        let imagenet = |depth| {
            ResNetConfig::imagenet(depth)
                .expect("ModelName holds only valid depths")
                .with_stem(self.stem)
        };
        let cifar = |depth| ResNetConfig::cifar(depth).expect("ModelName holds only valid depths");
        match self.name {
            ModelName::ResNet(depth) => resnet(imagenet(depth), true),
            ModelName::PlainResNet(depth) => resnet(imagenet(depth), false),
            ModelName::CifarResNet(depth) => resnet(cifar(depth), true),
            ModelName::CifarPlain(depth) => resnet(cifar(depth), false),
            ModelName::PlainCnn => FamilyConfig::PlainCnn(
                PlainCnnConfig::new()
                    .with_depth(self.depth)
                    .with_width(self.width)
                    .with_num_classes(self.num_classes)
                    .with_norm(self.norm),
            ),
        }
    }

    /// Checks the settings, so a command line can report a bad one instead of panicking in
    /// `init`.
    pub fn validate(&self) -> Result<(), ModelError> {
        match self.family() {
            FamilyConfig::ResNet(config) => config.validate(),
            FamilyConfig::PlainCnn(_) if self.branch != Branch::Standard => {
                Err(ModelError::Invalid(format!(
                    "{} scales residual branches, and plaincnn has none",
                    self.branch
                )))
            }
            FamilyConfig::PlainCnn(config) => config.validate(),
        }
    }
}

/// Any model of this crate in one type, so a trainer can hold whichever `--model` names.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "burn's Module derive cannot box a variant; the padding costs bytes per block, once"
)]
pub enum Model {
    /// A ResNet or plain twin.
    ResNet(ResNet),
    /// The deep plain ConvNet.
    PlainCnn(PlainCnn),
}

impl Model {
    /// Logits `[batch, num_classes]` for images `[batch, channels, height, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Model::ResNet(model) => model.forward(x),
            Model::PlainCnn(model) => model.forward(x),
        }
    }

    /// Globally average-pooled features `[batch, channels]`, for other heads.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Model::ResNet(model) => model.forward_features(x),
            Model::PlainCnn(model) => model.forward_features(x),
        }
    }

    /// The logits and the named output of every block (ResNets) or layer (`plaincnn`), in order.
    pub fn forward_trace(&self, x: Tensor<4>) -> (Tensor<2>, Trace) {
        match self {
            Model::ResNet(model) => model.forward_trace(x),
            Model::PlainCnn(model) => model.forward_trace(x),
        }
    }

    /// The logits, with every output `forward_trace` names passed through `hook`.
    pub fn forward_hooked(&self, x: Tensor<4>, hook: &mut Hook<'_>) -> Tensor<2> {
        match self {
            Model::ResNet(model) => model.forward_hooked(x, hook),
            Model::PlainCnn(model) => model.forward_hooked(x, hook),
        }
    }
}
