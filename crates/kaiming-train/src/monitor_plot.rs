//! The figures of `train monitor`: every monitored quantity per layer over training, as lines
//! and as a layer × step heatmap (where in depth a signal fades reads at a glance there).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, ensure};

use crate::heatmap::{self, HeatCell, Heatmap, Scale};
use crate::monitor::{MonitorRow, Quantity};
use crate::plot::{Colour, Panel, Series, save_figure};

/// The figures' panels: one per quantity, in [`Quantity::ALL`]'s order, with the parameter
/// quantities of the biases (rows of `….bias`) in panels of their own after the weights' — a
/// bias starts at zero and moves on another scale than its weight.
fn panels(rows: &[MonitorRow]) -> Vec<(String, Quantity, Vec<&MonitorRow>)> {
    let mut panels = Vec::new();
    for quantity in Quantity::ALL {
        let (biases, others): (Vec<&MonitorRow>, Vec<&MonitorRow>) = rows
            .iter()
            .filter(|r| r.quantity == quantity)
            .partition(|r| r.layer.ends_with(".bias"));
        let name = quantity.name().replace('_', " ");
        for (title, rows) in [
            (name.clone(), others),
            (
                format!("bias {}", name.trim_start_matches("weight ")),
                biases,
            ),
        ] {
            if !rows.is_empty() {
                panels.push((title, quantity, rows));
            }
        }
    }
    panels
}

/// Draws `rows` (one run's monitor.csv) to `<stem>.svg` and `<stem>.png`: one panel per
/// quantity, one line per layer coloured from the first layer (dark) to the last (yellow), the
/// first and last named in the legend. Magnitudes are drawn on a log scale; the activation mean
/// and the dead fraction, which are often zero, on a linear one.
pub fn draw(rows: &[MonitorRow], title: &str, stem: &Path) -> Result<()> {
    ensure!(!rows.is_empty(), "{title}: monitor.csv has no rows");
    let mut figure = Vec::new();
    for (panel, name, rows) in panels(rows) {
        // Layers in the order they first appear (forward order), each with its points.
        let mut order: Vec<&str> = Vec::new();
        let mut points: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for row in rows {
            if !points.contains_key(row.layer.as_str()) {
                order.push(&row.layer);
            }
            points
                .entry(&row.layer)
                .or_default()
                .push((row.step as f64, row.value));
        }
        if order.is_empty() {
            continue;
        }
        let last = order.len() - 1;
        let series = order
            .iter()
            .enumerate()
            .map(|(i, layer)| Series {
                label: if i == 0 || i == last {
                    layer.to_string()
                } else {
                    String::new()
                },
                color: Colour::Ramp(i as f64 / last.max(1) as f64),
                points: points.remove(layer).unwrap_or_default(),
                band: None,
                dashed: false,
            })
            .collect();
        let log_y = name.is_magnitude();
        figure.push(Panel {
            title: format!("{title}: {panel}"),
            x_label: "step".into(),
            y_label: if log_y { "log scale" } else { "" }.into(),
            log_y,
            series,
        });
    }
    save_figure(&figure, stem)
}

/// Draws `rows` to `<stem>.svg` and `<stem>.png` as one heatmap per quantity: a row per layer in
/// forward order, a column per monitored step, colour on a log scale for the magnitudes (linear
/// for the activation mean and the dead fraction).
pub fn draw_heatmaps(rows: &[MonitorRow], title: &str, stem: &Path) -> Result<()> {
    ensure!(!rows.is_empty(), "{title}: monitor.csv has no rows");
    let mut steps: Vec<usize> = rows.iter().map(|r| r.step).collect();
    steps.sort_unstable();
    steps.dedup();
    let mut maps = Vec::new();
    for (panel, name, rows) in panels(rows) {
        let mut layers: Vec<&str> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut values: BTreeMap<(&str, usize), f64> = BTreeMap::new();
        for row in rows {
            if seen.insert(&row.layer) {
                layers.push(&row.layer);
            }
            values.insert((&row.layer, row.step), row.value);
        }
        if layers.is_empty() {
            continue;
        }
        let linear = !name.is_magnitude();
        maps.push(Heatmap {
            title: format!("{title}: {panel}"),
            axes: ("layer, input to output".into(), "step".into()),
            rows: layers.iter().map(ToString::to_string).collect(),
            columns: steps.iter().map(ToString::to_string).collect(),
            cells: layers
                .iter()
                .map(|layer| {
                    steps
                        .iter()
                        .map(|step| match values.get(&(*layer, *step)) {
                            Some(&value) => HeatCell::Value {
                                value,
                                text: String::new(),
                                mark: String::new(),
                            },
                            None => HeatCell::Empty(String::new()),
                        })
                        .collect()
                })
                .collect(),
            scale: if linear { Scale::Linear } else { Scale::Log },
            higher_is_better: None,
            note: match linear {
                true => String::new(),
                false => "grey: exactly zero (no place on a log scale)".to_string(),
            },
        });
    }
    heatmap::save(&maps, stem)
}
