//! Comparisons shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different subset

use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Largest `|a − b| / max(1, |b|)`, infinite where either is NaN.
fn max_relative_error(a: TensorData, b: TensorData) -> f32 {
    let (a, b) = (
        a.try_to_vec::<f32>().unwrap(),
        b.try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        // `f32::max` drops a NaN: one on either side must fail the comparison, not vanish.
        .fold(0.0, |worst, error| match error.is_nan() {
            true => f32::INFINITY,
            false => worst.max(error),
        })
}

/// Asserts that `ours` is within `tolerance` of `burns` by [`max_relative_error`].
pub fn assert_close(what: &str, ours: TensorData, burns: TensorData, tolerance: f32) {
    let error = max_relative_error(ours, burns);
    assert!(
        error <= tolerance,
        "{what}: relative error {error:e} > {tolerance:e}"
    );
}

/// Asserts `‖ours − burns‖ ≤ tolerance · ‖burns‖` (Euclidean norms): for gradients behind a
/// batch norm, whose elements are sums that cancel (a channel's input gradient sums to zero),
/// so an element's rounding error is a fraction of the terms it sums, not of its own size. A
/// wrong element among thousands still moves the norm by far more than the tolerance.
pub fn assert_close_in_norm(what: &str, ours: TensorData, burns: TensorData, tolerance: f64) {
    let (ours, burns) = (
        ours.try_to_vec::<f32>().unwrap(),
        burns.try_to_vec::<f32>().unwrap(),
    );
    assert_eq!(ours.len(), burns.len(), "{what}: sizes");
    let norm = |values: &mut dyn Iterator<Item = f64>| values.map(|v| v * v).sum::<f64>().sqrt();
    let difference = norm(&mut ours.iter().zip(&burns).map(|(a, b)| f64::from(a - b)));
    let size = norm(&mut burns.iter().map(|&b| f64::from(b)));
    assert!(
        difference <= tolerance * size,
        "{what}: off by {:e} of its norm > {tolerance:e}",
        difference / size
    );
}

/// `shape` filled with U(−1, 1) values from a ChaCha8 stream seeded with `seed`.
///
/// Every test makes its inputs here, so this is also where the kernels' write checks are
/// switched on: an output element a kernel leaves unwritten fails the test that produced it.
pub fn uniform(shape: [usize; 4], seed: u64) -> TensorData {
    kaiming_kernels::set_write_checks(true);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    TensorData::new(values, shape)
}
