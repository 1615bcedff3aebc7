//! An RGB raster with the few primitives a figure needs: filled rectangles, lines and text.
//! Everything clips at the edges, so layout arithmetic that overshoots draws less, never panics.

use super::colormap::Rgb;
use super::font;

pub const WHITE: Rgb = [1.0, 1.0, 1.0];
pub const BLACK: Rgb = [0.0, 0.0, 0.0];

pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pixels: Vec<Rgb>,
}

impl Canvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![WHITE; width * height],
        }
    }

    #[cfg(test)]
    pub fn get(&self, x: usize, y: usize) -> Rgb {
        self.pixels[y * self.width + x]
    }

    pub fn set(&mut self, x: usize, y: usize, c: Rgb) {
        if x < self.width && y < self.height {
            self.pixels[y * self.width + x] = c;
        }
    }

    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        let (x1, y1) = ((x + w).min(self.width), (y + h).min(self.height));
        for yy in y.min(y1)..y1 {
            self.pixels[yy * self.width + x.min(x1)..yy * self.width + x1].fill(c);
        }
    }

    /// A horizontal line of `len` pixels starting at (`x`, `y`).
    pub fn hline(&mut self, x: usize, y: usize, len: usize, c: Rgb) {
        self.fill_rect(x, y, len, 1, c);
    }

    /// A vertical line of `len` pixels starting at (`x`, `y`), going down.
    pub fn vline(&mut self, x: usize, y: usize, len: usize, c: Rgb) {
        self.fill_rect(x, y, 1, len, c);
    }

    /// The outline of a rectangle, drawn just outside it so it never covers what it frames.
    pub fn frame(&mut self, x: usize, y: usize, w: usize, h: usize, c: Rgb) {
        let (x0, y0) = (x.saturating_sub(1), y.saturating_sub(1));
        self.hline(x0, y0, w + 2, c);
        self.hline(x0, y + h, w + 2, c);
        self.vline(x0, y0, h + 2, c);
        self.vline(x + w, y0, h + 2, c);
    }

    /// `text` with its top-left corner at (`x`, `y`), each font pixel drawn as a `scale`² square.
    pub fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, c: Rgb) {
        for (i, ch) in text.chars().enumerate() {
            let left = x + i * font::ADVANCE * scale;
            self.glyph(ch, scale, c, |gx, gy| (left + gx, y + gy));
        }
    }

    /// `text` turned a quarter left (reading upwards), its first glyph's bottom-left corner at
    /// (`x`, `y`): for the y axis' title.
    pub fn text_up(&mut self, x: usize, y: usize, text: &str, scale: usize, c: Rgb) {
        for (i, ch) in text.chars().enumerate() {
            let bottom = y.saturating_sub(i * font::ADVANCE * scale);
            // Glyph column gx goes up the canvas; glyph row gy goes right.
            self.glyph(ch, scale, c, |gx, gy| (x + gy, bottom.wrapping_sub(gx + 1)));
        }
    }

    /// Draws the ink of `ch` at `scale`, placing glyph-space pixel (gx, gy) where `at` says.
    fn glyph(
        &mut self,
        ch: char,
        scale: usize,
        c: Rgb,
        at: impl Fn(usize, usize) -> (usize, usize),
    ) {
        for gy in 0..font::GLYPH_H * scale {
            for gx in 0..font::GLYPH_W * scale {
                if font::ink(ch, gx / scale, gy / scale) {
                    let (px, py) = at(gx, gy);
                    self.set(px, py, c);
                }
            }
        }
    }

    /// The pixels, row-major, three floats each: the layout of an `[h, w, 3]` image tensor.
    pub fn into_rgb(self) -> Vec<f32> {
        self.pixels.into_iter().flatten().collect()
    }
}

/// The width in pixels of `text` at `scale` (without the spacing after its last glyph).
pub fn text_width(text: &str, scale: usize) -> usize {
    match text.chars().count() {
        0 => 0,
        n => ((n - 1) * font::ADVANCE + font::GLYPH_W) * scale,
    }
}

/// The height in pixels of a line of text at `scale`, descenders included.
pub fn text_height(scale: usize) -> usize {
    font::GLYPH_H * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ink_box(c: &Canvas) -> Option<(usize, usize, usize, usize)> {
        let mut b: Option<(usize, usize, usize, usize)> = None;
        for y in 0..c.height {
            for x in 0..c.width {
                if c.get(x, y) != WHITE {
                    let (x0, y0, x1, y1) = b.unwrap_or((x, y, x, y));
                    b = Some((x0.min(x), y0.min(y), x1.max(x), y1.max(y)));
                }
            }
        }
        b
    }

    #[test]
    fn text_ink_stays_in_its_glyph_boxes() {
        let mut c = Canvas::new(100, 40);
        c.text(10, 5, "8.0", 2, BLACK);
        let (x0, y0, x1, y1) = ink_box(&c).expect("some ink");
        // '8' fills columns 0..5 and rows 0..7 of its glyph; at 2× that is x 10..20, y 5..19.
        assert_eq!((x0, y0), (10, 5));
        assert!(x1 < 10 + text_width("8.0", 2), "ink at x {x1}");
        assert_eq!(
            x1,
            10 + text_width("8.0", 2) - 1,
            "'0' reaches its box's right edge"
        );
        assert_eq!(y1, 5 + 7 * 2 - 1, "no descenders in \"8.0\"");
        // Each font pixel is a 2×2 block: the top-left of '8' (0b01110) is blank, its neighbour ink.
        assert_eq!(c.get(10, 5), WHITE);
        assert_eq!(c.get(12, 5), BLACK);
        assert_eq!(c.get(13, 6), BLACK);
    }

    #[test]
    fn upward_text_turns_the_glyph_box() {
        let mut c = Canvas::new(40, 60);
        c.text_up(5, 50, "ab", 1, BLACK);
        let (x0, y0, x1, y1) = ink_box(&c).expect("some ink");
        assert!(x0 >= 5 && x1 < 5 + font::GLYPH_H, "x {x0}..{x1}");
        assert!(y1 < 50 && y0 >= 50 - text_width("ab", 1), "y {y0}..{y1}");
    }

    #[test]
    fn drawing_clips_at_the_edges() {
        let mut c = Canvas::new(10, 10);
        c.fill_rect(8, 8, 50, 50, BLACK);
        c.text(7, 7, "88", 3, BLACK);
        c.frame(0, 0, 10, 10, BLACK);
        assert_eq!(c.get(9, 9), BLACK);
        assert_eq!(c.get(0, 0), BLACK);
        assert_eq!(c.into_rgb().len(), 10 * 10 * 3);
    }
}
