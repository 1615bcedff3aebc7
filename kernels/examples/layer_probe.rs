use loupe_kernels::{Device, Tensor};
use std::collections::BTreeMap;
use std::time::Instant;
fn main() {
    let (b, t, d, h) = (8usize, 128usize, 768usize, 12usize);
    let dh = d / h;
    let r = |s: Vec<usize>, seed| Tensor::randn(s, 0., 0.02, seed, Device::Cpu).unwrap();
    let x = r(vec![b, t, d], 1);
    let (wqkv, bqkv, wo, bo, wfc, bfc, wp, bp) = (
        r(vec![d, 3 * d], 2),
        r(vec![3 * d], 3),
        r(vec![d, d], 4),
        r(vec![d], 5),
        r(vec![d, 4 * d], 6),
        r(vec![4 * d], 7),
        r(vec![4 * d, d], 8),
        r(vec![d], 9),
    );
    let lw = Tensor::ones([d], Device::Cpu).unwrap();
    let wte = r(vec![50257, d], 10);
    let mut times: BTreeMap<&str, f64> = BTreeMap::new();
    let mut tm = |name: &'static str, f: &mut dyn FnMut() -> Tensor| {
        let s = Instant::now();
        let o = f();
        *times.entry(name).or_default() += s.elapsed().as_secs_f64();
        o
    };
    let total = Instant::now();
    for _ in 0..12 {
        let ln = tm("ln", &mut || x.layer_norm(&lw, &lw, 1e-5).unwrap());
        let qkv = tm("linear qkv", &mut || ln.linear(&wqkv, Some(&bqkv)).unwrap());
        let q = tm("slice", &mut || {
            qkv.slice(-1, 0, d).unwrap().reshape([b, t, h, dh]).unwrap()
        });
        let k = tm("slice", &mut || {
            qkv.slice(-1, d, 2 * d)
                .unwrap()
                .reshape([b, t, h, dh])
                .unwrap()
        });
        let v = tm("slice", &mut || {
            qkv.slice(-1, 2 * d, 3 * d)
                .unwrap()
                .reshape([b, t, h, dh])
                .unwrap()
        });
        let qh = tm("permute", &mut || q.permute(&[0, 2, 1, 3]).unwrap());
        let kh = tm("permute", &mut || k.permute(&[0, 2, 1, 3]).unwrap());
        let vh = tm("permute", &mut || v.permute(&[0, 2, 1, 3]).unwrap());
        let s = tm("scores", &mut || qh.matmul_t(&kh, false, true).unwrap());
        let s = tm("affine", &mut || s.affine(0.125, 0.).unwrap());
        let s = tm("mask", &mut || s.causal_mask(f32::NEG_INFINITY).unwrap());
        let p = tm("softmax", &mut || s.softmax(-1).unwrap());
        let z = tm("pv", &mut || p.matmul(&vh).unwrap());
        let z = tm("permute", &mut || {
            z.permute(&[0, 2, 1, 3])
                .unwrap()
                .reshape([b, t, d])
                .unwrap()
        });
        let a = tm("linear o", &mut || z.linear(&wo, Some(&bo)).unwrap());
        let m = tm("add", &mut || x.add(&a).unwrap());
        let ln2 = tm("ln", &mut || m.layer_norm(&lw, &lw, 1e-5).unwrap());
        let pre = tm("linear fc", &mut || ln2.linear(&wfc, Some(&bfc)).unwrap());
        let post = tm("gelu", &mut || pre.gelu_tanh().unwrap());
        let o = tm("linear proj", &mut || post.linear(&wp, Some(&bp)).unwrap());
        let _ = tm("add", &mut || m.add(&o).unwrap());
    }
    let _ = tm("logits", &mut || x.matmul_t(&wte, false, true).unwrap());
    let all = total.elapsed().as_secs_f64();
    let mut v: Vec<_> = times.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (n, s) in v {
        println!("{n:12} {:7.1} ms {:5.1}%", s * 1e3, 100. * s / all);
    }
    println!("total {:.1} ms", all * 1e3);
}
