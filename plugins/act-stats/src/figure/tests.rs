use super::colormap::{ColorMap, Rgb};
use super::grid::{Axis, MAX_CELL, MIN_CELL, NAN_GREY, block_means};
use super::*;

fn pixel(f: &Figure, x: usize, y: usize) -> Rgb {
    let i = (y * f.width + x) * 3;
    [f.rgb[i], f.rgb[i + 1], f.rgb[i + 2]]
}

/// The centre pixel of drawn cell (`r`, `c`).
fn cell_centre(f: &Figure, r: usize, c: usize) -> Rgb {
    let ((x0, y0), (cw, ch)) = (f.layout.plot, f.layout.cell);
    pixel(f, x0 + c * cw + cw / 2, y0 + r * ch + ch / 2)
}

/// A smooth map of one sign with a single peak, `rows` × `cols`.
fn ramp(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|k| {
            ((k / cols) as f32 * 0.1 + (k % cols) as f32 * 0.01)
                .sin()
                .abs()
        })
        .collect()
}

const TITLE: &str = "mean activation by position · blocks.0.mlp.hook_post";

#[test]
fn the_quickstart_shape_gives_a_screen_sized_figure() {
    // seq_len 32 × d_mlp 256 (the tiny GPT-2's 4 × 64).
    let f = heat_map(&ramp(32, 256), 32, 256, TITLE).unwrap();
    assert_eq!(f.layout.cell, (4, 16));
    assert_eq!(f.rgb.len(), f.width * f.height * 3);
    assert!(f.note.is_none());
    // The plot is 1024 × 512; margins, labels and the colour bar add the rest.
    assert_eq!((f.width, f.height), (1236, 656));
    assert!(f.rgb.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn small_maps_stop_growing_and_wide_ones_are_averaged() {
    let small = heat_map(&ramp(4, 8), 4, 8, "t").unwrap();
    assert_eq!(small.layout.cell, (MAX_CELL, MAX_CELL));
    assert!(small.width >= 8 * MAX_CELL && small.width < 8 * MAX_CELL + 300);

    // GPT-2 small's d_mlp at 1024 positions: 12 neurons and 8 positions to a cell.
    let (rows, cols) = (1024, 3072);
    let f = heat_map(&vec![1.0; rows * cols], rows, cols, "t").unwrap();
    assert_eq!(f.layout.cell, (MIN_CELL, MIN_CELL));
    assert_eq!(
        f.note.as_deref(),
        Some("blocks of 8 positions × 12 neurons averaged")
    );
    assert!(
        f.width <= 1400 && f.height <= 800,
        "{} × {}",
        f.width,
        f.height
    );
}

#[test]
fn block_averages_are_means() {
    // 1 × 600 neurons: blocks of 3 (600 / 256 rounded up), the last block short.
    let values: Vec<f32> = (0..600).map(|j| j as f32).collect();
    let (y, x) = (Axis::new(1, MAX_PLOT_H), Axis::new(600, MAX_PLOT_W));
    assert_eq!((x.block, x.cells), (3, 200));
    let means = block_means(&values, 600, &y, &x);
    assert_eq!(means[0], 1.0);
    assert_eq!(means[199], 598.0);
}

#[test]
fn colour_bar_ends_are_the_maps_ends() {
    let f = heat_map(&ramp(32, 64), 32, 64, TITLE).unwrap();
    let (bx, by, bw, bh) = f.layout.bar;
    assert_eq!(f.layout.scale.map, ColorMap::Viridis);
    assert_eq!(pixel(&f, bx + bw / 2, by), ColorMap::Viridis.end(true));
    assert_eq!(
        pixel(&f, bx + bw / 2, by + bh - 1),
        ColorMap::Viridis.end(false)
    );
    // Just outside the bar is its black frame.
    assert_eq!(pixel(&f, bx + bw / 2, by + bh), BLACK);
}

#[test]
fn the_max_cell_gets_the_max_colour_where_it_is_drawn() {
    let (rows, cols) = (32, 256);
    let mut v = vec![0.25f32; rows * cols];
    v[5 * cols + 17] = 3.0; // the max
    v[20 * cols + 100] = 0.0; // the min
    let f = heat_map(&v, rows, cols, TITLE).unwrap();
    assert_eq!(cell_centre(&f, 5, 17), ColorMap::Viridis.end(true));
    assert_eq!(cell_centre(&f, 20, 100), ColorMap::Viridis.end(false));
    // Its neighbours are neither end.
    assert_eq!(cell_centre(&f, 5, 18), ColorMap::Viridis.at(0.25 / 3.0));
    // The whole upscaled cell is the max colour, and nothing past it.
    let ((x0, y0), (cw, ch)) = (f.layout.plot, f.layout.cell);
    let (cx, cy) = (x0 + 17 * cw, y0 + 5 * ch);
    for (x, y) in [(cx, cy), (cx + cw - 1, cy + ch - 1)] {
        assert_eq!(pixel(&f, x, y), ColorMap::Viridis.end(true));
    }
    assert_ne!(pixel(&f, cx + cw, cy), ColorMap::Viridis.end(true));
    assert_ne!(pixel(&f, cx, cy + ch), ColorMap::Viridis.end(true));
}

#[test]
fn both_signs_use_a_diverging_map_centred_at_zero() {
    let (rows, cols) = (8, 16);
    let mut v = vec![0.0f32; rows * cols];
    v[3] = 2.0;
    v[cols + 4] = -0.5;
    let f = heat_map(&v, rows, cols, TITLE).unwrap();
    let s = f.layout.scale;
    assert_eq!((s.lo, s.hi, s.map), (-2.0, 2.0, ColorMap::Diverging));
    assert_eq!(cell_centre(&f, 0, 3), ColorMap::Diverging.end(true));
    assert_eq!(cell_centre(&f, 0, 0), ColorMap::Diverging.at(0.5));
    assert_eq!(cell_centre(&f, 1, 4), ColorMap::Diverging.at(0.375));
}

#[test]
fn a_constant_map_takes_the_middle_colour_without_dividing_by_zero() {
    let f = heat_map(&[0.7; 6 * 10], 6, 10, TITLE).unwrap();
    assert!(f.rgb.iter().all(|v| v.is_finite()));
    assert_eq!(cell_centre(&f, 3, 4), ColorMap::Viridis.at(0.5));
    let (bx, by, bw, _) = f.layout.bar;
    assert_eq!(pixel(&f, bx + bw / 2, by), ColorMap::Viridis.at(0.5));
    // And all NaN is grey, not a panic.
    let f = heat_map(&[f32::NAN; 4], 2, 2, TITLE).unwrap();
    assert_eq!(cell_centre(&f, 1, 1), NAN_GREY);
}

#[test]
fn labels_are_drawn_where_the_layout_says() {
    let f = heat_map(&ramp(32, 256), 32, 256, TITLE).unwrap();
    let ink_in = |x0: usize, y0: usize, w: usize, h: usize| {
        (y0..y0 + h).any(|y| (x0..x0 + w).any(|x| pixel(&f, x, y) != canvas::WHITE))
    };
    let line = text_height(SCALE);
    // Title along the top, from the margin.
    assert!(ink_in(MARGIN, MARGIN, text_width(TITLE, SCALE), line));
    assert!(!ink_in(
        MARGIN + text_width(TITLE, SCALE) + 2,
        MARGIN,
        40,
        line
    ));
    // The "0" under neuron 0's tick and the colour bar's labels right of the bar.
    let (px, py) = f.layout.plot;
    assert!(ink_in(px, py + f.layout.cell.1 * 32 + TICK, 12, line + 8));
    let (bx, by, bw, _) = f.layout.bar;
    assert!(ink_in(bx + bw + TICK + 6, by.saturating_sub(8), 40, line));
}

#[test]
fn mismatched_sizes_are_refused() {
    assert!(heat_map(&[1.0; 5], 2, 3, TITLE).is_err());
    assert!(heat_map(&[], 0, 3, TITLE).is_err());
}

/// `LOUPE_HEAT_EXAMPLE=/tmp/heat-example.png cargo test … writes_an_example` leaves the quickstart's
/// figure shape on disk to look at; without the variable it only checks the PNG encodes.
#[test]
fn writes_an_example() {
    let (rows, cols) = (32, 256);
    let v: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let (p, n) = ((k / cols) as f32, (k % cols) as f32);
            0.3 * (n * 0.21).sin() * (p * 0.15).cos() + if k % cols == 77 { 1.2 } else { 0.0 }
                - 0.05
        })
        .collect();
    let f = heat_map(&v, rows, cols, TITLE).unwrap();
    let bytes = png::encode(f.width, f.height, &f.rgb);
    assert_eq!(&bytes[1..4], b"PNG");
    if let Ok(path) = std::env::var("LOUPE_HEAT_EXAMPLE") {
        std::fs::write(&path, &bytes).unwrap();
    }
}
