//! Learning-rate and sparsity-coefficient schedules, by optimiser step (counted from 1).

/// Linear warm-up from 0, constant, then linear decay to 0 over the last steps.
#[derive(Debug, Clone, Copy)]
pub struct LrSchedule {
    pub lr: f64,
    pub warm_up: u64,
    pub decay: u64,
    pub total: u64,
}

impl LrSchedule {
    pub fn at(&self, step: u64) -> f64 {
        let warm = if self.warm_up > 0 && step <= self.warm_up {
            step as f64 / self.warm_up as f64
        } else {
            1.0
        };
        let decay_start = self.total.saturating_sub(self.decay);
        let decay = if self.decay > 0 && step > decay_start {
            (self.total.saturating_sub(step) as f64 + 1.0) / (self.decay as f64 + 1.0)
        } else {
            1.0
        };
        self.lr * warm * decay
    }
}

/// SAELens's coefficient warm-up: after update `s` (from 1) the coefficient is `c·s/W`, then `c`.
pub fn warmed_up(coefficient: f64, warm_up: u64, step: u64) -> f64 {
    if warm_up == 0 || step >= warm_up {
        coefficient
    } else {
        coefficient * step as f64 / warm_up as f64
    }
}

/// `fraction` of `steps`, as a step count.
pub fn steps_of(fraction: f64, steps: u64) -> u64 {
    (fraction * steps as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_rises_then_decay_falls_to_near_zero() {
        let s = LrSchedule {
            lr: 1.0,
            warm_up: 10,
            decay: 20,
            total: 100,
        };
        assert!((s.at(1) - 0.1).abs() < 1e-12);
        assert!((s.at(5) - 0.5).abs() < 1e-12);
        assert_eq!(s.at(10), 1.0);
        assert_eq!(s.at(80), 1.0);
        assert!(s.at(81) < 1.0 && s.at(81) > 0.9);
        assert!(s.at(100) > 0.0 && s.at(100) < 0.05);
        let mut last = f64::INFINITY;
        for step in 81..=100 {
            assert!(s.at(step) < last);
            last = s.at(step);
        }
    }

    #[test]
    fn coefficient_warm_up_is_linear_and_then_constant() {
        assert_eq!(warmed_up(5.0, 10, 1), 0.5);
        assert_eq!(warmed_up(5.0, 10, 10), 5.0);
        assert_eq!(warmed_up(5.0, 10, 1000), 5.0);
        assert_eq!(warmed_up(5.0, 0, 1), 5.0);
    }
}
