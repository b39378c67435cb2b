//! The ResNet of He et al. 2016 as one data-driven type: the architecture table (block kind,
//! blocks per stage, widths) is the configuration, and the named constructors are its rows.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::block::BlockKind;
use crate::branch::{Branch, add_bias, scalar};
use crate::error::ModelError;
use crate::norm::Norm;
use crate::observe;
use crate::shortcut::ShortcutKind;
use crate::stage::{Stage, StageConfig};
use crate::stem::{Stem, StemKind};
use crate::{Hook, Trace};

/// A ResNet (or, with `residual = false`, its plain twin).
///
/// The rows of the paper's Table 1 are [`ResNetConfig::resnet18`] … [`ResNetConfig::resnet152`];
/// the CIFAR-10 nets of §4.2 are [`ResNetConfig::cifar`]. The stem has `widths[0]` channels,
/// stage `i` has `layers[i]` blocks of base width `widths[i]`, and every stage after the first
/// halves the resolution.
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Block kind of every stage.
    pub block: BlockKind,
    /// Blocks per stage, e.g. `[3, 4, 6, 3]` for ResNet-50.
    pub layers: Vec<usize>,
    /// Base width per stage, e.g. `[64, 128, 256, 512]`.
    pub widths: Vec<usize>,
    /// Output classes.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// ImageNet stem (7×7/2 + max-pool) or CIFAR stem (3×3/1).
    #[config(default = "StemKind::ImageNet")]
    pub stem: StemKind,
    /// How shortcuts cross a change of shape.
    #[config(default = "ShortcutKind::B")]
    pub shortcut: ShortcutKind,
    /// With `false` no block has a shortcut: the plain twin of §4.1.
    #[config(default = true)]
    pub residual: bool,
    /// Normalisation after each convolution.
    #[config(default = "Norm::Batch")]
    pub norm: Norm,
    /// Start every residual branch at zero by setting the γ of its last norm to 0, so each block
    /// begins as the identity (Goyal et al. 2017, "Accurate, Large Minibatch SGD", §5.1;
    /// torchvision reports +0.2–0.3 % top-1). Applies only with shortcuts and batch norm: in a
    /// plain net it would cut the signal.
    #[config(default = false)]
    pub zero_init_residual: bool,
    /// How residual branches join their shortcuts: standard, SkipInit or Fixup (see
    /// [`crate::branch`]); the latter two need shortcuts, and Fixup replaces normalisation.
    #[config(default = "Branch::Standard")]
    pub branch: Branch,
}

impl ResNetConfig {
    /// Widths of torchvision's ResNets.
    pub const IMAGENET_WIDTHS: [usize; 4] = [64, 128, 256, 512];
    /// Depths with a torchvision layout.
    pub const IMAGENET_DEPTHS: [usize; 5] = [18, 34, 50, 101, 152];

    /// ResNet-18: basic blocks `[2, 2, 2, 2]`.
    pub fn resnet18() -> Self {
        Self::imagenet_layout(BlockKind::Basic, [2, 2, 2, 2])
    }

    /// ResNet-34: basic blocks `[3, 4, 6, 3]`.
    pub fn resnet34() -> Self {
        Self::imagenet_layout(BlockKind::Basic, [3, 4, 6, 3])
    }

    /// ResNet-50: bottlenecks `[3, 4, 6, 3]`.
    pub fn resnet50() -> Self {
        Self::imagenet_layout(BlockKind::Bottleneck, [3, 4, 6, 3])
    }

    /// ResNet-101: bottlenecks `[3, 4, 23, 3]`.
    pub fn resnet101() -> Self {
        Self::imagenet_layout(BlockKind::Bottleneck, [3, 4, 23, 3])
    }

    /// ResNet-152: bottlenecks `[3, 8, 36, 3]`.
    pub fn resnet152() -> Self {
        Self::imagenet_layout(BlockKind::Bottleneck, [3, 8, 36, 3])
    }

    /// The torchvision-layout ResNet of `depth` (18, 34, 50, 101 or 152).
    pub fn imagenet(depth: usize) -> Result<Self, ModelError> {
        match depth {
            18 => Ok(Self::resnet18()),
            34 => Ok(Self::resnet34()),
            50 => Ok(Self::resnet50()),
            101 => Ok(Self::resnet101()),
            152 => Ok(Self::resnet152()),
            _ => Err(ModelError::BadDepth {
                family: "ImageNet-layout ResNet",
                depth,
                valid: "18, 34, 50, 101, 152".to_string(),
            }),
        }
    }

    fn imagenet_layout(block: BlockKind, layers: [usize; 4]) -> Self {
        Self::new(block, layers.to_vec(), Self::IMAGENET_WIDTHS.to_vec())
    }

    /// The same network without shortcuts.
    pub fn plain(self) -> Self {
        self.with_residual(false)
    }

    /// Channels of the pooled features (the classifier's input).
    pub fn feature_channels(&self) -> usize {
        self.block.out_channels(*self.widths.last().unwrap_or(&0))
    }

    /// Weight layers on the longest path: stem, the block convolutions and the classifier (the
    /// "depth" in a ResNet's name).
    pub fn depth(&self) -> usize {
        2 + self.branch_layers() * self.branches()
    }

    /// The settings of stage `index`.
    pub fn stage(&self, index: usize) -> StageConfig {
        let in_channels = match index {
            0 => self.widths[0],
            _ => self.block.out_channels(self.widths[index - 1]),
        };
        StageConfig::new(
            self.block,
            self.layers[index],
            in_channels,
            self.widths[index],
        )
        .with_stride(if index == 0 { 1 } else { 2 })
        .with_norm(self.norm)
        .with_shortcut(self.shortcut)
        .with_residual(self.residual)
        .with_branch(self.branch)
    }

    /// Residual branches: Fixup's L.
    pub fn branches(&self) -> usize {
        self.layers.iter().sum()
    }

    /// Weight layers per residual branch: Fixup's m.
    pub fn branch_layers(&self) -> usize {
        self.block.weight_layers()
    }

    /// Checks that the parts fit together.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |why: String| Err(ModelError::Invalid(why));
        if self.layers.is_empty() || self.layers.len() != self.widths.len() {
            return invalid(format!(
                "need one width per stage, got {} stages and {} widths",
                self.layers.len(),
                self.widths.len()
            ));
        }
        if self.layers.contains(&0) || self.widths.contains(&0) {
            return invalid("every stage needs at least one block and one channel".into());
        }
        if self.num_classes == 0 || self.in_channels == 0 {
            return invalid("num_classes and in_channels must be positive".into());
        }
        let shrinks = (0..self.layers.len())
            .map(|index| self.stage(index))
            .any(|stage| stage.out_channels() < stage.in_channels);
        if self.shortcut == ShortcutKind::A && shrinks {
            return invalid("option A shortcuts cannot reduce the channel count".into());
        }
        if self.branch != Branch::Standard && !self.residual {
            return invalid(format!(
                "{} scales residual branches, and a plain net has none",
                self.branch
            ));
        }
        if self.branch == Branch::Fixup && self.norm != Norm::None {
            return invalid(
                "Fixup replaces normalisation: use it with norm = none (SkipInit works with both)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Builds the network with burn's layer defaults; `init` and `init_with` (in `init.rs`) apply
    /// the initialisation plan on top.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub(crate) fn build(&self, device: &Device) -> ResNet {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        ResNet {
            stem: self
                .stem
                .init(self.in_channels, self.widths[0], self.norm, device),
            stages: (0..self.layers.len())
                .map(|index| self.stage(index).init(device))
                .collect(),
            fc: LinearConfig::new(self.feature_channels(), self.num_classes).init(device),
            fc_bias: scalar(self.branch.biases(), 0.0, device),
        }
    }
}

/// Stem → stages → global average pool → fully connected.
#[derive(Module, Debug)]
pub struct ResNet {
    /// The layers before the first block.
    pub stem: Stem,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// The classifier.
    pub fc: Linear,
    /// Fixup: the scalar bias added to the pooled features before the classifier.
    pub fc_bias: Option<Param<Tensor<1>>>,
}

impl ResNet {
    /// Logits `[batch, num_classes]` for images `[batch, channels, height, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.classify(self.forward_features(x))
    }

    /// The classifier on pooled features.
    fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        observe::linear(&self.fc, add_bias(&self.fc_bias, features))
    }

    /// Globally average-pooled features `[batch, feature_channels]`, for other heads.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.stem.forward(x);
        global_avg_pool(self.stages.iter().fold(x, |x, stage| stage.forward(x)))
    }

    /// The logits and the output of the stem and of every block, named as their parameters are
    /// (`stem`, `stages.0.blocks.0`, …), in order.
    pub fn forward_trace(&self, x: Tensor<4>) -> (Tensor<2>, Trace) {
        crate::record(|hook| self.forward_hooked(x, hook))
    }

    /// The logits, with the output of the stem and of every block passed through `hook` under
    /// the names `forward_trace` gives them.
    pub fn forward_hooked(&self, x: Tensor<4>, hook: &mut Hook<'_>) -> Tensor<2> {
        let x = hook("stem", self.stem.forward(x));
        let x = self.stages.iter().enumerate().fold(x, |x, (index, stage)| {
            stage.forward_hooked(x, &format!("stages.{index}"), hook)
        });
        self.classify(global_avg_pool(x))
    }
}

/// Mean over height and width: `[b, c, h, w]` → `[b, c]`.
pub(crate) fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    x.mean_dims(&[2, 3]).flatten(1, 3)
}
