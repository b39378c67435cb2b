//! He (Kaiming) initialisation, and the schemes it is compared with, for any burn module.
//!
//! ReLU zeroes half of its input, so E[relu(x)²] = Var(x)/2: a layer initialised with
//! Var(W) = 1/fan_in halves the signal's second moment, and after L layers it has shrunk like
//! (1/2)^L. He et al. (2015) set Var(W) = 2/fan_in, which keeps it constant through depth.
//!
//! burn's own `nn::Initializer` takes raw gains (He-for-ReLU needs `gain: √2` by hand), has no
//! fan_avg for He, no truncated normal and no LeCun, runs biases through the weight's
//! initializer, and cannot re-initialise a module that already exists. This crate adds:
//!
//! - [`Scheme`]: He/Kaiming (any [`FanMode`] × [`Distribution`] × [`Nonlinearity`]),
//!   Xavier/Glorot, LeCun, orthogonal, PyTorch's default and constants, each with a short
//!   name (`he`, `he-uniform`, `he-fan-out`, `he-trunc`, `xavier`, `xavier-uniform`, `lecun`,
//!   `orthogonal`, `torch-default`, `zeros`) that parses, prints and serialises;
//! - [`Fans`] computed from burn's weight layouts (see [`fan`] for the conventions);
//! - [`InitPlan`]: a scheme plus [`Rule`]s by layer kind or path glob, applied to any existing
//!   module with [`InitPlan::apply`], returning an [`InitReport`] to audit;
//! - [`Scheme::to_burn_initializer`] where burn can express a scheme itself.
//!
//! # Example
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::conv::{Conv2d, Conv2dConfig};
//! use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
//! use burn::tensor::Device;
//! use kaiming_init::{InitPlan, Rule, Scheme};
//!
//! #[derive(Module, Debug)]
//! struct Net {
//!     conv: Conv2d,
//!     bn: BatchNorm,
//!     fc: Linear,
//! }
//!
//! let device = Device::flex();
//! let net = Net {
//!     conv: Conv2dConfig::new([3, 16], [3, 3]).init(&device),
//!     bn: BatchNormConfig::new(16).init(&device),
//!     fc: LinearConfig::new(16, 10).init(&device),
//! };
//!
//! // He normal (Var(W) = 2/fan_in) everywhere, but a zero classifier.
//! let plan = InitPlan::new("he".parse::<Scheme>().unwrap()).with_rule(Rule::path("fc", Scheme::zeros()));
//! let (net, report) = plan.apply(net, 42).unwrap();
//! println!("{report}");
//!
//! let conv = report.get("conv.weight").unwrap();
//! assert_eq!(conv.fan_in, Some(3 * 3 * 3));
//! assert!((conv.std.unwrap() - (2.0f64 / 27.0).sqrt()).abs() < 1e-12);
//! assert_eq!(report.get("fc.weight").unwrap().init, "zeros");
//! assert_eq!(net.fc.weight.val().abs().max().into_scalar::<f32>(), 0.0);
//! ```

pub mod apply;
mod burn_initializer;
pub mod error;
pub mod fan;
pub mod nonlinearity;
pub mod plan;
pub mod report;
pub mod sample;
pub mod scheme;

pub use error::{InitError, NotExpressible, ParseError};
pub use fan::{FanMode, Fans, LayerKind};
pub use nonlinearity::Nonlinearity;
pub use plan::{InitPlan, Rule, Target};
pub use report::{InitReport, ReportRow};
pub use scheme::{Distribution, Fill, Scheme};
