//! Re-initialising an existing module through burn's `ModuleMapper`.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::InitError;
use crate::fan::{Fans, LayerKind};
use crate::plan::InitPlan;
use crate::report::{InitReport, KEPT, ReportRow};
use crate::sample::sample;
use crate::scheme::{Fill, Scheme};

impl InitPlan {
    /// Re-initialises every parameter of `module` the plan covers and reports what it did.
    ///
    /// Works on any burn module, built by this project or not: layers are recognised by the
    /// container types burn's `ModuleMapper` reports (`Struct:Linear`, `Struct:Conv2d`, …), and
    /// parameters of any other layer are left bit-identical. Parameter ids are kept, so an
    /// optimizer created afterwards sees the same parameters. The same `seed` gives the same
    /// values on every backend (they are drawn on the host, see [`crate::sample`]).
    ///
    /// # Errors
    /// [`InitError::NoFans`] when a rule gives a random scheme to a norm layer's γ or β; the
    /// module is not returned then, since it would be half re-initialised.
    pub fn apply<M: Module>(&self, module: M, seed: u64) -> Result<(M, InitReport), InitError> {
        let mut mapper = Reinit {
            plan: self,
            rng: ChaCha8Rng::seed_from_u64(seed),
            scope: Vec::new(),
            layer_fans: None,
            report: InitReport::default(),
            error: None,
        };
        let module = module.map(&mut mapper);
        match mapper.error {
            Some(error) => Err(error),
            None => Ok((module, mapper.report)),
        }
    }
}

/// The mapper behind [`InitPlan::apply`].
struct Reinit<'a> {
    plan: &'a InitPlan,
    rng: ChaCha8Rng,
    /// `(name, container type)` of every module entered, outermost first.
    scope: Vec<(String, String)>,
    /// Path and fans of the last weight seen, for the bias of the same layer (burn declares
    /// `weight` before `bias` in every layer it ships).
    layer_fans: Option<(String, Fans)>,
    report: InitReport,
    error: Option<InitError>,
}

/// What to do with one parameter.
struct Decision {
    fill: Option<Fill>,
    init: String,
    fans: Option<Fans>,
}

impl Decision {
    fn keep(fans: Option<Fans>) -> Self {
        Decision {
            fill: None,
            init: KEPT.to_string(),
            fans,
        }
    }
}

impl Reinit<'_> {
    fn decide(
        &mut self,
        kind: LayerKind,
        layer_path: &str,
        name: &str,
        shape: &[usize],
    ) -> Decision {
        let param_path = format!("{layer_path}.{name}");
        let (rule, scale) = match self.plan.scheme_for(kind, &param_path) {
            Some((scheme, scale)) => (Some(scheme), scale),
            None => (None, 1.0),
        };
        if kind.is_norm() {
            let default = match name {
                "gamma" => 1.0,
                "beta" => 0.0,
                // Running statistics are reset to those of a fresh layer, whatever the rules.
                "running_mean" => return constant(0.0, None),
                "running_var" => return constant(1.0, None),
                _ => return Decision::keep(None),
            };
            return match rule.unwrap_or(Scheme::Constant(default)) {
                Scheme::Constant(value) => constant(value * scale, None),
                scheme => {
                    self.error.get_or_insert(InitError::NoFans {
                        path: param_path,
                        layer: kind.to_string(),
                        scheme: scheme.to_string(),
                    });
                    Decision::keep(None)
                }
            };
        }

        let scheme = rule.unwrap_or(self.plan.weights);
        // The report names a rescaled scheme with its factor: `he × 0.1361`.
        let named = |scheme: String| {
            if scale == 1.0 {
                scheme
            } else {
                format!("{scheme} × {scale:.4}")
            }
        };
        match name {
            "weight" => match Fans::of(kind, shape) {
                Some(fans) => {
                    self.layer_fans = Some((layer_path.to_string(), fans));
                    let fill = scheme.weight_fill(fans).scaled(scale);
                    let init = match fill {
                        Fill::Constant(value) => Scheme::Constant(value).to_string(),
                        _ => named(scheme.to_string()),
                    };
                    Decision {
                        fill: Some(fill),
                        init,
                        fans: Some(fans),
                    }
                }
                None => Decision::keep(None),
            },
            "bias" => match &self.layer_fans {
                Some((path, fans)) if path == layer_path => {
                    let fill = scheme.bias_fill(*fans).scaled(scale);
                    let init = match fill {
                        Fill::Constant(value) => Scheme::Constant(value).to_string(),
                        _ => named(scheme.to_string()),
                    };
                    Decision {
                        fill: Some(fill),
                        init,
                        fans: Some(*fans),
                    }
                }
                _ => Decision::keep(None),
            },
            _ => Decision::keep(None),
        }
    }
}

fn constant(value: f64, fans: Option<Fans>) -> Decision {
    Decision {
        fill: Some(Fill::Constant(value)),
        init: Scheme::Constant(value).to_string(),
        fans,
    }
}

impl ModuleMapper for Reinit<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.scope
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.scope.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let shape = param.lazy_shape().to_vec();
        let path = self
            .scope
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(".");
        // The innermost scope is the parameter's own field, entered by its layer's struct.
        let (name, kind) = match self.scope.last() {
            Some((name, container)) => (name.clone(), LayerKind::from_container_type(container)),
            None => (String::new(), None),
        };
        let layer_path = path
            .rsplit_once('.')
            .map_or(String::new(), |(layer, _)| layer.to_string());

        let decision = match kind {
            Some(kind) => self.decide(kind, &layer_path, &name, &shape),
            None => Decision::keep(None),
        };
        self.report.rows.push(ReportRow {
            path,
            layer: kind,
            shape: shape.clone(),
            fan_in: decision.fans.map(|fans| fans.fan_in),
            fan_out: decision.fans.map(|fans| fans.fan_out),
            init: decision.init,
            std: decision.fill.and_then(|fill| fill.std()),
            bound: decision.fill.and_then(|fill| fill.bound()),
        });

        let Some(fill) = decision.fill else {
            return param;
        };
        let values = sample(fill, &shape, &mut self.rng);
        param.map(|old| {
            let fresh = Tensor::<D>::from_data(
                TensorData::new(values, shape),
                (&old.device(), old.dtype()),
            );
            if old.is_require_grad() {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}
