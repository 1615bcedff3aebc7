//! A 5×8 bitmap font (rows 0–6 for capitals' height, row 7 for descenders), hand-drawn for the
//! figure's labels: digits, lowercase letters (capitals fall back to them) and the punctuation that
//! hook names and numbers need. Each row is 5 bits, the leftmost pixel in bit 4.

/// Ink columns and rows of a glyph.
pub const GLYPH_W: usize = 5;
pub const GLYPH_H: usize = 8;
/// Pixels from one glyph's left edge to the next (one column of spacing).
pub const ADVANCE: usize = GLYPH_W + 1;

type Glyph = [u8; GLYPH_H];

/// Drawn for characters the font lacks, so a missing glyph shows instead of vanishing.
const UNKNOWN: Glyph = [
    0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111, 0,
];

/// The rows of `c`'s glyph.
pub fn glyph(c: char) -> Glyph {
    let c = c.to_ascii_lowercase();
    match c {
        ' ' => [0; GLYPH_H],
        '0' => [
            0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110, 0,
        ],
        '1' => [
            0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0,
        ],
        '2' => [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111, 0,
        ],
        '3' => [
            0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110, 0,
        ],
        '4' => [
            0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010, 0,
        ],
        '5' => [
            0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110, 0,
        ],
        '6' => [
            0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110, 0,
        ],
        '7' => [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0,
        ],
        '8' => [
            0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110, 0,
        ],
        '9' => [
            0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100, 0,
        ],
        'a' => [0, 0, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111, 0],
        'b' => [
            0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110, 0,
        ],
        'c' => [0, 0, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110, 0],
        'd' => [
            0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111, 0,
        ],
        'e' => [0, 0, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0],
        'f' => [
            0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000, 0,
        ],
        'g' => [0, 0, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'h' => [
            0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0,
        ],
        'i' => [0b00100, 0, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110, 0],
        'j' => [
            0b00010, 0, 0b00110, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100,
        ],
        'k' => [
            0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0,
        ],
        'l' => [
            0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0,
        ],
        'm' => [0, 0, 0b11010, 0b10101, 0b10101, 0b10101, 0b10101, 0],
        'n' => [0, 0, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0],
        'o' => [0, 0, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0],
        'p' => [0, 0, 0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000],
        'q' => [0, 0, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001],
        'r' => [0, 0, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000, 0],
        's' => [0, 0, 0b01111, 0b10000, 0b01110, 0b00001, 0b11110, 0],
        't' => [
            0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110, 0,
        ],
        'u' => [0, 0, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101, 0],
        'v' => [0, 0, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0],
        'w' => [0, 0, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010, 0],
        'x' => [0, 0, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0],
        'y' => [0, 0, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
        'z' => [0, 0, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111, 0],
        '.' => [0, 0, 0, 0, 0, 0b01100, 0b01100, 0],
        ',' => [0, 0, 0, 0, 0, 0b01100, 0b00100, 0b01000],
        ':' => [0, 0b01100, 0b01100, 0, 0b01100, 0b01100, 0, 0],
        '·' => [0, 0, 0, 0b01100, 0b01100, 0, 0, 0],
        '-' | '−' => [0, 0, 0, 0b11111, 0, 0, 0, 0],
        '+' => [0, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0, 0],
        '=' => [0, 0, 0b11111, 0, 0b11111, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0, 0b11111],
        '/' => [
            0b00001, 0b00010, 0b00010, 0b00100, 0b01000, 0b01000, 0b10000, 0,
        ],
        '×' => [0, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0, 0],
        '(' => [
            0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010, 0,
        ],
        ')' => [
            0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000, 0,
        ],
        '[' => [
            0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110, 0,
        ],
        ']' => [
            0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110, 0,
        ],
        _ => UNKNOWN,
    }
}

/// Whether pixel (`x`, `y`) of `c`'s glyph is ink.
pub fn ink(c: char, x: usize, y: usize) -> bool {
    x < GLYPH_W && y < GLYPH_H && glyph(c)[y] >> (GLYPH_W - 1 - x) & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glyphs_fit_their_box_and_differ() {
        let chars = "0123456789abcdefghijklmnopqrstuvwxyz.,:·-+=_/×()[]";
        for c in chars.chars() {
            assert!(
                glyph(c).iter().all(|&r| r < 1 << GLYPH_W),
                "{c} is too wide"
            );
            assert!(glyph(c).iter().any(|&r| r != 0), "{c} has no ink");
            assert_ne!(glyph(c), UNKNOWN, "{c} falls back to the box");
        }
        let digits: Vec<Glyph> = "0123456789".chars().map(glyph).collect();
        for (i, a) in digits.iter().enumerate() {
            assert!(digits[i + 1..].iter().all(|b| a != b), "digit {i} repeats");
        }
        assert_eq!(glyph('A'), glyph('a'));
        assert_eq!(glyph('¤'), UNKNOWN);
    }

    #[test]
    fn ink_reads_the_leftmost_bit_first() {
        // '1' row 0 is 0b00100: only the middle column.
        assert!(!ink('1', 0, 0) && ink('1', 2, 0) && !ink('1', 4, 0));
        // '_' is ink only on the descender row.
        assert!(ink('_', 0, 7) && !ink('_', 0, 6));
        assert!(!ink('8', GLYPH_W, 0) && !ink('8', 0, GLYPH_H));
    }
}
