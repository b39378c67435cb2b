//! Every kind of bad input ends with one clear line and a non-zero exit code, never a panic.

use crate::common;

use crate::common::{stderr, train};

/// Runs `train args` in a fresh folder and checks the failure's shape and that its message
/// mentions `expected`.
fn fails_with(args: &[&str], expected: &str) {
    let cwd = tempfile::tempdir().unwrap();
    let output = train(cwd.path(), args);
    let message = stderr(&output);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(
        !message.contains("panicked") && !message.contains("RUST_BACKTRACE"),
        "{message}"
    );
    assert!(
        message.contains(expected),
        "{args:?}: expected '{expected}' in:\n{message}"
    );
}

#[test]
fn unknown_names_list_the_valid_ones() {
    fails_with(&["--model", "resnet21"], "resnet20");
    fails_with(&["--init", "kaiming"], "he-uniform");
    fails_with(&["--backend", "tpu"], "flex");
    fails_with(&["--backend", "cuda"], "not compiled");
    fails_with(&["--schedule", "linear"], "cosine");
    fails_with(&["--norm", "layer"], "batch");
    fails_with(&["probe", "--init", "he,glorot"], "xavier");
}

#[test]
fn impossible_values_are_named() {
    let no_data = ["--data-dir", "/nonexistent", "--no-download"];
    let with = |extra: &[&'static str]| [extra, &no_data[..]].concat();
    fails_with(&with(&["--batch-size", "0"]), "--batch-size");
    fails_with(&with(&["--lr=-0.1"]), "--lr");
    // A negative number after a flag is its value, not another flag.
    fails_with(
        &with(&["--lr", "-1"]),
        "--lr must be a positive number (got -1)",
    );
    fails_with(
        &with(&["--checkpoint-every", "soon"]),
        "neither a step count (500) nor a duration",
    );
    fails_with(&with(&["--name", "a/b"]), "--name 'a/b'");
    fails_with(&with(&["--epochs", "0"]), "--epochs");
    fails_with(&with(&["--momentum", "1.5"]), "--momentum");
    fails_with(
        &with(&[
            "--schedule",
            "multistep",
            "--milestones",
            "20,10",
            "--epochs",
            "30",
        ]),
        "--milestones must increase",
    );
    fails_with(
        &with(&[
            "--schedule",
            "multistep",
            "--milestones",
            "40",
            "--epochs",
            "30",
        ]),
        "--milestones",
    );
    fails_with(&with(&["--model", "plaincnn", "--depth", "1"]), "depth");
    fails_with(
        &with(&["--set", "model.dpeth=8"]),
        "did you mean 'model.depth'",
    );
    fails_with(&with(&["--conv", "fft"]), "unknown convolution algorithm");
    fails_with(
        &["sweep", "--grid", "optimizer.lr=0.1,fast"],
        "optimizer.lr=fast",
    );
    fails_with(&["sweep", "--inits", "he", "--parallel", "0"], "at least 1");
    fails_with(&with(&["--label-smoothing", "1"]), "--label-smoothing");
    fails_with(&with(&["--label-smoothing=-0.1"]), "--label-smoothing");
    fails_with(
        &with(&["--lsuv", "--lsuv-tolerance", "0"]),
        "--lsuv-tolerance",
    );
    fails_with(
        &with(&["--lsuv", "--lsuv-tolerance", "1.5"]),
        "--lsuv-tolerance",
    );
    fails_with(
        &with(&["--lsuv", "--lsuv-max-iterations", "0"]),
        "--lsuv-max-iterations",
    );
    // --depth shapes plaincnn alone; beside another model it would be ignored.
    fails_with(
        &with(&["--depth", "56"]),
        "--depth and --width shape --model plaincnn",
    );
    fails_with(
        &with(&["--model", "resnet20", "--width", "32"]),
        "--depth and --width shape --model plaincnn",
    );
}

/// A sweep refuses what it would otherwise resolve silently: a value or seed given twice (one
/// folder listed twice, a pivot of "n = 2, ± 0.0"), an empty value, a flag that the grid
/// overrides, `--seed` beside `--seeds`, and one `--set` key given twice.
#[test]
fn a_sweep_refuses_duplicates_and_overridden_flags() {
    let sweep = |extra: &[&'static str]| {
        [&["sweep", "--dry-run", "--model", "plaincnn"][..], extra].concat()
    };
    fails_with(&sweep(&["--grid", "model.depth=8,8"]), "same value");
    fails_with(&sweep(&["--grid", "optimizer.lr=0.1,1e-1"]), "0.1 and 1e-1");
    fails_with(&sweep(&["--grid", "model.depth=8,,14"]), "empty value");
    fails_with(&sweep(&["--seeds", "0,0"]), "--seeds names 0 twice");
    fails_with(&sweep(&["--inits", "he,he"]), "same value");
    fails_with(
        &sweep(&["--seed", "3", "--seeds", "0,1"]),
        "--seeds, not --seed",
    );
    fails_with(
        &sweep(&["--lr", "0.1", "--grid", "optimizer.lr=0.1,0.2"]),
        "--lr and --grid optimizer.lr",
    );
    fails_with(
        &sweep(&["--init", "xavier", "--inits", "he"]),
        "--init and --grid init",
    );
    fails_with(
        &sweep(&["--set", "optimizer.lr=0.1", "--set", "optimizer.lr=0.2"]),
        "given twice",
    );
}

/// `KAIMING_CHECK_WRITES` takes the usual spellings of a switch; another is refused at start,
/// naming the variable, instead of leaving the checks off unnoticed.
#[test]
fn a_misspelt_write_check_switch_is_refused() {
    let cwd = tempfile::tempdir().unwrap();
    let output = common::train_command(cwd.path(), &["--data-dir", "/nonexistent"])
        .env("KAIMING_CHECK_WRITES", "maybe")
        .output()
        .unwrap();
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(
        message.contains("KAIMING_CHECK_WRITES=\"maybe\""),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

/// A bad kernel choice in the environment is refused at start, naming the variable, before
/// any data is read.
#[test]
fn a_bad_kernel_variable_is_refused_at_start() {
    let cwd = tempfile::tempdir().unwrap();
    let output = common::train_command(cwd.path(), &["--data-dir", "/nonexistent"])
        .env("KAIMING_CONV", "fft")
        .output()
        .unwrap();
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(message.contains("KAIMING_CONV=\"fft\""), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn a_bad_config_file_names_its_line() {
    let cwd = tempfile::tempdir().unwrap();
    let config = cwd.path().join("bad.toml");
    std::fs::write(
        &config,
        "[model]\nname = \"resnet20\"\n[schedule]\nepochs = \"many\"\n",
    )
    .unwrap();
    let output = train(cwd.path(), &["--config", config.to_str().unwrap()]);
    let message = stderr(&output);
    assert!(!output.status.success());
    assert!(message.contains("bad.toml:4"), "{message}");

    std::fs::write(&config, "modle = \"resnet20\"\n").unwrap();
    let output = train(cwd.path(), &["--config", config.to_str().unwrap()]);
    assert!(stderr(&output).contains("modle"), "{}", stderr(&output));

    let output = train(cwd.path(), &["--config", "missing.toml"]);
    assert!(
        stderr(&output).contains("missing.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_data_says_how_to_provide_it() {
    fails_with(
        &[
            "--data-dir",
            "/nonexistent/cifar",
            "--no-download",
            "--epochs",
            "1",
        ],
        "/nonexistent/cifar",
    );
}

#[test]
fn resume_needs_a_run_folder() {
    fails_with(&["--resume", "no-such-run"], "no-such-run");
}

#[test]
fn an_output_folder_holding_another_run_is_refused() {
    let cwd = tempfile::tempdir().unwrap();
    let run = cwd.path().join("runs/taken");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("config.toml"), "model = \"resnet56\"\n").unwrap();
    let output = train(
        cwd.path(),
        &[
            "--name",
            "taken",
            "--data-dir",
            "/nonexistent",
            "--no-download",
        ],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("different run"),
        "{}",
        stderr(&output)
    );
}
