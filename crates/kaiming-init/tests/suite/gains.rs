//! Gains against PyTorch's `torch.nn.init.calculate_gain` table, and the moment-matched ones.

use kaiming_init::Nonlinearity;
use kaiming_init::nonlinearity::{GELU_GAIN, SILU_GAIN};

#[test]
fn gains_equal_pytorch_calculate_gain() {
    // torch.nn.init.calculate_gain, PyTorch 2.x documentation table.
    let table = [
        (Nonlinearity::Linear, 1.0),
        (Nonlinearity::Sigmoid, 1.0),
        (Nonlinearity::Tanh, 5.0 / 3.0),
        (Nonlinearity::Relu, 2f64.sqrt()),
        (
            Nonlinearity::LeakyRelu {
                negative_slope: 0.01,
            },
            (2.0 / (1.0 + 0.01f64 * 0.01)).sqrt(),
        ),
        (
            Nonlinearity::LeakyRelu {
                negative_slope: 0.2,
            },
            (2.0 / 1.04f64).sqrt(),
        ),
        (Nonlinearity::Selu, 0.75),
    ];
    for (nonlinearity, gain) in table {
        assert!(
            (nonlinearity.gain() - gain).abs() < 1e-15,
            "{nonlinearity}: {} vs {gain}",
            nonlinearity.gain()
        );
    }
}

/// E[f(z)²] for z ~ N(0, 1) by composite Simpson's rule on [−12, 12].
fn second_moment(f: impl Fn(f64) -> f64) -> f64 {
    let (a, b, n) = (-12.0f64, 12.0f64, 200_000);
    let h = (b - a) / n as f64;
    let density = |z: f64| (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let g = |z: f64| f(z).powi(2) * density(z);
    let mut sum = g(a) + g(b);
    for i in 1..n {
        let z = a + i as f64 * h;
        sum += if i % 2 == 1 { 4.0 } else { 2.0 } * g(z);
    }
    sum * h / 3.0
}

#[test]
fn gelu_and_silu_gains_match_quadrature() {
    let gelu = |z: f64| 0.5 * z * (1.0 + libm::erf(z / 2f64.sqrt()));
    let silu = |z: f64| z / (1.0 + (-z).exp());
    assert!((1.0 / second_moment(gelu).sqrt() - GELU_GAIN).abs() < 1e-9);
    assert!((1.0 / second_moment(silu).sqrt() - SILU_GAIN).abs() < 1e-9);
    // The same quadrature reproduces ReLU's √2, so it measures the right thing.
    let relu = |z: f64| z.max(0.0);
    assert!((1.0 / second_moment(relu).sqrt() - 2f64.sqrt()).abs() < 1e-9);
    assert_eq!(Nonlinearity::Gelu.gain(), GELU_GAIN);
    assert_eq!(Nonlinearity::Silu.gain(), SILU_GAIN);
}

#[test]
fn nonlinearity_names_round_trip() {
    for name in [
        "linear",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu(0.2)",
        "selu",
        "gelu",
        "silu",
    ] {
        let parsed: Nonlinearity = name.parse().unwrap();
        assert_eq!(parsed.to_string(), name);
    }
    assert_eq!(
        "leaky_relu".parse::<Nonlinearity>().unwrap(),
        Nonlinearity::LeakyRelu {
            negative_slope: 0.01
        }
    );
    let error = "softplus".parse::<Nonlinearity>().unwrap_err().to_string();
    assert!(
        error.contains("softplus") && error.contains("leaky_relu"),
        "{error}"
    );
}
