//! `train sweep`, `train models` and `train data` through the binary.

mod common;

use common::{assert_success, cifar_dir, stderr, train};

#[test]
fn models_lists_torchvision_counts() {
    let cwd = tempfile::tempdir().unwrap();
    let output = train(
        cwd.path(),
        &[
            "models",
            "--stem",
            "imagenet",
            "--num-classes",
            "1000",
            "--image-size",
            "224",
        ],
    );
    assert_success(&output);
    let table = String::from_utf8_lossy(&output.stdout);
    for (model, params) in [("resnet18", "11,689,512"), ("resnet50", "25,557,032")] {
        let line = table
            .lines()
            .find(|line| line.contains(&format!(" {model} ")))
            .unwrap_or_else(|| panic!("{model} missing:\n{table}"));
        assert!(line.contains(params), "{line}");
    }
    assert!(table.contains("plaincnn") && table.contains("resnet1202"));
}

#[test]
fn data_reports_counts_verifies_and_draws_a_grid() {
    let Some(data) = cifar_dir("the data command test") else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let output = train(
        cwd.path(),
        &[
            "data",
            "--data-dir",
            data.to_str().unwrap(),
            "--verify",
            "--grid",
            "grid.png",
        ],
    );
    assert_success(&output);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("airplane") && report.contains("5000") && report.contains("1000"));
    assert!(
        report.contains("50000") && report.contains("10000"),
        "{report}"
    );
    assert!(
        report.contains("0.4914") || report.contains("0.491"),
        "{report}"
    );
    assert!(report.contains("SHA-1"), "{report}");
    let png = std::fs::read(cwd.path().join("grid.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // A corrupted copy fails verification, naming the file.
    let copy = cwd.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let mut bytes = std::fs::read(copy.join("data_batch_3.bin")).unwrap();
    bytes[100] ^= 1;
    std::fs::write(copy.join("data_batch_3.bin"), bytes).unwrap();
    let output = train(
        cwd.path(),
        &["data", "--data-dir", copy.to_str().unwrap(), "--verify"],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("data_batch_3.bin"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_sweep_runs_every_combination_compares_and_skips_completed_runs() {
    let Some(data) = cifar_dir("the sweep test") else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let args = [
        "sweep",
        "--inits",
        "he,xavier",
        "--seeds",
        "0",
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
        data.to_str().unwrap(),
        "--no-download",
        "--quiet",
        "--out",
        "sweep",
    ];
    let first = train(cwd.path(), &args);
    assert_success(&first);
    for run in ["resnet20-he-s0", "resnet20-xavier-s0"] {
        assert!(
            cwd.path()
                .join("sweep")
                .join(run)
                .join("summary.json")
                .is_file()
        );
    }
    for file in ["comparison.csv", "comparison.svg", "comparison.png"] {
        assert!(cwd.path().join("sweep").join(file).is_file(), "{file}");
    }
    for run in ["resnet20-he-s0", "resnet20-xavier-s0"] {
        common::assert_summarised(
            &cwd.path().join("sweep").join(run),
            &cwd.path().join("sweep/comparison.csv"),
        );
    }
    // Run again: completed runs are skipped, so their files stay byte for byte the same.
    let summary = cwd.path().join("sweep/resnet20-he-s0/summary.json");
    let before = std::fs::read(&summary).unwrap();
    assert_success(&train(cwd.path(), &args));
    assert_eq!(std::fs::read(&summary).unwrap(), before);
}

#[test]
fn cpu_commands_of_a_gpu_enabled_build_do_not_wake_the_vulkan_loader() {
    let Some(data) = cifar_dir("the CPU quietness test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    // An empty XDG_RUNTIME_DIR makes the Vulkan loader complain the moment anything opens it.
    let stderr_of = |args: &[&str]| {
        let output = common::train_command(cwd.path(), args)
            .env("XDG_RUNTIME_DIR", "")
            .output()
            .unwrap();
        (output.status.success(), stderr(&output))
    };
    let woke = |message: &str| message.contains("XDG_RUNTIME_DIR") || message.contains("EGL");
    let bench = [
        "bench",
        "--models",
        "resnet20",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--batch-size",
        "8",
        "--data-dir",
        data,
    ];
    for args in [bench.to_vec(), common::tiny_run_args(data, "cpu", "1")] {
        let (success, message) = stderr_of(&args);
        assert!(success, "{args:?} failed:\n{message}");
        assert!(!woke(&message), "{args:?} woke a GPU runtime:\n{message}");
    }
    // The control: the same bench asked to open a wgpu adapter (one that does not exist, so it
    // stops right after the loader has listed the adapters) does wake the loader, and the
    // check above sees it.
    #[cfg(feature = "wgpu")]
    {
        let mut args = bench.to_vec();
        args.extend(["--backend", "wgpu", "--device", "9"]);
        let (success, message) = stderr_of(&args);
        assert!(!success, "there is no tenth adapter:\n{message}");
        assert!(
            woke(&message),
            "the loader said nothing the check would see:\n{message}"
        );
    }
}
