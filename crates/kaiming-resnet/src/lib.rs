//! ResNets for burn, built to be reused and to be initialised from outside.
//!
//! - [`ResNetConfig`]: the torchvision-layout ResNet-18/34/50/101/152 (v1.5 bottlenecks, option
//!   B projections), the CIFAR-10 ResNets of He et al. 2016 §4.2 (`6n + 2` layers, option A
//!   shortcuts), and the plain twins of both (`residual = false`). The architecture table is the
//!   configuration: block kind, blocks per stage, widths, stem.
//! - [`PlainCnnConfig`]: a deep plain ConvNet of any depth for the He et al. 2015 depth
//!   experiment.
//! - [`ModelName`] / [`ModelConfig`] / [`Model`]: every model by its command-line name
//!   (`resnet18`, `resnet56`, `plain20`, `plain-resnet50`, `plaincnn`, …) in one type.
//! - Public building blocks ([`BlockConfig`], [`BasicBlock`], [`Bottleneck`], [`Shortcut`],
//!   [`Stage`], [`Stem`]) and `forward_features` for other heads; `forward_trace` for
//!   per-layer signal diagnostics; analytic [`Complexity`] (parameters, multiply-adds).
//!
//! Every family has a `norm` option (batch norm or none): without normalisation the
//! initialisation decides whether a deep net trains at all.
//!
//! # Initialisation
//!
//! No block picks an initializer. `init(&device)` builds with burn's layer defaults and then
//! applies [`kaiming_init::InitPlan::torchvision`] (He normal fan_out for convolutions, γ = 1,
//! β = 0, PyTorch's default for the classifier), seeded from the device, so `device.seed(n)`
//! makes it reproducible. `init_with(&device, &plan, seed)` takes any plan and returns the
//! [`kaiming_init::InitReport`]. `zero_init_residual` adds a rule zeroing the last norm's γ of
//! every residual branch.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use kaiming_init::{InitPlan, Scheme};
//! use kaiming_resnet::{ModelConfig, ModelName};
//!
//! let device = Device::flex();
//! let config = ModelConfig::new("resnet20".parse::<ModelName>()?);
//! let plan = InitPlan::new("xavier".parse::<Scheme>()?);
//! let (model, report) = config.init_with(&device, &plan, 7)?;
//! assert_eq!(report.get("ResNet.fc.weight").unwrap().init, "xavier");
//!
//! let images = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
//! assert_eq!(model.forward(images).dims(), [2, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Reusing a block in your own model
//!
//! Blocks are ordinary burn modules. Build them from their config, hold them in your module, and
//! initialise the whole model with one plan:
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::{Device, Distribution, Tensor};
//! use kaiming_init::InitPlan;
//! use kaiming_resnet::{Block, BlockConfig, BlockKind, ShortcutKind, StemKind, Stem, Norm};
//!
//! /// A small regressor on 1-channel 28×28 images: a stem and two residual blocks.
//! #[derive(Module, Debug)]
//! struct Regressor {
//!     stem: Stem,
//!     blocks: Vec<Block>,
//!     head: Linear,
//! }
//!
//! impl Regressor {
//!     fn forward(&self, x: Tensor<4>) -> Tensor<2> {
//!         let x = self.blocks.iter().fold(self.stem.forward(x), |x, block| block.forward(x));
//!         self.head.forward(x.mean_dims(&[2, 3]).flatten(1, 3))
//!     }
//! }
//!
//! let device = Device::flex();
//! let net = Regressor {
//!     stem: StemKind::Cifar.init(1, 32, Norm::Batch, &device),
//!     blocks: vec![
//!         BlockConfig::new(BlockKind::Basic, 32, 32).init(&device),
//!         // Halve the resolution and double the width; the parameter-free shortcut of option A.
//!         BlockConfig::new(BlockKind::Basic, 32, 64)
//!             .with_stride(2)
//!             .with_shortcut(ShortcutKind::A)
//!             .init(&device),
//!     ],
//!     head: LinearConfig::new(64, 1).init(&device),
//! };
//! let (net, _report) = InitPlan::torchvision().apply(net, 0)?;
//!
//! let x = Tensor::<4>::random([4, 1, 28, 28], Distribution::Default, &device);
//! assert_eq!(net.forward(x).dims(), [4, 1]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod block;
pub mod branch;
mod cifar;
pub mod count;
pub mod error;
pub mod init;
pub mod lsuv;
pub mod norm;
mod observe;
pub mod plain;
pub mod quiet;
pub mod resnet;
pub mod shortcut;
pub mod spec;
pub mod stage;
pub mod stem;
pub mod torchvision;

use burn::tensor::Tensor;

pub use block::{BasicBlock, Block, BlockConfig, BlockKind, Bottleneck};
pub use branch::Branch;
pub use count::Complexity;
pub use error::ModelError;
pub use init::seed_from_device;
pub use lsuv::{LsuvConfig, LsuvLayer, LsuvReport};
pub use norm::Norm;
pub use plain::{PlainCnn, PlainCnnConfig, PlainLayer, PlainLayerShape};
pub use resnet::{ResNet, ResNetConfig};
pub use shortcut::{PadShortcut, Projection, Shortcut, ShortcutKind};
pub use spec::{FamilyConfig, Model, ModelConfig, ModelName};
pub use stage::{Stage, StageConfig};
pub use stem::{Stem, StemKind};
pub use torchvision::{
    LoadOptions, LoadReport, WeightsError, classifier_classes, export_weights, load_weights,
    weights_metadata,
};

/// Named activations in forward order, as `forward_trace` returns them: `(name, [b, c, h, w])`.
pub type Trace = Vec<(String, Tensor<4>)>;

/// A function `forward_hooked` calls with the name and output of every traced layer or block;
/// what it returns continues through the network. Recording gives `forward_trace`; adding a
/// zero tensor that requires gradients gives the gradient with respect to that output.
pub type Hook<'a> = dyn FnMut(&str, Tensor<4>) -> Tensor<4> + 'a;

/// `forward_trace` on top of `forward_hooked`.
pub(crate) fn record(forward: impl FnOnce(&mut Hook<'_>) -> Tensor<2>) -> (Tensor<2>, Trace) {
    let mut trace = Vec::new();
    let logits = forward(&mut |name, x| {
        trace.push((name.to_string(), x.clone()));
        x
    });
    (logits, trace)
}
