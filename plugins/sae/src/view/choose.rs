//! Which latents the feature view shows: the ones the user lists, the most active on the evaluation
//! rows, and a random sample of the rest — each once, with every reason it was picked.

use loupe_plugin_api::rng::Rng;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Listed,
    MostActive,
    Random,
}

#[derive(Debug, PartialEq)]
pub struct Chosen {
    pub latent: usize,
    pub reasons: Vec<Reason>,
}

#[derive(Debug)]
pub struct Choice {
    /// Listed ones first (in the user's order), then the most active (most first), then the random.
    pub latents: Vec<Chosen>,
    /// Listed latents out of range.
    pub ignored: Vec<i64>,
    /// How many latents the random ones were drawn from.
    pub random_from: usize,
}

/// Chooses from latents with firing frequencies `frequencies`: the `listed`, the `top` firing most
/// often (ties: the lower index), and `random` drawn uniformly from the other latents that fired at
/// all (a latent that never fired has nothing to show but its decoder).
pub fn choose(
    frequencies: &[f32],
    top: usize,
    random: usize,
    listed: &[i64],
    rng: &mut Rng,
) -> Choice {
    let d_sae = frequencies.len();
    let mut latents: Vec<Chosen> = Vec::new();
    let mut ignored = Vec::new();
    let add = |latents: &mut Vec<Chosen>, latent: usize, reason: Reason| match latents
        .iter_mut()
        .find(|c| c.latent == latent)
    {
        Some(c) if !c.reasons.contains(&reason) => c.reasons.push(reason),
        Some(_) => {}
        None => latents.push(Chosen {
            latent,
            reasons: vec![reason],
        }),
    };
    for &l in listed {
        if l < 0 || l as usize >= d_sae {
            if !ignored.contains(&l) {
                ignored.push(l);
            }
        } else {
            add(&mut latents, l as usize, Reason::Listed);
        }
    }
    let mut by_frequency: Vec<usize> = (0..d_sae).filter(|&l| frequencies[l] > 0.0).collect();
    by_frequency.sort_by(|&a, &b| frequencies[b].total_cmp(&frequencies[a]).then(a.cmp(&b)));
    for &l in by_frequency.iter().take(top) {
        add(&mut latents, l, Reason::MostActive);
    }
    // The pool: latents that fired and are not shown yet, in index order so the draw depends only
    // on the seed and the frequencies.
    let mut pool: Vec<usize> = (0..d_sae)
        .filter(|&l| frequencies[l] > 0.0 && !latents.iter().any(|c| c.latent == l))
        .collect();
    let random_from = pool.len();
    // A partial Fisher–Yates shuffle: the first `random` of a uniform permutation.
    for i in 0..random.min(pool.len()) {
        let j = i + rng.below(pool.len() - i);
        pool.swap(i, j);
        add(&mut latents, pool[i], Reason::Random);
    }
    Choice {
        latents,
        ignored,
        random_from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(frequencies: &[f32], top: usize, random: usize, listed: &[i64], seed: u64) -> Choice {
        choose(frequencies, top, random, listed, &mut Rng::new(seed))
    }

    #[test]
    fn listed_then_most_active_then_random_each_once() {
        let f = [0.0, 0.5, 0.1, 0.9, 0.0, 0.2, 0.3, 0.05];
        let c = pick(&f, 2, 3, &[6, 3, 99, -1, 6], 1);
        let order: Vec<usize> = c.latents.iter().map(|c| c.latent).collect();
        assert_eq!(&order[..3], &[6, 3, 1]);
        assert_eq!(c.latents[1].reasons, [Reason::Listed, Reason::MostActive]);
        assert_eq!(c.latents[2].reasons, [Reason::MostActive]);
        assert_eq!(c.ignored, [99, -1]);
        // Random ones come from the latents that fired and were not shown: 2, 5, 7.
        assert_eq!(c.random_from, 3);
        let mut random: Vec<usize> = order[3..].to_vec();
        random.sort();
        assert_eq!(random, [2, 5, 7]);
        assert!(c.latents[3..].iter().all(|c| c.reasons == [Reason::Random]));
    }

    #[test]
    fn the_random_sample_depends_on_the_seed_only() {
        let f: Vec<f32> = (0..1000).map(|i| (i % 7) as f32 / 7.0).collect();
        let a = pick(&f, 4, 10, &[], 5);
        let b = pick(&f, 4, 10, &[], 5);
        let c = pick(&f, 4, 10, &[], 6);
        let latents = |c: &Choice| c.latents.iter().map(|c| c.latent).collect::<Vec<_>>();
        assert_eq!(latents(&a), latents(&b));
        assert_ne!(latents(&a), latents(&c));
        assert_eq!(a.latents.len(), 14);
        assert!(
            latents(&a).iter().all(|&l| f[l] > 0.0),
            "dead latents drawn"
        );
    }

    #[test]
    fn nothing_fired_leaves_only_the_listed() {
        let c = pick(&[0.0; 4], 3, 3, &[2], 0);
        assert_eq!(
            c.latents,
            [Chosen {
                latent: 2,
                reasons: vec![Reason::Listed]
            }]
        );
    }
}
