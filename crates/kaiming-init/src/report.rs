//! The audit trail of a re-initialisation.

use std::fmt;

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use crate::fan::LayerKind;

/// What happened to one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    /// Dotted path of the parameter, as burn names it (`layer1.0.conv1.weight`).
    pub path: String,
    /// The layer holding it; `None` for a layer the crate does not know.
    pub layer: Option<LayerKind>,
    /// Shape in burn's layout.
    pub shape: Vec<usize>,
    /// Inputs per output unit, for weights and biases.
    pub fan_in: Option<usize>,
    /// Outputs per input unit, for weights and biases.
    pub fan_out: Option<usize>,
    /// What was done: a scheme name, `ones`/`zeros` for norms and reset statistics, or `kept`.
    pub init: String,
    /// Standard deviation of the new values, where the scheme fixes it.
    pub std: Option<f64>,
    /// Half-width of the support (uniform) or cut-off (truncated normal).
    pub bound: Option<f64>,
}

impl ReportRow {
    /// Whether the parameter was left untouched.
    pub fn is_kept(&self) -> bool {
        self.init == KEPT
    }
}

/// The `init` value of rows left untouched.
pub(crate) const KEPT: &str = "kept";

/// One row per float parameter the mapper saw, in traversal order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InitReport {
    /// The rows, in the order burn visits the parameters.
    pub rows: Vec<ReportRow>,
}

impl InitReport {
    /// The row of the parameter with this exact path.
    pub fn get(&self, path: &str) -> Option<&ReportRow> {
        self.rows.iter().find(|row| row.path == path)
    }

    /// Rows of parameters that were re-initialised.
    pub fn changed(&self) -> impl Iterator<Item = &ReportRow> {
        self.rows.iter().filter(|row| !row.is_kept())
    }
}

impl fmt::Display for InitReport {
    /// A table with one line per parameter: path, layer, shape, fans, init, std, bound.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let optional = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY).set_header([
            "parameter",
            "layer",
            "shape",
            "fan_in",
            "fan_out",
            "init",
            "std",
            "bound",
        ]);
        for row in &self.rows {
            table.add_row([
                row.path.clone(),
                optional(row.layer.map(|kind| kind.to_string())),
                format!("{:?}", row.shape),
                optional(row.fan_in.map(|fan| fan.to_string())),
                optional(row.fan_out.map(|fan| fan.to_string())),
                row.init.clone(),
                optional(row.std.map(|std| format!("{std:.4e}"))),
                optional(row.bound.map(|bound| format!("{bound:.4e}"))),
            ]);
        }
        write!(f, "{table}")
    }
}
