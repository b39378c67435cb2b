//! `benches/gpu-check.sh --dry-run`: the whole GPU check (Vulkan set-up, a wgpu run against
//! the CPU run of the same recipe, `train bench` on each GPU backend beside PyTorch, the JSON
//! lines and the table) at toy sizes on whatever Vulkan device this machine has, so the
//! script that a GPU machine runs unchanged cannot rot where no GPU is.
//!
//! Compiled where the `wgpu` feature is; where its device cannot be opened the test prints why
//! and passes, unless `KAIMING_REQUIRE_GPU` lists wgpu (CI sets it, with Mesa's software device
//! installed and `CUBECL_AUTOTUNE_LEVEL=minimal`). It needs the real CIFAR-10 folder
//! (`CIFAR10_DIR`, [`common::cifar_dir`]), of which the script cuts eight images, and python3.
//! On Mesa's software device it takes one to two minutes on 2 cores, most of it compiling the
//! kernels of ResNet-8 (a training run, then `train bench`: once in each process).
#![cfg(feature = "wgpu")]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use kaiming_train::backend::Backend;
use serde_json::Value;

/// Whether the wgpu device opens here; a failure where `KAIMING_REQUIRE_GPU` lists wgpu fails
/// the test.
fn wgpu_opens(test: &str) -> bool {
    let required = std::env::var("KAIMING_REQUIRE_GPU").unwrap_or_default();
    let required = required.split(',').any(|b| b == "wgpu");
    if let Err(error) = Backend::Wgpu.device(None) {
        assert!(!required, "KAIMING_REQUIRE_GPU lists wgpu, but: {error:#}");
        eprintln!("skipping {test}: {error:#}");
        return false;
    }
    let python = Command::new("python3").arg("--version").output();
    if !python.is_ok_and(|output| output.status.success()) {
        assert!(
            !required,
            "{test}: python3 is needed, and KAIMING_REQUIRE_GPU lists wgpu"
        );
        eprintln!("skipping {test}: no python3");
        return false;
    }
    true
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/gpu-check.sh")
}

/// The rows of one kind.
fn of_kind<'a>(rows: &'a [Value], kind: &str) -> Vec<&'a Value> {
    rows.iter().filter(|row| row["kind"] == kind).collect()
}

fn number(row: &Value, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {row}"))
}

#[test]
fn the_gpu_check_runs_end_to_end_in_dry_run_mode() {
    let test = "the GPU check's dry run";
    let Some(data) = common::cifar_dir(test) else {
        return;
    };
    if !wgpu_opens(test) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .arg(script())
        .arg("--dry-run")
        .arg("--out")
        .arg(out.path())
        .arg("--data-dir")
        .arg(&data)
        .env("TRAIN", env!("CARGO_BIN_EXE_train"))
        .env("RUST_LOG", "warn")
        .env_remove("OUT")
        .env_remove("GPU_CHECK_PAYLOAD")
        .env_remove("GPU_CHECK_DRY_RUN")
        .env_remove("VK_DRIVER_FILES")
        .env_remove("VK_ICD_FILENAMES")
        .output()
        .expect("bash runs the script");
    let log = std::fs::read_to_string(out.path().join("gpu-check.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "gpu-check.sh --dry-run failed ({}):\n{}\n---- gpu-check.log ----\n{log}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for file in [
        "gpu-check.jsonl",
        "gpu-check.md",
        "gpu-check.log",
        "run-gpu-metrics.csv",
        "run-cpu-metrics.csv",
    ] {
        assert!(out.path().join(file).is_file(), "no {file} in the output");
    }

    let text = std::fs::read_to_string(out.path().join("gpu-check.jsonl")).unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        rows.iter().all(|row| row["kind"].is_string()),
        "a row without a kind"
    );

    let environment = of_kind(&rows, "environment");
    assert_eq!(environment.len(), 1, "one environment row");
    assert_eq!(environment[0]["mode"], "dry-run");
    assert!(
        environment[0]["train_version"]
            .as_str()
            .unwrap()
            .starts_with("train")
    );

    // The run on wgpu and the same recipe on the CPU, three steps each.
    let runs = of_kind(&rows, "run");
    for (role, backend) in [("gpu", "wgpu"), ("cpu", "flex")] {
        let run = runs
            .iter()
            .find(|r| r["role"] == role)
            .unwrap_or_else(|| panic!("no {role} run row"));
        assert_eq!(run["backend"], backend, "{run}");
        assert_eq!(run["exit_code"], 0, "{run}");
        assert_eq!(run["steps"], 3, "{run}");
        assert!(number(run, "last_train_loss").is_finite(), "{run}");
    }
    let wgpu_device = runs.iter().find(|r| r["role"] == "gpu").unwrap()["device"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !wgpu_device.contains("flex"),
        "the wgpu run ran on {wgpu_device}"
    );

    // Its first rows against the CPU run's, within the GPU test's tolerances.
    let compared = of_kind(&rows, "compare");
    let gated_train = compared
        .iter()
        .filter(|r| r["gated"] == true && r["split"] == "train")
        .count();
    assert_eq!(gated_train, 3, "train rows of steps 1-3 compared");
    for row in &compared {
        assert_eq!(row["within"], true, "{row}");
    }
    let verdict = of_kind(&rows, "compare_summary");
    assert_eq!(verdict.len(), 1);
    assert_eq!(verdict[0]["pass"], true, "{}", verdict[0]);

    // One measurement per backend for ResNet-8, batch 8, f32: wgpu measured, vulkan measured
    // or not compiled in, PyTorch measured (on the CPU) or not installed.
    let bench = of_kind(&rows, "bench");
    let cell = |backend: &str| {
        bench
            .iter()
            .find(|r| {
                r["backend"] == backend
                    && r["model"] == "resnet8"
                    && r["batch_size"] == 8
                    && r["precision"] == "f32"
            })
            .unwrap_or_else(|| panic!("no {backend} bench row"))
    };
    let wgpu = cell("wgpu");
    assert_eq!(wgpu["status"], "ok", "{wgpu}");
    assert!(wgpu["implementation"].as_str().unwrap().ends_with("wgpu"));
    for key in ["images_per_s", "eval_images_per_s"] {
        assert!(number(wgpu, key) > 0.0, "{key} in {wgpu}");
    }
    assert!(number(wgpu, "peak_memory_mib") >= 0.0, "{wgpu}");
    // The vulkan backend crashes inside Mesa's software device (docs/gpus.md): an error there
    // is the device's, reported as such.
    let vulkan = cell("vulkan");
    let software = wgpu_device.contains("llvmpipe");
    assert!(
        vulkan["status"] == "ok"
            || vulkan["status"] == "unsupported"
            || (software && vulkan["status"] == "error"),
        "{vulkan}"
    );
    let pytorch = cell("pytorch");
    assert!(
        pytorch["status"] == "ok" || pytorch["status"] == "skipped",
        "{pytorch}"
    );
    for row in &bench {
        if row["status"] == "ok" {
            assert!(number(row, "images_per_s") > 0.0, "{row}");
        } else {
            assert!(
                row["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{row}"
            );
        }
    }

    let summary = rows.last().unwrap();
    assert_eq!(summary["kind"], "summary", "the last row is the summary");
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(summary["comparison_pass"], true, "{summary}");
    for part in ["setup", "run", "bench"] {
        assert!(summary["parts"][part].is_number(), "{summary}");
    }

    let table = std::fs::read_to_string(out.path().join("gpu-check.md")).unwrap();
    assert!(table.contains("| resnet8 | 8 | f32 |"), "{table}");
    assert!(table.contains("Verdict: pass"), "{table}");
}
