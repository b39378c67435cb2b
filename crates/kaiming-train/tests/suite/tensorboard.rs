//! TensorBoard reads back what metrics.csv and monitor.csv hold, through TensorBoard's own
//! reader (`tests/tools/tensorboard_scalars.py`), also after a crash and `--resume`.
//!
//! The reader runs in the Python named by `KAIMING_TENSORBOARD_PYTHON` (`.ci/run` installs
//! `tensorboard` into a virtual environment); without it the test says so and skips, unless
//! `KAIMING_REQUIRE_TENSORBOARD` is set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::{
    assert_success, cifar_dir, read_run, set_arg, stderr, tiny_run_args, train, train_command,
};
use kaiming_train::monitor::MonitorLog;

fn tensorboard_python() -> Option<PathBuf> {
    match std::env::var_os("KAIMING_TENSORBOARD_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None if std::env::var_os("KAIMING_REQUIRE_TENSORBOARD").is_some() => {
            panic!("KAIMING_REQUIRE_TENSORBOARD is set but KAIMING_TENSORBOARD_PYTHON is not")
        }
        None => {
            eprintln!(
                "skipping the TensorBoard test: KAIMING_TENSORBOARD_PYTHON does not name a Python \
                 with the tensorboard package"
            );
            None
        }
    }
}

/// Every scalar of `folder` as TensorBoard reads it: tag → (step, value) in file order.
fn scalars(python: &Path, folder: &Path) -> BTreeMap<String, Vec<(usize, f64)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/tensorboard_scalars.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(folder)
        .output()
        .expect("the TensorBoard Python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: BTreeMap<String, Vec<(usize, serde_json::Value)>> =
        serde_json::from_slice(&output.stdout).expect("the reader prints JSON");
    // Numbers, and the strings "nan", "inf", "-inf" for what JSON has no number for.
    let number = |value: &serde_json::Value| match value {
        serde_json::Value::Number(number) => number.as_f64().unwrap(),
        serde_json::Value::String(text) => text.parse().expect("nan, inf or -inf"),
        other => panic!("not a scalar: {other}"),
    };
    parsed
        .into_iter()
        .map(|(tag, points)| {
            let points = points.iter().map(|(step, v)| (*step, number(v))).collect();
            (tag, points)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    // TensorBoard stores scalars as f32; a NaN or an infinity must be read back as itself.
    if !a.is_finite() || !b.is_finite() {
        return a.is_nan() && b.is_nan() || a == b;
    }
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-30)
}

#[test]
fn tensorboard_reads_back_metrics_and_monitor_also_after_a_crash_and_resume() {
    let Some(python) = tensorboard_python() else {
        return;
    };
    let Some(data) = cifar_dir("the TensorBoard test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut args = tiny_run_args(data, "board", "2");
    args.extend(["--monitor-every", "4"]);
    set_arg(&mut args, "--checkpoint-every", "5");
    let output = train_command(cwd.path(), &args)
        .env("KAIMING_FAULT", "after-step@13")
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", stderr(&output));
    let dir = cwd.path().join("runs/board");
    assert_success(&train(
        cwd.path(),
        &["--resume", dir.to_str().unwrap(), "--quiet"],
    ));

    let board = scalars(&python, &dir.join("tensorboard"));
    let (_, metrics) = read_run(&dir);
    let mut expected: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
    for row in &metrics.rows {
        for (column, value) in &row.values {
            expected
                .entry(format!("{}/{column}", row.split))
                .or_default()
                .push((row.step, *value));
        }
    }
    for row in MonitorLog::read(&dir.join("monitor.csv")).unwrap() {
        expected
            .entry(format!("monitor/{}/{}", row.quantity, row.layer))
            .or_default()
            .push((row.step, row.value));
    }
    assert!(expected.contains_key("train/loss") && expected.contains_key("test/accuracy"));
    assert!(
        expected
            .keys()
            .any(|k| k.starts_with("monitor/dead_fraction/"))
    );
    assert_eq!(
        board.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the tags differ"
    );
    for (tag, points) in &expected {
        let read = &board[tag];
        assert_eq!(
            read.iter().map(|p| p.0).collect::<Vec<_>>(),
            points.iter().map(|p| p.0).collect::<Vec<_>>(),
            "{tag}: the steps differ (orphaned or missing events)"
        );
        for ((step, got), (_, want)) in read.iter().zip(points) {
            assert!(
                close(*got, *want),
                "{tag} at step {step}: {got} against {want}"
            );
        }
    }
}
