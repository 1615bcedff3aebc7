use loupe_kernels::{Device, Tensor};
use std::time::Instant;
fn main() {
    let x = Tensor::randn([1024, 768], 0., 1., 1, Device::Cpu).unwrap();
    let ws: Vec<Tensor> = (0..12)
        .map(|i| Tensor::randn([768, 3072], 0., 1., 2 + i, Device::Cpu).unwrap())
        .collect();
    let wts: Vec<Tensor> = ws.iter().map(|w| w.transpose(0, 1).unwrap()).collect();
    let fl = 2.0 * 1024. * 768. * 3072.;
    for round in 0..2 {
        let t = Instant::now();
        for w in &ws {
            std::hint::black_box(x.matmul(w).unwrap());
        }
        let a = fl * 12. / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for w in &wts {
            std::hint::black_box(x.matmul_t(w, false, true).unwrap());
        }
        let b = fl * 12. / t.elapsed().as_secs_f64() / 1e9;
        let t = Instant::now();
        for w in &ws {
            std::hint::black_box(w.matmul_t(&x, true, true).unwrap());
        }
        let c = fl * 12. / t.elapsed().as_secs_f64() / 1e9;
        println!("round {round}: x·W {a:.0}  x·(Wt)ᵀ {b:.0}  (Wᵀ·xᵀ) {c:.0} GFLOP/s");
    }
}
