use loupe_kernels::{Device, Tensor};
use std::time::Instant;
fn rep(name: &str, f: impl Fn() -> Tensor) {
    let mut v = vec![];
    for _ in 0..10 {
        let t = Instant::now();
        std::hint::black_box(f());
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "{name:10} {:?}",
        v.iter()
            .map(|x| (x * 10.).round() / 10.)
            .collect::<Vec<_>>()
    );
}
fn main() {
    let s = Tensor::randn([8, 12, 128, 128], 0., 1., 4, Device::Cpu).unwrap();
    let h = Tensor::randn([1024, 3072], 0., 1., 5, Device::Cpu).unwrap();
    rep("softmax", || s.softmax(-1).unwrap());
    rep("gelu", || h.gelu_tanh().unwrap());
    rep("relu", || h.relu().unwrap());
    rep("add", || h.add(&h).unwrap());
}
