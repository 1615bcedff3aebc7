//! Line charts as inline SVG: a series over training steps, with ticks, tick labels and axis titles.

use std::fmt::Write;

use super::html::escape;

const WIDTH: f64 = 340.0;
const HEIGHT: f64 = 240.0;
/// Room for the y tick labels and title on the left, the x ones below.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 48.0;

/// About `count` round tick values (1, 2 or 5 times a power of ten apart) covering `lo..=hi`.
pub fn ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / count.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    // The round spacing that gives the tick count closest to the one asked for.
    let off = |s: f64| ((hi - lo) / s - count as f64).abs();
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .fold(
            10.0 * power,
            |best, s| if off(s) < off(best) { s } else { best },
        );
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label with as many decimals as the tick spacing needs.
fn label(value: f64, step: f64) -> String {
    let decimals = if step > 0.0 {
        (-step.log10().floor()).clamp(0.0, 8.0) as usize
    } else {
        2
    };
    let text = format!("{value:.decimals$}");
    // "-0.00" reads as a sign error.
    if text
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        text.trim_start_matches('-').to_string()
    } else {
        text
    }
}

/// The range to draw `lo..=hi` in: padded a little, and widened when it is a single value.
fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    }
}

/// An SVG line chart of `points` (step, value); non-finite values are left out.
pub fn line_chart(title: &str, x_title: &str, y_title: &str, points: &[(f64, f64)]) -> String {
    let points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="16" class="chart-title" text-anchor="middle">{}</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        escape(title)
    );
    if points.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" class="empty">no points</text></svg>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    let fold = |f: fn(f64, f64) -> f64, start: f64, pick: fn(&(f64, f64)) -> f64| {
        points.iter().map(pick).fold(start, f)
    };
    let (x_lo, x_hi) = padded(
        fold(f64::min, f64::INFINITY, |p| p.0),
        fold(f64::max, f64::NEG_INFINITY, |p| p.0),
    );
    let (y_lo, y_hi) = padded(
        fold(f64::min, f64::INFINITY, |p| p.1),
        fold(f64::max, f64::NEG_INFINITY, |p| p.1),
    );
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let sx = |x: f64| LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w;
    let sy = |y: f64| TOP + (y_hi - y) / (y_hi - y_lo) * plot_h;

    let _ = write!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="plot"/>"#
    );
    let x_ticks = ticks(x_lo, x_hi, 5);
    let x_step = x_ticks.get(1).map_or(1.0, |b| b - x_ticks[0]).max(1.0);
    for &t in &x_ticks {
        let x = sx(t);
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" class="tick"/><text x="{x:.1}" y="{ty}" text-anchor="middle" class="tick-label">{l}</text>"#,
            y0 = TOP + plot_h,
            y1 = TOP + plot_h + 5.0,
            ty = TOP + plot_h + 18.0,
            l = label(t, x_step)
        );
    }
    let y_ticks = ticks(y_lo, y_hi, 5);
    let y_step = y_ticks.get(1).map_or(0.0, |b| b - y_ticks[0]);
    for &t in &y_ticks {
        let y = sy(t);
        let _ = write!(
            svg,
            r#"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" class="grid"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="tick-label">{l}</text>"#,
            x0 = LEFT,
            x1 = LEFT + plot_w,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            l = label(t, y_step)
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
        .collect();
    let _ = write!(
        svg,
        r#"<polyline points="{}" class="line"/>"#,
        path.join(" ")
    );
    if points.len() == 1 {
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" class="dot"/>"#,
            sx(points[0].0),
            sy(points[0].1)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis-title">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        escape(x_title)
    );
    let _ = write!(
        svg,
        r#"<text transform="translate(14 {}) rotate(-90)" text-anchor="middle" class="axis-title">{}</text></svg>"#,
        TOP + plot_h / 2.0,
        escape(y_title)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.13, 0.61, 5);
        let want = [0.2, 0.3, 0.4, 0.5, 0.6];
        assert_eq!(t.len(), want.len(), "{t:?}");
        assert!(
            t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
        let t = ticks(-3.0, 1234.0, 5);
        assert!(t.iter().all(|&v| (-3.0..=1234.0).contains(&v)));
        assert_eq!(t[1] - t[0], 200.0);
        assert_eq!(ticks(2.0, 2.0, 5), [2.0]);
    }

    #[test]
    fn labels_carry_the_decimals_the_spacing_needs() {
        assert_eq!(label(0.25, 0.05), "0.25");
        assert_eq!(label(400.0, 200.0), "400");
        assert_eq!(label(-0.0, 0.1), "0.0");
    }

    #[test]
    fn charts_escape_their_titles_and_draw_every_point() {
        let svg = line_chart(
            "a<b",
            "step",
            "loss & more",
            &[(1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0)],
        );
        assert!(svg.contains("a&lt;b") && svg.contains("loss &amp; more"));
        assert!(!svg.contains("a<b"));
        let line = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(line.split(' ').count(), 2, "the NaN is left out: {line}");
        assert!(line_chart("t", "x", "y", &[]).contains("no points"));
    }
}
