//! Real training on a CIFAR-10 subset: run folder, falling loss, exact resume, comparison.

use crate::common;

use crate::common::{assert_success, cifar_dir, deterministic, read_run, tiny_run_args, train};
use kaiming_train::metrics::MetricRow;
use kaiming_train::summary::Status;

#[test]
fn a_short_run_writes_its_folder_and_its_loss_falls_and_resume_is_exact() {
    let Some(data) = cifar_dir("the end-to-end training test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();

    // Uninterrupted: 2 epochs.
    assert_success(&train(cwd.path(), &tiny_run_args(data, "straight", "2")));
    let straight = cwd.path().join("runs/straight");
    for file in [
        "config.toml",
        "metrics.csv",
        "summary.json",
        "run.lock",
        "checkpoints/latest",
        "checkpoints/best",
        "checkpoints/step-000000020/model.bpk",
        "checkpoints/step-000000020/optimizer.bpk",
        "checkpoints/step-000000020/metrics.csv",
        "checkpoints/step-000000020/progress.json",
    ] {
        assert!(straight.join(file).is_file(), "{file} missing");
    }
    let latest = std::fs::read_to_string(straight.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-000000020");
    let (summary, metrics) = read_run(&straight);
    assert_eq!(summary.status, Status::Completed);
    assert_eq!(summary.epochs_completed, 2);
    assert_eq!(summary.steps, 20);
    assert_eq!(
        (summary.model.to_string(), summary.init.to_string()),
        ("resnet20".to_string(), "he".to_string())
    );
    let train_rows: Vec<&MetricRow> = metrics.rows.iter().filter(|r| r.split == "train").collect();
    assert_eq!(train_rows.len(), 10, "a train row every 2 of 20 steps");
    assert_eq!(metrics.evaluations().count(), 2, "a test row per epoch");
    // Training loss falls: the last quarter of the rows below the first quarter.
    let mean = |rows: &[&MetricRow]| rows.iter().map(|r| r.loss()).sum::<f64>() / rows.len() as f64;
    let (first, last) = (mean(&train_rows[..3]), mean(&train_rows[7..]));
    assert!(
        last < first,
        "training loss did not fall: {first:.4} → {last:.4}"
    );

    // Interrupted after epoch 1, then resumed: the same rows.
    let mut args = tiny_run_args(data, "resumed", "2");
    args.extend(["--stop-after", "1"]);
    assert_success(&train(cwd.path(), &args));
    let resumed = cwd.path().join("runs/resumed");
    let (summary, _) = read_run(&resumed);
    assert_eq!(
        (summary.status, summary.epochs_completed),
        (Status::Interrupted, 1)
    );
    assert_success(&common::resume(cwd.path(), &resumed, data));
    let (summary, resumed_metrics) = read_run(&resumed);
    assert_eq!(summary.status, Status::Completed);
    assert_eq!(
        deterministic(&resumed_metrics.rows),
        deterministic(&metrics.rows)
    );

    // The comparison of the two runs.
    let compare = train(
        cwd.path(),
        &[
            "compare",
            straight.to_str().unwrap(),
            resumed.to_str().unwrap(),
            "--out",
            "cmp",
        ],
    );
    assert_success(&compare);
    let table = String::from_utf8_lossy(&compare.stdout);
    assert!(
        table.contains("straight") && table.contains("resumed"),
        "{table}"
    );
    for file in ["comparison.csv", "comparison.svg", "comparison.png"] {
        let path = cwd.path().join("cmp").join(file);
        assert!(
            std::fs::metadata(&path).unwrap().len() > 100,
            "{file} empty"
        );
    }
    let png = std::fs::read(cwd.path().join("cmp/comparison.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    for run in [&straight, &resumed] {
        common::assert_summarised(run, &cwd.path().join("cmp/comparison.csv"));
    }
}

/// `--lsuv` through the binary: the run writes what the pass did to every layer in `lsuv.txt`,
/// and a resumed run takes its weights from the checkpoint without running LSUV again.
#[test]
fn lsuv_writes_its_report_and_a_resume_does_not_run_it_again() {
    let Some(data) = cifar_dir("the LSUV run test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut args = tiny_run_args(data, "lsuv", "2");
    common::set_arg(&mut args, "--train-limit", "96");
    args.extend(["--lsuv", "--stop-after", "1"]);
    assert_success(&train(cwd.path(), &args));
    let dir = cwd.path().join("runs/lsuv");
    let report = std::fs::read_to_string(dir.join("lsuv.txt")).unwrap();
    // ResNet-20: the stem, 18 convolutions in the blocks, the classifier.
    let layers = report
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    assert_eq!(layers, 20, "{report}");
    assert!(report.contains("fc.weight"), "{report}");

    std::fs::remove_file(dir.join("lsuv.txt")).unwrap();
    assert_success(&common::resume(cwd.path(), &dir, data));
    let (summary, _) = read_run(&dir);
    assert_eq!(summary.status, Status::Completed);
    assert!(
        !dir.join("lsuv.txt").exists(),
        "the resumed run ran LSUV again"
    );
}

#[test]
fn a_diverging_run_stops_with_status_diverged_and_keeps_its_log() {
    let Some(data) = cifar_dir("the divergence test") else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let output = train(
        cwd.path(),
        &[
            "--model",
            "plaincnn",
            "--depth",
            "8",
            "--norm",
            "none",
            "--init",
            "he",
            "--lr",
            "1e6",
            "--momentum",
            "0",
            "--weight-decay",
            "0",
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "--train-limit",
            "320",
            "--eval-limit",
            "64",
            "--log-every",
            "1",
            "--schedule",
            "constant",
            "--data-dir",
            data.to_str().unwrap(),
            "--no-download",
            "--quiet",
            "--name",
            "boom",
        ],
    );
    assert_eq!(output.status.code(), Some(3), "{}", common::stderr(&output));
    let (summary, metrics) = read_run(&cwd.path().join("runs/boom"));
    assert_eq!(summary.status, Status::Diverged);
    assert!(summary.steps >= 1);
    assert_eq!(
        metrics.rows.len(),
        summary.steps,
        "one train row per finite step"
    );
}

/// ResNet-56 without normalisation, 30 steps of 16 real images: He's branches double the
/// signal's variance per block, so the monitor sees it explode at step 0 (or the loss
/// diverges); Fixup and SkipInit start every branch at zero and train; a Fixup run stopped
/// after its first epoch resumes to the uninterrupted run's rows.
#[test]
fn resnet56_without_norm_explodes_under_he_and_trains_under_fixup_and_skipinit() {
    let Some(data) = cifar_dir("the normalisation-free test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let run = |name: &'static str, residual: &'static str, extra: &[&'static str]| {
        let mut args = tiny_run_args(data, name, "2");
        common::set_arg(&mut args, "--model", "resnet56");
        common::set_arg(&mut args, "--batch-size", "16");
        common::set_arg(&mut args, "--train-limit", "240");
        common::set_arg(&mut args, "--eval-limit", "32");
        common::set_arg(&mut args, "--log-every", "1");
        args.extend([
            "--norm",
            "none",
            "--residual",
            residual,
            "--monitor-every",
            "10",
        ]);
        args.extend(extra);
        let output = train(cwd.path(), &args);
        (output, cwd.path().join("runs").join(name))
    };

    let (output, he) = run("he", "standard", &[]);
    let (summary, _) = read_run(&he);
    let exploded = summary
        .signals
        .iter()
        .any(|s| s.kind.to_string() == "exploding" && s.step == 0);
    assert!(
        summary.status == Status::Diverged || exploded,
        "He without norm neither diverged nor was diagnosed exploding at step 0: {:?}\n{}",
        summary.signals,
        common::stderr(&output)
    );

    for residual in ["fixup", "skipinit"] {
        let (output, dir) = run(residual, residual, &[]);
        assert_success(&output);
        let (summary, metrics) = read_run(&dir);
        assert_eq!(summary.status, Status::Completed);
        let train_rows: Vec<&MetricRow> =
            metrics.rows.iter().filter(|r| r.split == "train").collect();
        let mean = |rows: &[&MetricRow]| rows.iter().map(|r| r.loss()).sum::<f64>() / 5.0;
        let (early, late) = (mean(&train_rows[..5]), mean(&train_rows[25..]));
        assert!(late < early, "{residual}: loss {early:.4} → {late:.4}");
        let first = train_rows[0].loss();
        if residual == "fixup" {
            // Zero classifier, zero branches: every logit is 0 at the first step.
            assert!(
                (first - 10f64.ln()).abs() < 1e-4,
                "fixup's first loss {first}"
            );
            let (interrupted, resumed) = run("fixup-resumed", "fixup", &["--stop-after", "1"]);
            assert_success(&interrupted);
            assert_success(&common::resume(cwd.path(), &resumed, data));
            let (_, resumed_metrics) = read_run(&resumed);
            assert_eq!(
                deterministic(&resumed_metrics.rows),
                deterministic(&metrics.rows)
            );
        }
    }
}
