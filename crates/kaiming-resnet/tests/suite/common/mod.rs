//! Helpers shared by the integration tests: a visitor that lists a module's parameters by path.

#![allow(dead_code)] // each test binary uses a different subset

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// One float parameter (or running statistic) of a module.
#[derive(Debug, Clone)]
pub struct ParamInfo {
    /// Dotted path, e.g. `stages.0.blocks.1.Basic.bn2.gamma`.
    pub path: String,
    /// Container type of the layer holding it, e.g. `Struct:Conv2d`.
    pub layer: String,
    /// Number of elements.
    pub numel: usize,
}

impl ParamInfo {
    /// BatchNorm's running mean and variance are visited like parameters but are buffers.
    pub fn is_buffer(&self) -> bool {
        self.path.ends_with("running_mean") || self.path.ends_with("running_var")
    }
}

#[derive(Default)]
struct Lister {
    scope: Vec<(String, String)>,
    params: Vec<ParamInfo>,
}

impl ModuleVisitor for Lister {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.scope
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.scope.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self
            .scope
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(".");
        // The innermost scope is the parameter's field, entered by its layer's struct.
        let layer = self
            .scope
            .last()
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        self.params.push(ParamInfo {
            path,
            layer,
            numel: param.lazy_shape().num_elements(),
        });
    }
}

/// Every float parameter and buffer of `module`, in visiting order.
pub fn params<M: Module>(module: &M) -> Vec<ParamInfo> {
    let mut lister = Lister::default();
    module.visit(&mut lister);
    lister.params
}

/// Trainable parameters: `num_params()` without BatchNorm's running statistics.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    params(module)
        .iter()
        .filter(|p| !p.is_buffer())
        .map(|p| p.numel)
        .sum()
}

/// Number of convolutions (counted by their weights), optionally only those whose path
/// contains `within`.
pub fn conv_count<M: Module>(module: &M, within: &str) -> usize {
    params(module)
        .iter()
        .filter(|p| p.layer == "Struct:Conv2d" && p.path.ends_with(".weight"))
        .filter(|p| p.path.contains(within))
        .count()
}

/// The device's random generator is one per process (burn's flex backend keeps it in a static):
/// a test that seeds it and relies on what it then draws, and every test here that draws from
/// it, holds this, so that tests running beside each other cannot take each other's draws.
pub fn generator() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
