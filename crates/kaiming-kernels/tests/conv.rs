//! The batched-weight-gradient convolution against burn's `Conv2d` with the same weights:
//! output and the gradients of input, weight and bias, on flex with autodiff, over strides,
//! paddings, dilations, kernel sizes and batches that take several im2col chunks.

mod common;

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use common::assert_close;
use kaiming_kernels::{batched_options, conv2d};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn uniform(shape: [usize; 4], seed: u64) -> TensorData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    TensorData::new(values, shape)
}

/// A copy of `conv` with its own parameter tensors (so two graphs can run backward).
fn twin(conv: &Conv2d, device: &Device) -> Conv2d {
    let mut copy = conv.clone();
    copy.weight = Param::from_tensor(Tensor::from_data(conv.weight.val().to_data(), device));
    copy.bias = conv
        .bias
        .as_ref()
        .map(|bias| Param::from_tensor(Tensor::from_data(bias.val().to_data(), device)));
    copy
}

/// Compares `conv2d(conv, x)` with `conv.forward(x)` on `x` of `shape`, forward and backward.
fn check(config: Conv2dConfig, shape: [usize; 4]) {
    let device = Device::flex().autodiff();
    let ours = config.init(&device);
    let burns = twin(&ours, &device);
    let x = || Tensor::<4>::from_data(uniform(shape, 1), &device).require_grad();
    let (x_ours, x_burns) = (x(), x());
    assert!(batched_options(&ours, &x_ours).is_some());

    let out_ours = conv2d(&ours, x_ours.clone());
    let out_burns = burns.forward(x_burns.clone());
    assert_close("output", out_ours.to_data(), out_burns.to_data(), 1e-5);

    let weights = Tensor::<4>::from_data(uniform(out_burns.dims(), 2), &device);
    let grads_ours = (out_ours * weights.clone()).sum().backward();
    let grads_burns = (out_burns * weights).sum().backward();
    assert_close(
        "input gradient",
        x_ours.grad(&grads_ours).unwrap().to_data(),
        x_burns.grad(&grads_burns).unwrap().to_data(),
        1e-4,
    );
    assert_close(
        "weight gradient",
        ours.weight.val().grad(&grads_ours).unwrap().to_data(),
        burns.weight.val().grad(&grads_burns).unwrap().to_data(),
        1e-4,
    );
    if let (Some(ours), Some(burns)) = (&ours.bias, &burns.bias) {
        assert_close(
            "bias gradient",
            ours.val().grad(&grads_ours).unwrap().to_data(),
            burns.val().grad(&grads_burns).unwrap().to_data(),
            1e-4,
        );
    }
}

fn config(channels: [usize; 2], kernel: usize, stride: usize, padding: usize) -> Conv2dConfig {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .with_bias(false)
}

#[test]
fn matches_burn_for_resnet_convolutions() {
    // 3×3 stride 1 and 2, and the 1×1 stride-2 projection shortcut.
    check(config([3, 5], 3, 1, 1), [4, 3, 9, 7]);
    check(config([4, 6], 3, 2, 1), [3, 4, 8, 8]);
    check(config([6, 4], 1, 2, 0), [2, 6, 5, 5]);
}

#[test]
fn matches_burn_with_bias_dilation_and_no_padding() {
    check(config([3, 4], 3, 1, 0).with_bias(true), [2, 3, 7, 7]);
    check(config([2, 3], 3, 1, 2).with_dilation([2, 2]), [2, 2, 9, 9]);
    check(
        Conv2dConfig::new([3, 4], [3, 1])
            .with_stride([2, 1])
            .with_padding(PaddingConfig2d::Explicit(1, 0, 1, 0)),
        [2, 3, 7, 5],
    );
}

#[test]
fn matches_burn_over_several_im2col_chunks() {
    // 64 channels at 32×32: about 7 images per chunk, so a batch of 16 takes three.
    check(config([64, 8], 3, 1, 1), [16, 64, 32, 32]);
}

#[test]
fn leaves_other_convolutions_to_burn() {
    let x = |device: &Device| Tensor::<4>::from_data(uniform([2, 4, 6, 6], 3), device);
    // Grouped, on the training device.
    let train = Device::flex().autodiff();
    let grouped = config([4, 4], 3, 1, 1).with_groups(2).init(&train);
    assert!(batched_options(&grouped, &x(&train)).is_none());
    conv2d(&grouped, x(&train))
        .to_data()
        .assert_eq(&grouped.forward(x(&train)).to_data(), true);
    // Inference.
    let inference = Device::flex();
    let conv = config([4, 4], 3, 1, 1).init(&inference);
    assert!(batched_options(&conv, &x(&inference)).is_none());
    conv2d(&conv, x(&inference))
        .to_data()
        .assert_eq(&conv.forward(x(&inference)).to_data(), true);
}
