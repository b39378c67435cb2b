//! Plans: which scheme each parameter of a module gets.

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use crate::fan::{FanMode, LayerKind};
use crate::nonlinearity::Nonlinearity;
use crate::scheme::{Distribution, Scheme};

/// What a rule applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every layer of this kind.
    Layer(LayerKind),
    /// Parameters whose dotted path (`layer1.0.bn2.gamma`), or the path of any module holding
    /// them (`layer1.0.bn2`, `layer1`), matches this glob: `*` matches any run of characters,
    /// dots included, and `?` one character. So `fc` covers `fc.weight` and `fc.bias`.
    Path(String),
}

/// An override of the plan's default for some parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Which parameters the rule covers.
    pub target: Target,
    /// The scheme they get. On a norm layer's γ or β only a constant is meaningful.
    pub scheme: Scheme,
    /// A factor on every value the scheme gives (its standard deviation, orthogonal gain or
    /// constant): 1 but where a method rescales a scheme, as Fixup scales He by L^(−1/(2m−2)).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

fn is_one(scale: &f64) -> bool {
    *scale == 1.0
}

impl Rule {
    /// A rule for every layer of one kind, e.g. `Rule::layer(LayerKind::Linear, Scheme::TorchDefault)`.
    pub fn layer(kind: LayerKind, scheme: Scheme) -> Self {
        Rule {
            target: Target::Layer(kind),
            scheme,
            scale: 1.0,
        }
    }

    /// A rule for the parameters matching a path glob, e.g. `Rule::path("fc", Scheme::zeros())`
    /// or `Rule::path("*.bn2.gamma", Scheme::zeros())`.
    pub fn path(pattern: impl Into<String>, scheme: Scheme) -> Self {
        Rule {
            target: Target::Path(pattern.into()),
            scheme,
            scale: 1.0,
        }
    }

    /// The rule with what its scheme gives multiplied by `factor`.
    pub fn scaled(mut self, factor: f64) -> Self {
        self.scale *= factor;
        self
    }

    fn matches(&self, kind: LayerKind, param_path: &str) -> bool {
        match &self.target {
            Target::Layer(target) => *target == kind,
            Target::Path(pattern) => {
                let pattern = WildMatch::new(pattern);
                let ancestors = param_path
                    .match_indices('.')
                    .map(|(end, _)| &param_path[..end]);
                ancestors
                    .chain([param_path])
                    .any(|path| pattern.matches(path))
            }
        }
    }
}

/// A complete initialisation plan: a default scheme for the weights of every `Linear` and
/// convolution, plus rules that override it.
///
/// Without rules: weights get `weights`; biases get what that scheme says (zero, except
/// PyTorch's default); norm layers get γ = 1, β = 0 and running mean 0, running variance 1.
/// Rules are checked in order and the **last** matching rule wins, so later rules refine
/// earlier ones. Parameters of layers the crate does not know are left as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitPlan {
    /// Scheme for `Linear` and convolution weights not covered by a rule.
    pub weights: Scheme,
    /// Overrides, the last match winning.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl InitPlan {
    /// A plan giving every `Linear` and convolution the scheme.
    pub fn new(weights: Scheme) -> Self {
        InitPlan {
            weights,
            rules: Vec::new(),
        }
    }

    /// torchvision's ResNet initialisation: convolutions He normal with fan_out and ReLU gain
    /// (`kaiming_normal_(mode="fan_out", nonlinearity="relu")`), BN γ = 1, β = 0, and the
    /// classifier `Linear` left at PyTorch's default.
    pub fn torchvision() -> Self {
        InitPlan::new(Scheme::He {
            distribution: Distribution::Normal,
            mode: FanMode::FanOut,
            nonlinearity: Nonlinearity::Relu,
        })
        .with_rule(Rule::layer(LayerKind::Linear, Scheme::TorchDefault))
    }

    /// The plan with one more rule, which takes precedence over the earlier ones.
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The scheme and scale for a parameter of a layer: the last matching rule's, if any.
    pub(crate) fn scheme_for(&self, kind: LayerKind, param_path: &str) -> Option<(Scheme, f64)> {
        self.rules
            .iter()
            .rev()
            .find(|rule| rule.matches(kind, param_path))
            .map(|rule| (rule.scheme, rule.scale))
    }
}
