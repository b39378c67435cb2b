//! Initialisation comes from the init crate: torchvision's plan by default, any plan on request,
//! reproducible from the device seed, and `zero_init_residual` on the right γ only.

use crate::common;

use burn::tensor::Device;
use kaiming_init::{InitError, InitPlan, Rule, Scheme};
use kaiming_resnet::{
    Block, BlockKind, ModelConfig, ModelName, Norm, ResNet, ResNetConfig, Shortcut,
};

fn flat(model: &ResNet) -> Vec<f32> {
    model
        .stem
        .conv
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn init_is_reproducible_from_the_device_seed() {
    let _generator = common::generator();
    let device = Device::flex();
    let config = ResNetConfig::cifar(20).unwrap();
    device.seed(11);
    let a = config.init(&device);
    device.seed(11);
    let b = config.init(&device);
    device.seed(12);
    let c = config.init(&device);
    assert_eq!(flat(&a), flat(&b));
    assert_ne!(flat(&a), flat(&c));
}

#[test]
fn default_plan_is_torchvision() {
    let _generator = common::generator();
    let device = Device::flex();
    let config = ModelConfig::new(ModelName::ResNet(18)).with_num_classes(1000);
    let (_, report) = config
        .init_with(&device, &InitPlan::torchvision(), 5)
        .unwrap();
    // He normal, fan_out: std = √(2 / (out · k²)).
    let conv = report
        .get("ResNet.stages.3.blocks.1.Basic.conv2.weight")
        .unwrap();
    assert_eq!(conv.fan_out, Some(512 * 9));
    let std = conv.std.unwrap();
    assert!(
        (std - (2.0f64 / (512.0 * 9.0)).sqrt()).abs() < 1e-12,
        "{std}"
    );
    // Classifier as PyTorch: U(±1/√fan_in) for weight and bias.
    let fc = report.get("ResNet.fc.bias").unwrap();
    assert!((fc.bound.unwrap() - 1.0 / 512f64.sqrt()).abs() < 1e-12);
    assert_eq!(report.get("ResNet.stem.bn.gamma").unwrap().init, "ones");

    // The sampled weights follow the reported std.
    let net = ResNetConfig::resnet18().init(&device);
    let Block::Basic(block) = &net.stages[3].blocks[1] else {
        panic!("ResNet-18 has basic blocks")
    };
    let weights = block.conv2.weight.val();
    let sample_std = weights.var(0).mean().sqrt().into_scalar::<f32>() as f64;
    assert!(
        (sample_std / std - 1.0).abs() < 0.05,
        "{sample_std} vs {std}"
    );
}

#[test]
fn any_scheme_can_be_applied_and_errors_surface() {
    let _generator = common::generator();
    let device = Device::flex();
    let config = ModelConfig::new(ModelName::CifarPlain(20)).with_norm(Norm::None);
    let plan = InitPlan::new("xavier".parse::<Scheme>().unwrap());
    let (_, report) = config.init_with(&device, &plan, 0).unwrap();
    let conv = report
        .get("ResNet.stages.1.blocks.0.Basic.conv1.weight")
        .unwrap();
    assert_eq!(conv.init, "xavier");
    // Without norm, conv biases exist and get what the scheme says: zero.
    let bias = report
        .get("ResNet.stages.1.blocks.0.Basic.conv1.bias")
        .unwrap();
    assert_eq!(bias.init, "zeros");

    let bad = InitPlan::torchvision().with_rule(Rule::path("*.bn1.gamma", Scheme::he()));
    let err = ModelConfig::new(ModelName::CifarResNet(20))
        .init_with(&device, &bad, 0)
        .unwrap_err();
    assert!(matches!(err, InitError::NoFans { .. }));
}

#[test]
fn zero_init_residual_zeroes_the_last_gamma_of_each_branch() {
    let _generator = common::generator();
    let device = Device::flex();
    let basic = ResNetConfig::cifar(20)
        .unwrap()
        .with_shortcut(kaiming_resnet::ShortcutKind::B)
        .with_zero_init_residual(true);
    let (net, report) = basic
        .init_with(&device, &InitPlan::torchvision(), 1)
        .unwrap();
    let zeroed: Vec<_> = report
        .rows
        .iter()
        .filter(|row| row.path.ends_with("gamma") && row.init == "zeros")
        .map(|row| row.path.as_str())
        .collect();
    assert_eq!(zeroed.len(), 9);
    assert!(zeroed.iter().all(|path| path.ends_with("Basic.bn2.gamma")));
    for stage in &net.stages {
        for block in &stage.blocks {
            let Block::Basic(block) = block else { panic!() };
            let bn2 = block.bn2.as_ref().unwrap().gamma.val().abs().max();
            assert_eq!(bn2.into_scalar::<f32>(), 0.0);
            let bn1 = block.bn1.as_ref().unwrap().gamma.val().min();
            assert_eq!(bn1.into_scalar::<f32>(), 1.0);
            if let Some(Shortcut::Projection(projection)) = &block.shortcut {
                let bn = projection.bn.as_ref().unwrap().gamma.val().min();
                assert_eq!(bn.into_scalar::<f32>(), 1.0, "projection BN untouched");
            }
        }
    }

    let bottleneck = ResNetConfig::new(BlockKind::Bottleneck, vec![2, 1], vec![8, 16])
        .with_zero_init_residual(true);
    let (_, report) = bottleneck
        .init_with(&device, &InitPlan::torchvision(), 1)
        .unwrap();
    let zeroed: Vec<_> = report
        .rows
        .iter()
        .filter(|row| row.path.ends_with("gamma") && row.init == "zeros")
        .map(|row| row.path.clone())
        .collect();
    assert_eq!(zeroed.len(), 3);
    assert!(
        zeroed
            .iter()
            .all(|path| path.ends_with("Bottleneck.bn3.gamma"))
    );

    // A plain twin would lose its signal: the option leaves it alone.
    let plain = ResNetConfig::cifar(20)
        .unwrap()
        .plain()
        .with_zero_init_residual(true);
    let (_, report) = plain
        .init_with(&device, &InitPlan::torchvision(), 1)
        .unwrap();
    assert!(
        report
            .rows
            .iter()
            .all(|row| row.init != "zeros" || !row.path.ends_with("gamma"))
    );
}
