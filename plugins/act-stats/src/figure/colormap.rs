//! Colour maps, as a few anchor colours joined linearly: enough for a figure, with no table to ship.

pub type Rgb = [f32; 3];

/// Viridis (van der Walt & Smith, matplotlib) sampled at nine even steps: perceptually uniform and
/// readable in greyscale and by most colour-blind readers. For data of one sign.
const VIRIDIS: [Rgb; 9] = [
    [0.267, 0.005, 0.329],
    [0.283, 0.141, 0.458],
    [0.230, 0.322, 0.546],
    [0.173, 0.449, 0.558],
    [0.128, 0.567, 0.551],
    [0.135, 0.659, 0.518],
    [0.369, 0.789, 0.383],
    [0.678, 0.864, 0.190],
    [0.993, 0.906, 0.144],
];

/// Blue–white–red (ColorBrewer's RdBu, reversed) for data of both signs: 0 sits on the white middle,
/// so the sign reads at a glance.
const DIVERGING: [Rgb; 5] = [
    [0.020, 0.188, 0.380],
    [0.263, 0.576, 0.765],
    [0.969, 0.969, 0.969],
    [0.839, 0.376, 0.302],
    [0.404, 0.000, 0.122],
];

/// Which map a figure uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMap {
    Viridis,
    Diverging,
}

impl ColorMap {
    /// The colour at `t` in [0, 1] (clamped; NaN gives the low end).
    pub fn at(self, t: f32) -> Rgb {
        let anchors: &[Rgb] = match self {
            ColorMap::Viridis => &VIRIDIS,
            ColorMap::Diverging => &DIVERGING,
        };
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let x = t * (anchors.len() - 1) as f32;
        let i = (x.floor() as usize).min(anchors.len() - 2);
        let f = x - i as f32;
        let (a, b) = (anchors[i], anchors[i + 1]);
        [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * f)
    }

    /// The colour at the low (`false`) or high (`true`) end.
    #[cfg(test)]
    pub fn end(self, high: bool) -> Rgb {
        self.at(if high { 1.0 } else { 0.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_middle_are_the_anchors() {
        assert_eq!(ColorMap::Viridis.at(0.0), VIRIDIS[0]);
        assert_eq!(ColorMap::Viridis.at(1.0), VIRIDIS[8]);
        assert_eq!(ColorMap::Viridis.at(2.0), VIRIDIS[8]);
        assert_eq!(ColorMap::Diverging.at(0.5), DIVERGING[2]);
        assert_eq!(ColorMap::Diverging.at(-1.0), DIVERGING[0]);
        assert_eq!(ColorMap::Viridis.at(f32::NAN), VIRIDIS[0]);
    }

    #[test]
    fn viridis_gets_brighter() {
        // Perceptual order: the green channel (most of the luminance) rises along the whole map.
        let greens: Vec<f32> = (0..=20)
            .map(|i| ColorMap::Viridis.at(i as f32 / 20.0)[1])
            .collect();
        assert!(greens.windows(2).all(|w| w[1] > w[0]), "{greens:?}");
    }
}
