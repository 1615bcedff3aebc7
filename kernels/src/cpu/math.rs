//! Scalar math written branch-free so that loops over it vectorise (the libm calls behind `f32::exp`
//! and `f32::tanh` do not).

/// `e^x` to about 1 ulp: Cephes' `expf` polynomial after a round-to-nearest range reduction.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n * LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer with plain float adds.
    const ROUND: f32 = 12_582_912.0;
    const MIN_X: f32 = -87.336_55; // below this e^x is subnormal: flush to 0, as the softmax mask needs
    const MAX_X: f32 = 88.722_83;

    let clamped = x.clamp(MIN_X, MAX_X);
    let rounded = clamped * LOG2E + ROUND;
    let n = rounded - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n through the exponent bits. `rounded` holds n in its low mantissa bits, so integer adds and
    // shifts build the exponent field (n + 127 is in 1..=255 after the clamp) without a float-to-int
    // conversion, which would not vectorise.
    let scale = f32::from_bits(rounded.to_bits().wrapping_add(127) << 23);
    let value = y * scale;
    if x < MIN_X {
        0.0
    } else if x.is_nan() {
        x
    } else {
        value
    }
}

/// GELU, tanh approximation: `0.5 x (1 + tanh(u))` rewritten as `x · sigmoid(2u)`, which needs one `exp`
/// and avoids the cancellation in `1 + tanh(u)` for negative `x`.
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp(-2.0 * u))
}

/// Lanes for reductions: independent accumulators let the compiler vectorise a sum that strict float
/// semantics would otherwise force to run one element at a time.
const LANES: usize = 8;

/// `Σ f(v)` over `values`, accumulated in `LANES` partial sums.
#[inline(always)]
pub(crate) fn sum_by(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for i in 0..LANES {
            acc[i] += f(chunk[i]);
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|&v| f(v)).sum::<f32>()
}

/// The largest of `values` (`-inf` for none), in `LANES` partial maxima.
#[inline(always)]
pub(crate) fn max(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(chunk[i]);
        }
    }
    acc.iter()
        .chain(tail)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(1000.0), f32::INFINITY, "overflows as libm does");
    }

    #[test]
    fn gelu_tanh_matches_the_textbook_form() {
        let mut x = -10.0f32;
        while x < 10.0 {
            let xd = x as f64;
            let want = 0.5
                * xd
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh());
            assert!(
                (gelu_tanh(x) as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                "x = {x}"
            );
            x += 0.01;
        }
    }
}
