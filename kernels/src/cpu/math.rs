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

/// `erf(x)` within 2.3 ulp (`erf_matches_libm_to_a_few_ulp`), branch-free so that it vectorises. Two polynomials fitted (least squares
/// on Chebyshev nodes, in f64) for this engine: `x · P(x²)` on |x| ≤ 1, and `1 − exp(Q(|x|))` above,
/// where `Q ≈ ln erfc` on [1, 4]; past 4, erfc is below half an ulp of 1, so erf is ±1.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    // The fit's own leading coefficient, one f32 step below 2/√π: with it the worst error over
    // [−6, 6] is 2.3 ulp, with 2/√π 3.03.
    #[allow(clippy::approx_constant)]
    const FIT_LEADING: f32 = 1.128_379_1;
    let a = x.abs();
    let t = a * a;
    let mut p = -5.667_995_4e-4;
    p = p * t + 4.927_42e-3;
    p = p * t - 2.672_089_5e-2;
    p = p * t + 1.128_057_9e-1;
    p = p * t - 3.761_239e-1;
    p = p * t + FIT_LEADING;
    let small = a * p;
    let b = a.min(4.0);
    let mut q = 1.614_061_6e-6;
    q = q * b - 4.559_062_3e-5;
    q = q * b + 5.927_695_3e-4;
    q = q * b - 4.740_222_4e-3;
    q = q * b + 2.636_471_7e-2;
    q = q * b - 1.099_782_4e-1;
    q = q * b - 6.319_371e-1;
    q = q * b - 1.130_166_6;
    q = q * b + 3.032_13e-4;
    let large = 1.0 - exp(q);
    // Selected through bit masks: written as `if`s, LLVM turns the choice into a branch around the
    // costly side, and the loop no longer vectorises. `min` above drops a NaN, so NaN is passed
    // through by hand.
    let magnitude = pick(a <= 1.0, small, large);
    let magnitude = pick(a.is_nan(), a, magnitude);
    magnitude.copysign(x)
}

/// `if condition { a } else { b }` without a branch.
#[inline(always)]
fn pick(condition: bool, a: f32, b: f32) -> f32 {
    let mask = (condition as u32).wrapping_neg();
    f32::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

/// Exact GELU: `x · Φ(x)` with `Φ(x) = ½(1 + erf(x/√2))`, as PyTorch's default.
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU′ (exact form): `Φ(x) + x · φ(x)`, `φ(x) = exp(−x²/2) / √(2π)`.
#[inline(always)]
pub(crate) fn gelu_erf_derivative(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    cdf + x * INV_SQRT_2PI * exp(-0.5 * x * x)
}

/// GELU′ (tanh form). With `s = sigmoid(2u)`, `u = c(x + 0.044715 x³)`, GELU = `x · s`, so the
/// derivative is `s + 2x · s(1 − s) · u′`, `u′ = c(1 + 3 · 0.044715 x²)`: one `exp`, no cancellation.
#[inline(always)]
pub(crate) fn gelu_tanh_derivative(x: f32) -> f32 {
    const C: f32 = 0.797_884_6;
    const A: f32 = 0.044_715;
    let x2 = x * x;
    let u = C * x * (1.0 + A * x2);
    let s = 1.0 / (1.0 + exp(-2.0 * u));
    let du = C * (1.0 + 3.0 * A * x2);
    s + 2.0 * x * s * (1.0 - s) * du
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

/// `Σ a[i] · b[i]`, accumulated in `LANES` partial sums.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
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

    #[test]
    fn erf_matches_libm_to_a_few_ulp() {
        let mut worst_ulps = 0.0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            let (got, want) = (erf(x) as f64, libm::erf(x as f64));
            // In units of the f32 spacing at the true value (at least that of 2^-126, for tiny x).
            let ulp = (want.abs().max(1e-37) as f32).to_bits();
            let spacing = (f32::from_bits(ulp + 1) - f32::from_bits(ulp)) as f64;
            worst_ulps = worst_ulps.max((got - want).abs() / spacing);
            x += 0.000_731;
        }
        assert!(worst_ulps <= 3.0, "erf is {worst_ulps} ulp off");
        for tiny in [1e-30f32, -3e-8, 1e-4] {
            let want = libm::erf(tiny as f64) as f32;
            assert!((erf(tiny) - want).abs() <= want.abs() * 3e-7, "erf({tiny})");
        }
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert_eq!(erf(9.0), 1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_derivatives_match_central_differences_in_f64() {
        let gelu_erf64 = |x: f64| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt()));
        let gelu_tanh64 = |x: f64| {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        };
        let mut x = -9.0f32;
        while x < 9.0 {
            let h = 1e-5;
            let xd = x as f64;
            for (got, f) in [
                (gelu_erf_derivative(x), &gelu_erf64 as &dyn Fn(f64) -> f64),
                (gelu_tanh_derivative(x), &gelu_tanh64),
            ] {
                let want = (f(xd + h) - f(xd - h)) / (2.0 * h);
                assert!((got as f64 - want).abs() < 2e-6, "x = {x}: {got} vs {want}");
            }
            let want = gelu_erf64(xd);
            assert!(
                (gelu_erf(x) as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                "x = {x}"
            );
            x += 0.0173;
        }
    }
}
