//! Where an index axis gets tick labels, and how the colour bar prints its values.

/// The step between tick labels on an axis of `len` indices (0..len) so that at most `max_ticks`
/// labels show. Steps are "round": powers of two when `len` is one (model widths and sequence
/// lengths usually are, and 0, 8, 16, 24 then splits 32 evenly), 1–2–5 × 10ᵏ otherwise.
pub fn tick_step(len: usize, max_ticks: usize) -> usize {
    let max_ticks = max_ticks.max(1);
    let fits = |step: usize| len.div_ceil(step) <= max_ticks;
    if len.is_power_of_two() {
        let mut step = 1;
        while !fits(step) {
            step *= 2;
        }
        return step;
    }
    let mut decade = 1usize;
    loop {
        for m in [1, 2, 5] {
            let step = m * decade;
            if fits(step) {
                return step;
            }
        }
        decade *= 10;
    }
}

/// The labelled indices: 0, step, 2·step, … below `len`.
pub fn ticks(len: usize, max_ticks: usize) -> Vec<usize> {
    (0..len).step_by(tick_step(len, max_ticks)).collect()
}

/// A value for the colour bar in at most about seven characters, to three significant digits:
/// fixed-point in the usual range, scientific outside it.
pub fn format_value(v: f32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let magnitude = v.abs().log10().floor() as i32;
    if (-3..4).contains(&magnitude) {
        let decimals = (2 - magnitude).max(0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_and_fit() {
        assert_eq!(ticks(32, 5), vec![0, 8, 16, 24]);
        assert_eq!(ticks(32, 8), vec![0, 4, 8, 12, 16, 20, 24, 28]);
        assert_eq!(tick_step(256, 16), 16);
        assert_eq!(tick_step(256, 10), 32);
        assert_eq!(ticks(100, 5), vec![0, 20, 40, 60, 80]);
        assert_eq!(tick_step(3072, 16), 200);
        assert_eq!(tick_step(7, 10), 1);
        assert_eq!(ticks(1, 5), vec![0]);
        // Never more labels than asked for, whatever the length.
        for len in 1..2000 {
            for max in [1, 3, 7, 16] {
                assert!(ticks(len, max).len() <= max, "len {len} max {max}");
            }
        }
    }

    #[test]
    fn values_print_with_three_significant_digits() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(2.3456), "2.35");
        assert_eq!(format_value(-0.17012), "-0.170");
        assert_eq!(format_value(0.001234), "0.00123");
        assert_eq!(format_value(1234.4), "1234");
        assert_eq!(format_value(12345.0), "1.23e4");
        assert_eq!(format_value(-1.5e-6), "-1.50e-6");
        assert_eq!(format_value(f32::NAN), "nan");
    }
}
