//! The map's grid and colours: how many pixels a cell gets, which indices a cell averages, and how a
//! value becomes a colour.

use super::colormap::{ColorMap, Rgb};

/// Cells never shrink below this; past it indices are averaged in blocks instead.
pub const MIN_CELL: usize = 4;
/// Small maps stop growing here, so an 8 × 16 map is not drawn in giant squares.
pub const MAX_CELL: usize = 32;
/// For cells whose mean is not a number, distinct from every colour of both maps.
pub const NAN_GREY: Rgb = [0.55, 0.55, 0.55];

/// One axis of the map: `len` indices shown as `cells` cells of `cell_px` pixels, each the mean of
/// `block` indices.
pub struct Axis {
    pub len: usize,
    pub block: usize,
    pub cells: usize,
    pub cell_px: usize,
}

impl Axis {
    pub fn new(len: usize, max_px: usize) -> Axis {
        let block = len.div_ceil(max_px / MIN_CELL);
        let cells = len.div_ceil(block);
        let cell_px = (max_px / cells).clamp(MIN_CELL, MAX_CELL);
        Axis {
            len,
            block,
            cells,
            cell_px,
        }
    }

    pub fn px(&self) -> usize {
        self.cells * self.cell_px
    }

    /// The offset of index `i`'s cell centre from the plot's edge.
    pub fn centre(&self, i: usize) -> usize {
        i / self.block * self.cell_px + self.cell_px / 2
    }
}

/// How values become colours. With both signs present the range is symmetric about 0 and the map
/// diverges, so white means 0 and equal colours on either side mean equal magnitudes.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub lo: f32,
    pub hi: f32,
    pub map: ColorMap,
}

impl Scale {
    pub fn of(values: &[f32]) -> Scale {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            // Nothing finite: any degenerate range will do, every cell is drawn grey.
            return Scale {
                lo: 0.0,
                hi: 0.0,
                map: ColorMap::Viridis,
            };
        }
        if lo < 0.0 && hi > 0.0 {
            let m = hi.max(-lo);
            Scale {
                lo: -m,
                hi: m,
                map: ColorMap::Diverging,
            }
        } else {
            Scale {
                lo,
                hi,
                map: ColorMap::Viridis,
            }
        }
    }

    /// Whether the range is a single value (a constant map): then everything takes the middle colour.
    pub fn flat(&self) -> bool {
        self.hi <= self.lo
    }

    pub fn colour(&self, v: f32) -> Rgb {
        if !v.is_finite() {
            NAN_GREY
        } else if self.flat() {
            self.map.at(0.5)
        } else {
            self.map.at((v - self.lo) / (self.hi - self.lo))
        }
    }
}

/// The mean of each cell's `y.block` × `x.block` indices of the row-major grid `values`, `cols`
/// wide (non-finite values skipped; a cell with none is NaN).
pub fn block_means(values: &[f32], cols: usize, y: &Axis, x: &Axis) -> Vec<f32> {
    let mut out = Vec::with_capacity(y.cells * x.cells);
    for r in 0..y.cells {
        for c in 0..x.cells {
            let (mut sum, mut count) = (0.0f64, 0usize);
            for i in r * y.block..((r + 1) * y.block).min(y.len) {
                for j in c * x.block..((c + 1) * x.block).min(x.len) {
                    let v = values[i * cols + j];
                    if v.is_finite() {
                        sum += f64::from(v);
                        count += 1;
                    }
                }
            }
            out.push(if count == 0 {
                f32::NAN
            } else {
                (sum / count as f64) as f32
            });
        }
    }
    out
}
