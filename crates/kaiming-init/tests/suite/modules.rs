//! Re-initialising real burn modules: fans from burn's layouts, which parameters are touched,
//! determinism, and agreement with burn's own initializer.

use burn::module::{Module, Param};
use burn::nn::conv::{
    Conv1dConfig, Conv2d, Conv2dConfig, Conv3dConfig, ConvTranspose1dConfig, ConvTranspose2dConfig,
};
use burn::nn::{
    BatchNorm, BatchNormConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::{Device, Distribution as BurnDistribution, Tensor, TensorData};
use kaiming_init::{Fans, InitError, InitPlan, LayerKind, Rule, Scheme};

fn device() -> Device {
    Device::flex()
}

fn std_of<const D: usize>(tensor: Tensor<D>) -> f64 {
    let values: Vec<f32> = tensor.into_data().try_to_vec().unwrap();
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    (values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

fn fans_after_init<M: Module>(module: M, path: &str) -> Fans {
    let (_, report) = InitPlan::new(Scheme::he()).apply(module, 0).unwrap();
    let row = report
        .get(path)
        .unwrap_or_else(|| panic!("{path} not in\n{report}"));
    Fans {
        fan_in: row.fan_in.unwrap(),
        fan_out: row.fan_out.unwrap(),
    }
}

#[test]
fn fans_follow_burn_layouts() {
    let device = device();
    let fans = |fan_in, fan_out| Fans { fan_in, fan_out };
    // Linear weight is [d_input, d_output].
    let linear = LinearConfig::new(300, 100).init(&device);
    assert_eq!(linear.weight.lazy_shape().to_vec(), vec![300, 100]);
    assert_eq!(fans_after_init(linear, "weight"), fans(300, 100));
    // Conv weights are [c_out, c_in/groups, k…].
    let conv1d = Conv1dConfig::new(4, 8, 5).init(&device);
    assert_eq!(fans_after_init(conv1d, "weight"), fans(4 * 5, 8 * 5));
    let conv2d = Conv2dConfig::new([16, 32], [3, 3]).init(&device);
    assert_eq!(fans_after_init(conv2d, "weight"), fans(16 * 9, 32 * 9));
    let conv3d = Conv3dConfig::new([2, 6], [3, 3, 3]).init(&device);
    assert_eq!(fans_after_init(conv3d, "weight"), fans(2 * 27, 6 * 27));
    // Grouped: fan_in is c_in/groups·k; fan_out follows PyTorch, c_out·k (burn: c_out/groups·k).
    let grouped = Conv2dConfig::new([16, 32], [3, 3])
        .with_groups(4)
        .init(&device);
    assert_eq!(grouped.weight.lazy_shape().to_vec(), vec![32, 4, 3, 3]);
    assert_eq!(fans_after_init(grouped, "weight"), fans(4 * 9, 32 * 9));
    // Transposed: weight [c_in, c_out/groups, k…], PyTorch's fans for the same layout.
    let transposed = ConvTranspose2dConfig::new([8, 12], [4, 4]).init(&device);
    assert_eq!(transposed.weight.lazy_shape().to_vec(), vec![8, 12, 4, 4]);
    assert_eq!(fans_after_init(transposed, "weight"), fans(12 * 16, 8 * 16));
    let grouped_transposed = ConvTranspose1dConfig::new([8, 12], 3)
        .with_groups(2)
        .init(&device);
    assert_eq!(
        grouped_transposed.weight.lazy_shape().to_vec(),
        vec![8, 6, 3]
    );
    assert_eq!(
        fans_after_init(grouped_transposed, "weight"),
        fans(6 * 3, 8 * 3)
    );
}

#[test]
fn he_on_a_real_layer_has_the_formula_std_and_a_zero_bias() {
    let device = device();
    let conv = Conv2dConfig::new([64, 128], [3, 3]).init(&device);
    let (conv, report) = InitPlan::new(Scheme::he()).apply(conv, 1).unwrap();
    let expected = (2.0 / (64.0 * 9.0f64)).sqrt();
    assert!((std_of(conv.weight.val()) / expected - 1.0).abs() < 0.01);
    let bias: Vec<f32> = conv.bias.unwrap().val().into_data().try_to_vec().unwrap();
    assert!(bias.iter().all(|&b| b == 0.0));
    assert_eq!(report.get("bias").unwrap().init, "zeros");
}

#[test]
fn he_matches_burn_kaiming_normal_with_gain_sqrt_2() {
    // The conversion claims equality in distribution; check it on one layer.
    let device = device();
    device.seed(3);
    let initializer = Scheme::he().to_burn_initializer().unwrap();
    let burn_linear = LinearConfig::new(500, 400)
        .with_initializer(initializer)
        .init(&device);
    let ours = InitPlan::new(Scheme::he())
        .apply(LinearConfig::new(500, 400).init(&device), 3)
        .unwrap()
        .0;
    let (burn_std, our_std) = (std_of(burn_linear.weight.val()), std_of(ours.weight.val()));
    assert!(
        (burn_std / our_std - 1.0).abs() < 0.01,
        "{burn_std} vs {our_std}"
    );
}

#[derive(Module, Debug)]
struct Block {
    conv: Conv2d,
    bn: BatchNorm,
}

#[derive(Module, Debug)]
enum Head {
    Dense(Linear),
    Conv(Conv2d),
}

/// A user's model mixing every container burn has, and parameters the crate does not know.
#[derive(Module, Debug)]
struct Net {
    blocks: Vec<Block>,
    extra: Option<Linear>,
    missing: Option<Linear>,
    head: Head,
    norm: LayerNorm,
    embedding: Embedding,
    scale: Param<Tensor<1>>,
}

fn net(device: &Device) -> Net {
    let block = || Block {
        conv: Conv2dConfig::new([4, 4], [3, 3]).init(device),
        bn: BatchNormConfig::new(4).init(device),
    };
    Net {
        blocks: vec![block(), block()],
        extra: Some(LinearConfig::new(6, 5).init(device)),
        missing: None,
        head: Head::Dense(LinearConfig::new(5, 3).init(device)),
        norm: LayerNormConfig::new(5).init(device),
        embedding: EmbeddingConfig::new(10, 5).init(device),
        scale: Param::from_tensor(Tensor::random([5], BurnDistribution::Default, device)),
    }
}

fn data_of<const D: usize>(tensor: Tensor<D>) -> TensorData {
    tensor.into_data()
}

#[test]
fn plan_touches_exactly_the_known_parameters_of_a_nested_module() {
    let device = device().autodiff();
    let net = net(&device);
    // Move the BatchNorm running statistics away from their fresh values.
    for block in &net.blocks {
        block.bn.forward(Tensor::<4>::random(
            [8, 4, 3, 3],
            BurnDistribution::Default,
            &device,
        ));
    }
    let before = net.clone();

    let plan = InitPlan::new(Scheme::he()).with_rule(Rule::path("head", Scheme::zeros()));
    let (after, report) = plan.apply(net, 11).unwrap();

    let changed: Vec<&str> = report.changed().map(|row| row.path.as_str()).collect();
    let expected = [
        "blocks.0.conv.weight",
        "blocks.0.conv.bias",
        "blocks.0.bn.gamma",
        "blocks.0.bn.beta",
        "blocks.0.bn.running_mean",
        "blocks.0.bn.running_var",
        "blocks.1.conv.weight",
        "blocks.1.conv.bias",
        "blocks.1.bn.gamma",
        "blocks.1.bn.beta",
        "blocks.1.bn.running_mean",
        "blocks.1.bn.running_var",
        "extra.weight",
        "extra.bias",
        "head.Dense.weight",
        "head.Dense.bias",
        "norm.gamma",
        "norm.beta",
    ];
    assert_eq!(changed, expected, "\n{report}");
    let kept: Vec<&str> = report
        .rows
        .iter()
        .filter(|row| row.is_kept())
        .map(|row| row.path.as_str())
        .collect();
    assert_eq!(kept, ["embedding.weight", "scale"]);

    // Untouched parameters are bit-identical.
    assert_eq!(
        data_of(before.embedding.weight.val()),
        data_of(after.embedding.weight.val())
    );
    assert_eq!(data_of(before.scale.val()), data_of(after.scale.val()));
    // Touched ones have their new values.
    let ones = TensorData::from([1f32; 4]);
    let zeros = TensorData::from([0f32; 4]);
    for block in &after.blocks {
        assert_eq!(data_of(block.bn.gamma.val()), ones);
        assert_eq!(data_of(block.bn.beta.val()), zeros);
        assert_eq!(data_of(block.bn.running_mean.value()), zeros);
        assert_eq!(data_of(block.bn.running_var.value()), ones);
        assert_eq!(data_of(block.conv.bias.as_ref().unwrap().val()), zeros);
    }
    assert_ne!(
        data_of(before.blocks[0].conv.weight.val()),
        data_of(after.blocks[0].conv.weight.val())
    );
    let Head::Dense(head) = &after.head else {
        panic!("variant changed")
    };
    assert_eq!(data_of(head.weight.val()), TensorData::from([[0f32; 3]; 5]));
    // Trainable parameters still require gradients and keep their ids.
    assert!(after.blocks[0].conv.weight.val().is_require_grad());
    assert_eq!(
        after.blocks[0].conv.weight.id,
        before.blocks[0].conv.weight.id
    );
    // The report carries fans and std for the conv weight.
    let row = report.get("blocks.0.conv.weight").unwrap();
    assert_eq!(row.layer, Some(LayerKind::Conv));
    assert_eq!((row.fan_in, row.fan_out), (Some(36), Some(36)));
    assert!((row.std.unwrap() - (2.0f64 / 36.0).sqrt()).abs() < 1e-15);
    let table = report.to_string();
    assert!(table.contains("blocks.1.bn.running_var") && table.contains("fan_in"));
}

#[test]
fn rules_by_layer_and_path_last_match_wins() {
    let device = device();
    let plan = InitPlan::new(Scheme::he())
        .with_rule(Rule::layer(LayerKind::Linear, Scheme::TorchDefault))
        .with_rule(Rule::path("blocks.*.bn.gamma", Scheme::zeros()))
        .with_rule(Rule::path("extra.*", Scheme::xavier()));
    let (_, report) = plan.apply(net(&device), 0).unwrap();
    let init = |path: &str| report.get(path).unwrap().init.clone();
    assert_eq!(init("blocks.0.conv.weight"), "he");
    assert_eq!(init("blocks.1.bn.gamma"), "zeros");
    assert_eq!(init("blocks.1.bn.beta"), "zeros");
    assert_eq!(init("head.Dense.weight"), "torch-default");
    assert_eq!(init("head.Dense.bias"), "torch-default");
    assert_eq!(init("extra.weight"), "xavier");
    assert_eq!(init("extra.bias"), "zeros");
    let bias = report.get("head.Dense.bias").unwrap();
    assert!((bias.bound.unwrap() - 1.0 / 5f64.sqrt()).abs() < 1e-15);
}

#[test]
fn random_scheme_on_a_norm_parameter_is_an_error() {
    let device = device();
    let plan =
        InitPlan::new(Scheme::he()).with_rule(Rule::layer(LayerKind::BatchNorm, Scheme::he()));
    let error = plan.apply(net(&device), 0).unwrap_err();
    assert!(matches!(error, InitError::NoFans { ref path, .. } if path == "blocks.0.bn.gamma"));
    assert!(error.to_string().contains("blocks.0.bn.gamma"));
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let device = device();
    let plan = InitPlan::new("he-trunc".parse().unwrap());
    let weights = |seed| {
        let (net, _) = plan.apply(net(&device), seed).unwrap();
        data_of(net.blocks[1].conv.weight.val())
    };
    assert_eq!(weights(5), weights(5));
    assert_ne!(weights(5), weights(6));
    // And across backends: values are drawn on the host.
    #[allow(deprecated)] // ndarray is deprecated in burn 0.22 but still a backend users run.
    let ndarray = Device::ndarray();
    let (on_ndarray, _) = plan.apply(net(&ndarray), 5).unwrap();
    assert_eq!(data_of(on_ndarray.blocks[1].conv.weight.val()), weights(5));
}

#[test]
fn plans_serialise() {
    let plan = InitPlan::torchvision().with_rule(Rule::path("*.bn2.gamma", Scheme::zeros()));
    let json = serde_json::to_string(&plan).unwrap();
    assert!(json.contains("\"he-fan-out\""), "{json}");
    assert_eq!(serde_json::from_str::<InitPlan>(&json).unwrap(), plan);
}
