//! LSUV, layer-sequential unit-variance initialisation (Mishkin & Matas, ICLR 2016, "All you
//! need is a good init"): after any scheme, each convolution and the classifier, from the
//! input on, get their weights rescaled until their output's variance on one batch of training
//! images is 1 within a tolerance; biases start at zero. The paper starts from orthogonal
//! weights; any scheme works.
//!
//! The outputs are measured as the layers run ([`crate::observe`]), on the model in evaluation
//! mode so batch-norm running statistics are not moved; the scales found are then applied to the
//! model as given, keeping every parameter's id.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use burn::config::Config;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use crate::error::ModelError;
use crate::observe::observe;
use crate::spec::Model;

/// Settings of the LSUV pass.
#[derive(Config, Debug)]
pub struct LsuvConfig {
    /// How far from 1 a layer's output variance may stay.
    #[config(default = 0.1)]
    pub tolerance: f64,
    /// Rescalings per layer at most.
    #[config(default = 10)]
    pub max_iterations: usize,
}

/// What the pass did to one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LsuvLayer {
    /// The weight's path (`stages.0.blocks.1.conv2.weight`).
    pub path: String,
    /// The factor its initial weights were multiplied by in all.
    pub scale: f64,
    /// Rescalings done.
    pub iterations: usize,
    /// Its output's variance on the batch after the pass.
    pub variance: f64,
    /// Whether its output was constant on the batch (variance 0: a dead or zero-initialised
    /// layer, as Fixup's last layers are), so it was left as it was.
    pub dead: bool,
    /// Whether its output overflowed (an infinite or NaN variance, which no finite factor
    /// measures), so it was left as it was: a factor of 1/√∞ = 0 would zero the weight.
    pub overflowed: bool,
    /// Whether its output variance ended within the tolerance of 1; a live layer that did not
    /// needed more than `max_iterations` rescalings.
    pub converged: bool,
}

/// The layers in forward order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LsuvReport {
    /// One row per convolution and classifier.
    pub layers: Vec<LsuvLayer>,
}

impl LsuvReport {
    /// The layers whose output was constant, left as they were.
    pub fn dead(&self) -> impl Iterator<Item = &LsuvLayer> {
        self.layers.iter().filter(|layer| layer.dead)
    }

    /// The layers whose output overflowed, left as they were.
    pub fn overflowed(&self) -> impl Iterator<Item = &LsuvLayer> {
        self.layers.iter().filter(|layer| layer.overflowed)
    }

    /// The live layers whose variance did not reach the tolerance within the iterations.
    pub fn unconverged(&self) -> impl Iterator<Item = &LsuvLayer> {
        self.layers
            .iter()
            .filter(|layer| !layer.dead && !layer.overflowed && !layer.converged)
    }
}

impl fmt::Display for LsuvReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<40} {:>10} {:>10} {:>12}",
            "layer", "scale", "iterations", "variance"
        )?;
        for layer in &self.layers {
            let note = if layer.dead {
                "  constant output: left as it is"
            } else if layer.overflowed {
                "  output overflowed: left as it is"
            } else if !layer.converged {
                "  not within the tolerance after the last iteration"
            } else {
                ""
            };
            writeln!(
                f,
                "{:<40} {:>10.4} {:>10} {:>12.4}{note}",
                layer.path, layer.scale, layer.iterations, layer.variance
            )?;
        }
        Ok(())
    }
}

impl LsuvConfig {
    /// Runs LSUV on `model` with `images`, a batch of training images on the model's device
    /// without autodiff (the pass measures on `model.valid()`).
    ///
    /// # Errors
    /// [`ModelError::Invalid`] for a tolerance outside (0, 1) or no iterations; a layer whose
    /// output is constant is not an error but a row marked `dead` (it is never divided by).
    pub fn apply(
        &self,
        model: Model,
        images: Tensor<4>,
    ) -> Result<(Model, LsuvReport), ModelError> {
        if !(self.tolerance > 0.0 && self.tolerance < 1.0) || self.max_iterations == 0 {
            return Err(ModelError::Invalid(format!(
                "LSUV needs a tolerance in (0, 1) and at least one iteration (got {} and {})",
                self.tolerance, self.max_iterations
            )));
        }
        let paths = weight_paths(&model);
        let mut probe = zero_biases(model.valid());
        let variances = |probe: &Model| -> Vec<(ParamId, f64)> {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let sink = seen.clone();
            observe(
                move |id, variance| sink.borrow_mut().push((id, variance)),
                || probe.forward(images.clone()),
            );
            seen.take()
        };
        let order: Vec<ParamId> = variances(&probe).into_iter().map(|(id, _)| id).collect();
        let mut scales: HashMap<ParamId, f64> = HashMap::new();
        let mut report = LsuvReport::default();
        for id in order {
            let measure = |probe: &Model| {
                variances(probe)
                    .into_iter()
                    .find(|(seen, _)| *seen == id)
                    .map_or(0.0, |(_, variance)| variance)
            };
            let mut variance = measure(&probe);
            let overflowed = !variance.is_finite();
            let (mut scale, mut iterations) = (1.0, 0);
            // Only a finite, positive variance is rescaled towards 1.
            while variance.is_finite()
                && variance > 0.0
                && (variance - 1.0).abs() > self.tolerance
                && iterations < self.max_iterations
            {
                let factor = 1.0 / variance.sqrt();
                let scaled = scale_weight(probe.clone(), id, factor);
                let next = measure(&scaled);
                if !next.is_finite() {
                    // A factor that overflows the output is not taken.
                    break;
                }
                (probe, scale, variance) = (scaled, scale * factor, next);
                iterations += 1;
            }
            scales.insert(id, scale);
            report.layers.push(LsuvLayer {
                path: paths.get(&id).cloned().unwrap_or_default(),
                scale,
                iterations,
                variance,
                dead: variance == 0.0,
                overflowed,
                converged: (variance - 1.0).abs() <= self.tolerance,
            });
        }
        let model = zero_biases(model);
        let model = scales
            .into_iter()
            .fold(model, |model, (id, scale)| scale_weight(model, id, scale));
        Ok((model, report))
    }
}

/// The paths of the weights of every convolution and linear layer, by id.
fn weight_paths(model: &Model) -> HashMap<ParamId, String> {
    struct Paths {
        scope: Vec<String>,
        found: HashMap<ParamId, String>,
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.scope.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.scope.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.scope.last().is_some_and(|name| name == "weight") {
                self.found.insert(param.id, self.scope.join("."));
            }
        }
    }
    let mut paths = Paths {
        scope: Vec::new(),
        found: HashMap::new(),
    };
    model.visit(&mut paths);
    paths.found
}

/// Scopes of a parameter: `(name, container type)` from the outermost module in.
type Scope = Vec<(String, String)>;

/// Whether the innermost scope is the `field` of a convolution or linear layer: a layer's
/// struct enters each of its parameters as a scope of its own type.
fn layer_field(scope: &Scope, field: &str) -> bool {
    matches!(
        scope.last(),
        Some((name, layer)) if name == field
            && matches!(layer.as_str(), "Struct:Conv2d" | "Struct:Linear")
    )
}

/// `old`'s parameter given the values `new`, as a leaf that requires a gradient where `old` did.
fn replaced<const D: usize>(old: &Tensor<D>, new: Tensor<D>) -> Tensor<D> {
    let new = new.detach();
    if old.is_require_grad() {
        new.require_grad()
    } else {
        new
    }
}

/// The model with every convolution's and linear layer's bias set to zero.
fn zero_biases(model: Model) -> Model {
    struct Zero {
        scope: Scope,
    }
    impl ModuleMapper for Zero {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.scope
                .push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.scope.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if layer_field(&self.scope, "bias") {
                param.map(|bias| replaced(&bias, bias.zeros_like()))
            } else {
                param
            }
        }
    }
    model.map(&mut Zero { scope: Vec::new() })
}

/// The model with the weight `id` multiplied by `factor`.
fn scale_weight(model: Model, id: ParamId, factor: f64) -> Model {
    struct Scale {
        id: ParamId,
        factor: f64,
    }
    impl ModuleMapper for Scale {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.id == self.id {
                let factor = self.factor;
                param.map(|weight| replaced(&weight, weight.clone().mul_scalar(factor)))
            } else {
                param
            }
        }
    }
    model.map(&mut Scale { id, factor })
}
