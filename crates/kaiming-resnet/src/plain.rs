//! A deep plain ConvNet of configurable depth, for the depth experiment of He et al. 2015
//! ("Delving Deep into Rectifiers", §2.3, Figure 3): without normalisation a 30-layer net of
//! 3×3 convolutions and ReLUs trains from He initialisation and stalls from Xavier's.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::error::ModelError;
use crate::norm::{Norm, conv, conv_norm, norm_layer};
use crate::observe;
use crate::resnet::global_avg_pool;
use crate::{Hook, Trace};

/// `depth − 1` 3×3 conv + (norm) + ReLU layers split into `stages` stages, each after the first
/// starting with a stride-2 convolution that doubles the width; then global average pooling and
/// a fully connected classifier: `depth` weight layers in all.
#[derive(Config, Debug)]
pub struct PlainCnnConfig {
    /// Weight layers, classifier included.
    #[config(default = 30)]
    pub depth: usize,
    /// Channels of the first stage.
    #[config(default = 16)]
    pub width: usize,
    /// Resolution stages; the convolutions are split as evenly as possible, earlier stages taking
    /// the remainder.
    #[config(default = 3)]
    pub stages: usize,
    /// Output classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Normalisation after each convolution.
    #[config(default = "Norm::Batch")]
    pub norm: Norm,
}

/// One layer's place in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainLayerShape {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Stride.
    pub stride: usize,
}

impl PlainCnnConfig {
    /// Checks that there is at least one convolution per stage.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.stages == 0 || self.depth < self.stages + 1 {
            return Err(ModelError::BadDepth {
                family: "plain ConvNet",
                depth: self.depth,
                valid: format!(
                    "at least {} (one convolution per stage plus the classifier)",
                    self.stages.max(1) + 1
                ),
            });
        }
        if self.width == 0 || self.num_classes == 0 || self.in_channels == 0 {
            return Err(ModelError::Invalid(
                "width, num_classes and in_channels must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The convolutions, first to last.
    pub fn layers(&self) -> Vec<PlainLayerShape> {
        let convs = self.depth - 1;
        let mut shapes = Vec::with_capacity(convs);
        let mut channels = self.in_channels;
        for stage in 0..self.stages {
            let count = convs / self.stages + usize::from(stage < convs % self.stages);
            let width = self.width << stage;
            for index in 0..count {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                shapes.push(PlainLayerShape {
                    in_channels: channels,
                    out_channels: width,
                    stride,
                });
                channels = width;
            }
        }
        shapes
    }

    /// Channels of the pooled features.
    pub fn feature_channels(&self) -> usize {
        self.width << self.stages.saturating_sub(1)
    }

    /// Builds the network with burn's layer defaults; `init` and `init_with` apply the
    /// initialisation plan on top.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub(crate) fn build(&self, device: &Device) -> PlainCnn {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        PlainCnn {
            layers: self
                .layers()
                .into_iter()
                .map(|shape| PlainLayer {
                    conv: conv(
                        shape.in_channels,
                        shape.out_channels,
                        3,
                        shape.stride,
                        self.norm,
                        device,
                    ),
                    bn: norm_layer(shape.out_channels, self.norm, device),
                })
                .collect(),
            fc: LinearConfig::new(self.feature_channels(), self.num_classes).init(device),
        }
    }
}

/// conv3×3 → norm → ReLU.
#[derive(Module, Debug)]
pub struct PlainLayer {
    /// The convolution.
    pub conv: Conv2d,
    /// Its norm.
    pub bn: Option<BatchNorm>,
}

impl PlainLayer {
    /// Runs the layer.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_norm(&self.conv, &None, &self.bn, x, true)
    }
}

/// The deep plain ConvNet built by [`PlainCnnConfig`].
#[derive(Module, Debug)]
pub struct PlainCnn {
    /// The conv layers, in order.
    pub layers: Vec<PlainLayer>,
    /// The classifier.
    pub fc: Linear,
}

impl PlainCnn {
    /// Logits `[batch, num_classes]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        observe::linear(&self.fc, self.forward_features(x))
    }

    /// Globally average-pooled features `[batch, feature_channels]`.
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.layers.iter().fold(x, |x, layer| layer.forward(x)))
    }

    /// The logits and every layer's output, named `layers.{index}`, in order.
    pub fn forward_trace(&self, x: Tensor<4>) -> (Tensor<2>, Trace) {
        crate::record(|hook| self.forward_hooked(x, hook))
    }

    /// The logits, with every layer's output passed through `hook` as `layers.{index}`.
    pub fn forward_hooked(&self, x: Tensor<4>, hook: &mut Hook<'_>) -> Tensor<2> {
        let x = self.layers.iter().enumerate().fold(x, |x, (index, layer)| {
            hook(&format!("layers.{index}"), layer.forward(x))
        });
        observe::linear(&self.fc, global_avg_pool(x))
    }
}
