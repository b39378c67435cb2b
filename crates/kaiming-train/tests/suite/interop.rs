//! A run evaluated with `train eval`, exported with `train export`, read back as a weights file,
//! and fine-tuned from with `train --weights`, through the binary.

use crate::common::{assert_success, cifar_dir, read_run, stderr, tiny_run_args, train};
use kaiming_train::config::RunConfig;
use serde_json::Value;

fn json(output: &std::process::Output) -> Value {
    assert_success(output);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn a_run_is_evaluated_exported_and_fine_tuned_from() {
    let Some(data) = cifar_dir("the eval, export and fine-tuning test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    assert_success(&train(cwd.path(), &tiny_run_args(data, "source", "1")));
    let source = cwd.path().join("runs/source");
    let (_, metrics) = read_run(&source);
    let last = metrics.evaluations().last().unwrap();

    // The run's own evaluation, repeated from its checkpoint.
    let evaluated = json(&train(
        cwd.path(),
        &[
            "eval",
            source.to_str().unwrap(),
            "--checkpoint",
            "latest",
            "--eval-limit",
            "200",
            "--data-dir",
            data,
            "--json",
        ],
    ));
    assert_eq!(evaluated["images"], 200);
    assert!((evaluated["loss"].as_f64().unwrap() - last.loss()).abs() < 1e-9);
    assert!((evaluated["accuracy"].as_f64().unwrap() - last.accuracy()).abs() < 1e-12);

    // Exported, then evaluated as a weights file.
    let exported = cwd.path().join("source.safetensors");
    assert_success(&train(
        cwd.path(),
        &[
            "export",
            source.to_str().unwrap(),
            "--out",
            exported.to_str().unwrap(),
        ],
    ));
    let from_file = json(&train(
        cwd.path(),
        &[
            "eval",
            "--model",
            "resnet20",
            "--weights",
            exported.to_str().unwrap(),
            "--eval-limit",
            "200",
            "--data-dir",
            data,
            "--json",
        ],
    ));
    // The export evaluates as the run itself: the same weights, and the input normalisation of
    // the run's 320 training images from the file's metadata (the full training set's would
    // give another loss).
    assert_eq!(from_file["images"], 200);
    for what in ["loss", "accuracy"] {
        let (got, want) = (
            from_file[what].as_f64().unwrap(),
            evaluated[what].as_f64().unwrap(),
        );
        assert!(
            (got - want).abs() <= 1e-6 * want.abs(),
            "the export's {what} {got}, the run's {want}"
        );
    }

    // Fine-tuned from: the weights are the run's starting point, and it starts where the
    // source run ended rather than at an untrained loss.
    let mut args = tiny_run_args(data, "tuned", "1");
    args.extend(["--weights", exported.to_str().unwrap()]);
    assert_success(&train(cwd.path(), &args));
    let tuned = cwd.path().join("runs/tuned");
    let (summary, tuned_metrics) = read_run(&tuned);
    assert_eq!(summary.weights.as_deref(), exported.to_str());
    let config = RunConfig::read(&tuned.join("config.toml")).unwrap();
    assert_eq!(config.model.weights.as_deref(), Some(exported.as_path()));
    let (first_tuned, first_source) = (tuned_metrics.rows[0].loss(), metrics.rows[0].loss());
    assert!(
        first_tuned < first_source,
        "fine-tuning started at loss {first_tuned}, the source run at {first_source}"
    );
    let compare = train(
        cwd.path(),
        &[
            "compare",
            source.to_str().unwrap(),
            tuned.to_str().unwrap(),
            "--out",
            "cmp",
        ],
    );
    assert_success(&compare);
    let table = String::from_utf8_lossy(&compare.stdout);
    assert!(table.contains("from source.safetensors + he"), "{table}");

    // Bad weights are named.
    let missing = train(
        cwd.path(),
        &[
            "eval",
            "--model",
            "resnet20",
            "--weights",
            "nowhere.pth",
            "--json",
        ],
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("nowhere.pth"),
        "{}",
        stderr(&missing)
    );
}
