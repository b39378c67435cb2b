//! Beyond one device: data-parallel replicas against a single replica, a sweep split into
//! shares run by two processes into one folder, and `sweep --parallel`.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{assert_success, cifar_dir, read_run, stderr, train, train_command};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use kaiming_cifar::Batch;
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{Model, ModelConfig, ModelName, Norm};
use kaiming_train::config::OptimizerSettings;
use kaiming_train::schedule::Schedule;
use kaiming_train::summary::Status;
use kaiming_train::trainer::{Trainer, TrainerParts, sgd};

fn values(model: &Model) -> Vec<f32> {
    use burn::store::ModuleSnapshot;
    model
        .collect(None, None, false)
        .into_iter()
        .flat_map(|t| {
            t.to_bytes()
                .unwrap()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn two_replicas_train_as_one_on_the_deep_plain_net() {
    let _generator = common::generator();
    let device = Device::flex().autodiff();
    let run = |replicas: usize| {
        let (model, _) = ModelConfig::new(ModelName::PlainCnn)
            .with_depth(30)
            .with_norm(Norm::None)
            .init_with(&device, &InitPlan::new(Scheme::he()), 0)
            .unwrap();
        let mut trainer = Trainer::new(TrainerParts {
            model,
            optimizer: sgd(&OptimizerSettings::default()),
            schedule: Schedule::constant(0.01),
            precision: Default::default(),
        })
        .with_replicas(vec![device.clone(); replicas])
        .unwrap();
        let mut losses = Vec::new();
        for step in 0..4 {
            device.seed(100 + step);
            let batch = Batch {
                images: Tensor::random([16, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device),
                labels: Tensor::from_data(
                    TensorData::new(
                        (0..16i64).map(|i| (i * 7 + step as i64) % 10).collect(),
                        [16],
                    ),
                    &device,
                ),
            };
            let stats = trainer.step(batch);
            assert!(stats.updated && stats.images == 16);
            losses.push(stats.loss);
        }
        (losses, values(trainer.model()))
    };
    let (one, one_weights) = run(1);
    let (two, two_weights) = run(2);
    for (step, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * a.abs(),
            "step {step}: loss {a} against {b}"
        );
    }
    let diff: f64 = one_weights
        .iter()
        .zip(&two_weights)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = one_weights
        .iter()
        .map(|a| f64::from(*a).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        diff <= 1e-4 * norm,
        "weights differ by {:.2e} relative",
        diff / norm
    );
}

/// A sweep of four tiny ResNet-20 runs on real data.
fn sweep_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "sweep",
        "--inits",
        "he,xavier",
        "--seeds",
        "0,1",
        "--model",
        "resnet20",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-limit",
        "64",
        "--eval-limit",
        "64",
        "--data-dir",
        data,
        "--no-download",
        "--quiet",
        "--monitor-every",
        "0",
        "--out",
        out,
    ]
}

const RUNS: [&str; 4] = [
    "resnet20-he-s0",
    "resnet20-he-s1",
    "resnet20-xavier-s0",
    "resnet20-xavier-s1",
];

/// The run folders in `dir` whose runs completed, each whole.
fn completed(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("summary.json").is_file())
        .map(|e| {
            let (summary, metrics) = read_run(&e.path());
            assert_eq!(summary.status, Status::Completed, "{:?}", e.path());
            assert!(!metrics.rows.is_empty());
            assert!(e.path().join("checkpoints/latest").is_file());
            e.file_name().to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
fn two_shares_in_two_processes_run_the_sweep_once_into_one_folder() {
    let _generator = common::generator();
    let Some(data) = cifar_dir("the sharded sweep test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let shares: Vec<_> = ["0/2", "1/2"]
        .into_iter()
        .map(|share| {
            let mut args = sweep_args(data, "shared");
            args.extend(["--shard", share]);
            train_command(cwd.path(), &args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for share in shares {
        let output = share.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let dir = cwd.path().join("shared");
    assert_eq!(
        completed(&dir),
        RUNS.iter().map(|s| s.to_string()).collect(),
        "every run of the sweep exactly once"
    );
    let compare = train(cwd.path(), &["compare", dir.to_str().unwrap()]);
    assert_success(&compare);
    let table = String::from_utf8_lossy(&compare.stdout);
    for run in RUNS {
        assert!(table.contains(run), "{run} missing from:\n{table}");
    }
}

#[test]
fn sweep_parallel_completes_every_run() {
    let _generator = common::generator();
    let Some(data) = cifar_dir("the parallel sweep test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut args = sweep_args(data, "parallel");
    args.extend(["--parallel", "2"]);
    let output = train(cwd.path(), &args);
    assert_success(&output);
    assert_eq!(
        completed(&cwd.path().join("parallel")),
        RUNS.iter().map(|s| s.to_string()).collect()
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(RUNS.iter().all(|run| table.contains(run)), "{table}");
}

#[test]
fn a_run_of_two_replicas_with_batch_norm_completes_and_its_loss_falls() {
    let _generator = common::generator();
    let Some(data) = cifar_dir("the replicas run test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut args = common::tiny_run_args(data, "replicas", "2");
    args.extend(["--replicas", "2"]);
    assert_success(&train(cwd.path(), &args));
    assert_success(&train(
        cwd.path(),
        &common::tiny_run_args(data, "single", "1"),
    ));
    let (summary, metrics) = read_run(&cwd.path().join("runs/replicas"));
    let (_, single) = read_run(&cwd.path().join("runs/single"));
    // Batch norm normalises each share with its own statistics: the first steps' loss differs
    // from one replica's, which it would not if the batch were not split.
    let (split, whole) = (metrics.rows[0].loss(), single.rows[0].loss());
    assert!(
        (split - whole).abs() > 1e-6,
        "two replicas and one gave the same loss {split}: the batch was not split"
    );
    assert_eq!(summary.status, Status::Completed);
    assert_eq!(summary.devices.len(), 2);
    let train_rows: Vec<f64> = metrics
        .rows
        .iter()
        .filter(|r| r.split == "train")
        .map(|r| r.loss())
        .collect();
    let (first, last) = (
        train_rows[..3].iter().sum::<f64>(),
        train_rows[train_rows.len() - 3..].iter().sum::<f64>(),
    );
    assert!(last < first, "the loss did not fall: {train_rows:?}");
}
