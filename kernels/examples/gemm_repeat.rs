use loupe_kernels::{Device, Tensor};
use std::time::Instant;
fn main() {
    let x = Tensor::randn([1024, 768], 0., 1., 1, Device::Cpu).unwrap();
    let w = Tensor::randn([768, 3072], 0., 1., 2, Device::Cpu).unwrap();
    let b = Tensor::randn([3072], 0., 1., 2, Device::Cpu).unwrap();
    let mut v = vec![];
    for _ in 0..15 {
        let t = Instant::now();
        std::hint::black_box(x.linear(&w, Some(&b)).unwrap());
        v.push(2.0 * 1024. * 768. * 3072. / t.elapsed().as_secs_f64() / 1e9);
    }
    println!("{:?}", v.iter().map(|g| *g as i32).collect::<Vec<_>>());
}
