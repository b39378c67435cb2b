//! Fault injection for the crash tests: `KAIMING_FAULT=<point>@<n>` kills the process with
//! SIGKILL — no destructors, no flushing, as `kill -9` or a power cut would — the `n`-th time it
//! reaches `point` (or, for `interrupt-after-step`, acts as Ctrl-C there). The points sit where a crash is most damaging: between the files of a
//! checkpoint set, before the pointer to a new set is switched, after a step.
//!
//! Unset, a point costs one environment lookup per checkpoint or step.

use std::collections::HashMap;
use std::sync::Mutex;

/// The environment variable naming the fault, e.g. `checkpoint-between-files@2`.
pub const FAULT_ENV: &str = "KAIMING_FAULT";

/// Where a crash can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// After a step's update, before anything of the step is logged or saved; `n` is the
    /// 1-based global step number.
    AfterStep,
    /// Inside a checkpoint set, after the model file and before the optimizer file; `n` counts
    /// the sets this process writes.
    CheckpointBetweenFiles,
    /// After a set is complete, before the `latest` pointer names it; `n` counts as above.
    CheckpointBeforePointer,
    /// Not a crash: Ctrl-C, as if pressed during step `n` (1-based), for the tests of clean
    /// interruption; see [`hit`].
    InterruptAfterStep,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::AfterStep => "after-step",
            Point::CheckpointBetweenFiles => "checkpoint-between-files",
            Point::CheckpointBeforePointer => "checkpoint-before-pointer",
            Point::InterruptAfterStep => "interrupt-after-step",
        }
    }
}

static COUNTS: Mutex<Option<HashMap<Point, usize>>> = Mutex::new(None);

/// Kills the process if `KAIMING_FAULT` names `point` at occurrence `n`; `n = None` counts the
/// occurrences of `point` in this process.
pub fn check(point: Point, n: Option<usize>) {
    if hit(point, n) {
        eprintln!("{FAULT_ENV}: killing the process at {}", point.name());
        kill_now();
    }
}

/// Whether `KAIMING_FAULT` names `point` at occurrence `n` (counted as for [`check`]).
pub fn hit(point: Point, n: Option<usize>) -> bool {
    let Ok(spec) = std::env::var(FAULT_ENV) else {
        return false;
    };
    let n = n.unwrap_or_else(|| {
        let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts
            .get_or_insert_with(HashMap::new)
            .entry(point)
            .or_default();
        *count += 1;
        *count
    });
    spec.split(',').any(|item| match item.split_once('@') {
        Some((name, at)) => name == point.name() && at.parse() == Ok(n),
        None => false,
    })
}

#[cfg(unix)]
fn kill_now() -> ! {
    // SAFETY: kill(2) on our own pid has no memory effects; SIGKILL cannot be caught.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

#[cfg(not(unix))]
fn kill_now() -> ! {
    std::process::abort()
}
