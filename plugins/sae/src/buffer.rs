//! The shuffling activation buffer (Kissane et al.; SAELens's mixing buffer): it holds
//! `buffer_batches` training batches of rows on the host, serves the first half as batches, then
//! refills that half from the source and shuffles the whole buffer, so consecutive batches mix many
//! sequences. Rows are never copied into the plugin: shuffling is an index list.

use loupe_plugin_api::prelude::*;

use crate::source::Source;
use loupe_plugin_api::rng::Rng;

pub struct Buffer {
    source: Source,
    batch: usize,
    capacity: usize,
    half: usize,
    rows: Option<Tensor>,
    served: usize,
    /// Rows read from the source but not yet in the buffer.
    pending: Option<Tensor>,
    rng: Rng,
    /// Times the source ran out and started over.
    pub epochs_restarted: u32,
}

impl Buffer {
    pub fn new(source: Source, batch: usize, batches: usize, seed: u64) -> Self {
        let half = batches / 2 * batch;
        Buffer {
            source,
            batch,
            capacity: batches * batch,
            half,
            rows: None,
            served: 0,
            pending: None,
            rng: Rng::new(seed),
            epochs_restarted: 0,
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn into_source(self) -> Source {
        self.source
    }

    /// `n` rows in source order, starting the source over when it runs out; `stage` names the progress
    /// reported while reading.
    fn pull(&mut self, n: usize, stage: Option<&str>) -> Result<Tensor> {
        let mut parts: Vec<Tensor> = self.pending.take().into_iter().collect();
        let mut have: usize = parts.iter().map(|t| t.shape()[0]).sum();
        let mut empty_passes = 0;
        while have < n {
            match self.source.next()? {
                Some(rows) => {
                    empty_passes = 0;
                    have += rows.shape()[0];
                    parts.push(rows);
                    if let Some(stage) = stage {
                        report::progress(stage, have.min(n) as u64, n as u64);
                    }
                }
                None => {
                    empty_passes += 1;
                    if empty_passes > 1 {
                        return Err(Error::invalid(
                            "sae",
                            format!("dataset `{}` gives no activation rows", self.source.name()),
                        ));
                    }
                    self.source.rewind()?;
                    self.epochs_restarted += 1;
                    if self.epochs_restarted == 1 {
                        warn(&format!(
                            "dataset `{}` ran out; starting it over (rows repeat; a larger dataset gives better SAEs)",
                            self.source.name()
                        ));
                    }
                }
            }
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        let all = if refs.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::concat(&refs, 0)?
        };
        if have > n {
            self.pending = Some(all.slice(0, n, have)?);
            all.slice(0, 0, n)
        } else {
            Ok(all)
        }
    }

    fn shuffle(&mut self, rows: &Tensor) -> Result<Tensor> {
        let n = rows.shape()[0];
        let order = Tensor::from_i32(&self.rng.permutation(n), &[n])?;
        rows.index_select(0, &order)
    }

    /// The whole buffer, filled and shuffled on first use.
    pub fn contents(&mut self) -> Result<&Tensor> {
        if self.rows.is_none() {
            let rows = self.pull(self.capacity, Some("fill buffer"))?;
            self.rows = Some(self.shuffle(&rows)?);
        }
        Ok(self.rows.as_ref().expect("filled above"))
    }

    /// The next training batch `[batch, d_in]`.
    pub fn next_batch(&mut self) -> Result<Tensor> {
        self.contents()?;
        if self.served + self.batch > self.half {
            let fresh = self.pull(self.half, None)?;
            let rows = self.rows.take().expect("filled");
            let kept = rows.slice(0, self.half, self.capacity)?;
            let mixed = Tensor::concat(&[&kept, &fresh], 0)?;
            self.rows = Some(self.shuffle(&mixed)?);
            self.served = 0;
        }
        let rows = self.rows.as_ref().expect("filled");
        let batch = rows.slice(0, self.served, self.served + self.batch)?;
        self.served += self.batch;
        Ok(batch)
    }
}
