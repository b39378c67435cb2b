//! The published results are their run folders. Every comparison and pivot under
//! `docs/results/` is recomputed from the committed runs it names, by the code of
//! `train compare`, and must come out identical — tables (CSV and Markdown) and figures (SVG,
//! whose drawing is deterministic; the PNGs are rasterised from them) — and each table the
//! READMEs show between `<!-- table: FILE -->` and `<!-- end table -->` must be that file. So a
//! README cannot drift from the data, and a figure cannot drift from its CSV.

use std::path::{Path, PathBuf};

use kaiming_train::compare::{Axis, RunRecord, compare};
use kaiming_train::pivot;
use kaiming_train::summary::Status;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn results() -> PathBuf {
    repository().join("docs/results")
}

/// Every file named `name` under `dir`, in path order.
fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The run folders a `comparison.csv` was made from (its `folder` column).
fn sources(comparison: &Path) -> Vec<PathBuf> {
    let dir = comparison.parent().unwrap();
    let mut csv = csv::Reader::from_path(comparison).unwrap();
    let column = csv
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "folder")
        .unwrap_or_else(|| panic!("{}: no `folder` column", comparison.display()));
    csv.records()
        .map(|record| dir.join(&record.unwrap()[column]))
        .collect()
}

/// Set, the recomputed tables and figures are written over the published ones instead of being
/// compared with them: after a change to how `train compare` draws, `KAIMING_REWRITE_PUBLISHED=1
/// cargo test --release --workspace --test published` republishes every figure at once (the
/// run folders, and so the numbers, stay as they are; `git diff` shows what moved).
const REWRITE: &str = "KAIMING_REWRITE_PUBLISHED";

#[test]
fn every_published_table_and_figure_is_recomputed_from_its_run_folders() {
    let comparisons = find(&results(), "comparison.csv");
    assert!(comparisons.len() >= 10, "found only {comparisons:?}");
    for comparison in &comparisons {
        let dir = comparison.parent().unwrap();
        let runs = sources(comparison);
        let scratch = tempfile::tempdir().unwrap();
        // The scratch folder sits elsewhere, so the relative folders differ; the rest must not.
        compare(&runs, scratch.path()).unwrap();
        let mut produced = vec!["comparison.md", "comparison.svg"];
        if dir.join("pivot.csv").exists() {
            let head = read(&dir.join("pivot.csv"));
            let fields: Vec<&str> = head.lines().next().unwrap().split(',').collect();
            let axis = |field: &str| -> Vec<String> {
                match field {
                    "-" => Vec::new(),
                    keys => keys.split(" / ").map(String::from).collect(),
                }
            };
            pivot::report(&runs, scratch.path(), &axis(fields[0]), &axis(fields[1])).unwrap();
            produced.extend(["pivot.csv", "pivot.md", "heatmap.svg"]);
        }
        if std::env::var_os(REWRITE).is_some() {
            let pngs = produced.iter().map(|file| file.replace(".svg", ".png"));
            for file in produced.iter().map(|f| f.to_string()).chain(pngs) {
                std::fs::copy(scratch.path().join(&file), dir.join(&file)).unwrap();
            }
            continue;
        }
        for file in produced {
            assert_eq!(
                read(&dir.join(file)),
                read(&scratch.path().join(file)),
                "{} is not what its run folders give (`train compare` rewrites it)",
                dir.join(file).display()
            );
        }
        let without_folders = |path: &Path| -> Vec<String> {
            read(path)
                .lines()
                .map(|line| line.rsplit_once(',').unwrap().0.to_string())
                .collect()
        };
        assert_eq!(
            without_folders(comparison),
            without_folders(&scratch.path().join("comparison.csv")),
            "{}",
            comparison.display()
        );
    }
}

#[test]
fn every_published_run_folder_reads_and_its_summary_agrees_with_its_metrics() {
    let summaries = find(&results(), "summary.json");
    assert!(summaries.len() >= 50, "found only {}", summaries.len());
    let mut completed = 0;
    for summary in summaries {
        let dir = summary.parent().unwrap();
        let run = RunRecord::read(dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        assert!(run.config.is_some(), "{}: no config.toml", dir.display());
        if run.summary.status != Status::Completed {
            continue;
        }
        completed += 1;
        let accuracies: Vec<f64> = run.metrics.evaluations().map(|r| r.accuracy()).collect();
        let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            _ => false,
        };
        assert!(
            close(run.summary.final_accuracy, accuracies.last().copied()),
            "{}: final accuracy {:?}, last evaluation {:?}",
            dir.display(),
            run.summary.final_accuracy,
            accuracies.last()
        );
        let best = accuracies.iter().copied().reduce(f64::max);
        assert!(
            close(run.summary.best_accuracy, best),
            "{}: best accuracy {:?}, best evaluation {best:?}",
            dir.display(),
            run.summary.best_accuracy
        );
        let last_step = run.metrics.rows.iter().map(|r| r.step).max();
        assert_eq!(Some(run.summary.steps), last_step, "{}", dir.display());
    }
    assert!(completed >= 40, "only {completed} completed runs");
}

#[test]
fn the_readme_tables_are_the_files_they_name() {
    let mut blocks = 0;
    for readme in [results().join("README.md"), repository().join("README.md")] {
        let text = read(&readme);
        let base = readme.parent().unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("<!-- table: ") {
            let after = &rest[start + "<!-- table: ".len()..];
            let (name, after) = after
                .split_once(" -->\n")
                .expect("a table marker ends a line");
            let (block, after) = after
                .split_once("<!-- end table -->")
                .unwrap_or_else(|| panic!("{}: table {name} has no end", readme.display()));
            assert_eq!(
                block,
                read(&base.join(name)),
                "{}: the table from {name} differs from the file",
                readme.display()
            );
            blocks += 1;
            rest = after;
        }
    }
    assert!(blocks >= 7, "only {blocks} generated tables in the READMEs");
}

/// Runs of a few epochs are drawn per logged step (one or two points per epoch would say
/// nothing); a set with a longer run, per epoch.
#[test]
fn short_runs_are_drawn_per_logged_step() {
    let run = |path: &str| RunRecord::read(&results().join(path)).unwrap();
    let short = "8-normalization-free/no-norm/resnet20-he-residualfixup-s0";
    let long = "9-resnet20-fast/resnet20-he-s0";
    assert_eq!(Axis::for_runs(&[run(short)]), Axis::Step);
    assert_eq!(Axis::for_runs(&[run(short), run(long)]), Axis::Epoch);
    let train_rows = run(short)
        .metrics
        .rows
        .iter()
        .filter(|row| row.split == "train")
        .count();
    assert!(train_rows >= 7, "{train_rows} logged steps");
    let figure = read(&results().join("8-normalization-free/no-norm/comparison.svg"));
    assert!(figure.contains("\nstep\n"), "the x axis counts steps");
}
