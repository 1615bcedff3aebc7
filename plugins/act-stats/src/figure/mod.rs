//! The heat map of mean activation by position, drawn as an RGB image a person can read: cells
//! enlarged, position and neuron axes with tick labels, a title naming the hook, and a colour bar
//! labelled with the real activation values.

mod canvas;
mod colormap;
mod font;
mod grid;
#[cfg(test)]
mod png;
mod ticks;

use canvas::{BLACK, Canvas, text_height, text_width};
use grid::{Axis, Scale, block_means};
use ticks::format_value;

/// Font pixels are drawn as 2×2 squares: 10×16 px glyphs, legible at a glance.
const SCALE: usize = 2;
const MARGIN: usize = 16;
/// The plot's largest size; past it cells are averaged in blocks rather than shrunk below
/// [`grid::MIN_CELL`], so a wide layer still gives a figure about a screen wide.
const MAX_PLOT_W: usize = 1024;
const MAX_PLOT_H: usize = 512;
const BAR_W: usize = 20;
const TICK: usize = 6;

/// An RGB image, row-major with three floats in [0, 1] per pixel: an `[height, width, 3]` tensor's
/// layout.
pub struct Figure {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<f32>,
    /// Set when the map was averaged in blocks to fit, saying how; also printed on the figure.
    pub note: Option<String>,
    #[cfg_attr(not(test), allow(dead_code))]
    layout: Layout,
}

/// Where things landed, for tests to look at the right pixels.
#[cfg_attr(not(test), allow(dead_code))]
struct Layout {
    plot: (usize, usize),
    cell: (usize, usize),
    bar: (usize, usize, usize, usize),
    scale: Scale,
}

/// Draws the `rows` (positions) × `cols` (neurons) map of row-major `values` under `title`.
pub fn heat_map(values: &[f32], rows: usize, cols: usize, title: &str) -> Result<Figure, String> {
    if rows == 0 || cols == 0 || values.len() != rows * cols {
        return Err(format!(
            "a heat map of {rows} × {cols} needs that many values, not {}",
            values.len()
        ));
    }
    let (y, x) = (Axis::new(rows, MAX_PLOT_H), Axis::new(cols, MAX_PLOT_W));
    let cells = block_means(values, cols, &y, &x);
    let scale = Scale::of(&cells);
    // The data's own range for the subtitle (the bar shows the drawn cells' range, which block
    // averaging can narrow, or the symmetric range of a diverging map).
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let data_lo = finite.clone().fold(f32::NAN, f32::min);
    let data_hi = finite.fold(f32::NAN, f32::max);
    let note = match (y.block, x.block) {
        (1, 1) => None,
        (1, b) => Some(format!("neurons averaged in blocks of {b}")),
        (b, 1) => Some(format!("positions averaged in blocks of {b}")),
        (bp, bn) => Some(format!("blocks of {bp} positions × {bn} neurons averaged")),
    };
    let mut subtitle = format!(
        "{rows} positions × {cols} neurons · min {} · max {}",
        format_value(data_lo),
        format_value(data_hi)
    );
    if let Some(n) = &note {
        subtitle = format!("{subtitle} · {n}");
    }

    let line = text_height(SCALE);
    let (plot_w, plot_h) = (x.px(), y.px());
    let y_ticks = ticks::ticks(rows, (plot_h / 48).max(1));
    let x_label_w = text_width(&(cols - 1).to_string(), SCALE);
    let x_ticks = ticks::ticks(cols, (plot_w / (x_label_w + 24)).max(1));
    let y_label_w = text_width(&(rows - 1).to_string(), SCALE);
    let bar_labels: Vec<(usize, String)> = if scale.flat() {
        vec![(plot_h / 2, format_value(scale.lo))]
    } else {
        vec![
            (0, format_value(scale.hi)),
            (plot_h / 2, format_value((scale.lo + scale.hi) / 2.0)),
            (plot_h - 1, format_value(scale.lo)),
        ]
    };
    let bar_label_w = bar_labels
        .iter()
        .map(|(_, s)| text_width(s, SCALE))
        .max()
        .unwrap_or(0);

    let plot_top = MARGIN + 2 * line + 6 + 20;
    let plot_left = MARGIN + line + 12 + y_label_w + TICK + 6;
    let bar_left = plot_left + plot_w + 28;
    let bar_label_left = bar_left + BAR_W + TICK + 6;
    let width = (bar_label_left + bar_label_w + MARGIN)
        .max(MARGIN + text_width(title, SCALE) + MARGIN)
        .max(MARGIN + text_width(&subtitle, SCALE) + MARGIN);
    let x_labels_top = plot_top + plot_h + TICK + 6;
    let x_title_top = x_labels_top + line + 10;
    let height = x_title_top + line + MARGIN;

    let mut c = Canvas::new(width, height);
    c.text(MARGIN, MARGIN, title, SCALE, BLACK);
    c.text(MARGIN, MARGIN + line + 6, &subtitle, SCALE, [0.3; 3]);

    // The cells, position 0 at the top as in a matrix.
    for r in 0..y.cells {
        for col in 0..x.cells {
            let colour = scale.colour(cells[r * x.cells + col]);
            let (px, py) = (plot_left + col * x.cell_px, plot_top + r * y.cell_px);
            c.fill_rect(px, py, x.cell_px, y.cell_px, colour);
        }
    }
    c.frame(plot_left, plot_top, plot_w, plot_h, BLACK);

    // Axes: ticks at the labelled indices' cell centres, labels beside them, titles centred.
    for &i in &x_ticks {
        let tx = plot_left + x.centre(i);
        c.vline(tx, plot_top + plot_h + 1, TICK, BLACK);
        let label = i.to_string();
        let lw = text_width(&label, SCALE);
        c.text(
            tx.saturating_sub(lw / 2),
            x_labels_top,
            &label,
            SCALE,
            BLACK,
        );
    }
    for &i in &y_ticks {
        let ty = plot_top + y.centre(i);
        c.hline(plot_left - 1 - TICK, ty, TICK, BLACK);
        let label = i.to_string();
        let lx = plot_left - 1 - TICK - 6 - text_width(&label, SCALE);
        c.text(lx, ty.saturating_sub(7), &label, SCALE, BLACK);
    }
    let x_title = "neuron";
    let xt_left = (plot_left + plot_w / 2).saturating_sub(text_width(x_title, SCALE) / 2);
    c.text(xt_left, x_title_top, x_title, SCALE, BLACK);
    let y_title = "position";
    let yt_bottom = plot_top + plot_h / 2 + text_width(y_title, SCALE) / 2;
    c.text_up(MARGIN, yt_bottom, y_title, SCALE, BLACK);

    // The colour bar: its top row is the map's high end, its bottom row the low end, exactly.
    for r in 0..plot_h {
        let colour = if scale.flat() {
            scale.map.at(0.5)
        } else {
            let t = if plot_h > 1 {
                1.0 - r as f32 / (plot_h - 1) as f32
            } else {
                1.0
            };
            scale.map.at(t)
        };
        c.hline(bar_left, plot_top + r, BAR_W, colour);
    }
    c.frame(bar_left, plot_top, BAR_W, plot_h, BLACK);
    for (dy, label) in &bar_labels {
        let ty = plot_top + dy;
        c.hline(bar_left + BAR_W + 1, ty, TICK, BLACK);
        c.text(bar_label_left, ty.saturating_sub(7), label, SCALE, BLACK);
    }

    let layout = Layout {
        plot: (plot_left, plot_top),
        cell: (x.cell_px, y.cell_px),
        bar: (bar_left, plot_top, BAR_W, plot_h),
        scale,
    };
    Ok(Figure {
        width,
        height,
        rgb: c.into_rgb(),
        note,
        layout,
    })
}

#[cfg(test)]
mod tests;
