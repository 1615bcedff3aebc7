use loupe_kernels::{Device, Tensor};
use std::time::Instant;
fn time(name: &str, flops: f64, f: impl Fn() -> Tensor) {
    f();
    let t = Instant::now();
    let n = 3;
    for _ in 0..n {
        std::hint::black_box(f());
    }
    let s = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "{name:40} {:8.1} ms  {:6.1} GFLOP/s",
        s * 1e3,
        flops / s / 1e9
    );
}
fn main() {
    let x = Tensor::randn([1024, 768], 0., 1., 1, Device::Cpu).unwrap();
    let w = Tensor::randn([768, 3072], 0., 1., 2, Device::Cpu).unwrap();
    let b = Tensor::randn([3072], 0., 1., 2, Device::Cpu).unwrap();
    let wte = Tensor::randn([50257, 768], 0., 1., 3, Device::Cpu).unwrap();
    time("linear 1024x768x3072", 2.0 * 1024. * 768. * 3072., || {
        x.linear(&w, Some(&b)).unwrap()
    });
    time("matmul 1024x768x3072", 2.0 * 1024. * 768. * 3072., || {
        x.matmul(&w).unwrap()
    });
    time(
        "logits 1024x768 x (50257x768)^T",
        2.0 * 1024. * 768. * 50257.,
        || x.matmul_t(&wte, false, true).unwrap(),
    );
    let q = Tensor::randn([8, 12, 128, 64], 0., 1., 4, Device::Cpu).unwrap();
    time(
        "scores 96 x 128x64x128",
        2.0 * 96. * 128. * 128. * 64.,
        || q.matmul_t(&q, false, true).unwrap(),
    );
    let h = Tensor::randn([1024, 3072], 0., 1., 5, Device::Cpu).unwrap();
    time("gelu 1024x3072", 1024. * 3072., || h.gelu_tanh().unwrap());
    let x4 = Tensor::randn([8, 128, 12, 64], 0., 1., 4, Device::Cpu).unwrap();
    time("permute 8x128x12x64", 8. * 128. * 768., || {
        x4.permute(&[0, 2, 1, 3]).unwrap()
    });
    let lw = Tensor::ones([768], Device::Cpu).unwrap();
    time("layernorm 1024x768", 1024. * 768., || {
        x.layer_norm(&lw, &lw, 1e-5).unwrap()
    });
    let s = Tensor::randn([8, 12, 128, 128], 0., 1., 4, Device::Cpu).unwrap();
    time("softmax 96x128x128", 96. * 128. * 128., || {
        s.softmax(-1).unwrap()
    });
}
