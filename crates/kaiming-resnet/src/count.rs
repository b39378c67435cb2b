//! Analytic parameter and multiply-add counts, computed from the configurations alone (no
//! tensors), so a trainer can turn images per second into achieved FLOP/s for any input size.
//!
//! The convention is the one behind the published figures (torchvision's "GFLOPS", fvcore):
//! multiply-adds of convolutions and fully connected layers; norms, activations, pooling and
//! shortcut additions are not counted. Parameters are the trainable ones (batch norm's running
//! statistics are buffers, as in PyTorch).

use crate::block::{BlockConfig, BlockKind};
use crate::norm::Norm;
use crate::plain::PlainCnnConfig;
use crate::resnet::ResNetConfig;
use crate::shortcut::ShortcutKind;
use crate::spec::{FamilyConfig, ModelConfig};
use crate::stem::StemKind;

/// Size and forward cost of a network for one input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Complexity {
    /// Trainable parameters.
    pub params: usize,
    /// Forward multiply-adds per image.
    pub macs: u64,
}

impl Complexity {
    /// Forward floating-point operations per image, counting a multiply-add as two.
    pub fn forward_flops(&self) -> u64 {
        2 * self.macs
    }
}

/// Follows a feature map of `channels × height × width` through the network, summing up.
#[derive(Debug, Clone)]
struct Counter {
    channels: usize,
    height: usize,
    width: usize,
    total: Complexity,
}

impl Counter {
    fn new(channels: usize, [height, width]: [usize; 2]) -> Self {
        Counter {
            channels,
            height,
            width,
            total: Complexity::default(),
        }
    }

    /// A `k`×`k` convolution with padding `k / 2`, as [`crate::norm`] builds them, plus its norm.
    fn conv_norm(&mut self, out_channels: usize, kernel: usize, stride: usize, norm: Norm) {
        let out = |size: usize| (size + 2 * (kernel / 2) - kernel) / stride + 1;
        (self.height, self.width) = (out(self.height), out(self.width));
        let weights = self.channels * out_channels * kernel * kernel;
        let bias = if norm.conv_bias() { out_channels } else { 0 };
        let norm_params = match norm {
            Norm::Batch => 2 * out_channels,
            Norm::None => 0,
        };
        self.total.params += weights + bias + norm_params;
        self.total.macs += (weights * self.height * self.width) as u64;
        self.channels = out_channels;
    }

    /// A max-pool with the given kernel, stride and padding: no parameters, no multiply-adds.
    fn pool(&mut self, kernel: usize, stride: usize, padding: usize) {
        let out = |size: usize| (size + 2 * padding - kernel) / stride + 1;
        (self.height, self.width) = (out(self.height), out(self.width));
    }

    /// Global average pooling and a fully connected layer with bias.
    fn classifier(&mut self, classes: usize) {
        self.total.params += self.channels * classes + classes;
        self.total.macs += (self.channels * classes) as u64;
        self.channels = classes;
        (self.height, self.width) = (1, 1);
    }

    /// Adds a branch's totals (e.g. a shortcut's) without following its feature map.
    fn add_branch(&mut self, branch: Counter) {
        self.total.params += branch.total.params;
        self.total.macs += branch.total.macs;
    }

    fn block(&mut self, config: &BlockConfig) {
        let input = Counter::new(config.in_channels, [self.height, self.width]);
        let (width, norm) = (config.width, config.norm);
        match config.kind {
            BlockKind::Basic => {
                self.conv_norm(width, 3, config.stride, norm);
                self.conv_norm(width, 3, 1, norm);
            }
            BlockKind::Bottleneck => {
                self.conv_norm(width, 1, 1, norm);
                self.conv_norm(width, 3, config.stride, norm);
                self.conv_norm(config.out_channels(), 1, 1, norm);
            }
        }
        let reshapes = config.stride != 1 || config.in_channels != config.out_channels();
        if config.residual && reshapes && config.shortcut == ShortcutKind::B {
            let mut projection = input;
            projection.conv_norm(config.out_channels(), 1, config.stride, norm);
            self.add_branch(projection);
        }
        if config.residual {
            self.total.params += config.branch.scalars_per_block(config.kind.weight_layers());
        }
    }
}

impl ResNetConfig {
    /// Parameters and per-image multiply-adds for `[height, width]` inputs.
    pub fn complexity(&self, input: [usize; 2]) -> Complexity {
        let mut counter = Counter::new(self.in_channels, input);
        match self.stem {
            StemKind::ImageNet => {
                counter.conv_norm(self.widths[0], 7, 2, self.norm);
                counter.pool(3, 2, 1);
            }
            StemKind::Cifar => counter.conv_norm(self.widths[0], 3, 1, self.norm),
        }
        for index in 0..self.layers.len() {
            let stage = self.stage(index);
            for block in 0..stage.num_blocks {
                counter.block(&stage.block(block));
            }
        }
        counter.classifier(self.num_classes);
        // Fixup's scalar bias before the classifier.
        counter.total.params += usize::from(self.residual && self.branch.biases());
        counter.total
    }

    /// Trainable parameters (independent of the input size).
    pub fn num_params(&self) -> usize {
        self.complexity([224, 224]).params
    }
}

impl PlainCnnConfig {
    /// Parameters and per-image multiply-adds for `[height, width]` inputs.
    pub fn complexity(&self, input: [usize; 2]) -> Complexity {
        let mut counter = Counter::new(self.in_channels, input);
        for layer in self.layers() {
            counter.conv_norm(layer.out_channels, 3, layer.stride, self.norm);
        }
        counter.classifier(self.num_classes);
        counter.total
    }

    /// Trainable parameters (independent of the input size).
    pub fn num_params(&self) -> usize {
        self.complexity([32, 32]).params
    }
}

impl ModelConfig {
    /// Parameters and per-image multiply-adds for `[height, width]` inputs.
    pub fn complexity(&self, input: [usize; 2]) -> Complexity {
        match self.family() {
            FamilyConfig::ResNet(config) => config.complexity(input),
            FamilyConfig::PlainCnn(config) => config.complexity(input),
        }
    }

    /// Trainable parameters (independent of the input size).
    pub fn num_params(&self) -> usize {
        match self.family() {
            FamilyConfig::ResNet(config) => config.num_params(),
            FamilyConfig::PlainCnn(config) => config.num_params(),
        }
    }
}
