//! Runs that survive kill -9: killed at points inside an epoch and inside a checkpoint set,
//! then resumed, they end with the rows of an uninterrupted run; one folder has one writer; a
//! failed start leaves nothing.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use crate::common::{
    assert_success, cifar_dir, deterministic, read_run, set_arg, stderr, tiny_run_args, train,
    train_command,
};
use kaiming_train::monitor::{MonitorLog, Quantity};
use kaiming_train::summary::Status;

/// 320 images in batches of 32: 10 steps an epoch, 2 epochs; a mid-epoch set at every fourth
/// step, so sets at steps 4, 8, 10 (end of epoch 1), 12, 16, 20. A train row every 3 steps, so
/// most sets hold a half-filled row; the monitor every 3 steps too.
fn args<'a>(data: &'a str, name: &'a str) -> Vec<&'a str> {
    let mut args = tiny_run_args(data, name, "2");
    set_arg(&mut args, "--log-every", "3");
    set_arg(&mut args, "--checkpoint-every", "4");
    args.extend(["--keep-checkpoints", "2", "--monitor-every", "3"]);
    args
}

/// Runs with `KAIMING_FAULT=fault` and checks the process died of SIGKILL, or, for an
/// injected Ctrl-C, stopped cleanly as interrupted.
fn stopped_at(cwd: &Path, data: &str, name: &str, fault: &str) {
    let output = train_command(cwd, &args(data, name))
        .env("KAIMING_FAULT", fault)
        .output()
        .unwrap();
    if fault.starts_with("interrupt") {
        assert_success(&output);
        let (summary, _) = read_run(&cwd.join("runs").join(name));
        assert_eq!(summary.status, Status::Interrupted, "{fault}");
    } else {
        assert_eq!(
            output.status.signal(),
            Some(9),
            "{fault}: the run was not killed:\n{}",
            stderr(&output)
        );
    }
}

fn monitor_rows(dir: &Path) -> Vec<(usize, String, Quantity, f64)> {
    MonitorLog::read(&dir.join("monitor.csv"))
        .unwrap()
        .into_iter()
        .map(|r| (r.step, r.layer, r.quantity, r.value))
        .collect()
}

fn resume(cwd: &Path, data: &str, dir: &Path) {
    assert_success(&train(
        cwd,
        &[
            "--resume",
            dir.to_str().unwrap(),
            "--quiet",
            "--data-dir",
            data,
            "--checkpoint-every",
            "4",
        ],
    ));
}

#[test]
fn a_run_killed_anywhere_resumes_to_the_rows_of_an_uninterrupted_run() {
    let Some(data) = cifar_dir("the kill -9 resume test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    assert_success(&train(cwd.path(), &args(data, "straight")));
    let (_, straight) = read_run(&cwd.path().join("runs/straight"));
    let straight_monitor = monitor_rows(&cwd.path().join("runs/straight"));
    assert_eq!(
        straight_monitor.iter().map(|r| r.0).max(),
        Some(18),
        "the monitor measured every third step"
    );

    for (name, fault, resumes_from) in [
        // Before the first mid-epoch set: nothing to resume from, the run starts again.
        ("before-first-set", "after-step@3", None),
        // After the set of step 4, before that of step 8.
        ("mid-epoch", "after-step@6", Some("step-000000004")),
        // In epoch 2, after the end-of-epoch set (step 10), before that of step 12.
        ("second-epoch", "after-step@11", Some("step-000000010")),
        // Inside the second set (step 8), between its model and optimizer files.
        (
            "inside-a-set",
            "checkpoint-between-files@2",
            Some("step-000000004"),
        ),
        // The set of step 10 complete, its pointer not yet switched.
        (
            "before-the-pointer",
            "checkpoint-before-pointer@3",
            Some("step-000000008"),
        ),
        // Ctrl-C during step 5: a set of the open epoch.
        ("ctrl-c", "interrupt-after-step@5", Some("step-000000005")),
        // Ctrl-C during the last step of epoch 1: the epoch is evaluated before the set.
        (
            "ctrl-c-at-the-epoch-end",
            "interrupt-after-step@10",
            Some("step-000000010"),
        ),
    ] {
        stopped_at(cwd.path(), data, name, fault);
        let dir = cwd.path().join("runs").join(name);
        let latest = std::fs::read_to_string(dir.join("checkpoints/latest")).ok();
        assert_eq!(
            latest.as_deref().map(str::trim),
            resumes_from,
            "{name}: the set resume would load"
        );
        resume(cwd.path(), data, &dir);
        let (summary, rows) = read_run(&dir);
        assert_eq!(summary.status, Status::Completed, "{name}");
        assert_eq!(summary.steps, 20, "{name}");
        assert_eq!(
            deterministic(&rows.rows),
            deterministic(&straight.rows),
            "{name}: the resumed run's rows differ from the uninterrupted run's"
        );
        assert_eq!(
            monitor_rows(&dir),
            straight_monitor,
            "{name}: the resumed run's monitor.csv differs"
        );
        let best = std::fs::read_to_string(dir.join("checkpoints/best")).unwrap();
        assert!(
            dir.join("checkpoints")
                .join(best.trim())
                .join("model.bpk")
                .is_file(),
            "{name}: checkpoints/best names a missing set ({best})"
        );
        let staging = std::fs::read_dir(dir.join("checkpoints"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".partial"))
            .count();
        assert_eq!(staging, 0, "{name}: a staging folder was left behind");
    }
}

#[test]
fn two_processes_given_one_name_at_once_train_it_once() {
    let Some(data) = cifar_dir("the run lock test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let args = tiny_run_args(data, "shared", "1");
    let children: Vec<_> = (0..2)
        .map(|_| {
            train_command(cwd.path(), &args)
                .stderr(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let succeeded = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(succeeded, 1, "exactly one of the two runs must train");
    let refused = outputs.iter().find(|o| !o.status.success()).unwrap();
    let message = stderr(refused);
    assert!(
        message.contains("in use by another train process") || message.contains("already holds"),
        "{message}"
    );
    let (summary, _) = read_run(&cwd.path().join("runs/shared"));
    assert_eq!(summary.status, Status::Completed);
}

#[test]
fn a_run_that_fails_before_its_first_step_leaves_no_folder() {
    let cwd = tempfile::tempdir().unwrap();
    let output = train(
        cwd.path(),
        &[
            "--data-dir",
            "/nonexistent/cifar",
            "--no-download",
            "--name",
            "never",
        ],
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("/nonexistent/cifar"));
    assert!(
        !cwd.path().join("runs/never").exists(),
        "the failed run left its folder"
    );
}

/// A run stopped by SIGHUP (a closed terminal; SIGTERM and Ctrl-C take the same path) checkpoints,
/// is marked interrupted, says how to continue, and exits with 128 + 1 = 129, so that a
/// scheduler or a script does not take it for a finished run.
#[test]
fn a_run_stopped_by_a_signal_checkpoints_and_exits_with_128_plus_the_signal() {
    let Some(data) = cifar_dir("the signal exit code test") else {
        return;
    };
    let data = data.to_str().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut args = tiny_run_args(data, "hung-up", "50");
    set_arg(&mut args, "--log-every", "1");
    let child = train_command(cwd.path(), &args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = cwd.path().join("runs/hung-up/metrics.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |text| text.lines().count()) < 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "no training step within 10 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid; it only delivers a signal.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGHUP);
    }
    let output = child.wait_with_output().unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(129), "{message}");
    assert!(
        message.contains("continue it with --resume"),
        "no resume hint:\n{message}"
    );
    let dir = cwd.path().join("runs/hung-up");
    let (summary, _) = read_run(&dir);
    assert_eq!(summary.status, Status::Interrupted);
    assert!(
        summary.steps < 500,
        "the run went on to step {}",
        summary.steps
    );
    assert!(dir.join("checkpoints/latest").is_file(), "no checkpoint");
}
