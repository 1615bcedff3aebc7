//! Drawing the next token from the host's top-k logits: temperature, top-k, then top-p (nucleus), in
//! the order Hugging Face's `generate` applies them.

use loupe_plugin_api::rng::Rng;

/// How many of the descending probabilities `probs` the nucleus keeps: the shortest prefix whose mass
/// reaches `top_p` (at least one).
pub fn nucleus_len(probs: &[f64], top_p: f64) -> usize {
    let mut mass = 0.0;
    for (i, p) in probs.iter().enumerate() {
        mass += p;
        if mass >= top_p {
            return i + 1;
        }
    }
    probs.len().max(1)
}

/// One token id drawn from `logits` (the top-k, descending) and their `ids`, after dividing the
/// logits by `temperature` and keeping the `top_p` nucleus.
pub fn draw(logits: &[f32], ids: &[i32], temperature: f64, top_p: f64, rng: &mut Rng) -> i32 {
    let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 / temperature).collect();
    let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|&l| (l - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
    let kept = nucleus_len(&probs, top_p);
    let mass: f64 = probs[..kept].iter().sum();
    let mut u = rng.uniform() * mass;
    for (p, &id) in probs[..kept].iter().zip(ids) {
        if u < *p {
            return id;
        }
        u -= p;
    }
    ids[kept - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nucleus_is_the_shortest_prefix_reaching_top_p() {
        assert_eq!(nucleus_len(&[0.5, 0.3, 0.2], 0.3), 1);
        assert_eq!(nucleus_len(&[0.5, 0.3, 0.2], 0.5), 1);
        assert_eq!(nucleus_len(&[0.5, 0.3, 0.2], 0.6), 2);
        assert_eq!(nucleus_len(&[0.5, 0.3, 0.2], 1.0), 3);
    }

    #[test]
    fn draws_follow_the_renormalised_nucleus() {
        // Probabilities ∝ e^{l}: [0.5, 0.3, 0.2] from logits ln of those; top_p 0.7 keeps two tokens,
        // drawn 5 : 3.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let ids = [7, 8, 9];
        let mut rng = Rng::new(0);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            let id = draw(&logits, &ids, 1.0, 0.7, &mut rng);
            counts[(id - 7) as usize] += 1;
        }
        assert_eq!(counts[2], 0, "{counts:?}");
        let share = counts[0] as f64 / 40_000.0;
        assert!((share - 0.625).abs() < 0.01, "{counts:?}");
        // A tiny temperature always picks the most likely token.
        assert_eq!(draw(&logits, &ids, 1e-3, 1.0, &mut rng), 7);
    }
}
