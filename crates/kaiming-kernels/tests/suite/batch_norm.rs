//! The fused batch norm against burn's `BatchNorm` on the same inputs and parameters: output,
//! running statistics and the gradients of `x`, `gamma` and `beta`, on flex with autodiff.

use crate::common::assert_close;
use burn::backend::Dispatch;
use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn::tensor::{activation, module};
use kaiming_kernels::{
    FusedBatchNormBackend, batch_norm, batch_norm_relu, fused_applies, inference_applies,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Values drawn with a per-channel offset and scale, so the statistics differ by channel and
/// a mean far from zero would expose cancellation in the variance.
fn activations(shape: &[usize], seed: u64) -> TensorData {
    values(shape, seed, |c| 4.0 * c as f32 - 3.0)
}

/// Zero-mean values with a per-channel scale, like the gradients reaching a batch norm.
fn gradients(shape: &[usize], seed: u64) -> TensorData {
    values(shape, seed, |_| 0.0)
}

/// `offset(c) + (0.5 + c) · U(−1, 1)` for each element of channel `c`; switches the kernels'
/// write checks on, as `common::uniform` does.
fn values(shape: &[usize], seed: u64, offset: impl Fn(usize) -> f32) -> TensorData {
    kaiming_kernels::set_write_checks(true);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let spatial: usize = shape[2..].iter().product();
    let channels = shape[1];
    let values = (0..shape.iter().product::<usize>())
        .map(|i| {
            let c = (i / spatial) % channels;
            offset(c) + (0.5 + c as f32) * rng.random_range(-1.0f32..1.0)
        })
        .collect::<Vec<_>>();
    TensorData::new(values, shape.to_vec())
}

/// A batch norm with the given non-trivial gamma and beta.
fn layer(channels: usize, device: &Device) -> BatchNorm {
    let mut bn = BatchNormConfig::new(channels).init(device);
    let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + 0.25 * c as f32).collect();
    let beta: Vec<f32> = (0..channels).map(|c| 0.1 * c as f32 - 0.2).collect();
    bn.gamma = Param::from_tensor(Tensor::from_data(
        TensorData::new(gamma, [channels]),
        device,
    ));
    bn.beta = Param::from_tensor(Tensor::from_data(TensorData::new(beta, [channels]), device));
    bn
}

/// One parameter gradient per channel in f64, with the sum of the absolute values of its terms:
/// the scale that bounds the rounding error of any f32 summation of them.
struct Exact {
    value: Vec<f64>,
    terms: Vec<f64>,
}

impl Exact {
    /// Asserts `|got − value| ≤ tolerance · terms` for every channel.
    fn assert_matches(&self, what: &str, got: TensorData, tolerance: f64) {
        let got = got.try_to_vec::<f32>().unwrap();
        for (c, ((&got, &value), &terms)) in
            got.iter().zip(&self.value).zip(&self.terms).enumerate()
        {
            let error = (f64::from(got) - value).abs();
            assert!(
                error <= tolerance * terms,
                "{what}, channel {c}: {got} against {value}, error {error:e} > {tolerance:e} × {terms:e}"
            );
        }
    }
}

/// `(∂γ, ∂β)` in f64 for the loss `Σ w · batch_norm(x)`: `∂β = Σ w`, `∂γ = Σ w · x̂`; with a
/// ReLU after the norm, over the elements where `output` (the fused op's) is positive, so a
/// value within rounding of zero counts on the same side as in the kernel.
fn parameter_gradients_f64(
    x: &TensorData,
    w: &TensorData,
    output: Option<&TensorData>,
    shape: &[usize],
) -> (Exact, Exact) {
    let x = x.try_to_vec::<f32>().unwrap();
    let w = w.try_to_vec::<f32>().unwrap();
    let w: Vec<f32> = match output {
        Some(output) => {
            let output = output.try_to_vec::<f32>().unwrap();
            w.iter()
                .zip(output)
                .map(|(&w, y)| if y > 0.0 { w } else { 0.0 })
                .collect()
        }
        None => w,
    };
    let (channels, spatial) = (shape[1], shape[2..].iter().product::<usize>());
    let mut gamma = Exact {
        value: vec![],
        terms: vec![],
    };
    let mut beta = Exact {
        value: vec![],
        terms: vec![],
    };
    for c in 0..channels {
        let of_channel = || (0..x.len()).filter(|i| (i / spatial) % channels == c);
        let count = of_channel().count() as f64;
        let mean = of_channel().map(|i| f64::from(x[i])).sum::<f64>() / count;
        let var = of_channel()
            .map(|i| (f64::from(x[i]) - mean).powi(2))
            .sum::<f64>()
            / count;
        let inv_std = 1.0 / (var + 1e-5).sqrt();
        let gamma_terms =
            || of_channel().map(|i| f64::from(w[i]) * (f64::from(x[i]) - mean) * inv_std);
        gamma.value.push(gamma_terms().sum());
        gamma.terms.push(gamma_terms().map(f64::abs).sum());
        beta.value.push(of_channel().map(|i| f64::from(w[i])).sum());
        beta.terms
            .push(of_channel().map(|i| f64::from(w[i]).abs()).sum());
    }
    (gamma, beta)
}

/// Runs `steps` forward passes through both layers (followed by a ReLU if `relu`) and compares
/// outputs, running statistics and gradients after each.
fn check<const D: usize>(shape: [usize; D], steps: usize, relu: bool) {
    let device = Device::flex().autodiff();
    let channels = shape[1];
    let (ours, burns) = (layer(channels, &device), layer(channels, &device));
    for step in 0..steps {
        let data = activations(&shape, step as u64);
        let x_ours = Tensor::<D>::from_data(data.clone(), &device).require_grad();
        let x_burns = Tensor::<D>::from_data(data.clone(), &device).require_grad();
        assert!(fused_applies(&ours, &x_ours));

        let (out_ours, out_burns) = match relu {
            true => (
                batch_norm_relu(&ours, x_ours.clone()),
                activation::relu(burns.forward(x_burns.clone())),
            ),
            false => (
                batch_norm(&ours, x_ours.clone()),
                burns.forward(x_burns.clone()),
            ),
        };
        assert_close("output", out_ours.to_data(), out_burns.to_data(), 1e-5);
        let label = format!("running mean after step {step}");
        assert_close(
            &label,
            ours.running_mean.value().to_data(),
            burns.running_mean.value().to_data(),
            1e-6,
        );
        let label = format!("running var after step {step}");
        assert_close(
            &label,
            ours.running_var.value().to_data(),
            burns.running_var.value().to_data(),
            1e-6,
        );

        // A loss whose gradient differs per element, so no term of the backward cancels.
        let weights_data = gradients(&shape, 100 + step as u64);
        let (gamma_f64, beta_f64) = parameter_gradients_f64(
            &data,
            &weights_data,
            relu.then_some(&out_ours.to_data()),
            &shape,
        );
        let weights = Tensor::<D>::from_data(weights_data, &device);
        let grads_ours = (out_ours * weights.clone()).sum().backward();
        let grads_burns = (out_burns * weights).sum().backward();
        let grad = |x: &Tensor<D>, grads| x.grad(grads).unwrap().to_data();
        assert_close(
            "x gradient",
            grad(&x_ours, &grads_ours),
            grad(&x_burns, &grads_burns),
            1e-4,
        );
        // Each parameter gradient is a sum over every value of a channel. Ours must be as
        // close to exact arithmetic as f32 terms allow; burn sums in plain f32, so against it
        // the bound is looser but still far below the size of any formula error.
        let param_grad =
            |param: &Param<Tensor<1>>, grads| param.val().grad(grads).unwrap().to_data();
        for (what, ours_grad, burns_grad, exact) in [
            ("gamma gradient", &ours.gamma, &burns.gamma, &gamma_f64),
            ("beta gradient", &ours.beta, &burns.beta, &beta_f64),
        ] {
            exact.assert_matches(what, param_grad(ours_grad, &grads_ours), 1e-6);
            exact.assert_matches(
                &format!("{what} (burn)"),
                param_grad(burns_grad, &grads_burns),
                1e-4,
            );
        }
    }
}

#[test]
fn matches_burn_on_images() {
    check([8, 6, 5, 7], 3, false);
}

#[test]
fn matches_burn_on_large_images_split_across_tasks() {
    // 16 × 16 × 32 × 32: many rows per channel, several rayon tasks per pass.
    check([16, 16, 32, 32], 1, false);
}

#[test]
fn matches_burn_on_sequences_and_vectors() {
    check([4, 3, 33], 2, false);
    // Batch norm over features: one value per row.
    check([32, 10], 2, false);
}

#[test]
fn with_relu_matches_burns_norm_then_relu() {
    check([8, 6, 5, 7], 2, true);
    check([16, 16, 32, 32], 1, true);
    check([32, 10], 1, true);
}

#[test]
fn matches_burn_on_a_non_contiguous_input() {
    let device = Device::flex().autodiff();
    let (ours, burns) = (layer(5, &device), layer(5, &device));
    // [5, 6, 4, 4] with the first two axes swapped: a strided view of shape [6, 5, 4, 4].
    let x = Tensor::<4>::from_data(activations(&[5, 6, 4, 4], 7), &device).swap_dims(0, 1);
    assert_close(
        "output",
        batch_norm(&ours, x.clone()).to_data(),
        burns.forward(x).to_data(),
        1e-5,
    );
}

#[test]
#[allow(deprecated)] // `Device::ndarray`: the other CPU backend
fn leaves_other_cases_to_burn() {
    let train = Device::flex().autodiff();
    let bn = layer(3, &train);
    let x = Tensor::<4>::from_data(activations(&[2, 3, 4, 4], 1), &train);

    // Inference (no autodiff device): the one-pass evaluation kernel, not the training one.
    let inference = Device::flex();
    let x_inference = Tensor::<4>::from_data(activations(&[2, 3, 4, 4], 1), &inference);
    assert!(!fused_applies(&bn, &x_inference));
    assert!(inference_applies(&bn, &x_inference));

    // Half precision: burn's own path.
    let bn = layer(3, &train);
    let x_half = x.clone().cast(DType::F16);
    assert!(!fused_applies(&bn, &x_half));

    // Another backend.
    let ndarray = Device::ndarray().autodiff();
    let x_ndarray = x.to_device(&ndarray);
    assert!(!fused_applies(&layer(3, &ndarray), &x_ndarray));
}

/// Evaluation on flex without autodiff: burn's running-statistics batch norm (and the ReLU
/// after it) within 1e-5, after a few training steps have moved the running statistics.
#[test]
fn evaluation_matches_burns_running_statistics_norm() {
    let train = Device::flex().autodiff();
    let bn = layer(5, &train);
    for seed in 0..3 {
        let x = Tensor::<4>::from_data(activations(&[4, 5, 6, 7], seed), &train);
        let _ = batch_norm(&bn, x);
    }
    let inference = Device::flex();
    let bn = bn.valid().to_device(&inference);
    let x = Tensor::<4>::from_data(activations(&[3, 5, 9, 8], 7), &inference);
    assert!(inference_applies(&bn, &x));
    let burns = bn.forward(x.clone());
    assert_close(
        "output",
        batch_norm(&bn, x.clone()).to_data(),
        burns.to_data(),
        1e-5,
    );
    assert_close(
        "output with relu",
        batch_norm_relu(&bn, x).to_data(),
        activation::relu(burns).to_data(),
        1e-5,
    );
}

#[test]
fn the_extension_falls_back_to_burns_ops_in_half_precision() {
    let device = Device::flex().autodiff();
    let bn = layer(3, &device);
    // The two backward passes below must not share graph nodes: each side gets its own.
    let gamma = || bn.gamma.val().detach().cast(DType::F16);
    let beta = || bn.beta.val().detach().cast(DType::F16);
    let x = || {
        let x = Tensor::<4>::from_data(activations(&[4, 3, 5, 5], 2), &device);
        x.cast(DType::F16).require_grad()
    };
    let (x_ours, x_burns) = (x(), x());

    let (mean, variance) = Dispatch::batch_norm_statistics(x_ours.clone().into_dispatch());
    let output = Dispatch::fused_batch_norm_train(
        x_ours.clone().into_dispatch(),
        gamma().into_dispatch(),
        beta().into_dispatch(),
        mean,
        variance,
        bn.epsilon,
        true,
    );
    let output = Tensor::<4>::from_dispatch(output);
    let reference = activation::relu(
        module::batch_norm_train(x_burns.clone(), gamma(), beta(), bn.epsilon).output,
    );
    assert_eq!(output.dtype(), DType::F16);
    output.to_data().assert_eq(&reference.to_data(), true);

    let weights = Tensor::<4>::from_data(gradients(&[4, 3, 5, 5], 3), &device).cast(DType::F16);
    let grad_ours = (output * weights.clone()).sum().backward();
    let grad_burns = (reference * weights).sum().backward();
    let to_f32 = |x: &Tensor<4>, grads| x.grad(grads).unwrap().cast(DType::F32).to_data();
    assert_close(
        "x gradient",
        to_f32(&x_ours, &grad_ours),
        to_f32(&x_burns, &grad_burns),
        1e-2,
    );
}
