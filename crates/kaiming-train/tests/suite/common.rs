//! Helpers shared by the trainer's tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kaiming_train::metrics::{MetricRow, Metrics};
use kaiming_train::summary::Summary;

/// The real CIFAR-10 folder from `CIFAR10_DIR`, or `None` after printing why a test skips;
/// where `KAIMING_REQUIRE_DATA` is set (`.ci/run` sets it), a missing folder fails the test.
pub fn cifar_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("CIFAR10_DIR").map(PathBuf::from) {
        Some(dir) if dir.join("data_batch_1.bin").is_file() => Some(dir),
        _ => {
            let why = "CIFAR10_DIR does not name the cifar-10-batches-bin folder";
            assert!(
                std::env::var_os("KAIMING_REQUIRE_DATA").is_none(),
                "{test}: {why}, and KAIMING_REQUIRE_DATA requires it"
            );
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

/// torchvision's fixture folder from `TORCHVISION_FIXTURES`, as [`cifar_dir`] the data.
pub fn torchvision_fixtures(test: &str) -> Option<PathBuf> {
    match std::env::var_os("TORCHVISION_FIXTURES").map(PathBuf::from) {
        Some(dir) if dir.join("resnet-basic-1111.pth").is_file() => Some(dir),
        _ => {
            let why = "TORCHVISION_FIXTURES does not name the torchvision fixture folder";
            assert!(
                std::env::var_os("KAIMING_REQUIRE_DATA").is_none(),
                "{test}: {why}, and KAIMING_REQUIRE_DATA requires it"
            );
            eprintln!("skipping {test}: {why}");
            None
        }
    }
}

/// The `train` binary in `cwd` with `args`, quiet, never downloading, no fault injected.
pub fn train_command(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_train"));
    command
        .current_dir(cwd)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("CIFAR10_URL")
        .env_remove("KAIMING_FAULT");
    command
}

/// Runs the `train` binary in `cwd` with `args`.
pub fn train(cwd: &Path, args: &[&str]) -> Output {
    train_command(cwd, args)
        .output()
        .expect("the train binary runs")
}

/// The columns of metrics.csv that must repeat exactly; the timing columns cannot.
pub fn deterministic(rows: &[MetricRow]) -> Vec<(usize, usize, String, f64, f64, f64)> {
    rows.iter()
        .map(|r| {
            let lr = r.get("lr").expect("every row has a learning rate");
            (r.step, r.epoch, r.split.clone(), r.loss(), r.accuracy(), lr)
        })
        .collect()
}

/// Continues the run in `dir` with `--resume`, reading CIFAR-10 from `data`.
pub fn resume(cwd: &Path, dir: &Path, data: &str) -> Output {
    train(
        cwd,
        &[
            "--resume",
            dir.to_str().unwrap(),
            "--quiet",
            "--data-dir",
            data,
        ],
    )
}

/// A run folder's summary and metrics.
pub fn read_run(dir: &Path) -> (Summary, Metrics) {
    (
        Summary::read(&dir.join("summary.json")).unwrap(),
        Metrics::read(&dir.join("metrics.csv")).unwrap(),
    )
}

/// Stderr of a run, for messages.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success, showing stderr otherwise.
pub fn assert_success(output: &Output) {
    assert!(output.status.success(), "train failed:\n{}", stderr(output));
}

/// The settings of a tiny real-data run: ResNet-20 on a few hundred images, 10 steps an epoch.
/// Mid-epoch checkpoints are counted in steps, past the end of the run: the default cadence is
/// a wall-clock interval, and what a run folder holds must not depend on the machine's speed.
pub fn tiny_run_args<'a>(data_dir: &'a str, name: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "--checkpoint-every",
        "1000",
        "--model",
        "resnet20",
        "--init",
        "he",
        "--epochs",
        epochs,
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--schedule",
        "constant",
        "--weight-decay",
        "5e-4",
        "--train-limit",
        "320",
        "--eval-limit",
        "200",
        "--log-every",
        "2",
        "--seed",
        "3",
        "--data-dir",
        data_dir,
        "--no-download",
        "--quiet",
        "--name",
        name,
    ]
}

/// Gives `flag` the value `value` in `args`, replacing the value it already has there.
pub fn set_arg<'a>(args: &mut Vec<&'a str>, flag: &'a str, value: &'a str) {
    match args.iter().position(|a| *a == flag) {
        Some(at) => args[at + 1] = value,
        None => args.extend([flag, value]),
    }
}

/// Checks that a run's `summary.json` and its row of the `comparison.csv` at `comparison` hold
/// what its `metrics.csv` says, recomputed here: the best and the last evaluation accuracy, and
/// the last epoch's training loss as the mean of its train rows weighted by the steps each
/// covers.
pub fn assert_summarised(run: &Path, comparison: &Path) {
    let (summary, metrics) = read_run(run);
    let accuracies: Vec<f64> = metrics.evaluations().map(MetricRow::accuracy).collect();
    let best = accuracies.iter().copied().fold(f64::NAN, f64::max);
    let last = *accuracies.last().expect("the run evaluated");
    let train: Vec<&MetricRow> = metrics.rows.iter().filter(|r| r.split == "train").collect();
    let final_epoch = train.last().expect("the run trained").epoch;
    let (mut sum, mut steps, mut previous) = (0.0, 0.0, 0);
    for row in &train {
        if row.epoch == final_epoch {
            sum += row.loss() * (row.step - previous) as f64;
            steps += (row.step - previous) as f64;
        }
        previous = row.step;
    }
    let final_loss = sum / steps;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let name = &summary.name;
    assert_eq!(summary.best_accuracy, Some(best), "{name}: best accuracy");
    assert_eq!(summary.final_accuracy, Some(last), "{name}: final accuracy");
    let loss = summary.final_train_loss.expect("a final train loss");
    assert!(
        close(loss, final_loss),
        "{name}: final train loss {loss}, rows say {final_loss}"
    );

    let mut table = csv::Reader::from_path(comparison).unwrap();
    let header = table.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let row = table
        .records()
        .map(Result::unwrap)
        .find(|r| &r[column("run")] == name.as_str())
        .unwrap_or_else(|| panic!("{} has no row for {name}", comparison.display()));
    let cell = |name: &str| row[column(name)].parse::<f64>().unwrap();
    for (what, got, want) in [
        ("best_accuracy", cell("best_accuracy"), best),
        ("final_accuracy", cell("final_accuracy"), last),
        ("final_train_loss", cell("final_train_loss"), final_loss),
    ] {
        assert!(
            close(got, want),
            "{}: {name} {what} {got}, the run's rows say {want}",
            comparison.display()
        );
    }
}

/// The device's random generator is one per process (burn's flex backend keeps it in a static):
/// a test that seeds it and relies on what it then draws, and every test here that draws from
/// it, holds this, so that tests running beside each other cannot take each other's draws.
pub fn generator() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
