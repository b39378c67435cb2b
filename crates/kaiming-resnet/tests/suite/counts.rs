//! Analytic parameter and multiply-add counts against torchvision's published figures and
//! against the modules actually built.

use crate::common;

use burn::tensor::Device;
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{ModelConfig, ModelName, Norm, PlainCnnConfig, ResNetConfig, ShortcutKind};

/// Builds with a constant plan: materialising zeros is cheap, and only shapes matter here.
fn built_params(config: &ResNetConfig) -> usize {
    let (model, _) = config
        .init_with(&Device::flex(), &InitPlan::new(Scheme::zeros()), 0)
        .unwrap();
    common::trainable_params(&model)
}

#[test]
fn imagenet_resnets_match_torchvision_parameter_counts() {
    let _generator = common::generator();
    // torchvision.models.resnetXX(num_classes=1000), sum(p.numel() for p in m.parameters()).
    let expected = [
        (18, 11_689_512),
        (34, 21_797_672),
        (50, 25_557_032),
        (101, 44_549_160),
        (152, 60_192_808),
    ];
    for (depth, params) in expected {
        let config = ResNetConfig::imagenet(depth).unwrap();
        assert_eq!(config.num_params(), params, "analytic, ResNet-{depth}");
        assert_eq!(built_params(&config), params, "built, ResNet-{depth}");
    }
}

#[test]
fn cifar_resnets_match_the_paper_with_option_a() {
    let _generator = common::generator();
    let expected = [
        (20, 269_722),
        (32, 464_154),
        (44, 658_586),
        (56, 853_018),
        (110, 1_727_962),
    ];
    for (depth, params) in expected {
        let config = ResNetConfig::cifar(depth).unwrap();
        assert_eq!(config.num_params(), params, "analytic, ResNet-{depth}");
        assert_eq!(built_params(&config), params, "built, ResNet-{depth}");
    }
    // The paper's 19.4M for ResNet-1202.
    let params = ResNetConfig::cifar(1202).unwrap().num_params();
    assert_eq!(params / 100_000, 194, "{params}");
}

#[test]
fn option_b_adds_the_projections() {
    let _generator = common::generator();
    let config = ResNetConfig::cifar(20)
        .unwrap()
        .with_shortcut(ShortcutKind::B);
    // Two 1×1 projections with BN: 16·32 + 2·32 and 32·64 + 2·64.
    assert_eq!(config.num_params(), 272_474);
    assert_eq!(built_params(&config), 272_474);
}

#[test]
fn without_norm_convolutions_get_biases_and_counts_still_match() {
    let _generator = common::generator();
    for config in [
        ResNetConfig::cifar(20).unwrap(),
        ResNetConfig::resnet18(),
        ResNetConfig::resnet50(),
        ResNetConfig::cifar(20).unwrap().plain(),
    ] {
        let config = config.with_norm(Norm::None);
        assert_eq!(config.num_params(), built_params(&config), "{config}");
    }
    // ResNet-20 without BN: every BN (γ, β) pair becomes one conv bias.
    let with_bn = ResNetConfig::cifar(20).unwrap();
    let bn_params: usize = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64);
    assert_eq!(
        with_bn.clone().with_norm(Norm::None).num_params(),
        with_bn.num_params() - bn_params / 2
    );
}

#[test]
fn every_named_model_counts_what_it_builds() {
    let _generator = common::generator();
    let device = Device::flex();
    let zeros = InitPlan::new(Scheme::zeros());
    for name in ModelName::all() {
        // 1202 layers cost seconds to build and tell nothing the other depths do not.
        if matches!(
            name,
            ModelName::CifarResNet(1202) | ModelName::CifarPlain(1202)
        ) {
            continue;
        }
        for norm in Norm::ALL {
            let config = ModelConfig::new(name).with_norm(norm);
            let (model, _) = config.init_with(&device, &zeros, 0).unwrap();
            assert_eq!(
                config.num_params(),
                common::trainable_params(&model),
                "{name} norm={norm}"
            );
        }
    }
}

#[test]
fn plaincnn_default_has_30_weight_layers() {
    let _generator = common::generator();
    let config = PlainCnnConfig::new();
    let layers = config.layers();
    assert_eq!(layers.len() + 1, 30);
    assert_eq!(layers.iter().filter(|l| l.stride == 2).count(), 2);
    assert_eq!(layers.last().unwrap().out_channels, 64);
    // 29 convolutions split 10 + 10 + 9.
    assert_eq!(layers[10].stride, 2);
    assert_eq!(layers[20].stride, 2);
}

fn gmacs(config: &ResNetConfig, size: usize) -> f64 {
    config.complexity([size, size]).macs as f64 / 1e9
}

fn assert_within(actual: f64, published: f64, tolerance: f64, what: &str) {
    let error = (actual - published).abs() / published;
    assert!(
        error <= tolerance,
        "{what}: {actual:.4} vs published {published} ({:.2} % off)",
        error * 100.0
    );
}

#[test]
fn multiply_adds_match_published_figures_within_two_percent() {
    let _generator = common::generator();
    // torchvision's model cards ("GFLOPS", counted as multiply-adds) at 224×224.
    let published = [
        (18, 1.814),
        (34, 3.664),
        (50, 4.089),
        (101, 7.801),
        (152, 11.514),
    ];
    for (depth, figure) in published {
        let config = ResNetConfig::imagenet(depth).unwrap();
        assert_within(
            gmacs(&config, 224),
            figure,
            0.02,
            &format!("ResNet-{depth}"),
        );
    }
    // The figures quoted in the issue.
    assert_within(
        gmacs(&ResNetConfig::resnet18(), 224),
        1.82,
        0.02,
        "ResNet-18",
    );
    assert_within(
        gmacs(&ResNetConfig::resnet50(), 224),
        4.1,
        0.02,
        "ResNet-50",
    );
    // ResNet-20 on CIFAR: the commonly quoted 41 M multiply-adds.
    let resnet20 = ResNetConfig::cifar(20).unwrap();
    assert_within(gmacs(&resnet20, 32) * 1e3, 41.0, 0.02, "ResNet-20");
}

#[test]
fn multiply_adds_follow_the_input_size() {
    let _generator = common::generator();
    let config = ResNetConfig::cifar(56).unwrap();
    let fc = (64 * 10) as u64;
    let small = config.complexity([32, 32]).macs - fc;
    let large = config.complexity([64, 64]).macs - fc;
    assert_eq!(large, 4 * small, "convolutions scale with the pixel count");
    // Odd sizes follow the same floor arithmetic as the layers.
    let odd = ResNetConfig::resnet18().complexity([225, 225]).macs;
    assert!(odd > ResNetConfig::resnet18().complexity([224, 224]).macs);
    assert_eq!(
        ResNetConfig::resnet18().complexity([32, 32]).params,
        11_689_512
    );
}
