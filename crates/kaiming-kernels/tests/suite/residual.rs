//! The fused residual closing `relu(branch + shortcut)` against burn's add and ReLU: output
//! and both inputs' gradients, on flex with and without autodiff; other cases go to burn.

use crate::common::uniform;
use burn::tensor::activation::relu;
use burn::tensor::{DType, Device, Tensor, TensorData};
use kaiming_kernels::{add_relu, with_burn_path};

/// Output and the gradients of both inputs (where they require one) under `f`.
fn pass(
    f: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
    shape: [usize; 4],
    shortcut_grad: bool,
) -> (TensorData, TensorData, Option<TensorData>) {
    let device = Device::flex().autodiff();
    let branch = Tensor::<4>::from_data(uniform(shape, 1), &device).require_grad();
    let mut shortcut = Tensor::<4>::from_data(uniform(shape, 2), &device);
    if shortcut_grad {
        shortcut = shortcut.require_grad();
    }
    let output = f(branch.clone(), shortcut.clone());
    let weighting = Tensor::<4>::from_data(uniform(shape, 3), &device);
    let grads = (output.clone() * weighting).sum().backward();
    (
        output.to_data(),
        branch.grad(&grads).unwrap().to_data(),
        shortcut.grad(&grads).map(|grad| grad.to_data()),
    )
}

#[test]
fn equals_burns_add_then_relu_to_the_bit() {
    let burn = |a: Tensor<4>, b: Tensor<4>| relu(a + b);
    // Larger than one parallel task, and a small odd one.
    for shape in [[3, 16, 33, 35], [1, 3, 5, 7]] {
        for shortcut_grad in [true, false] {
            let ours = pass(add_relu, shape, shortcut_grad);
            let burns = pass(burn, shape, shortcut_grad);
            ours.0.assert_eq(&burns.0, true);
            ours.1.assert_eq(&burns.1, true);
            assert_eq!(ours.2.is_some(), shortcut_grad);
            if let (Some(a), Some(b)) = (ours.2, burns.2) {
                a.assert_eq(&b, true);
            }
        }
    }
    // Evaluation.
    let device = Device::flex();
    let a = Tensor::<4>::from_data(uniform([2, 4, 6, 6], 4), &device);
    let b = Tensor::<4>::from_data(uniform([2, 4, 6, 6], 5), &device);
    add_relu(a.clone(), b.clone())
        .to_data()
        .assert_eq(&relu(a + b).to_data(), true);
}

#[test]
fn other_cases_go_to_burn() {
    let device = Device::flex().autodiff();
    let a = Tensor::<4>::from_data(uniform([2, 4, 6, 6], 4), &device);
    // Broadcasting.
    let b = Tensor::<4>::from_data(uniform([1, 4, 1, 1], 5), &device);
    add_relu(a.clone(), b.clone())
        .to_data()
        .assert_eq(&relu(a.clone() + b).to_data(), true);
    // Half precision.
    let half = a.clone().cast(DType::F16);
    let out = add_relu(half.clone(), half.clone());
    assert_eq!(out.dtype(), DType::F16);
    out.to_data()
        .assert_eq(&relu(half.clone() + half).to_data(), true);
    // Switched off.
    with_burn_path(|| {
        add_relu(a.clone(), a.clone())
            .to_data()
            .assert_eq(&relu(a.clone() + a.clone()).to_data(), true)
    });
}
