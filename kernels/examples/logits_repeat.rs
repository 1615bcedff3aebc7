use loupe_kernels::{Device, Tensor};
use std::time::Instant;
fn main() {
    let x = Tensor::randn([1024, 768], 0., 1., 1, Device::Cpu).unwrap();
    let wte = Tensor::randn([50257, 768], 0., 1., 3, Device::Cpu).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        std::hint::black_box(x.matmul_t(&wte, false, true).unwrap());
        println!(
            "logits {:.0} GFLOP/s",
            2.0 * 1024. * 768. * 50257. / t.elapsed().as_secs_f64() / 1e9
        );
    }
}
