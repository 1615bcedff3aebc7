//! Each neuron's k largest activations over the whole dataset, merged batch by batch.

/// One activation: its value and its row in the dataset (sequence × seq_len + position).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub value: f32,
    pub row: u64,
}

pub struct TopK {
    k: usize,
    best: Vec<Vec<Hit>>,
}

impl TopK {
    pub fn new(neurons: usize, k: usize) -> Self {
        TopK {
            k,
            best: vec![Vec::with_capacity(k); neurons],
        }
    }

    /// Merges a batch's per-neuron top `batch_k` (`[neurons, batch_k]` values and batch-local row
    /// indices) whose rows start at `first_row` in the dataset.
    pub fn merge(&mut self, values: &[f32], rows: &[i32], batch_k: usize, first_row: u64) {
        for (j, best) in self.best.iter_mut().enumerate() {
            for i in 0..batch_k {
                let hit = Hit {
                    value: values[j * batch_k + i],
                    row: first_row + rows[j * batch_k + i] as u64,
                };
                best.push(hit);
            }
            // Largest first; ties keep the earlier row, so results do not depend on batching.
            best.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.row.cmp(&b.row)));
            best.truncate(self.k);
        }
    }

    pub fn of(&self, neuron: usize) -> &[Hit] {
        &self.best[neuron]
    }
}

#[cfg(test)]
mod tests {
    use super::TopK;

    #[test]
    fn keeps_the_largest_across_batches() {
        let mut t = TopK::new(2, 2);
        // Batch 1 (rows 0..), neuron 0 best rows 3, 1; neuron 1 best rows 0, 2.
        t.merge(&[5.0, 1.0, 7.0, 6.0], &[3, 1, 0, 2], 2, 0);
        // Batch 2 (rows 10..).
        t.merge(&[3.0, 2.0, 9.0, 0.0], &[0, 4, 1, 2], 2, 10);
        let rows = |j| t.of(j).iter().map(|h| h.row).collect::<Vec<_>>();
        assert_eq!(rows(0), vec![3, 10]);
        assert_eq!(rows(1), vec![11, 0]);
    }
}
