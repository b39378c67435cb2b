//! `train sweep`, `train models` and `train data` through the binary.

use crate::common;

use crate::common::{assert_success, cifar_dir, stderr, train};

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

/// A grid sweep of 2 models × 2 inits: `--dry-run` lists it and trains nothing; two `--shard`
/// processes at once run each cell once; the pivot and heatmap come from the runs; a rerun skips
/// every completed run.
#[test]
fn a_grid_sweep_runs_each_cell_once_pivots_and_skips_completed_runs() {
    let Some(data) = cifar_dir("the sweep test") else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let args = [
        "sweep",
        "--grid",
        "model.name=plain8,plain14",
        "--inits",
        "he,xavier",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--train-limit",
        "64",
        "--eval-limit",
        "64",
        "--monitor-every",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--no-download",
        "--quiet",
        "--out",
        "sweep",
    ];
    let runs = [
        "plain8-he-s0",
        "plain8-xavier-s0",
        "plain14-he-s0",
        "plain14-xavier-s0",
    ];
    let dry = train(cwd.path(), &[&args[..], &["--dry-run"]].concat());
    assert_success(&dry);
    let listing = String::from_utf8_lossy(&dry.stdout);
    let order: Vec<usize> = runs.iter().map(|run| listing.find(run).unwrap()).collect();
    assert!(order.is_sorted(), "the documented order:\n{listing}");
    assert!(
        listing.contains("to run") && listing.contains("4 runs"),
        "{listing}"
    );
    assert!(
        !cwd.path().join("sweep").exists(),
        "a dry run trains nothing"
    );

    let shards: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|shard| {
            common::train_command(cwd.path(), &[&args[..], &["--shard", shard]].concat())
                .spawn()
                .unwrap()
        })
        .collect();
    for shard in shards {
        assert!(shard.wait_with_output().unwrap().status.success());
    }
    let sweep = cwd.path().join("sweep");
    let mut summaries = Vec::new();
    for run in runs {
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sweep.join(run).join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["status"], "completed", "{run}");
        // Each cell trained once: one epoch of 2 steps, not two trainings' worth of rows.
        assert_eq!(summary["steps"], 2, "{run}");
        let kernels = &summary["kernels"];
        assert_eq!(kernels["conv"], "auto", "{run}: {summary}");
        assert_eq!(kernels["burn"], false, "{run}");
        summaries.push(summary);
    }
    // The pivot the shards wrote (the last to finish compares every run of the sweep, not
    // only its own share's): the final accuracy of each cell is its run's.
    let pivot = std::fs::read_to_string(sweep.join("pivot.csv")).unwrap();
    let mut lines = pivot.lines();
    assert!(
        lines.next().unwrap().starts_with("model.name,init,runs,"),
        "{pivot}"
    );
    let cells: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert_eq!(cells.len(), 4, "{pivot}");
    for (run, summary) in runs.iter().zip(&summaries) {
        let (model, init) = run.trim_end_matches("-s0").split_once('-').unwrap();
        let cell = cells
            .iter()
            .find(|cell| cell[0] == model && cell[1] == init)
            .unwrap_or_else(|| panic!("{run} has no cell:\n{pivot}"));
        let accuracy: f64 = cell[5].parse().unwrap();
        assert_eq!(Some(accuracy), summary["final_accuracy"].as_f64(), "{run}");
    }
    let compare = train(cwd.path(), &["compare", "sweep"]);
    assert_success(&compare);
    assert_eq!(
        std::fs::read_to_string(sweep.join("pivot.csv")).unwrap(),
        pivot
    );
    let table = String::from_utf8_lossy(&compare.stdout);
    assert!(table.contains("model.name \\ init"), "{table}");
    for file in [
        "heatmap.svg",
        "heatmap.png",
        "comparison.csv",
        "comparison.png",
    ] {
        assert!(sweep.join(file).is_file(), "{file}");
    }
    let svg = std::fs::read_to_string(sweep.join("heatmap.svg")).unwrap();
    assert!(svg.contains(">plain14<") && svg.contains(">xavier<"));

    // The monitor of one run, as lines and as a layer × step heatmap per quantity.
    let run = sweep.join("plain8-xavier-s0");
    assert_success(&train(cwd.path(), &["monitor", run.to_str().unwrap()]));
    for file in ["monitor.png", "monitor-heatmap.svg", "monitor-heatmap.png"] {
        assert!(run.join(file).is_file(), "{file}");
    }
    let svg = std::fs::read_to_string(run.join("monitor-heatmap.svg")).unwrap();
    for title in ["activation std", "gradient std", "update ratio"] {
        assert!(
            svg.contains(&format!("plain8-xavier-s0: {title}")),
            "{title}"
        );
    }
    // Seven quantities, and the classifier's bias in three parameter panels of its own.
    assert_eq!(svg.matches("rows: layer, input to output").count(), 10);
    assert!(svg.contains("plain8-xavier-s0: bias update ratio"));

    // Run again: completed runs are skipped, so their files stay byte for byte the same.
    let summary = sweep.join("plain8-he-s0/summary.json");
    let before = std::fs::read(&summary).unwrap();
    assert_success(&train(cwd.path(), &args));
    assert_eq!(std::fs::read(&summary).unwrap(), before);
    let dry = train(cwd.path(), &[&args[..], &["--dry-run"]].concat());
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout)
            .matches("(completed)")
            .count(),
        4
    );
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
