//! Heatmaps as SVG and PNG: the pivot of a grid sweep (a value written in each cell) and the
//! signal monitor's layer × step view (too many cells for text).
//!
//! Written as SVG by hand rather than through plotters: a heatmap is rectangles and text, and
//! this keeps the cell text, the missing-cell marks and the colour bar exactly where they
//! belong. The colours are viridis, which reads the same to the colour-blind and in grey.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::atomic::write_atomic;
use crate::plot::{Colour, rasterise};

/// One cell of a heatmap.
#[derive(Debug, Clone, PartialEq)]
pub enum HeatCell {
    /// A value, coloured on the map's scale, with the text written in the cell (may be empty)
    /// and a mark (a diagnosis) written under it and framed.
    Value {
        /// Where it falls on the scale.
        value: f64,
        /// Written in the cell.
        text: String,
        /// Written under the text, the cell framed; empty for none.
        mark: String,
    },
    /// No value: the text says why (`missing`, `diverged`, `running`).
    Empty(String),
}

/// How values map to colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear between the smallest and the largest value.
    Linear,
    /// Linear in log10 (values ≤ 0 are drawn as empty).
    Log,
}

/// One heatmap: rows × columns of cells.
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// Above the map.
    pub title: String,
    /// What the rows are (`model.name`) and what the columns are (`init`).
    pub axes: (String, String),
    /// Row labels, top to bottom.
    pub rows: Vec<String>,
    /// Column labels, left to right.
    pub columns: Vec<String>,
    /// `cells[row][column]`.
    pub cells: Vec<Vec<HeatCell>>,
    /// The colour scale.
    pub scale: Scale,
    /// Whether a larger value is better (the colour bar says so).
    pub higher_is_better: Option<bool>,
    /// A line under the title, e.g. what the marks mean; empty for none.
    pub note: String,
}

/// Pixel sizes of one map's parts.
struct Layout {
    cell: (f64, f64),
    left: f64,
    top: f64,
    /// Write a column label every this many columns.
    label_every: usize,
}

impl Heatmap {
    fn layout(&self) -> Layout {
        let written = self
            .cells
            .iter()
            .flatten()
            .any(|cell| !matches!(cell, HeatCell::Value { text, .. } if text.is_empty()));
        let columns = self.columns.len().max(1) as f64;
        let rows = self.rows.len().max(1) as f64;
        let cell = if written {
            (150.0, 46.0)
        } else {
            (
                (720.0 / columns).clamp(3.0, 40.0),
                (420.0 / rows).clamp(4.0, 28.0),
            )
        };
        let longest = self
            .rows
            .iter()
            .map(|r| r.chars().count())
            .max()
            .unwrap_or(0);
        let widest_column = self
            .columns
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(1);
        Layout {
            cell,
            left: 24.0 + 7.0 * longest as f64,
            top: if self.note.is_empty() { 64.0 } else { 80.0 },
            label_every: ((7.0 * widest_column as f64 + 8.0) / cell.0)
                .ceil()
                .max(1.0) as usize,
        }
    }

    fn size(&self) -> (f64, f64) {
        let layout = self.layout();
        (
            (layout.left + layout.cell.0 * self.columns.len() as f64 + 150.0)
                .max(16.0 + 6.0 * self.note.chars().count() as f64),
            layout.top + layout.cell.1 * self.rows.len() as f64 + 56.0,
        )
    }

    /// The range of the finite values on the scale.
    fn range(&self) -> Option<(f64, f64)> {
        let values: Vec<f64> = self
            .cells
            .iter()
            .flatten()
            .filter_map(|cell| match cell {
                HeatCell::Value { value, .. } => self.position(*value),
                HeatCell::Empty(_) => None,
            })
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
    }

    /// A value's place on the scale, before normalising to [0, 1].
    fn position(&self, value: f64) -> Option<f64> {
        match self.scale {
            Scale::Linear => value.is_finite().then_some(value),
            Scale::Log => (value.is_finite() && value > 0.0).then(|| value.log10()),
        }
    }

    fn draw(&self, svg: &mut String, x0: f64, y0: f64) {
        let layout = self.layout();
        let (w, h) = layout.cell;
        let range = self.range();
        let unit = |value: f64| -> Option<f64> {
            let (lo, hi) = range?;
            let p = self.position(value)?;
            Some(if hi > lo { (p - lo) / (hi - lo) } else { 0.5 })
        };
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-size="16" font-weight="bold">{}</text>"#,
            x0 + 8.0,
            y0 + 22.0,
            escape(&self.title)
        );
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="12" fill="#444">rows: {} · columns: {}</text>"##,
            x0 + 8.0,
            y0 + 40.0,
            escape(&self.axes.0),
            escape(&self.axes.1)
        );
        if !self.note.is_empty() {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" font-size="11" fill="#444">{}</text>"##,
                x0 + 8.0,
                y0 + 56.0,
                escape(&self.note)
            );
        }
        let (left, top) = (x0 + layout.left, y0 + layout.top);
        for (c, column) in self.columns.iter().enumerate() {
            if c % layout.label_every == 0 {
                let _ = writeln!(
                    svg,
                    r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
                    left + w * (c as f64 + 0.5),
                    top - 6.0,
                    escape(column)
                );
            }
        }
        for (r, row) in self.rows.iter().enumerate() {
            let y = top + h * r as f64;
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text>"#,
                left - 6.0,
                y + h / 2.0 + 4.0,
                escape(row)
            );
            for (c, cell) in self.cells[r].iter().enumerate() {
                let x = left + w * c as f64;
                self.draw_cell(svg, cell, (x, y, w, h), unit);
            }
        }
        if let Some((lo, hi)) = range {
            self.draw_colour_bar(
                svg,
                (left + w * self.columns.len() as f64 + 24.0, top),
                (h * self.rows.len() as f64).max(120.0),
                (lo, hi),
            );
        }
    }

    fn draw_cell(
        &self,
        svg: &mut String,
        cell: &HeatCell,
        (x, y, w, h): (f64, f64, f64, f64),
        unit: impl Fn(f64) -> Option<f64>,
    ) {
        match cell {
            HeatCell::Value { value, text, mark } => {
                let Some(t) = unit(*value) else {
                    let empty = HeatCell::Empty(text.clone());
                    return self.draw_cell(svg, &empty, (x, y, w, h), unit);
                };
                let _ = writeln!(
                    svg,
                    r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{}"/>"#,
                    Colour::Ramp(t).hex()
                );
                let ink = if t < 0.55 { "white" } else { "black" };
                if !text.is_empty() {
                    let ty = if mark.is_empty() {
                        y + h / 2.0 + 5.0
                    } else {
                        y + h / 2.0 - 1.0
                    };
                    let _ = writeln!(
                        svg,
                        r#"<text x="{}" y="{ty}" font-size="14" text-anchor="middle" fill="{ink}">{}</text>"#,
                        x + w / 2.0,
                        escape(text)
                    );
                }
                if !mark.is_empty() {
                    let _ = writeln!(
                        svg,
                        r#"<text x="{}" y="{}" font-size="10" font-style="italic" text-anchor="middle" fill="{ink}">{}</text>"#,
                        x + w / 2.0,
                        y + h / 2.0 + 14.0,
                        escape(mark)
                    );
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="{ink}" stroke-width="2" stroke-dasharray="5,3"/>"#,
                        x + 2.0,
                        y + 2.0,
                        w - 4.0,
                        h - 4.0
                    );
                }
            }
            HeatCell::Empty(why) => {
                let _ = writeln!(
                    svg,
                    r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="#e6e6e6" stroke="white"/>"##
                );
                if w >= 40.0 {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#555">{}</text>"##,
                        x + w / 2.0,
                        y + h / 2.0 + 4.0,
                        escape(why)
                    );
                }
            }
        }
    }

    fn draw_colour_bar(
        &self,
        svg: &mut String,
        (x, y): (f64, f64),
        height: f64,
        (lo, hi): (f64, f64),
    ) {
        let steps = 32;
        for i in 0..steps {
            let t = 1.0 - i as f64 / (steps - 1) as f64;
            let _ = writeln!(
                svg,
                r#"<rect x="{x}" y="{}" width="16" height="{}" fill="{}"/>"#,
                y + height * i as f64 / steps as f64,
                height / steps as f64 + 0.5,
                Colour::Ramp(t).hex()
            );
        }
        let label = |p: f64| match self.scale {
            Scale::Linear => format_number(p),
            Scale::Log => format!("1e{p:.1}"),
        };
        for (p, ty) in [
            (hi, y + 10.0),
            ((lo + hi) / 2.0, y + height / 2.0 + 4.0),
            (lo, y + height),
        ] {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{ty}" font-size="12">{}</text>"#,
                x + 22.0,
                label(p)
            );
        }
        if let Some(higher) = self.higher_is_better {
            let _ = writeln!(
                svg,
                r##"<text x="{x}" y="{}" font-size="11" fill="#444">{}</text>"##,
                y + height + 18.0,
                if higher {
                    "higher is better"
                } else {
                    "lower is better"
                }
            );
        }
    }
}

/// A number as a colour bar label: a few significant digits.
fn format_number(value: f64) -> String {
    if value != 0.0 && (value.abs() < 1e-2 || value.abs() >= 1e4) {
        format!("{value:.2e}")
    } else {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The maps, stacked top to bottom, as SVG text.
pub fn render(maps: &[Heatmap]) -> String {
    let width = maps.iter().map(|m| m.size().0).fold(320.0, f64::max);
    let height: f64 = maps.iter().map(|m| m.size().1).sum::<f64>().max(100.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">"#
    );
    svg.push('\n');
    let _ = writeln!(
        svg,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let mut y = 0.0;
    for map in maps {
        map.draw(&mut svg, 0.0, y);
        y += map.size().1;
    }
    svg.push_str("</svg>\n");
    svg
}

/// Writes the maps to `<stem>.svg` and `<stem>.png`.
pub fn save(maps: &[Heatmap], stem: &Path) -> Result<()> {
    let svg = render(maps);
    write_atomic(&stem.with_extension("svg"), svg.as_bytes())?;
    write_atomic(&stem.with_extension("png"), &rasterise(&svg)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(value: f64, text: &str, mark: &str) -> HeatCell {
        HeatCell::Value {
            value,
            text: text.into(),
            mark: mark.into(),
        }
    }

    #[test]
    fn cells_carry_their_text_marks_and_colours_and_empty_cells_say_why() {
        let map = Heatmap {
            title: "test accuracy".into(),
            axes: ("model.name".into(), "init".into()),
            rows: vec!["plain8".into(), "plain56".into()],
            columns: vec!["he".into(), "xavier".into()],
            cells: vec![
                vec![value(0.4, "40.0 %", ""), value(0.3, "30.0 %", "")],
                vec![
                    value(0.1, "10.0 %", "vanishing"),
                    HeatCell::Empty("missing".into()),
                ],
            ],
            scale: Scale::Linear,
            higher_is_better: Some(true),
            note: String::new(),
        };
        let svg = render(&[map]);
        for text in [
            "40.0 %",
            "10.0 %",
            "vanishing",
            "missing",
            "plain56",
            "xavier",
        ] {
            assert!(svg.contains(&format!(">{text}<")), "{text} not drawn");
        }
        // The best cell takes the top of the ramp, the worst the bottom.
        assert!(svg.contains(&Colour::Ramp(1.0).hex()));
        assert!(svg.contains(&Colour::Ramp(0.0).hex()));
        assert!(
            svg.contains("stroke-dasharray"),
            "the diagnosis frames its cell"
        );
    }
}
