//! The parsers of what a user or a crash can leave in a run folder — `config.toml`, a
//! `--config` recipe, a checkpoint set (`progress.json`, the model and optimizer files, its
//! `metrics.csv`), the run's `metrics.csv` and `summary.json` — fed arbitrary bytes, truncated
//! files and files with flipped bytes: an error naming the file every time, never a panic.

use crate::common;

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use kaiming_init::{InitPlan, Scheme};
use kaiming_resnet::{Model, ModelConfig, ModelName, Norm};
use kaiming_train::checkpoint::{Checkpoints, Progress, read_set};
use kaiming_train::config::{OptimizerSettings, RunArgs, RunConfig};
use kaiming_train::metrics::{MetricRow, Metrics, RowContext, Tally};
use kaiming_train::monitor::{Quantity, Signal, SignalKind};
use kaiming_train::summary::Summary;
use kaiming_train::trainer::sgd;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// A valid file damaged one of three ways: replaced by arbitrary bytes, cut short, or with
/// bytes overwritten.
fn damaged(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    let cut = valid.clone();
    let flip = valid;
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (0..len).prop_map(move |at| cut[..at].to_vec()),
        proptest::collection::vec((0..len, any::<u8>()), 1..4).prop_map(move |edits| {
            let mut bytes = flip.clone();
            for (at, byte) in edits {
                bytes[at] = byte;
            }
            bytes
        }),
    ]
}

/// Feeds `cases` damaged versions of `valid` to `parse` (given the path it was written to) and
/// checks each ends in a value or an error that names the file.
fn never_panics<T>(
    what: &str,
    valid: Vec<u8>,
    cases: u32,
    path: &Path,
    parse: impl Fn(&Path) -> anyhow::Result<T>,
) {
    damage(what, valid, cases, path, false, parse);
}

/// As [`never_panics`], and every version that differs from `valid` in any byte is refused.
fn refuses_any_change<T>(
    what: &str,
    valid: Vec<u8>,
    cases: u32,
    path: &Path,
    parse: impl Fn(&Path) -> anyhow::Result<T>,
) {
    damage(what, valid, cases, path, true, parse);
}

fn damage<T>(
    what: &str,
    valid: Vec<u8>,
    cases: u32,
    path: &Path,
    refuse_changes: bool,
    parse: impl Fn(&Path) -> anyhow::Result<T>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // The same cases on every run, so CI's verdict is repeatable; PROPTEST_RNG_SEED=N
        // draws others.
        rng_seed: match Config::default().rng_seed {
            proptest::test_runner::RngSeed::Random => {
                proptest::test_runner::RngSeed::Fixed(0x70617273)
            }
            given => given,
        },
        ..Config::default()
    });
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    runner
        .run(&damaged(valid.clone()), |bytes| {
            std::fs::write(path, &bytes).unwrap();
            match parse(path) {
                Err(error) => {
                    let message = format!("{error:#}");
                    prop_assert!(
                        message.contains(&name),
                        "{what}: the error does not name {name}: {message}"
                    );
                }
                Ok(_) => prop_assert!(
                    !refuse_changes || bytes == valid,
                    "{what}: a damaged {name} ({} bytes, the valid one {}) was accepted",
                    bytes.len(),
                    valid.len()
                ),
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{what}: {failure}"));
}

fn config() -> RunConfig {
    let mut args = RunArgs::default();
    args.set("data.train_limit", "100").unwrap();
    args.set("schedule.milestones", "10,20").unwrap();
    args.resolve().unwrap()
}

#[test]
fn config_files_and_recipes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let valid = config().to_toml().into_bytes();
    never_panics("config.toml", valid.clone(), 1500, &path, RunConfig::read);
    never_panics("a recipe", valid, 1500, &path, RunArgs::from_file);
}

fn metrics() -> Metrics {
    let mut metrics = Metrics::default();
    let tally = Tally {
        steps: 2,
        images: 64,
        loss_sum: 140.0,
        correct: 9,
        seconds: 0.5,
    };
    for step in [2, 4, 6] {
        let context = RowContext {
            lr: 0.1,
            elapsed_s: step as f64,
        };
        metrics
            .rows
            .push(MetricRow::new(step, 1, "train", &tally, context));
    }
    metrics
}

#[test]
fn metrics_and_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.csv");
    never_panics(
        "metrics.csv",
        metrics().to_csv(),
        1500,
        &path,
        Metrics::read,
    );

    let summary = r#"{"name":"r","model":"resnet20","init":"he","backend":"flex","device":"cpu",
        "precision":"f32","seed":0,"git_commit":null,"status":"completed","epochs_completed":2,
        "steps":20,"eval_split":"test","best_accuracy":0.3,"best_epoch":2,"final_accuracy":0.3,
        "final_train_loss":2.0,"parameters":1000,"total_time_s":3.0}"#;
    let path = dir.path().join("summary.json");
    std::fs::write(&path, summary).unwrap();
    Summary::read(&path).expect("the valid summary parses");
    never_panics("summary.json", summary.into(), 500, &path, Summary::read);
}

/// A tiny model (a 4-layer plain net of width 4) and the trainer's optimizer.
fn tiny_model_and_optimizer() -> (Model, ModuleOptimizer) {
    let device = Device::flex().autodiff();
    let (model, _) = ModelConfig::new(ModelName::PlainCnn)
        .with_depth(4)
        .with_width(4)
        .with_norm(Norm::None)
        .init_with(&device, &InitPlan::new(Scheme::he()), 0)
        .unwrap();
    (model, sgd(&OptimizerSettings::default()))
}

/// A complete set of a tiny model, written by the trainer's own code.
fn write_set(dir: &Path) -> PathBuf {
    let (model, optimizer) = tiny_model_and_optimizer();
    let progress = Progress {
        step: 7,
        ..Progress::default()
    };
    Checkpoints::new(dir.to_path_buf(), 2)
        .save(&progress, &metrics(), &model, &optimizer)
        .unwrap();
    dir.join("step-000000007")
}

#[test]
fn checkpoint_sets() {
    let _generator = common::generator();
    let dir = tempfile::tempdir().unwrap();
    let set = write_set(dir.path());
    let loaded = read_set(&set).expect("the written set reads back");
    assert_eq!(loaded.progress.step, 7);
    assert_eq!(loaded.metrics, metrics());

    // The index itself: never a panic (a change to its JSON's spacing is harmless).
    let index = set.join("progress.json");
    let valid = std::fs::read(&index).unwrap();
    never_panics("progress.json", valid.clone(), 1500, &index, |_| {
        read_set(&set)
    });
    std::fs::write(&index, valid).unwrap();
    // The files the index records: any change to any byte is refused.
    for (file, cases) in [
        ("metrics.csv", 500),
        ("model.bpk", 300),
        ("optimizer.bpk", 300),
    ] {
        let path = set.join(file);
        let valid = std::fs::read(&path).unwrap();
        refuses_any_change(file, valid.clone(), cases, &path, |_| read_set(&set));
        std::fs::write(&path, valid).unwrap();
    }
    // The model and optimizer decoders on their own, past the checksums (a set whose index was
    // rewritten to match damaged files): an error naming the file, never a panic.
    let loaded = read_set(&set).unwrap();
    let (model, optimizer) = tiny_model_and_optimizer();
    let path = set.join("model.bpk");
    let valid = std::fs::read(&path).unwrap();
    never_panics("model.bpk decoding", valid.clone(), 300, &path, |_| {
        loaded.load_model(model.clone())
    });
    std::fs::write(&path, valid).unwrap();
    let path = set.join("optimizer.bpk");
    let valid = std::fs::read(&path).unwrap();
    never_panics("optimizer.bpk decoding", valid.clone(), 300, &path, |_| {
        loaded.load_optimizer(optimizer.clone())
    });
    std::fs::write(&path, valid).unwrap();
    // The pointer: anything but a set's name is refused.
    let pointer = dir.path().join("latest");
    never_panics(
        "checkpoints/latest",
        b"step-000000007\n".to_vec(),
        300,
        &pointer,
        |_| Checkpoints::new(dir.path().to_path_buf(), 2).latest(),
    );
}

#[test]
fn a_checkpoint_written_before_a_tally_field_existed_still_loads() {
    // An older progress.json: a window without `seconds`, no scaler at all.
    let old = r#"{"step":3,"epoch":0,"step_in_epoch":3,"elapsed_s":1.5,"best":null,
        "window":{"steps":1,"images":32,"loss_sum":70.0,"correct":4},
        "epoch_window":{"steps":3,"images":96,"loss_sum":210.0,"correct":11},
        "last_epoch_loss":null}"#;
    let progress: Progress = serde_json::from_str(old).unwrap();
    assert_eq!(progress.window.images, 32);
    assert_eq!(progress.window.seconds, 0.0);
    assert_eq!(progress.scaler.scale, 1.0);
}

#[test]
fn a_summary_with_an_overflowed_signal_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("summary.json");
    let text = r#"{"name":"r","model":"resnet110","init":"he","backend":"flex","device":"cpu",
        "seed":0,"git_commit":null,"status":"diverged","epochs_completed":0,"steps":1,
        "eval_split":"test","best_accuracy":null,"best_epoch":null,"final_accuracy":null,
        "final_train_loss":null,"parameters":1000,"total_time_s":3.0}"#;
    let mut summary: Summary = serde_json::from_str(text).unwrap();
    for value in [f64::INFINITY, f64::NAN, 2.5e4] {
        summary.signals.push(Signal {
            kind: SignalKind::Exploding,
            layer: "stages.2.blocks.17".into(),
            quantity: Quantity::ActivationStd,
            step: 0,
            value,
        });
    }
    summary.write(&path).unwrap();
    let read = Summary::read(&path).expect("the summary reads back");
    let values: Vec<String> = read.signals.iter().map(|s| s.value.to_string()).collect();
    assert_eq!(values, ["inf", "NaN", "25000"]);
}
