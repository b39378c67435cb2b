//! The probe shows the seed's argument: He keeps the signal, Xavier loses it geometrically.

use crate::common;

#[test]
fn he_keeps_the_activation_scale_and_xavier_loses_it_through_30_plain_layers() {
    let cwd = tempfile::tempdir().unwrap();
    let mut args = vec![
        "probe",
        "--model",
        "plaincnn",
        "--depth",
        "30",
        "--norm",
        "none",
        "--init",
        "he,xavier",
        "--batch-size",
        "32",
        "--out",
        "probe",
    ];
    let data = common::cifar_dir("real-data probing (using --synthetic instead)");
    let data = data.as_ref().map(|d| d.to_str().unwrap().to_string());
    match &data {
        Some(dir) => args.extend(["--data-dir", dir.as_str()]),
        None => args.push("--synthetic"),
    }
    let output = common::train(cwd.path(), &args);
    common::assert_success(&output);

    let mut reader = csv::Reader::from_path(cwd.path().join("probe/probe.csv")).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "init",
            "layer_index",
            "layer",
            "activation_std",
            "gradient_std",
            "predicted_std"
        ]
    );
    let rows: Vec<(String, usize, String, f64, f64, Option<f64>)> =
        reader.deserialize().map(|row| row.unwrap()).collect();
    // A plain net's rows carry He et al.'s prediction, so the figure can be redrawn from the
    // file; it starts from the measured first layer.
    for row in &rows {
        let predicted = row.5.unwrap_or_else(|| panic!("{row:?} has no prediction"));
        if row.1 == 0 {
            assert_eq!(predicted, row.3, "{row:?}");
        }
    }
    let layers = |init: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.0 == init)
            .map(|r| (r.3, r.4))
            .collect()
    };
    let (he, xavier) = (layers("he"), layers("xavier"));
    assert_eq!(he.len(), 29, "one row per hidden conv layer");
    assert_eq!(xavier.len(), he.len());
    let ratio = |l: &[(f64, f64)]| l.last().unwrap().0 / l[0].0;
    assert!(
        (0.1..10.0).contains(&ratio(&he)),
        "He: last/first activation std = {}",
        ratio(&he)
    );
    assert!(
        ratio(&xavier) < 1e-3,
        "Xavier: last/first = {}",
        ratio(&xavier)
    );
    assert!(
        he.iter()
            .chain(&xavier)
            .all(|&(a, g)| a > 0.0 && g > 0.0 && g.is_finite())
    );
    for file in ["probe.svg", "probe.png"] {
        assert!(cwd.path().join("probe").join(file).is_file());
    }
}
