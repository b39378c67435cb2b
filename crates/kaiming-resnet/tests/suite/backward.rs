//! A backward pass through every family gives every trainable parameter a finite, non-zero
//! gradient (on the flex backend with autodiff, batch norm in training mode).

use crate::common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Distribution, Gradients, Int, Tensor};
use kaiming_resnet::{
    BlockKind, Model, ModelConfig, ModelName, Norm, ResNetConfig, ShortcutKind, StemKind,
};

/// Collects `(path, problem)` for parameters whose gradient is missing, not finite or all zero.
struct GradCheck<'a> {
    grads: &'a Gradients,
    scope: Vec<String>,
    checked: usize,
    problems: Vec<String>,
}

impl ModuleVisitor for GradCheck<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.scope.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.scope.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.scope.join(".");
        if path.ends_with("running_mean") || path.ends_with("running_var") {
            return;
        }
        self.checked += 1;
        let problem = match param.val().grad(self.grads) {
            None => Some("no gradient"),
            Some(grad) if !grad.clone().is_finite().all().into_scalar::<bool>() => {
                Some("not finite")
            }
            Some(grad) if grad.clone().abs().max().into_scalar::<f32>() == 0.0 => Some("all zero"),
            Some(_) => None,
        };
        if let Some(problem) = problem {
            self.problems.push(format!("{path}: {problem}"));
        }
    }
}

fn check_backward(model: Model, size: usize, what: &str) {
    let device = Device::flex().autodiff();
    device.seed(3);
    let batch = 4;
    let x = Tensor::<4>::random([batch, 3, size, size], Distribution::Default, &device);
    let targets = Tensor::<1, Int>::from_data([0, 1, 2, 3], &device);
    let logits = model.forward(x);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, targets);
    let grads = loss.backward();

    let mut check = GradCheck {
        grads: &grads,
        scope: Vec::new(),
        checked: 0,
        problems: Vec::new(),
    };
    model.visit(&mut check);
    assert_eq!(
        check.checked,
        common::params(&model)
            .iter()
            .filter(|p| !p.is_buffer())
            .count()
    );
    assert!(check.problems.is_empty(), "{what}: {:#?}", check.problems);
}

fn named(name: &str) -> ModelConfig {
    ModelConfig::new(name.parse::<ModelName>().unwrap())
}

#[test]
fn cifar_resnets_and_plain_twins_get_gradients_everywhere() {
    let _generator = common::generator();
    let device = Device::flex().autodiff();
    for norm in Norm::ALL {
        for name in ["resnet20", "plain20"] {
            let config = named(name).with_norm(norm);
            check_backward(config.init(&device), 32, &format!("{config}"));
        }
        let option_b = named("resnet20")
            .with_norm(norm)
            .with_shortcut(Some(ShortcutKind::B));
        check_backward(option_b.init(&device), 32, "resnet20 option B");
    }
}

#[test]
fn imagenet_layout_blocks_get_gradients_everywhere() {
    let _generator = common::generator();
    let device = Device::flex().autodiff();
    // Reduced widths and depths keep this fast; the block code is the same as in ResNet-18/50.
    for block in [BlockKind::Basic, BlockKind::Bottleneck] {
        for norm in Norm::ALL {
            for stem in StemKind::ALL {
                for residual in [true, false] {
                    let config = ResNetConfig::new(block, vec![1, 2], vec![8, 16])
                        .with_num_classes(4)
                        .with_stem(stem)
                        .with_norm(norm)
                        .with_residual(residual);
                    let what = format!("{block} {stem} {norm} residual={residual}");
                    check_backward(Model::ResNet(config.init(&device)), 32, &what);
                }
            }
        }
    }
}

#[test]
fn plaincnn_gets_gradients_everywhere() {
    let _generator = common::generator();
    let device = Device::flex().autodiff();
    for norm in Norm::ALL {
        let config = named("plaincnn")
            .with_depth(10)
            .with_width(8)
            .with_norm(norm);
        check_backward(config.init(&device), 16, &format!("plaincnn {norm}"));
    }
}

#[test]
fn resnet18_backward_at_full_width() {
    let _generator = common::generator();
    let device = Device::flex().autodiff();
    let config = named("resnet18").with_stem(StemKind::Cifar);
    check_backward(config.init(&device), 16, "resnet18 cifar stem");
}
