//! Line charts written as SVG (plotters) and PNG (the SVG rasterised by resvg).
//!
//! plotters' own bitmap backend needs a font library at build time; rendering its SVG with
//! resvg uses whatever fonts the system has, and still draws the lines where it has none.

use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::atomic::write_atomic;

/// One line, optionally with a shaded min–max band around it.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text; empty leaves the series out of the legend.
    pub label: String,
    /// Its colour.
    pub color: Colour,
    /// Points of the line, in x order.
    pub points: Vec<(f64, f64)>,
    /// Lower and upper edge of the band at the same x values.
    pub band: Option<Vec<(f64, f64, f64)>>,
    /// Drawn dashed, for theory lines.
    pub dashed: bool,
}

/// The colour of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Colour {
    /// Index into the palette; series sharing a colour belong together.
    Palette(usize),
    /// A position in [0, 1] on a dark-blue-to-yellow ramp (viridis-like), for many ordered
    /// series such as the layers of a net.
    Ramp(f64),
}

impl Colour {
    /// As SVG writes it, `#rrggbb`.
    pub(crate) fn hex(self) -> String {
        let RGBColor(r, g, b) = self.rgb();
        format!("#{r:02x}{g:02x}{b:02x}")
    }

    fn rgb(self) -> RGBColor {
        match self {
            Colour::Palette(index) => PALETTE[index % PALETTE.len()],
            Colour::Ramp(t) => {
                let t = t.clamp(0.0, 1.0) * (RAMP.len() - 1) as f64;
                let (i, f) = (t.floor() as usize, t.fract());
                let (a, b) = (RAMP[i], RAMP[(i + 1).min(RAMP.len() - 1)]);
                let mix = |x: u8, y: u8| (f64::from(x) + f * (f64::from(y) - f64::from(x))) as u8;
                RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
            }
        }
    }
}

/// Stops of the ramp: viridis at 0, ¼, ½, ¾ and 1.
const RAMP: [RGBColor; 5] = [
    RGBColor(68, 1, 84),
    RGBColor(59, 82, 139),
    RGBColor(33, 145, 140),
    RGBColor(94, 201, 98),
    RGBColor(253, 231, 37),
];

/// One chart of a figure.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Logarithmic vertical axis (values ≤ 0 are dropped).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
    RGBColor(127, 127, 127),
];

/// Series of at most this many points are drawn with a mark at each.
const MARKED_POINTS: usize = 12;

/// Writes the panels to `<stem>.svg` and `<stem>.png`: side by side, in rows of three when
/// there are more than three.
pub fn save_figure(panels: &[Panel], stem: &Path) -> Result<()> {
    let svg = render_svg(panels)?;
    write_atomic(&stem.with_extension("svg"), svg.as_bytes())?;
    write_atomic(&stem.with_extension("png"), &rasterise(&svg)?)?;
    Ok(())
}

fn render_svg(panels: &[Panel]) -> Result<String> {
    let mut svg = String::new();
    {
        let columns = panels.len().clamp(1, 3);
        let rows = panels.len().max(1).div_ceil(columns);
        let size = (640 * columns as u32, 480 * rows as u32);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        for (area, panel) in root.split_evenly((rows, columns)).iter().zip(panels) {
            draw_panel(area, panel)?;
        }
        root.present()?;
    }
    Ok(svg)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // A log axis is drawn as log10 of the values on a linear axis, labelled as powers of ten.
    let y = |v: f64| if panel.log_y { v.log10() } else { v };
    let keep = |v: f64| v.is_finite() && (!panel.log_y || v > 0.0);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for series in &panel.series {
        for &(px, py) in series.points.iter().filter(|p| keep(p.1)) {
            xs.push(px);
            ys.push(y(py));
        }
        for &(px, lo, hi) in series.band.iter().flatten() {
            xs.push(px);
            ys.extend([lo, hi].into_iter().filter(|&v| keep(v)).map(y));
        }
    }
    let (x0, x1) = padded_range(&xs, 0.0);
    let (y0, y1) = padded_range(&ys, 0.05);

    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let log_y = panel.log_y;
    let format_y = move |v: &f64| {
        if log_y {
            format!("{:.1e}", 10f64.powf(*v))
        } else {
            format!("{v:.3}")
        }
    };
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .y_label_formatter(&format_y)
        .draw()?;

    for series in &panel.series {
        let color = series.color.rgb();
        if let Some(band) = &series.band {
            let upper = band
                .iter()
                .filter(|b| keep(b.2))
                .map(|&(x, _, hi)| (x, y(hi)));
            let lower = band
                .iter()
                .rev()
                .filter(|b| keep(b.1))
                .map(|&(x, lo, _)| (x, y(lo)));
            chart.draw_series(std::iter::once(Polygon::new(
                upper.chain(lower).collect::<Vec<_>>(),
                color.mix(0.2).filled(),
            )))?;
        }
        let points: Vec<(f64, f64)> = series
            .points
            .iter()
            .filter(|p| keep(p.1))
            .map(|&(px, py)| (px, y(py)))
            .collect();
        let style = color.stroke_width(2);
        // Sparse series (a few evaluations) get a mark per point: one point draws no line.
        if points.len() <= MARKED_POINTS {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        let drawn = if series.dashed {
            chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(points, style))?
        };
        if !series.label.is_empty() {
            drawn.label(&series.label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// The range of the values with a margin; a degenerate range is widened to stay drawable.
fn padded_range(values: &[f64], margin: f64) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * margin;
    (lo - pad, hi + pad)
}

/// The SVG drawn as PNG.
pub(crate) fn rasterise(svg: &str) -> Result<Vec<u8>> {
    let mut options = resvg::usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    // fontdb maps `sans-serif` to Arial; use whichever sans-serif face the system has.
    let sans = fonts
        .faces()
        .flat_map(|face| face.families.iter().map(|(name, _)| name.clone()))
        .find(|name| name.contains("Sans") && !name.contains("Mono"));
    if let Some(sans) = sans {
        fonts.set_sans_serif_family(sans);
    }
    let tree = resvg::usvg::Tree::from_str(svg, &options).context("cannot parse the plot's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .context("plot has an empty size")?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let rgba: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|pixel| {
            let colour = pixel.demultiply();
            [colour.red(), colour.green(), colour.blue(), colour.alpha()]
        })
        .collect();
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, size.width(), size.height());
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    // Plots are flat colours and lines: per-row filter choice and strong deflate keep them small.
    encoder.set_compression(png::Compression::Best);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    encoder
        .add_text_chunk(SOURCE_KEYWORD.into(), fingerprint(svg))
        .context("cannot label the PNG")?;
    let mut writer = encoder
        .write_header()
        .context("cannot encode the plot as PNG")?;
    writer
        .write_image_data(&rgba)
        .context("cannot encode the plot as PNG")?;
    writer.finish().context("cannot encode the plot as PNG")?;
    Ok(bytes)
}

/// The PNG text chunk that names the SVG a PNG was drawn from, by [`fingerprint`]: a PNG can
/// be checked against its SVG (which the published-results test recomputes) without drawing
/// it again, and a PNG left from an older SVG is caught.
const SOURCE_KEYWORD: &str = "Source-SVG-CRC32";

/// The fingerprint of an SVG's text that its PNG carries: CRC-32, in hex.
pub fn fingerprint(svg: &str) -> String {
    format!("{:08x}", crc32fast::hash(svg.as_bytes()))
}

/// The fingerprint of the SVG a PNG says it was drawn from, if it says.
pub fn drawn_from(png_bytes: &[u8]) -> Option<String> {
    let reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .ok()?;
    reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .find(|chunk| chunk.keyword == SOURCE_KEYWORD)
        .map(|chunk| chunk.text.clone())
}
