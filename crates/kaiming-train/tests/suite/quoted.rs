//! The numbers the READMEs quote from run folders are recomputed from them. Each carries a
//! marker right after it naming its source, `<!-- = FOLDER QUANTITY -->` (FOLDER relative to
//! the Markdown file, invisible once rendered), and must equal the value recomputed from that
//! folder to the digits written. Every percentage in prose carries one (`<!-- ≠ REASON -->`
//! marks one that is not from a run: the paper's, a rule's); losses and times are marked where
//! they are quoted. Tables generated from files are checked as files
//! (`published::the_readme_tables_are_the_files_they_name`).
//!
//! Quantities, of a run folder: `final_accuracy`, `best_accuracy`, `final_train_loss`, `time`
//! (its wall time, written `7,245 s`, `34 min` or `1 h 51 min`), `loss@STEP` and
//! `train_accuracy@STEP` (its train row at STEP), `accuracy@EPOCH` (its evaluation after
//! EPOCH), `monitor@STEP:LAYER:QUANTITY` (a row of its monitor.csv); of a probe folder:
//! `probe:INIT:LAYER_INDEX:activation_std` or `…:gradient_std`; of a sweep folder:
//! `pivot:ROW:COLUMN`, ROW the pivot's axis values joined by `/`. Accuracies are written in
//! per cent; so is a monitor value (a fraction of dead ReLUs) written with `%`.

use std::path::{Path, PathBuf};

use kaiming_train::compare::RunRecord;
use kaiming_train::monitor::MonitorLog;
use kaiming_train::probe;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Markdown files whose numbers are checked.
fn documents() -> Vec<PathBuf> {
    vec![
        repository().join("README.md"),
        repository().join("docs/results/README.md"),
    ]
}

/// One marker and the line it is on.
struct Quote {
    /// `file:line`, for messages.
    at: String,
    /// The line up to the marker.
    before: String,
    folder: PathBuf,
    quantity: String,
}

/// The prose of `text`: its lines outside code blocks and generated tables, numbered from 1.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let (mut code, mut table) = (false, false);
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") || line.trim_start().starts_with("~~~") {
            code = !code;
            continue;
        }
        if line.starts_with("<!-- table: ") {
            table = true;
        }
        if line.starts_with("<!-- end table -->") {
            table = false;
        }
        if !code && !table {
            lines.push((index + 1, line));
        }
    }
    assert!(
        !code && !table,
        "a code block or generated table is never closed"
    );
    lines
}

const MARK: &str = "<!-- = ";
const NOT_FROM_A_RUN: &str = "<!-- ≠ ";

fn quotes(document: &Path) -> Vec<Quote> {
    let text = std::fs::read_to_string(document).unwrap();
    let base = document.parent().unwrap();
    let mut quotes = Vec::new();
    for (number, line) in prose(&text) {
        for (start, _) in line.match_indices(MARK) {
            let rest = &line[start + MARK.len()..];
            let end = rest
                .find(" -->")
                .unwrap_or_else(|| panic!("{}:{number}: unclosed marker", document.display()));
            let fields: Vec<&str> = rest[..end].split_whitespace().collect();
            let [folder, quantity] = fields[..] else {
                panic!(
                    "{}:{number}: a marker is `<!-- = FOLDER QUANTITY -->`, not {:?}",
                    document.display(),
                    &rest[..end]
                );
            };
            quotes.push(Quote {
                at: format!("{}:{number}", document.display()),
                before: line[..start].to_string(),
                folder: base.join(folder),
                quantity: quantity.to_string(),
            });
        }
    }
    quotes
}

/// Superscript digits and minus, as in `6.5·10⁸`.
fn superscript(c: char) -> Option<i32> {
    "⁰¹²³⁴⁵⁶⁷⁸⁹"
        .chars()
        .position(|s| s == c)
        .map(|digit| digit as i32)
}

fn superscript_exponent(text: &str) -> Option<i32> {
    let (sign, digits) = match text.strip_prefix('⁻') {
        Some(digits) => (-1, digits),
        None => (1, text),
    };
    if digits.is_empty() {
        return None;
    }
    digits
        .chars()
        .try_fold(0, |value, c| Some(value * 10 + superscript(c)?))
        .map(|value| sign * value)
}

/// The number at the end of `text` (emphasis, `%` and spaces after it ignored): its value and
/// half a unit of its last written digit. Thousands separators, `1.1e-5` and `6.5·10⁸` read.
fn trailing_number(text: &str) -> Option<(f64, f64)> {
    let text =
        text.trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '*' | '%' | '`' | ')'));
    let (body, mut exponent) = match text.rsplit_once("·10") {
        Some((body, sup)) if superscript_exponent(sup).is_some() => {
            (body, superscript_exponent(sup).unwrap())
        }
        _ => (text, 0),
    };
    let start = body
        .char_indices()
        .rev()
        .take_while(|&(_, c)| c.is_ascii_digit() || matches!(c, '.' | ',' | 'e' | '-' | '+'))
        .last()?
        .0;
    let token = body[start..].trim_start_matches(|c: char| !c.is_ascii_digit());
    // A sign only where it starts a word: the hyphen of `ResNet-56` or `width-16` is none.
    let before = body[..body.len() - token.len()].trim_end_matches(['+']);
    let negative = before
        .strip_suffix(['-', '−'])
        .is_some_and(|rest| rest.is_empty() || rest.ends_with([' ', '(', '\u{a0}']));
    let mantissa = match token.split_once('e') {
        Some((mantissa, power)) => {
            exponent += power.parse::<i32>().ok()?;
            mantissa
        }
        None => token,
    };
    let digits = mantissa.replace(',', "");
    let decimals = digits.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    let value = digits.parse::<f64>().ok()? * 10f64.powi(exponent);
    Some((
        if negative { -value } else { value },
        0.5 * 10f64.powi(exponent - decimals),
    ))
}

/// The time at the end of `text`, in seconds, and half the unit of its last part: `7,245 s`,
/// `34 min`, `1 h 51 min`, `2 h` (a comma ends it: `34 min, 1 h` is `1 h`).
fn trailing_time(text: &str) -> Option<(f64, f64)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut seconds = 0.0;
    let mut unit_of_last = None;
    let mut rest = &words[..];
    while let [head @ .., number, unit] = rest {
        if unit_of_last.is_some() && unit.ends_with(',') {
            break;
        }
        let unit = match unit.trim_end_matches(['*', ',', ')']) {
            "s" => 1.0,
            "min" => 60.0,
            "h" => 3600.0,
            _ => break,
        };
        let Ok(value) = number
            .replace(',', "")
            .trim_start_matches('(')
            .parse::<f64>()
        else {
            break;
        };
        seconds += value * unit;
        unit_of_last.get_or_insert(unit);
        rest = head;
    }
    unit_of_last.map(|unit| (seconds, unit / 2.0))
}

fn summary_value(run: &RunRecord, quantity: &str) -> Option<f64> {
    let summary = &run.summary;
    Some(match quantity {
        "final_accuracy" => summary.final_accuracy? * 100.0,
        "best_accuracy" => summary.best_accuracy? * 100.0,
        "final_train_loss" => summary.final_train_loss?,
        _ => return None,
    })
}

/// The value `quantity` names in `folder`, and whether it is a time.
fn recompute(folder: &Path, quantity: &str) -> Result<(f64, bool), String> {
    let at = |what: &str| -> Result<usize, String> {
        what.parse().map_err(|_| format!("{what:?} is not a step"))
    };
    if let Some(rest) = quantity.strip_prefix("probe:") {
        let rows = probe::read(&folder.join("probe.csv")).map_err(|e| format!("{e:#}"))?;
        let [init, layer, field] = rest.split(':').collect::<Vec<_>>()[..] else {
            return Err("probe:INIT:LAYER_INDEX:FIELD".into());
        };
        let row = rows
            .iter()
            .find(|row| row.init == init && row.layer_index.to_string() == layer)
            .ok_or(format!("no probe row {init} {layer}"))?;
        return match field {
            "activation_std" => Ok((row.activation_std, false)),
            "gradient_std" => Ok((row.gradient_std, false)),
            other => Err(format!("no probe field {other}")),
        };
    }
    if let Some(rest) = quantity.strip_prefix("pivot:") {
        let (row, column) = rest.rsplit_once(':').ok_or("pivot:ROW:COLUMN")?;
        let mut csv =
            csv::Reader::from_path(folder.join("pivot.csv")).map_err(|e| e.to_string())?;
        let headers = csv.headers().map_err(|e| e.to_string())?.clone();
        let axes = headers
            .iter()
            .position(|h| h == "runs")
            .ok_or("no runs column")?;
        let index = headers
            .iter()
            .position(|h| h == column)
            .ok_or(format!("no pivot column {column}"))?;
        for record in csv.records() {
            let record = record.map_err(|e| e.to_string())?;
            let key: Vec<&str> = record.iter().take(axes).collect();
            if key.join("/") == row {
                let value: f64 = record[index].parse().map_err(|_| "not a number")?;
                let percent = column.starts_with("accuracy");
                return Ok((if percent { value * 100.0 } else { value }, false));
            }
        }
        return Err(format!("no pivot row {row}"));
    }
    let run = RunRecord::read(folder).map_err(|e| format!("{e:#}"))?;
    if quantity == "time" {
        return Ok((run.summary.total_time_s, true));
    }
    if let Some(value) = summary_value(&run, quantity) {
        return Ok((value, false));
    }
    let train_row = |step: &str| -> Result<_, String> {
        let step = at(step)?;
        run.metrics
            .rows
            .iter()
            .find(|row| row.split == "train" && row.step == step)
            .ok_or(format!("no train row at step {step}"))
    };
    if let Some(step) = quantity.strip_prefix("loss@") {
        return Ok((train_row(step)?.loss(), false));
    }
    if let Some(step) = quantity.strip_prefix("train_accuracy@") {
        return Ok((train_row(step)?.accuracy() * 100.0, false));
    }
    if let Some(epoch) = quantity.strip_prefix("accuracy@") {
        let epoch = at(epoch)?;
        let row = run
            .metrics
            .evaluations()
            .find(|row| row.epoch == epoch)
            .ok_or(format!("no evaluation after epoch {epoch}"))?;
        return Ok((row.accuracy() * 100.0, false));
    }
    if let Some(rest) = quantity.strip_prefix("monitor@") {
        let [step, layer, field] = rest.split(':').collect::<Vec<_>>()[..] else {
            return Err("monitor@STEP:LAYER:QUANTITY".into());
        };
        let step = at(step)?;
        let rows = MonitorLog::read(&folder.join("monitor.csv")).map_err(|e| format!("{e:#}"))?;
        let row = rows
            .iter()
            .find(|row| row.step == step && row.layer == layer && row.quantity.to_string() == field)
            .ok_or(format!("no monitor row {step} {layer} {field}"))?;
        return Ok((row.value, false));
    }
    Err(format!("unknown quantity {quantity}"))
}

#[test]
fn every_quoted_number_is_its_run_folders() {
    let mut checked = 0;
    for document in documents() {
        for quote in quotes(&document) {
            let (value, time) = recompute(&quote.folder, &quote.quantity).unwrap_or_else(|e| {
                panic!(
                    "{}: {} {}: {e}",
                    quote.at,
                    quote.folder.display(),
                    quote.quantity
                )
            });
            let percent = quote
                .before
                .trim_end_matches([' ', '*', '`'])
                .ends_with('%');
            let value = if percent && quote.quantity.starts_with("monitor@") {
                value * 100.0
            } else {
                value
            };
            let (written, tolerance) = if time {
                trailing_time(&quote.before)
            } else {
                trailing_number(&quote.before)
            }
            .unwrap_or_else(|| panic!("{}: no number before the marker", quote.at));
            assert!(
                (written - value).abs() <= tolerance * (1.0 + 1e-9),
                "{}: written {written}, but {} gives {value} for {}",
                quote.at,
                quote.folder.display(),
                quote.quantity
            );
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} quoted numbers");
}

/// Every percentage in prose is marked: with its source, or as not from a run.
#[test]
fn every_quoted_percentage_is_marked() {
    for document in documents() {
        let text = std::fs::read_to_string(&document).unwrap();
        for (number, line) in prose(&text) {
            for (index, _) in line.match_indices('%') {
                let before = line[..index].trim_end();
                if !before.ends_with(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                let after = line[index + 1..].trim_start_matches(['*', ')', ' ']);
                assert!(
                    after.starts_with(MARK) || after.starts_with(NOT_FROM_A_RUN),
                    "{}:{number}: `{}%` has no marker (`<!-- = FOLDER QUANTITY -->`, or \
                     `<!-- ≠ REASON -->`)",
                    document.display(),
                    &before[before.len().saturating_sub(12)..]
                );
            }
        }
    }
}

/// The readers of written numbers, on the forms the READMEs use.
#[test]
fn written_numbers_and_times_read_with_their_precision() {
    let close =
        |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 1e-12 && (a.1 - b.1).abs() < 1e-12;
    for (text, expected) in [
        ("reaches **91.39 %**", (91.39, 0.005)),
        ("loss 2.13", (2.13, 0.005)),
        ("8.9e-6", (8.9e-6, 0.05e-6)),
        ("grows to 6.5·10⁸", (6.5e8, 0.05e8)),
        ("ratio 3·10⁻⁴", (3e-4, 0.5e-4)),
        ("7,245", (7245.0, 0.5)),
        ("at −0.25", (-0.25, 0.005)),
        ("(-3.5", (-3.5, 0.05)),
        ("ResNet-56", (56.0, 0.5)),
        ("(53.1 %)", (53.1, 0.05)),
    ] {
        let read = trailing_number(text).unwrap();
        assert!(close(read, expected), "{text}: {read:?}");
    }
    for (text, expected) in [
        ("in 1 h 51 min", (6660.0, 30.0)),
        ("took 7,245 s", (7245.0, 0.5)),
        ("(61 s", (61.0, 0.5)),
        ("about 2 h", (7200.0, 1800.0)),
        ("34 min, 1 h", (3600.0, 1800.0)),
    ] {
        let read = trailing_time(text).unwrap();
        assert!(close(read, expected), "{text}: {read:?}");
    }
    assert_eq!(trailing_time("no time here"), None);
}
