//! Fixup and SkipInit, checked by the papers' invariants: at init every residual branch outputs
//! exactly zero (so each block passes its shortcut on), Fixup's weights have He's std times
//! L^(−1/(2m−2)), the scalars are counted, get gradients and train.

use crate::common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{
    Block, BlockKind, Branch, Model, ModelConfig, ModelName, Norm, ResNet, ResNetConfig, Shortcut,
    ShortcutKind, StemKind,
};

fn images(batch: usize, device: &Device) -> Tensor<4> {
    Tensor::random([batch, 3, 32, 32], Distribution::Normal(0.0, 1.0), device)
}

/// ResNet-20 (basic blocks, option A) without norm.
fn resnet20(branch: Branch) -> ResNetConfig {
    ResNetConfig::cifar(20)
        .unwrap()
        .with_norm(Norm::None)
        .with_branch(branch)
}

/// A CIFAR-stem bottleneck ResNet with projection shortcuts, two blocks per stage: L = 8.
fn bottleneck(branch: Branch) -> ResNetConfig {
    ResNetConfig::new(BlockKind::Bottleneck, vec![2, 2, 2, 2], vec![8, 16, 16, 32])
        .with_stem(StemKind::Cifar)
        .with_num_classes(10)
        .with_norm(Norm::None)
        .with_shortcut(ShortcutKind::B)
        .with_branch(branch)
}

fn he(config: &ResNetConfig, device: &Device) -> ResNet {
    config
        .init_with(device, &InitPlan::new(Scheme::he()), 3)
        .unwrap()
        .0
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Every block's output equals `relu(shortcut(input))` bit for bit: its branch added nothing.
fn assert_blocks_pass_their_shortcuts(model: &ResNet, x: Tensor<4>) {
    let mut x = model.stem.forward(x);
    for (s, stage) in model.stages.iter().enumerate() {
        for (b, block) in stage.blocks.iter().enumerate() {
            let out = block.forward(x.clone());
            let shortcut = match block {
                Block::Basic(block) => block.shortcut.as_ref(),
                Block::Bottleneck(block) => block.shortcut.as_ref(),
            }
            .expect("a residual block has a shortcut");
            let expected = relu(shortcut.forward(x.clone()));
            assert_eq!(
                values(out.clone()),
                values(expected),
                "stages.{s}.blocks.{b}: the block's output is not its shortcut's"
            );
            x = out;
        }
    }
}

#[test]
fn fixup_branches_start_at_zero_and_the_output_is_the_shortcut_paths() {
    let _generator = common::generator();
    let device = Device::flex();
    for config in [resnet20(Branch::Fixup), bottleneck(Branch::Fixup)] {
        let model = he(&config, &device);
        let x = images(4, &device);
        assert_blocks_pass_their_shortcuts(&model, x.clone());
        // The classifier starts at zero as well: every logit is exactly 0.
        assert!(values(model.forward(x)).iter().all(|&v| v == 0.0));
    }
}

#[test]
fn skipinit_branches_start_at_zero_with_and_without_batch_norm() {
    let _generator = common::generator();
    let device = Device::flex();
    for norm in [Norm::None, Norm::Batch] {
        let model = he(&resnet20(Branch::SkipInit).with_norm(norm), &device);
        assert_blocks_pass_their_shortcuts(&model, images(4, &device));
    }
}

#[test]
fn fixup_scale_is_l_to_the_minus_one_over_2m_minus_2() {
    let _generator = common::generator();
    // ResNet-20: 9 basic blocks, m = 2: 9^(-1/2).
    assert!((resnet20(Branch::Fixup).fixup_scale() - 1.0 / 3.0).abs() < 1e-12);
    // The bottleneck net: 8 blocks, m = 3: 8^(-1/4).
    let scale = bottleneck(Branch::Fixup).fixup_scale();
    assert!((scale - 8f64.powf(-0.25)).abs() < 1e-12, "{scale}");
    // ResNet-110: 54 blocks.
    let resnet110 = ResNetConfig::cifar(110).unwrap();
    assert!((resnet110.fixup_scale() - 54f64.powf(-0.5)).abs() < 1e-12);
}

/// Standard deviation of a parameter's values, by path, measured on the tensor.
struct Stds {
    found: Vec<(String, usize, f64)>,
    path: Vec<String>,
}

impl ModuleVisitor for Stds {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = values(param.val());
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / v.len() as f64;
        self.found.push((self.path.join("."), v.len(), var.sqrt()));
    }
}

#[test]
fn fixup_weights_have_hes_std_times_the_scale_and_last_layers_are_zero() {
    let _generator = common::generator();
    let device = Device::flex();
    for config in [resnet20(Branch::Fixup), bottleneck(Branch::Fixup)] {
        let model = he(&config, &device);
        let (scale, last) = match config.block {
            BlockKind::Basic => (config.fixup_scale(), "conv2"),
            BlockKind::Bottleneck => (config.fixup_scale(), "conv3"),
        };
        let mut stds = Stds {
            found: Vec::new(),
            path: Vec::new(),
        };
        model.visit(&mut stds);
        let mut checked = 0;
        for (path, n, std) in &stds.found {
            let Some(weight) = path.strip_suffix(".weight") else {
                continue;
            };
            let in_branch = weight.contains(".blocks.") && !weight.contains("shortcut");
            if weight == "fc" || (in_branch && weight.ends_with(last)) {
                assert_eq!(*std, 0.0, "{path} should start at zero");
                continue;
            }
            // He: Var = 2 / fan_in, fan_in = elements / out_channels.
            let out_channels = match stds
                .found
                .iter()
                .find(|(p, ..)| *p == format!("{weight}.bias"))
            {
                Some((_, bias_len, _)) => *bias_len,
                None => continue,
            };
            let fan_in = n / out_channels;
            let expected = (2.0 / fan_in as f64).sqrt() * if in_branch { scale } else { 1.0 };
            // Sampling error of a std from n draws: about std / √(2n); allow 5 of them.
            let tolerance = 5.0 * expected / (2.0 * *n as f64).sqrt();
            assert!(
                (std - expected).abs() <= tolerance,
                "{path}: std {std:.5}, He × {} = {expected:.5} (± {tolerance:.5})",
                if in_branch { scale } else { 1.0 }
            );
            checked += 1;
        }
        assert!(
            checked >= config.branches(),
            "only {checked} weights checked"
        );
    }
}

#[test]
fn parameter_counts_are_the_no_norm_counts_plus_the_scalars() {
    let _generator = common::generator();
    let device = Device::flex();
    for (config, per_block) in [
        (resnet20(Branch::Standard), 0),
        (resnet20(Branch::SkipInit), 1),
        (resnet20(Branch::Fixup), 5),
        (bottleneck(Branch::Fixup), 7),
        (bottleneck(Branch::SkipInit), 1),
    ] {
        let plain_count = config.clone().with_branch(Branch::Standard).num_params();
        let fc_bias = usize::from(config.branch == Branch::Fixup);
        let expected = plain_count + per_block * config.branches() + fc_bias;
        assert_eq!(config.num_params(), expected, "{} analytic", config.branch);
        let built = he(&config, &device);
        assert_eq!(
            common::trainable_params(&built),
            expected,
            "{} built",
            config.branch
        );
    }
}

/// The scalar parameters (Fixup's biases and multipliers, SkipInit's α) by path.
struct Scalars {
    found: Vec<(String, f32, burn::module::ParamId)>,
    path: Vec<String>,
}

impl ModuleVisitor for Scalars {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == 1 && param.val().dims()[0] == 1 {
            let value = values(param.val())[0];
            self.found.push((self.path.join("."), value, param.id));
        }
    }
}

fn scalars(model: &Model) -> Vec<(String, f32, burn::module::ParamId)> {
    let mut scalars = Scalars {
        found: Vec::new(),
        path: Vec::new(),
    };
    model.visit(&mut scalars);
    scalars.found
}

/// Three SGD steps of a model on one random batch; the scalars' gradients at the third step and
/// the model after it. Fixup's zeros open the path one layer per step: at the first step the
/// zero classifier passes no gradient back, at the second the zero last convolutions pass none
/// to what lies before them (the multiplier gets none either: the branch output it scales is
/// still 0), from the third on every scalar has one.
fn three_steps(config: ModelConfig) -> (Model, Model, Vec<(String, bool)>) {
    let device = Device::flex().autodiff();
    let (model, _) = config
        .init_with(&device, &InitPlan::new(Scheme::he()), 5)
        .unwrap();
    let initial = model.clone();
    let x = images(8, &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new((0..8i64).collect(), [8]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optimizer = SgdConfig::new().init();
    let mut model = model;
    let mut has_grad = Vec::new();
    for step in 0..3 {
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        if step == 2 {
            has_grad = scalars(&model)
                .into_iter()
                .map(|(path, _, id)| {
                    let grad = grads.get::<1>(id).map(values);
                    (path, grad.is_some_and(|g| g[0] != 0.0))
                })
                .collect();
        }
        model = optimizer.step(0.1, model, grads);
    }
    (initial, model, has_grad)
}

#[test]
fn the_scalars_exist_get_gradients_and_train() {
    let _generator = common::generator();
    for (branch, per_block) in [(Branch::Fixup, 5), (Branch::SkipInit, 1)] {
        let config = ModelConfig::new(ModelName::CifarResNet(20))
            .with_norm(Norm::None)
            .with_branch(branch);
        let (initial, trained, has_grad) = three_steps(config);
        let before = scalars(&initial);
        let after = scalars(&trained);
        let expected = per_block * 9 + usize::from(branch == Branch::Fixup);
        assert_eq!(before.len(), expected, "{branch}: scalars");
        for (path, grad) in &has_grad {
            assert!(grad, "{branch}: {path} got no gradient");
        }
        for ((path, a, _), (_, b, _)) in before.iter().zip(&after) {
            assert_ne!(a, b, "{branch}: {path} did not change in three steps");
        }
        // Their initial values: SkipInit's α and Fixup's biases 0, Fixup's multipliers 1.
        for (path, value, _) in &before {
            let want = if path.ends_with("scale") && branch == Branch::Fixup {
                1.0
            } else {
                0.0
            };
            assert_eq!(*value, want, "{branch}: {path} at init");
        }
    }
}

/// A learnable scalar holding `value`.
fn scalar_of(value: f32, device: &Device) -> Option<Param<Tensor<1>>> {
    Some(Param::from_tensor(Tensor::from_floats([value], device)))
}

/// `x + b` for a scalar `b`.
fn plus(x: Tensor<4>, b: f32) -> Tensor<4> {
    x.add_scalar(b)
}

/// Fixup's block with its scalars away from their initial values — distinct, non-zero biases,
/// a multiplier other than 1 — and its zero-initialised last convolution given weights:
/// its forward is the formula of Fixup's code, each bias and the multiplier where it applies.
/// The basic block with an identity shortcut and with option A's at stride 2, and a bottleneck
/// with a projection: the downsampling shortcuts read the input with `bias1a` added.
#[test]
fn fixup_blocks_with_trained_scalars_compute_fixups_formula() {
    let _generator = common::generator();
    let device = Device::flex();
    let close = |what: &str, a: Tensor<4>, b: Tensor<4>| {
        let (a, b) = (values(a), values(b));
        assert_eq!(a.len(), b.len());
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{what}[{i}]: {a} against {b}"
            );
        }
    };
    let weights = |shape: [usize; 4]| {
        Param::from_tensor(Tensor::<4>::random(
            shape,
            Distribution::Normal(0.0, 0.2),
            &device,
        ))
    };
    let [b1a, b1b, b2a, b2b, b3a, b3b, scale] = [0.11f32, -0.23, 0.37, -0.41, 0.53, -0.17, 1.7];

    let model = he(&resnet20(Branch::Fixup), &device);
    for (stage, input_channels) in [(0, 16), (1, 16)] {
        let Block::Basic(mut block) = model.stages[stage].blocks[0].clone() else {
            panic!("ResNet-20 has basic blocks");
        };
        block.conv2.weight = weights(block.conv2.weight.dims());
        block.bias1a = scalar_of(b1a, &device);
        block.bias1b = scalar_of(b1b, &device);
        block.bias2a = scalar_of(b2a, &device);
        block.scale = scalar_of(scale, &device);
        block.bias2b = scalar_of(b2b, &device);
        let x = Tensor::<4>::random(
            [2, input_channels, 8, 8],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let branch = block.conv1.forward(plus(x.clone(), b1a));
        let branch = block.conv2.forward(plus(relu(plus(branch, b1b)), b2a));
        // Fixup's code: `downsample(x + bias1a)` where the block downsamples, `x` otherwise.
        let shortcut = block.shortcut.as_ref().unwrap();
        let shortcut = match shortcut {
            Shortcut::Identity(_) => shortcut.forward(x.clone()),
            _ => shortcut.forward(plus(x.clone(), b1a)),
        };
        let expected = relu(plus(branch.mul_scalar(scale), b2b) + shortcut);
        close(
            &format!("stages.{stage}.blocks.0"),
            block.forward(x),
            expected,
        );
    }

    let model = he(&bottleneck(Branch::Fixup), &device);
    let Block::Bottleneck(mut block) = model.stages[1].blocks[0].clone() else {
        panic!("a bottleneck ResNet");
    };
    assert!(matches!(
        block.shortcut,
        Some(kaiming_resnet::Shortcut::Projection(_))
    ));
    block.conv3.weight = weights(block.conv3.weight.dims());
    block.bias1a = scalar_of(b1a, &device);
    block.bias1b = scalar_of(b1b, &device);
    block.bias2a = scalar_of(b2a, &device);
    block.bias2b = scalar_of(b2b, &device);
    block.bias3a = scalar_of(b3a, &device);
    block.scale = scalar_of(scale, &device);
    block.bias3b = scalar_of(b3b, &device);
    let channels = block.conv1.weight.dims()[1];
    let x = Tensor::<4>::random([2, channels, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    let branch = relu(plus(block.conv1.forward(plus(x.clone(), b1a)), b1b));
    let branch = relu(plus(block.conv2.forward(plus(branch, b2a)), b2b));
    let branch = block.conv3.forward(plus(branch, b3a));
    let shortcut = block
        .shortcut
        .as_ref()
        .unwrap()
        .forward(plus(x.clone(), b1a));
    let expected = relu(plus(branch.mul_scalar(scale), b3b) + shortcut);
    close("bottleneck stages.1.blocks.0", block.forward(x), expected);
}

#[test]
fn combinations_that_make_no_sense_are_refused() {
    let _generator = common::generator();
    let refused = |config: ModelConfig, why: &str| {
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains(why), "{error}");
    };
    refused(
        ModelConfig::new(ModelName::CifarResNet(20)).with_branch(Branch::Fixup),
        "norm = none",
    );
    refused(
        ModelConfig::new(ModelName::CifarPlain(20))
            .with_norm(Norm::None)
            .with_branch(Branch::Fixup),
        "plain net has none",
    );
    refused(
        ModelConfig::new(ModelName::PlainCnn).with_branch(Branch::SkipInit),
        "plaincnn has none",
    );
    assert!("rezero".parse::<Branch>().is_err());
    assert_eq!("skipinit".parse::<Branch>().unwrap(), Branch::SkipInit);
}
