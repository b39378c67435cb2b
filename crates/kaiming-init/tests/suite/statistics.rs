//! Empirical statistics of sampled weights against the formulas.

use kaiming_init::sample::sample;
use kaiming_init::scheme::TRUNCATED_NORMAL_STD;
use kaiming_init::{Distribution, FanMode, Fans, Fill, Nonlinearity, Scheme};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const FANS: Fans = Fans {
    fan_in: 288,
    fan_out: 576,
};
const LEN: usize = 200_000;

fn std_of(values: &[f32]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt()
}

/// The variance each scheme promises, written out from the papers rather than from the crate.
fn expected_variance(scheme: Scheme) -> f64 {
    let (fan_in, fan_out) = (FANS.fan_in as f64, FANS.fan_out as f64);
    match scheme {
        Scheme::He {
            mode, nonlinearity, ..
        } => {
            let fan = match mode {
                FanMode::FanIn => fan_in,
                FanMode::FanOut => fan_out,
                FanMode::FanAvg => (fan_in + fan_out) / 2.0,
            };
            nonlinearity.gain().powi(2) / fan
        }
        Scheme::Xavier { nonlinearity, .. } => {
            nonlinearity.gain().powi(2) * 2.0 / (fan_in + fan_out)
        }
        Scheme::LeCun { .. } => 1.0 / fan_in,
        Scheme::TorchDefault => (1.0 / fan_in.sqrt()).powi(2) / 3.0,
        Scheme::Orthogonal { .. } | Scheme::Constant(_) => unreachable!("not variance scaling"),
    }
}

fn variance_scaling_schemes() -> Vec<Scheme> {
    let distributions = [
        Distribution::Normal,
        Distribution::Uniform,
        Distribution::TruncatedNormal,
    ];
    let mut schemes = vec![Scheme::TorchDefault];
    for distribution in distributions {
        for mode in [FanMode::FanIn, FanMode::FanOut, FanMode::FanAvg] {
            for nonlinearity in [Nonlinearity::Relu, Nonlinearity::Tanh, Nonlinearity::Gelu] {
                schemes.push(Scheme::He {
                    distribution,
                    mode,
                    nonlinearity,
                });
            }
        }
        schemes.push(Scheme::Xavier {
            distribution,
            nonlinearity: Nonlinearity::Linear,
        });
        schemes.push(Scheme::Xavier {
            distribution,
            nonlinearity: Nonlinearity::Tanh,
        });
        schemes.push(Scheme::LeCun { distribution });
    }
    schemes
}

#[test]
fn he_relu_normal_is_two_over_fan_in() {
    let fill = Scheme::he().weight_fill(FANS);
    assert!((fill.std().unwrap() - (2.0 / 288.0f64).sqrt()).abs() < 1e-15);
    let uniform: Scheme = "he-uniform".parse().unwrap();
    let bound = uniform.weight_fill(FANS).bound().unwrap();
    assert!((bound - (6.0 / 288.0f64).sqrt()).abs() < 1e-15);
}

#[test]
fn every_variance_scaling_scheme_has_the_std_of_its_formula() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for scheme in variance_scaling_schemes() {
        let expected = expected_variance(scheme).sqrt();
        let fill = scheme.weight_fill(FANS);
        assert!(
            (fill.std().unwrap() - expected).abs() < 1e-12 * expected,
            "{scheme}: planned std {:?} vs formula {expected}",
            fill.std()
        );
        let values = sample(fill, &[LEN], &mut rng);
        let measured = std_of(&values);
        assert!(
            (measured / expected - 1.0).abs() < 0.01,
            "{scheme}: measured std {measured} vs formula {expected}"
        );
    }
}

#[test]
fn uniform_samples_fill_their_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for scheme in variance_scaling_schemes() {
        let fill = scheme.weight_fill(FANS);
        let Fill::Random {
            distribution: Distribution::Uniform,
            std,
        } = fill
        else {
            continue;
        };
        let bound = fill.bound().unwrap();
        assert!((bound - 3f64.sqrt() * std).abs() < 1e-15);
        let values = sample(fill, &[LEN], &mut rng);
        let max = values.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        assert!(
            max <= bound * (1.0 + 1e-6),
            "{scheme}: {max} outside ±{bound}"
        );
        assert!(
            max >= 0.99 * bound,
            "{scheme}: {max} never reaches 0.99·{bound}"
        );
    }
}

#[test]
fn truncated_samples_stay_within_two_sigma_prime() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let scheme: Scheme = "he-trunc".parse().unwrap();
    let fill = scheme.weight_fill(FANS);
    let target = (2.0 / 288.0f64).sqrt();
    let sigma_prime = target / TRUNCATED_NORMAL_STD;
    assert!((fill.bound().unwrap() - 2.0 * sigma_prime).abs() < 1e-15);
    let values = sample(fill, &[LEN], &mut rng);
    let max = values.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    assert!(max <= 2.0 * sigma_prime * (1.0 + 1e-6));
    // A truncated normal is dense up to its cut, unlike a plain normal rescaled.
    assert!(max >= 1.98 * sigma_prime);
    assert!((std_of(&values) / target - 1.0).abs() < 0.01);
}

#[test]
fn truncated_normal_constant_is_the_std_of_the_truncated_standard_normal() {
    // Var of N(0,1) truncated to [-2, 2] is 1 - 2·2·φ(2)/(Φ(2) - Φ(-2)).
    let phi = (-2.0f64).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let mass = libm::erf(2.0 / 2f64.sqrt());
    let std = (1.0 - 4.0 * phi / mass).sqrt();
    assert!((std - TRUNCATED_NORMAL_STD).abs() < 1e-12, "{std}");
}

/// `a` is `rows × cols`, row-major; returns `a·aᵀ` if `rows ≤ cols`, else `aᵀ·a`.
fn gram(a: &[f32], rows: usize, cols: usize) -> (Vec<f64>, usize) {
    let at = |r: usize, c: usize| a[r * cols + c] as f64;
    if rows <= cols {
        let mut g = vec![0.0; rows * rows];
        for i in 0..rows {
            for j in 0..rows {
                g[i * rows + j] = (0..cols).map(|k| at(i, k) * at(j, k)).sum();
            }
        }
        (g, rows)
    } else {
        let mut g = vec![0.0; cols * cols];
        for i in 0..cols {
            for j in 0..cols {
                g[i * cols + j] = (0..rows).map(|k| at(k, i) * at(k, j)).sum();
            }
        }
        (g, cols)
    }
}

#[test]
fn orthogonal_gives_orthonormal_rows_or_columns() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    // Tall, wide, square, and a conv weight [c_out, c_in, kh, kw] flattened to [64, 144].
    for shape in [
        vec![256, 128],
        vec![128, 256],
        vec![96, 96],
        vec![64, 16, 3, 3],
    ] {
        let rows = shape[0];
        let cols: usize = shape[1..].iter().product();
        let values = sample(Fill::Orthogonal { gain: 1.0 }, &shape, &mut rng);
        let (g, n) = gram(&values, rows, cols);
        for i in 0..n {
            for j in 0..n {
                let expected = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (g[i * n + j] - expected).abs() < 1e-4,
                    "{shape:?}: WᵀW[{i},{j}] = {}",
                    g[i * n + j]
                );
            }
        }
    }
}

#[test]
fn orthogonal_gain_scales_the_matrix() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let scheme: Scheme = "orthogonal:relu".parse().unwrap();
    let fill = scheme.weight_fill(FANS);
    assert_eq!(fill, Fill::Orthogonal { gain: 2f64.sqrt() });
    let values = sample(fill, &[32, 32], &mut rng);
    let (g, n) = gram(&values, 32, 32);
    for i in 0..n {
        assert!((g[i * n + i] - 2.0).abs() < 1e-4);
    }
}

#[test]
fn torch_default_bias_is_uniform_over_one_over_sqrt_fan_in() {
    let fill = Scheme::TorchDefault.bias_fill(FANS);
    assert!((fill.bound().unwrap() - 1.0 / 288f64.sqrt()).abs() < 1e-15);
    assert_eq!(Scheme::he().bias_fill(FANS), Fill::Constant(0.0));
    assert_eq!(Scheme::xavier().bias_fill(FANS), Fill::Constant(0.0));
}
