//! Running per-neuron statistics, merged batch by batch in f64.

pub struct RunningStats {
    count: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
    max: Vec<f32>,
    active: Vec<f64>,
}

impl RunningStats {
    pub fn new(neurons: usize) -> Self {
        RunningStats {
            count: 0,
            mean: vec![0.0; neurons],
            m2: vec![0.0; neurons],
            max: vec![f32::NEG_INFINITY; neurons],
            active: vec![0.0; neurons],
        }
    }

    /// Folds in a batch of `n` rows given its per-neuron mean, sum of squared deviations from that
    /// mean, max and count of active rows (Chan, Golub and LeVeque's pairwise update).
    pub fn merge(&mut self, n: u64, mean: &[f32], m2: &[f32], max: &[f32], active: &[f32]) {
        let (na, nb) = (self.count as f64, n as f64);
        let total = na + nb;
        for j in 0..self.mean.len() {
            let delta = mean[j] as f64 - self.mean[j];
            self.mean[j] += delta * nb / total;
            self.m2[j] += m2[j] as f64 + delta * delta * na * nb / total;
            self.max[j] = self.max[j].max(max[j]);
            self.active[j] += active[j] as f64;
        }
        self.count += n;
    }

    pub fn neurons(&self) -> usize {
        self.mean.len()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn means(&self) -> Vec<f32> {
        self.mean.iter().map(|&m| m as f32).collect()
    }

    /// Population variance.
    pub fn variances(&self) -> Vec<f32> {
        self.m2
            .iter()
            .map(|&m2| (m2 / self.count.max(1) as f64) as f32)
            .collect()
    }

    pub fn maxes(&self) -> Vec<f32> {
        self.max.clone()
    }

    pub fn frac_active(&self) -> Vec<f32> {
        self.active
            .iter()
            .map(|&a| (a / self.count.max(1) as f64) as f32)
            .collect()
    }

    pub fn mean_frac_active(&self) -> f64 {
        let n = self.count.max(1) as f64;
        self.active.iter().map(|a| a / n).sum::<f64>() / self.neurons().max(1) as f64
    }

    pub fn grand_mean(&self) -> f64 {
        self.mean.iter().sum::<f64>() / self.neurons().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::RunningStats;

    #[test]
    fn merging_batches_equals_one_pass() {
        let data: Vec<f32> = (0..10)
            .map(|i| (i as f32 * 0.7).sin() * 3.0 + 5.0)
            .collect();
        let batch = |xs: &[f32]| {
            let n = xs.len() as f32;
            let mean = xs.iter().sum::<f32>() / n;
            let m2 = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>();
            let max = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let active = xs.iter().filter(|&&x| x > 5.0).count() as f32;
            (xs.len() as u64, [mean], [m2], [max], [active])
        };
        let mut s = RunningStats::new(1);
        for chunk in [&data[..3], &data[3..4], &data[4..]] {
            let (n, mean, m2, max, active) = batch(chunk);
            s.merge(n, &mean, &m2, &max, &active);
        }
        let (_, mean, m2, max, active) = batch(&data);
        assert!((s.means()[0] - mean[0]).abs() < 1e-5);
        assert!((s.variances()[0] - m2[0] / 10.0).abs() < 1e-4);
        assert_eq!(s.maxes()[0], max[0]);
        assert!((s.frac_active()[0] - active[0] / 10.0).abs() < 1e-6);
    }
}
