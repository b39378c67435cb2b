//! Shapes, shortcuts, plain twins, traces and the deep models, on the flex backend in inference
//! mode (batch norm uses its running statistics, so batches of one are fine).

use crate::common;

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData, Tolerance};
use kaiming_resnet::{
    ModelConfig, ModelName, Norm, PadShortcut, PlainCnnConfig, ResNetConfig, Shortcut,
    ShortcutKind, StemKind,
};

fn images(batch: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::random([batch, 3, size, size], Distribution::Default, device)
}

fn model(name: &str) -> ModelConfig {
    ModelConfig::new(name.parse::<ModelName>().unwrap())
}

#[test]
fn output_shapes_at_32_and_224() {
    let _generator = common::generator();
    let device = Device::flex();
    device.seed(1);
    let cases = [
        (model("resnet20"), 32, 10, 64),
        (model("plain20"), 32, 10, 64),
        (model("resnet18").with_stem(StemKind::Cifar), 32, 10, 512),
        (model("resnet18"), 32, 10, 512),
        (model("resnet18").with_num_classes(1000), 224, 1000, 512),
        (model("resnet50").with_num_classes(1000), 224, 1000, 2048),
        (
            model("plain-resnet34").with_stem(StemKind::Cifar),
            32,
            10,
            512,
        ),
        (model("resnet20").with_norm(Norm::None), 32, 10, 64),
        (model("plaincnn").with_depth(12).with_width(8), 32, 10, 32),
        (model("resnet32"), 224, 10, 64),
    ];
    for (config, size, classes, features) in cases {
        let net = config.init(&device);
        let x = images(1, size, &device);
        assert_eq!(net.forward(x.clone()).dims(), [1, classes], "{config}");
        assert_eq!(net.forward_features(x).dims(), [1, features], "{config}");
    }
    // A batch of several, and odd sizes, where option A's subsample must meet the strided conv.
    let net = model("resnet20").init(&device);
    assert_eq!(net.forward(images(3, 33, &device)).dims(), [3, 10]);
}

#[test]
fn option_a_is_the_hand_computed_padded_subsample() {
    let _generator = common::generator();
    let device = Device::flex();
    // x[0, c, i, j] = 16c + 4i + j.
    let x = Tensor::<1, Int>::arange(0..32, &device)
        .float()
        .reshape([1, 2, 4, 4]);
    let y = PadShortcut::new(2, 4, 2).forward(x);
    let expected = TensorData::from([[
        [[0.0f32, 2.0], [8.0, 10.0]],
        [[16.0, 18.0], [24.0, 26.0]],
        [[0.0, 0.0], [0.0, 0.0]],
        [[0.0, 0.0], [0.0, 0.0]],
    ]]);
    y.into_data().assert_eq(&expected, true);

    // Odd sizes keep the first pixel of every stride-2 window: 5 → 3, like a 3×3/2 conv.
    let odd = Tensor::<4>::ones([1, 1, 5, 5], &device);
    assert_eq!(PadShortcut::new(1, 1, 2).forward(odd).dims(), [1, 1, 3, 3]);

    // Identity where the shape holds, whatever the option.
    for kind in [ShortcutKind::A, ShortcutKind::B] {
        let shortcut = Shortcut::new(kind, 16, 16, 1, Norm::Batch, &device);
        assert!(matches!(shortcut, Shortcut::Identity(_)));
    }
    let b = Shortcut::new(ShortcutKind::B, 16, 32, 2, Norm::Batch, &device);
    assert!(matches!(b, Shortcut::Projection(_)));
}

#[test]
fn option_a_inside_a_network_carries_the_block_input() {
    let _generator = common::generator();
    // With zero_init_residual every residual branch starts at zero (γ = β = 0 and fresh running
    // statistics), so a stage's first block outputs relu(shortcut(x)) = shortcut(x) for x ≥ 0.
    let device = Device::flex();
    let net = ResNetConfig::cifar(20)
        .unwrap()
        .with_zero_init_residual(true)
        .init(&device);
    let (_, trace) = net.forward_trace(images(2, 32, &device));
    let get = |name: &str| trace.iter().find(|(n, _)| n == name).unwrap().1.clone();
    for (before, after, in_c, out_c) in [
        ("stages.0.blocks.2", "stages.1.blocks.0", 16, 32),
        ("stages.1.blocks.2", "stages.2.blocks.0", 32, 64),
    ] {
        let expected = PadShortcut::new(in_c, out_c, 2).forward(get(before));
        get(after)
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());
    }
}

#[test]
fn plain_twins_have_the_same_layers_minus_shortcuts() {
    let _generator = common::generator();
    let device = Device::flex();
    let pairs = [
        ("resnet20", "plain20"),
        ("resnet56", "plain56"),
        ("resnet18", "plain-resnet18"),
        ("resnet50", "plain-resnet50"),
    ];
    for (residual, plain) in pairs {
        let residual = model(residual).init(&device);
        let plain = model(plain).init(&device);
        let shortcut_convs = common::conv_count(&residual, ".shortcut.");
        assert_eq!(common::conv_count(&plain, ".shortcut."), 0);
        assert_eq!(
            common::conv_count(&residual, "") - shortcut_convs,
            common::conv_count(&plain, "")
        );
        let shortcut_params: usize = common::params(&residual)
            .iter()
            .filter(|p| p.path.contains(".shortcut.") && !p.is_buffer())
            .map(|p| p.numel)
            .sum();
        assert_eq!(
            common::trainable_params(&residual) - shortcut_params,
            common::trainable_params(&plain)
        );
    }
    // Option A has no shortcut parameters at all: plain-20 is exactly as large as ResNet-20.
    let resnet20 = ResNetConfig::cifar(20).unwrap();
    assert_eq!(resnet20.num_params(), resnet20.clone().plain().num_params());
    // The torchvision layout has 3 projections (ResNet-18) / 4 (ResNet-50).
    let resnet18 = model("resnet18").init(&device);
    assert_eq!(common::conv_count(&resnet18, ".shortcut."), 3);
    assert_eq!(common::conv_count(&resnet18, ""), 20);
}

#[test]
fn forward_trace_names_every_block_in_order() {
    let _generator = common::generator();
    let device = Device::flex();
    let x = images(2, 32, &device);

    let net = model("resnet20").init(&device);
    let (logits, trace) = net.forward_trace(x.clone());
    let names: Vec<_> = trace.iter().map(|(name, _)| name.as_str()).collect();
    let mut expected = vec!["stem".to_string()];
    for stage in 0..3 {
        for block in 0..3 {
            expected.push(format!("stages.{stage}.blocks.{block}"));
        }
    }
    assert_eq!(names, expected);
    assert_eq!(trace[0].1.dims(), [2, 16, 32, 32]);
    assert_eq!(trace[9].1.dims(), [2, 64, 8, 8]);
    logits
        .into_data()
        .assert_approx_eq::<f32>(&net.forward(x.clone()).into_data(), Tolerance::default());

    let net = model("resnet50").with_stem(StemKind::Cifar).init(&device);
    assert_eq!(net.forward_trace(x.clone()).1.len(), 1 + 3 + 4 + 6 + 3);

    let net = model("plaincnn").init(&device);
    let (_, trace) = net.forward_trace(x);
    assert_eq!(trace.len(), 29, "one entry per conv + relu layer");
    assert_eq!(trace[0].0, "layers.0");
    assert_eq!(trace[28].0, "layers.28");
    assert_eq!(trace[28].1.dims(), [2, 64, 8, 8]);
    assert_eq!(
        PlainCnnConfig::new().layers().len(),
        trace.len(),
        "trace and layer table agree"
    );
}

/// The deepest models' logits through the kernels equal those through burn's own operations
/// (each layer of both paths is tested against burn elsewhere; this checks the whole chain of
/// 152 and 110 layers, where a wrong stage or block count would also change the shape).
#[test]
fn deep_models_run_a_forward_pass() {
    let _generator = common::generator();
    let device = Device::flex();
    for (name, classes, side, batch) in [("resnet152", 1000, 64, 1), ("resnet110", 10, 32, 2)] {
        let net = model(name).with_num_classes(classes).init(&device);
        let x = images(batch, side, &device);
        let logits = net.forward(x.clone());
        assert_eq!(logits.dims(), [batch, classes]);
        let burns = kaiming_kernels::with_burn_path(|| net.forward(x));
        let (ours, burns) = (
            logits.to_data().try_to_vec::<f32>().unwrap(),
            burns.to_data().try_to_vec::<f32>().unwrap(),
        );
        let diff: f32 = ours
            .iter()
            .zip(&burns)
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        let norm: f32 = burns.iter().map(|b| b * b).sum();
        assert!(
            norm > 0.0 && ours.iter().all(|v| v.is_finite()),
            "{name}: {ours:?}"
        );
        assert!(
            diff.sqrt() <= 1e-4 * norm.sqrt(),
            "{name}: logits off burn's by {:e} relative",
            (diff / norm).sqrt()
        );
    }
}

#[test]
fn forward_hooked_gives_gradients_with_respect_to_every_traced_output() {
    let _generator = common::generator();
    let device = Device::flex().autodiff();
    let net = model("resnet20").init(&device);
    let x = images(2, 32, &device);
    // A zero "probe" added to each output leaves the values alone; its gradient is the
    // gradient with respect to that output.
    let mut probes = Vec::new();
    let logits = net.forward_hooked(x.clone(), &mut |name, out| {
        let probe = Tensor::<4>::zeros(out.dims(), &device).require_grad();
        probes.push((name.to_string(), probe.clone()));
        out + probe
    });
    let (_, trace) = net.forward_trace(x);
    let names: Vec<_> = probes.iter().map(|(name, _)| name.clone()).collect();
    let traced: Vec<_> = trace.into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, traced);

    let grads = logits.powi_scalar(2).mean().backward();
    for (name, probe) in probes {
        let grad = probe
            .grad(&grads)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        assert!(grad.abs().max().into_scalar::<f32>() > 0.0, "{name}");
    }
}
