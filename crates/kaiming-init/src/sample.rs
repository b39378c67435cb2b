//! Drawing the values of a [`Fill`] on the host.
//!
//! Values are drawn on the CPU from a ChaCha8 stream rather than with the backend's own random
//! generator, so the same seed gives bit-identical initial weights on every backend (flex,
//! ndarray, wgpu, CUDA); the tensor is then uploaded once.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, StandardNormal, Uniform};

use crate::scheme::{Distribution, Fill, TRUNCATED_NORMAL_STD};

/// The values of a tensor of `shape` filled as `fill` says, in row-major order.
pub fn sample(fill: Fill, shape: &[usize], rng: &mut ChaCha8Rng) -> Vec<f32> {
    let len = shape.iter().product();
    match fill {
        Fill::Constant(value) => vec![value as f32; len],
        Fill::Random { distribution, std } => draw(distribution, std, len, rng),
        Fill::Orthogonal { gain } => {
            let rows = shape.first().copied().unwrap_or(1).max(1);
            orthogonal(rows, len / rows, gain, rng)
        }
    }
}

fn draw(distribution: Distribution, std: f64, len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    match distribution {
        Distribution::Normal => (0..len)
            .map(|_| (std * rng.sample::<f64, _>(StandardNormal)) as f32)
            .collect(),
        Distribution::Uniform => {
            let bound = 3f64.sqrt() * std;
            if bound == 0.0 {
                return vec![0.0; len];
            }
            let uniform = Uniform::new_inclusive(-bound, bound).expect("finite, ordered bounds");
            (0..len).map(|_| uniform.sample(rng) as f32).collect()
        }
        Distribution::TruncatedNormal => {
            let scale = std / TRUNCATED_NORMAL_STD;
            (0..len)
                .map(|_| {
                    loop {
                        // Rejection keeps the exact truncated shape; 95.4 % of draws are accepted.
                        let z: f64 = rng.sample(StandardNormal);
                        if z.abs() <= 2.0 {
                            break (scale * z) as f32;
                        }
                    }
                })
                .collect()
        }
    }
}

/// A `rows × cols` matrix with orthonormal rows (rows ≤ cols) or columns (rows > cols), times
/// `gain`, drawn as PyTorch's `orthogonal_` does: QR of a standard normal matrix with the signs
/// of R's diagonal folded into Q, which makes the result Haar-distributed.
fn orthogonal(rows: usize, cols: usize, gain: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    // Work on the tall orientation (n vectors of length m, n ≤ m) and transpose back.
    let (n, m) = if rows < cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut vectors: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..m).map(|_| rng.sample(StandardNormal)).collect())
        .collect();
    // Modified Gram–Schmidt, run twice ("twice is enough", Giraud et al. 2005) for orthogonality
    // to machine precision in f64. Normalising each vector to a positive length is the same as
    // making R's diagonal positive, i.e. PyTorch's sign correction.
    for i in 0..n {
        for _ in 0..2 {
            for j in 0..i {
                let projection = dot(&vectors[i], &vectors[j]);
                let (done, current) = vectors.split_at_mut(i);
                for (x, q) in current[0].iter_mut().zip(&done[j]) {
                    *x -= projection * q;
                }
            }
        }
        let norm = dot(&vectors[i], &vectors[i]).sqrt();
        vectors[i].iter_mut().for_each(|x| *x /= norm);
    }

    let mut out = vec![0f32; rows * cols];
    for (k, vector) in vectors.iter().enumerate() {
        for (l, value) in vector.iter().enumerate() {
            // vectors[k] is row k when rows ≤ cols, column k otherwise.
            let index = if rows < cols {
                k * cols + l
            } else {
                l * cols + k
            };
            out[index] = (gain * value) as f32;
        }
    }
    out
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
