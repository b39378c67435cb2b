//! The published results are their run folders. Every comparison and pivot under
//! `docs/results/` is recomputed from the committed runs it names, by the code of
//! `train compare`, and must come out identical — tables (CSV and Markdown) and figures (SVG,
//! whose drawing is deterministic) — as must the probe and monitor figures redrawn from their
//! CSVs; every PNG names the SVG it was rasterised from (`plot::drawn_from`), which must be the
//! SVG beside it; and each table the READMEs show between `<!-- table: FILE -->` and
//! `<!-- end table -->` must be that file (the numbers in their prose: `quoted.rs`). So a README
//! cannot drift from the data, and a figure cannot drift from its CSV.

use std::path::{Path, PathBuf};

use kaiming_train::compare::{Axis, RunRecord, compare};
use kaiming_train::monitor::{MonitorLog, Quantity, SignalKind};
use kaiming_train::summary::{Status, Summary};
use kaiming_train::{monitor_plot, pivot, plot, probe};

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
        // A folder may vanish while it is read: a run training into docs/results (an
        // experiment in progress) swaps its checkpoint sets.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let Ok(entry) = entry else {
                continue;
            };
            let path = entry.path();
            if path.file_name().is_some_and(|name| name == "checkpoints") {
                continue;
            }
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
/// compared with them: after a change to how figures are drawn, `KAIMING_REWRITE_PUBLISHED=1
/// cargo test --workspace --test suite published` republishes every figure at once (the run
/// folders, and so the numbers, stay as they are; `git diff` shows what moved).
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
        compare_or_rewrite(dir, scratch.path(), &produced, "`train compare`");
        if std::env::var_os(REWRITE).is_some() {
            continue;
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

/// The largest value, NaN if any is (`f64::max` drops a NaN, which would hide it).
fn max_keeping_nan(values: &[f64]) -> Option<f64> {
    values.iter().copied().reduce(|a, b| {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            a.max(b)
        }
    })
}

#[test]
fn the_maximum_of_published_values_keeps_a_nan() {
    assert!(max_keeping_nan(&[0.3, f64::NAN, 0.5]).unwrap().is_nan());
    assert!(max_keeping_nan(&[f64::NAN, 0.5]).unwrap().is_nan());
    assert_eq!(max_keeping_nan(&[0.3, 0.5]), Some(0.5));
}

/// The mean train loss of `epoch`, each train row weighted by the steps it covers: what the run
/// reports as its final train loss for its last epoch.
fn epoch_loss(run: &RunRecord, epoch: usize) -> Option<f64> {
    let mut previous = 0;
    let (mut sum, mut steps) = (0.0, 0.0);
    for row in run.metrics.rows.iter().filter(|r| r.split == "train") {
        let covered = row.step.saturating_sub(previous) as f64;
        previous = row.step;
        if row.epoch == epoch {
            sum += row.loss() * covered;
            steps += covered;
        }
    }
    (steps > 0.0).then(|| sum / steps)
}

/// Every diagnosis of `summary.json` is in `monitor.csv`: the row it names exists at its step,
/// and its value is that row's (dead ReLUs, update ratio) or the row's ratio to the reference
/// layer of that step (vanishing, exploding: the first layer's activation std, or the last
/// layer's gradient std).
fn check_signals(run: &RunRecord) {
    let dir = &run.dir;
    if run.summary.signals.is_empty() {
        return;
    }
    let rows = MonitorLog::read(&dir.join("monitor.csv"))
        .unwrap_or_else(|e| panic!("{}: signals but no monitor.csv: {e:#}", dir.display()));
    for signal in &run.summary.signals {
        let at_step: Vec<_> = rows
            .iter()
            .filter(|r| r.step == signal.step && r.quantity == signal.quantity)
            .collect();
        let row = at_step
            .iter()
            .find(|r| r.layer == signal.layer)
            .unwrap_or_else(|| panic!("{}: {signal:?} has no monitor row", dir.display()));
        let expected = match signal.kind {
            SignalKind::DeadRelus | SignalKind::UpdateRatio => row.value,
            SignalKind::Vanishing | SignalKind::Exploding => {
                let reference = match signal.quantity {
                    Quantity::GradientStd => at_step.last(),
                    _ => at_step.first(),
                };
                row.value / reference.unwrap().value
            }
        };
        let close = (signal.value - expected).abs() <= 1e-6 * expected.abs().max(1e-30)
            || (signal.value.is_infinite() && expected.is_infinite());
        assert!(
            close,
            "{}: {signal:?} against monitor.csv's {expected}",
            dir.display()
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
        if run.summary.status == Status::Running {
            // An experiment still training here; only ended runs are committed (and CI, on a
            // clean checkout, sees no other).
            continue;
        }
        // Every run, diverged ones included: its epochs are its evaluations, its final train
        // loss the mean of its last whole epoch's rows, its diagnoses in its monitor.csv.
        let last_evaluated = run.metrics.evaluations().map(|r| r.epoch).max();
        assert_eq!(
            run.summary.epochs_completed,
            last_evaluated.unwrap_or(0),
            "{}: epochs_completed",
            dir.display()
        );
        match (run.summary.final_train_loss, last_evaluated) {
            (Some(reported), Some(epoch)) => {
                let recomputed = epoch_loss(&run, epoch).unwrap();
                // The rows weigh steps, the run weighs images: an epoch's last batch is
                // smaller, which moves the mean by up to a few 1e-4 (E5's 40-step epochs).
                assert!(
                    (reported - recomputed).abs() <= 2e-3,
                    "{}: final train loss {reported}, its last epoch's rows {recomputed}",
                    dir.display()
                );
            }
            (None, None) => {}
            (reported, epoch) => panic!(
                "{}: final train loss {reported:?} after {epoch:?} evaluated epochs",
                dir.display()
            ),
        }
        check_signals(&run);
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
        let best = max_keeping_nan(&accuracies);
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

/// Replaces the published `files` in `dir` (and the PNGs of the SVGs) with the recomputed ones
/// in `scratch` under [`REWRITE`]; otherwise asserts they are the same, naming `how` to remake
/// them.
fn compare_or_rewrite(dir: &Path, scratch: &Path, files: &[&str], how: &str) {
    if std::env::var_os(REWRITE).is_some() {
        assert!(
            std::env::var_os("KAIMING_REQUIRE_DATA").is_none(),
            "{REWRITE} rewrites the published files; CI (KAIMING_REQUIRE_DATA) must compare them"
        );
        for file in files {
            let png = file.strip_suffix(".svg").map(|stem| format!("{stem}.png"));
            for file in std::iter::once(file.to_string()).chain(png) {
                std::fs::copy(scratch.join(&file), dir.join(&file)).unwrap();
            }
        }
        return;
    }
    for file in files {
        assert_eq!(
            read(&dir.join(file)),
            read(&scratch.join(file)),
            "{} is not what its data give ({how} remakes it)",
            dir.join(file).display()
        );
    }
}

/// The probe figures are redrawn from their `probe.csv` (the prediction included), the
/// monitor figures from their run's `monitor.csv`, and must come out identical.
#[test]
fn every_published_probe_and_monitor_figure_is_redrawn_from_its_csv() {
    let probes = find(&results(), "probe.csv");
    assert!(probes.len() >= 3, "found only {probes:?}");
    for csv in &probes {
        let dir = csv.parent().unwrap();
        let rows = probe::read(csv).unwrap();
        assert!(
            rows.iter().all(|row| row.activation_std.is_finite()),
            "{}",
            csv.display()
        );
        // The title is the command's (model and norm), which the CSV does not hold.
        let svg = read(&dir.join("probe.svg"));
        let title = svg
            .split_once(": activation std at init\n</text>")
            .and_then(|(before, _)| before.rsplit(['>', '\n']).next())
            .filter(|title| !title.trim().is_empty())
            .unwrap_or_else(|| panic!("{}: no title", dir.display()));
        let scratch = tempfile::tempdir().unwrap();
        probe::draw(&rows, scratch.path(), title).unwrap();
        compare_or_rewrite(dir, scratch.path(), &["probe.svg"], "`train probe`");
    }
    let mut monitors = 0;
    for csv in find(&results(), "monitor.csv") {
        let dir = csv.parent().unwrap();
        let drawn: Vec<&str> = ["monitor.svg", "monitor-heatmap.svg"]
            .into_iter()
            .filter(|file| dir.join(file).exists())
            .collect();
        if drawn.is_empty() {
            continue;
        }
        let rows = MonitorLog::read(&csv).unwrap();
        let name = Summary::read(&dir.join("summary.json")).unwrap().name;
        let scratch = tempfile::tempdir().unwrap();
        monitor_plot::draw(&rows, &name, &scratch.path().join("monitor")).unwrap();
        monitor_plot::draw_heatmaps(&rows, &name, &scratch.path().join("monitor-heatmap")).unwrap();
        compare_or_rewrite(dir, scratch.path(), &drawn, "`train monitor`");
        monitors += 1;
    }
    assert!(monitors >= 3, "only {monitors} monitor figures");
}

/// The figures a Markdown file embeds or links, relative to the repository: every `….png`
/// target of a link (`](…)`) or an `<img src="…">`.
fn figures_in(markdown: &Path) -> Vec<PathBuf> {
    let text = read(markdown);
    let base = markdown.parent().unwrap();
    let mut figures = Vec::new();
    for (opening, closing) in [("](", ')'), ("src=\"", '"')] {
        for (start, _) in text.match_indices(opening) {
            let target = &text[start + opening.len()..];
            let target = &target[..target.find(closing).unwrap_or(target.len())];
            if target.ends_with(".png") {
                figures.push(base.join(target));
            }
        }
    }
    figures
}

/// Every PNG under `docs/results/` says (in a text chunk) which SVG it was drawn from, and that
/// is the SVG beside it — which the tests above recompute from the run folders; every figure
/// the READMEs and `docs/` embed is one of them.
#[test]
fn every_figure_is_drawn_from_the_recomputed_svg_beside_it() {
    let mut documents = vec![repository().join("README.md"), results().join("README.md")];
    for entry in std::fs::read_dir(repository().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    let recomputed = [
        "comparison.svg",
        "heatmap.svg",
        "probe.svg",
        "monitor.svg",
        "monitor-heatmap.svg",
    ];
    let mut embedded = 0;
    for document in &documents {
        for figure in figures_in(document) {
            assert!(
                figure.starts_with(results()),
                "{}: {} is not a published result",
                document.display(),
                figure.display()
            );
            assert!(
                figure.exists(),
                "{}: {} is missing",
                document.display(),
                figure.display()
            );
            embedded += 1;
        }
    }
    assert!(embedded >= 20, "only {embedded} figures embedded");
    let mut pngs = Vec::new();
    let mut stack = vec![results()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "png") {
                pngs.push(path);
            }
        }
    }
    assert!(pngs.len() >= 20, "found only {}", pngs.len());
    for png in pngs {
        let svg = png.with_extension("svg");
        let name = svg.file_name().unwrap().to_str().unwrap();
        assert!(
            recomputed.contains(&name),
            "{}: not a recomputed figure",
            png.display()
        );
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(
            plot::drawn_from(&bytes),
            Some(plot::fingerprint(&read(&svg))),
            "{} was not drawn from {} (`train compare`, `train monitor` or `train probe` redraws both)",
            png.display(),
            svg.display()
        );
    }
}
