//! Model names, settings and their errors.

use burn::config::{Config, config_to_json};
use kaiming_resnet::{ModelConfig, ModelError, ModelName, Norm, ShortcutKind, StemKind};

#[test]
fn every_name_parses_and_prints_back() {
    let names = ModelName::all();
    assert_eq!(names.len(), 5 + 6 + 6 + 5 + 1);
    for name in names {
        assert_eq!(name.to_string().parse::<ModelName>().unwrap(), name);
    }
    assert_eq!("resnet50".parse(), Ok(ModelName::ResNet(50)));
    assert_eq!("resnet56".parse(), Ok(ModelName::CifarResNet(56)));
    assert_eq!("plain110".parse(), Ok(ModelName::CifarPlain(110)));
    assert_eq!("plain-resnet152".parse(), Ok(ModelName::PlainResNet(152)));
    assert_eq!("plaincnn".parse(), Ok(ModelName::PlainCnn));
    assert_eq!("ResNet18".parse(), Ok(ModelName::ResNet(18)));
    // Every 6n + 2 depth of the CIFAR family, the torchvision layout where the depths coincide.
    assert_eq!("plain8".parse(), Ok(ModelName::CifarPlain(8)));
    assert_eq!("resnet14".parse(), Ok(ModelName::CifarResNet(14)));
    assert_eq!("plain50".parse(), Ok(ModelName::CifarPlain(50)));
    assert_eq!("resnet50".parse(), Ok(ModelName::ResNet(50)));
}

#[test]
fn unknown_names_list_the_valid_ones() {
    for bad in [
        "resnet19",
        "plain18",
        "plain2",
        "resnet21",
        "plain-resnet20",
        "vgg16",
        "",
        "resnet",
    ] {
        let err = bad.parse::<ModelName>().unwrap_err();
        assert!(matches!(err, ModelError::UnknownModel { .. }), "{bad}");
        let message = err.to_string();
        for valid in [
            "resnet18",
            "resnet1202",
            "plain20",
            "plain-resnet152",
            "plaincnn",
        ] {
            assert!(message.contains(valid), "{message}");
        }
    }
}

#[test]
fn options_parse_and_refuse_with_the_valid_values() {
    assert_eq!("batch".parse(), Ok(Norm::Batch));
    assert_eq!("none".parse(), Ok(Norm::None));
    assert_eq!("cifar".parse(), Ok(StemKind::Cifar));
    assert_eq!("imagenet".parse(), Ok(StemKind::ImageNet));
    assert_eq!("A".parse(), Ok(ShortcutKind::A));
    assert!(
        "layer"
            .parse::<Norm>()
            .unwrap_err()
            .to_string()
            .contains("batch, none")
    );
    assert!(
        "tiny"
            .parse::<StemKind>()
            .unwrap_err()
            .to_string()
            .contains("imagenet, cifar")
    );
}

#[test]
fn configs_round_trip_through_json_with_names_as_strings() {
    let config = ModelConfig::new(ModelName::PlainResNet(34))
        .with_norm(Norm::None)
        .with_stem(StemKind::Cifar)
        .with_shortcut(Some(ShortcutKind::A))
        .with_zero_init_residual(true);
    let json = config_to_json(&config);
    assert!(json.contains("\"plain-resnet34\""), "{json}");
    assert!(json.contains("\"none\""), "{json}");
    let back = ModelConfig::load_binary(json.as_bytes()).unwrap();
    assert_eq!(config_to_json(&back), json);

    let bad = json.replace("plain-resnet34", "resnet35");
    assert!(ModelConfig::load_binary(bad.as_bytes()).is_err());
}

#[test]
fn validate_reports_bad_settings() {
    let ok = ModelConfig::new(ModelName::PlainCnn);
    assert!(ok.validate().is_ok());
    let shallow = ok.clone().with_depth(3);
    assert!(matches!(
        shallow.validate(),
        Err(ModelError::BadDepth { depth: 3, .. })
    ));
    assert!(ok.with_width(0).validate().is_err());
    assert!(kaiming_resnet::ResNetConfig::cifar(21).is_err());
    assert!(kaiming_resnet::ResNetConfig::cifar(8).is_ok());
    assert!(kaiming_resnet::ResNetConfig::imagenet(20).is_err());
    let shrinking = kaiming_resnet::ResNetConfig::new(
        kaiming_resnet::BlockKind::Basic,
        vec![1, 1],
        vec![32, 16],
    )
    .with_shortcut(ShortcutKind::A);
    assert!(shrinking.validate().is_err());
}
