//! Initialisation entry points. The architecture modules build layers with burn's defaults and
//! never choose an initializer; every scheme comes from a [`kaiming_init::InitPlan`] applied here,
//! so the scheme can be varied without touching a block.

use burn::tensor::{Device, Distribution, Tensor};
use kaiming_init::{InitError, InitPlan, InitReport, Rule, Scheme};

use crate::block::BlockKind;
use crate::branch::Branch;
use crate::norm::Norm;
use crate::plain::{PlainCnn, PlainCnnConfig};
use crate::resnet::{ResNet, ResNetConfig};
use crate::spec::{FamilyConfig, Model, ModelConfig};

/// A seed drawn from the device's random generator, so `device.seed(n)` before `init` makes the
/// initialisation reproducible, as it does for burn's own layers.
pub fn seed_from_device(device: &Device) -> u64 {
    // Four draws of 16 bits each: an f32 in [0, 1) carries 24 bits, so 16 are exact.
    Tensor::<1>::random([4], Distribution::Uniform(0.0, 1.0), device)
        .into_data()
        .try_to_vec::<f32>()
        .expect("a float tensor converts to f32")
        .into_iter()
        .fold(0u64, |seed, draw| {
            (seed << 16) | (((draw * 65536.0) as u64) & 0xffff)
        })
}

/// The model `init_with` builds from [`InitPlan::torchvision`] and a seed drawn from the device:
/// the body of every `init`.
fn with_torchvision_plan<M>(
    device: &Device,
    init_with: impl FnOnce(&InitPlan, u64) -> Result<(M, InitReport), InitError>,
) -> M {
    let (model, _) = init_with(&InitPlan::torchvision(), seed_from_device(device))
        .expect("the torchvision plan gives norm layers constants only");
    model
}

impl ResNetConfig {
    /// The network with torchvision's initialisation ([`InitPlan::torchvision`]: He normal,
    /// fan_out, ReLU for convolutions; norm γ = 1, β = 0; classifier as PyTorch), plus
    /// `zero_init_residual` if set, seeded from the device's generator.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> ResNet {
        with_torchvision_plan(device, |plan, seed| self.init_with(device, plan, seed))
    }

    /// The network initialised by `plan` (extended by [`init_plan`](Self::init_plan)) from
    /// `seed`, with the report of what each parameter got.
    ///
    /// # Errors
    /// When a rule of `plan` gives a random scheme to a norm layer's γ or β.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init_with(
        &self,
        device: &Device,
        plan: &InitPlan,
        seed: u64,
    ) -> Result<(ResNet, InitReport), InitError> {
        self.init_plan(plan).apply(self.build(device), seed)
    }

    /// `plan` with this configuration's own rules added:
    ///
    /// - with `zero_init_residual`, a zero γ for the norm closing every residual branch
    ///   (`*.bn2.gamma` in basic blocks, `*.bn3.gamma` in bottlenecks). Nets without shortcuts
    ///   or norms are left alone: there the rule would cut the signal instead of making blocks
    ///   start as identities;
    /// - with the Fixup branch, Fixup's initialisation (Zhang et al. 2019, §3): the last
    ///   convolution of every branch and the classifier at zero, the branch's other convolutions
    ///   with `plan`'s scheme (He in the paper) scaled by L^(−1/(2m−2)) for L branches of m
    ///   layers ([`fixup_scale`](Self::fixup_scale)); the stem and projection shortcuts keep
    ///   `plan`'s scheme.
    pub fn init_plan(&self, plan: &InitPlan) -> InitPlan {
        let mut plan = plan.clone();
        if self.zero_init_residual && self.residual && self.norm == Norm::Batch {
            let last = self.block.last_norm();
            plan = plan.with_rule(Rule::path(format!("*.{last}.gamma"), Scheme::zeros()));
        }
        if self.branch == Branch::Fixup {
            let (scaled, last): (&[&str], &str) = match self.block {
                BlockKind::Basic => (&["conv1"], "conv2"),
                BlockKind::Bottleneck => (&["conv1", "conv2"], "conv3"),
            };
            let base = plan.weights;
            for conv in scaled {
                plan = plan.with_rule(
                    Rule::path(format!("*.blocks.*.{conv}"), base).scaled(self.fixup_scale()),
                );
            }
            plan = plan
                .with_rule(Rule::path(format!("*.blocks.*.{last}"), Scheme::zeros()))
                .with_rule(Rule::path("*fc", Scheme::zeros()));
        }
        plan
    }

    /// Fixup's factor on the initial weights of a branch's inner layers: L^(−1/(2m−2)), with L
    /// residual branches of m weight layers (basic blocks: L^(−1/2); bottlenecks: L^(−1/4)).
    pub fn fixup_scale(&self) -> f64 {
        let (branches, layers) = (self.branches() as f64, self.branch_layers() as f64);
        branches.powf(-1.0 / (2.0 * layers - 2.0))
    }
}

impl PlainCnnConfig {
    /// The network with torchvision's initialisation (see [`ResNetConfig::init`]), seeded from
    /// the device's generator.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> PlainCnn {
        with_torchvision_plan(device, |plan, seed| self.init_with(device, plan, seed))
    }

    /// The network initialised by `plan` from `seed`, with the report.
    ///
    /// # Errors
    /// When a rule of `plan` gives a random scheme to a norm layer's γ or β.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init_with(
        &self,
        device: &Device,
        plan: &InitPlan,
        seed: u64,
    ) -> Result<(PlainCnn, InitReport), InitError> {
        plan.apply(self.build(device), seed)
    }
}

impl ModelConfig {
    /// The model with torchvision's initialisation (see [`ResNetConfig::init`]), seeded from the
    /// device's generator.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> Model {
        with_torchvision_plan(device, |plan, seed| self.init_with(device, plan, seed))
    }

    /// The model initialised by `plan` (plus `zero_init_residual`) from `seed`, with the report.
    /// Report paths start with the family (`ResNet.stem.conv.weight`, `PlainCnn.fc.bias`), as
    /// burn names the variants of [`Model`].
    ///
    /// # Errors
    /// When a rule of `plan` gives a random scheme to a norm layer's γ or β.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails.
    pub fn init_with(
        &self,
        device: &Device,
        plan: &InitPlan,
        seed: u64,
    ) -> Result<(Model, InitReport), InitError> {
        let (model, plan) = match self.family() {
            FamilyConfig::ResNet(config) => {
                (Model::ResNet(config.build(device)), config.init_plan(plan))
            }
            FamilyConfig::PlainCnn(config) => (Model::PlainCnn(config.build(device)), plan.clone()),
        };
        plan.apply(model, seed)
    }
}
