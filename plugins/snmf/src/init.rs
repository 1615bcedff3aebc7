//! Initial coefficients `G₀` `[n, k]` (spec §A3). Only G₀ matters: the first iteration computes F from
//! it by least squares.
//!
//! * random: `U(0, 1)`, clamped at 1e-6;
//! * svd: `V_k·diag(√S_k)` clamped at 1e-6, from the top-k singular triplets of `A = Xᵀ`, found by
//!   randomized subspace iteration (Halko, Martinsson & Tropp 2011: 10 extra directions, 4 power
//!   iterations), which matches a full SVD's leading triplets to well below what the clamp changes,
//!   at `O(n·d·k)` instead of `O(n·d·min(n, d))`. A singular pair's sign is arbitrary (a full SVD
//!   picks one at random too), so each column takes the sign that puts more of its mass on the
//!   positive side (as NNDSVD does): the clamp then keeps a feature's main tokens instead of
//!   leaving it almost empty;
//! * kmeans: Lloyd's algorithm on the n token vectors from k distinct random tokens (empty clusters
//!   re-seeded with random tokens), then `G₀` = the one-hot assignment clamped at 1e-6.
//!
//! The large products run on the host; the plugin only eigendecomposes small Gram matrices.

use loupe_plugin_api::prelude::*;
use loupe_plugin_api::rng::Rng;
use nalgebra::{DMatrix, SymmetricEigen};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Random,
    Svd,
    KMeans { iterations: usize },
}

impl Init {
    pub fn name(&self) -> &'static str {
        match self {
            Init::Random => "random",
            Init::Svd => "svd",
            Init::KMeans { .. } => "kmeans",
        }
    }
}

const FLOOR: f32 = 1e-6;
const OVERSAMPLING: usize = 10;
const POWER_ITERATIONS: usize = 4;

pub fn initial_g(x: &Tensor, k: usize, init: &Init, seed: u64) -> Result<Tensor> {
    let n = x.shape()[0];
    match init {
        Init::Random => Tensor::rand_uniform(&[n, k], 0.0, 1.0, seed)?.clamp(FLOOR, f32::MAX),
        Init::Svd => svd_init(x, k, seed),
        Init::KMeans { iterations } => kmeans_init(x, k, *iterations, seed),
    }
}

/// Eigenvalues (descending) and eigenvectors (columns, same order) of a symmetric matrix.
fn eigen_descending(gram: &[f32], l: usize) -> (Vec<f64>, DMatrix<f64>) {
    let m = DMatrix::from_fn(l, l, |i, j| {
        // Symmetrise what f32 rounding left slightly asymmetric.
        0.5 * (gram[i * l + j] as f64 + gram[j * l + i] as f64)
    });
    let eig = SymmetricEigen::new(m);
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let values = order.iter().map(|&i| eig.eigenvalues[i]).collect();
    let vectors = DMatrix::from_fn(l, l, |i, j| eig.eigenvectors[(i, order[j])]);
    (values, vectors)
}

/// A row-major `[rows, cols]` f32 tensor of an nalgebra matrix.
fn upload(m: &DMatrix<f64>) -> Result<Tensor> {
    let (rows, cols) = m.shape();
    let data: Vec<f32> = (0..rows * cols)
        .map(|i| m[(i / cols, i % cols)] as f32)
        .collect();
    Tensor::from_f32(&data, &[rows, cols])
}

/// `y·V·Λ^{-1/2}` from the eigendecomposition of `yᵀy` for `y` `[n, l]`: orthonormal columns spanning
/// `y`'s, directions with no weight (rank deficiency) becoming zero columns.
fn orthonormalise_once(y: &Tensor) -> Result<Tensor> {
    let l = y.shape()[1];
    let gram = y.matmul_t(y, true, false)?.to_vec_f32()?;
    let (values, vectors) = eigen_descending(&gram, l);
    let largest = values[0].max(f64::MIN_POSITIVE);
    let w = DMatrix::from_fn(l, l, |i, j| {
        let v = values[j];
        if v > largest * 1e-10 {
            vectors[(i, j)] / v.sqrt()
        } else {
            0.0
        }
    });
    y.matmul(&upload(&w)?)
}

/// An orthonormal basis of the columns of `y`, done twice for accuracy (the Gram matrix squares the
/// condition number).
fn orthonormalise(y: &Tensor) -> Result<Tensor> {
    orthonormalise_once(&orthonormalise_once(y)?)
}

fn svd_init(x: &Tensor, k: usize, seed: u64) -> Result<Tensor> {
    let (n, d) = (x.shape()[0], x.shape()[1]);
    let l = (k + OVERSAMPLING).min(n).min(d);
    // The leading left singular vectors of X (the right ones of A) span X·Ω's range, sharpened by
    // power iterations.
    let omega = Tensor::randn(&[d, l], 0.0, 1.0, seed)?;
    let mut q = orthonormalise(&x.matmul(&omega)?)?;
    for _ in 0..POWER_ITERATIONS {
        let z = orthonormalise(&x.matmul_t(&q, true, false)?)?;
        q = orthonormalise(&x.matmul(&z)?)?;
    }
    // X ≈ Q·B with B = QᵀX [l, d]; B·Bᵀ = U_B·S²·U_Bᵀ, so X's left singular vectors are Q·U_B.
    let b = q.matmul_t(x, true, false)?;
    let (values, vectors) = eigen_descending(&b.matmul_t(&b, false, true)?.to_vec_f32()?, l);
    // G₀ = V_k·diag(√S_k) = Q·(U_B[:, :k]·diag(S^{1/2})), with S = √eigenvalue.
    let w = DMatrix::from_fn(l, k, |i, j| vectors[(i, j)] * values[j].max(0.0).powf(0.25));
    let g = q.matmul(&upload(&w)?)?;
    let positive = g.relu()?.l2_norm(0, false)?.to_vec_f32()?;
    let negative = g.neg()?.relu()?.l2_norm(0, false)?.to_vec_f32()?;
    let signs: Vec<f32> = positive
        .iter()
        .zip(&negative)
        .map(|(p, n)| if n > p { -1.0 } else { 1.0 })
        .collect();
    g.mul(&Tensor::from_f32(&signs, &[k])?)?
        .clamp(FLOOR, f32::MAX)
}

fn kmeans_init(x: &Tensor, k: usize, iterations: usize, seed: u64) -> Result<Tensor> {
    let n = x.shape()[0];
    let mut rng = Rng::new(seed);
    let first: Vec<i32> = rng.permutation(n)[..k].to_vec();
    let mut centres = x.index_select(0, &Tensor::from_i32(&first, &[k])?)?;
    let mut labels = vec![0i32; n];
    let ones = Tensor::ones(&[n, 1])?;
    for _ in 0..iterations.max(1) {
        // argmin ‖x − c‖² = argmax 2·x·c − ‖c‖².
        let c_sq = centres.mul(&centres)?.sum(1, false)?;
        let scores = x
            .matmul_t(&centres, false, true)?
            .affine(2.0, 0.0)?
            .sub(&c_sq)?;
        let assignment = scores.argmax(1, false)?;
        labels = assignment.to_vec_i32()?;
        let mut counts = vec![0usize; k];
        for &c in &labels {
            counts[c as usize] += 1;
        }
        let sums = Tensor::scatter_outer(&ones, &assignment.reshape(&[n, 1])?, x, k)?;
        let inverse: Vec<f32> = counts.iter().map(|&c| 1.0 / c.max(1) as f32).collect();
        centres = sums.mul(&Tensor::from_f32(&inverse, &[k, 1])?)?;
        // Empty clusters restart at random tokens.
        let empty: Vec<usize> = (0..k).filter(|&c| counts[c] == 0).collect();
        if !empty.is_empty() {
            let picks: Vec<i32> = empty.iter().map(|_| rng.below(n) as i32).collect();
            let fresh = x.index_select(0, &Tensor::from_i32(&picks, &[picks.len()])?)?;
            let all = Tensor::concat(&[&centres, &fresh], 0)?;
            let mut mapping: Vec<i32> = (0..k as i32).collect();
            for (j, &c) in empty.iter().enumerate() {
                mapping[c] = (k + j) as i32;
            }
            centres = all.index_select(0, &Tensor::from_i32(&mapping, &[k])?)?;
        }
    }
    let mut one_hot = vec![FLOOR; n * k];
    for (row, &c) in labels.iter().enumerate() {
        one_hot[row * k + c as usize] = 1.0;
    }
    Tensor::from_f32(&one_hot, &[n, k])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_descending_orders_pairs() {
        // [[2, 1], [1, 2]]: eigenvalues 3 (along (1, 1)) and 1 (along (1, −1)).
        let (values, vectors) = eigen_descending(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((values[0] - 3.0).abs() < 1e-12 && (values[1] - 1.0).abs() < 1e-12);
        assert!((vectors[(0, 0)].abs() - vectors[(1, 0)].abs()).abs() < 1e-12);
        assert!((vectors[(0, 0)] * vectors[(1, 0)]) > 0.0);
        assert!((vectors[(0, 1)] * vectors[(1, 1)]) < 0.0);
    }
}
