//! Scheme names: parse, print, serde, errors, and conversion to burn's `Initializer`.

use burn::nn::Initializer;
use kaiming_init::{Distribution, FanMode, Nonlinearity, NotExpressible, Scheme};

#[test]
fn documented_names_parse_to_the_documented_schemes() {
    let he = |distribution, mode| Scheme::He {
        distribution,
        mode,
        nonlinearity: Nonlinearity::Relu,
    };
    let cases = [
        ("he", he(Distribution::Normal, FanMode::FanIn)),
        ("he-uniform", he(Distribution::Uniform, FanMode::FanIn)),
        ("he-fan-out", he(Distribution::Normal, FanMode::FanOut)),
        (
            "he-trunc",
            he(Distribution::TruncatedNormal, FanMode::FanIn),
        ),
        (
            "he-uniform-fan-avg",
            he(Distribution::Uniform, FanMode::FanAvg),
        ),
        (
            "xavier",
            Scheme::Xavier {
                distribution: Distribution::Normal,
                nonlinearity: Nonlinearity::Linear,
            },
        ),
        (
            "xavier-uniform",
            Scheme::Xavier {
                distribution: Distribution::Uniform,
                nonlinearity: Nonlinearity::Linear,
            },
        ),
        (
            "xavier:tanh",
            Scheme::Xavier {
                distribution: Distribution::Normal,
                nonlinearity: Nonlinearity::Tanh,
            },
        ),
        (
            "lecun",
            Scheme::LeCun {
                distribution: Distribution::Normal,
            },
        ),
        (
            "orthogonal",
            Scheme::Orthogonal {
                nonlinearity: Nonlinearity::Linear,
            },
        ),
        ("torch-default", Scheme::TorchDefault),
        ("zeros", Scheme::Constant(0.0)),
        ("constant(0.5)", Scheme::Constant(0.5)),
        (
            "he-fan-out:leaky_relu(0.2)",
            Scheme::He {
                distribution: Distribution::Normal,
                mode: FanMode::FanOut,
                nonlinearity: Nonlinearity::LeakyRelu {
                    negative_slope: 0.2,
                },
            },
        ),
    ];
    for (name, scheme) in cases {
        assert_eq!(name.parse::<Scheme>().unwrap(), scheme, "{name}");
        assert_eq!(scheme.to_string(), name);
    }
    assert_eq!(Scheme::default(), Scheme::he());
    // An explicit default spelling parses to the short name.
    assert_eq!(
        "he-normal-fan-in:relu"
            .parse::<Scheme>()
            .unwrap()
            .to_string(),
        "he"
    );
}

#[test]
fn every_preset_round_trips_through_its_name_and_serde() {
    let presets = Scheme::presets();
    assert!(presets.len() >= 10);
    for scheme in presets {
        let name = scheme.to_string();
        assert_eq!(name.parse::<Scheme>().unwrap(), scheme);
        let json = serde_json::to_string(&scheme).unwrap();
        assert_eq!(json, format!("\"{name}\""));
        assert_eq!(serde_json::from_str::<Scheme>(&json).unwrap(), scheme);
    }
}

#[test]
fn unknown_names_are_errors_listing_the_valid_ones() {
    for bad in [
        "kaiming",
        "he-",
        "he-fan-sideways",
        "xavier-fan-out",
        "lecun:relu",
        "he:softplus",
        "constant(x)",
        "",
    ] {
        let error = bad.parse::<Scheme>().unwrap_err().to_string();
        assert!(
            error.contains("he-uniform") || error.contains("leaky_relu"),
            "{bad}: {error}"
        );
    }
    let error = "kaiming".parse::<Scheme>().unwrap_err().to_string();
    assert!(
        error.starts_with("unknown init scheme 'kaiming'"),
        "{error}"
    );
    for name in [
        "he",
        "he-trunc",
        "xavier-uniform",
        "lecun",
        "orthogonal",
        "torch-default",
    ] {
        assert!(error.contains(name), "{name} missing from: {error}");
    }
    assert!(serde_json::from_str::<Scheme>("\"kaiming\"").is_err());
}

#[test]
fn conversion_to_burn_initializer_is_exact_or_a_typed_refusal() {
    let scheme = |name: &str| name.parse::<Scheme>().unwrap();
    assert_eq!(
        scheme("he").to_burn_initializer(),
        Ok(Initializer::KaimingNormal {
            gain: 2f64.sqrt(),
            fan_out_only: false
        })
    );
    assert_eq!(
        scheme("he-uniform-fan-out").to_burn_initializer(),
        Ok(Initializer::KaimingUniform {
            gain: 2f64.sqrt(),
            fan_out_only: true
        })
    );
    assert_eq!(
        scheme("lecun").to_burn_initializer(),
        Ok(Initializer::KaimingNormal {
            gain: 1.0,
            fan_out_only: false
        })
    );
    assert_eq!(
        scheme("xavier-uniform").to_burn_initializer(),
        Ok(Initializer::XavierUniform { gain: 1.0 })
    );
    assert_eq!(
        scheme("torch-default").to_burn_initializer(),
        Ok(Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false
        })
    );
    assert_eq!(
        scheme("he-fan-avg").to_burn_initializer(),
        Err(NotExpressible::FanAvg)
    );
    assert_eq!(
        scheme("he-trunc").to_burn_initializer(),
        Err(NotExpressible::TruncatedNormal)
    );
}
