//! A CPU emulation of the tensor-core matmul kernel (`kernels/cuda/matmul_tc.cu`), so its index
//! arithmetic is checked without a GPU.
//!
//! The emulation runs the kernel's grid block by block and, inside a block, its threads phase by phase
//! (one phase per stretch between `__syncthreads`, in program order). The functions below have the same
//! names, variables and index formulas as the `.cu` — `stage_coords`, `load_tile`, `store_tile`,
//! `multiply_slice`, `matmul_tc` and its epilogue — so the two can be read side by side; change them
//! together. Only `mma_16816` is written differently on purpose: it decodes the fragments with the
//! per-element formulas of the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type":
//! elements a0..a7, b0..b3, c0..c3, low to high within each 32-bit register), not with the
//! register-pair description the kernel's comments use, so the two descriptions check each other.
//!
//! What it catches: a staged word or fragment register taken from the wrong row, column or k; a tile
//! element that is read before it was staged (shared memory starts as NaN bits); a global read outside
//! its buffer or a C element stored outside it, twice or not at all; a buffer read and rewritten
//! between the same two barriers. The tests compare against a plain matmul of the same rounded inputs.
//!
//! What it cannot catch: timing (the barriers are assumed to work as written), and which half of a
//! k-pair word holds the even k — a k order shared by A and B leaves every product unchanged, so only
//! their agreement matters, and both go through the same `pack_pair`.

// Mirroring the kernel: its parameter lists, and its indexed loops (the indices are the formulas).
#![allow(clippy::too_many_arguments, clippy::needless_range_loop)]

use half::{bf16, f16};

const SOURCE: &str = include_str!("../../cuda/matmul_tc.cu");

// The kernel's #defines (checked against the source by `the_defines_match_the_source`).
const TC_BLOCK_M: i32 = 128;
const TC_BLOCK_N: i32 = 128;
const TC_THREADS: i32 = 256;
const TC_SLICE: i32 = 32;
const TC_WORDS: i32 = TC_SLICE / 2;
const TC_PITCH: usize = (TC_WORDS + 4) as usize;
const TC_WARP_M: i32 = 64;
const TC_WARP_N: i32 = 32;
const TC_WARPS_N: i32 = TC_BLOCK_N / TC_WARP_N;
const TC_MMA_M: usize = (TC_WARP_M / 16) as usize;
const TC_MMA_N: usize = (TC_WARP_N / 8) as usize;
const TC_STAGE_A: usize = (TC_BLOCK_M * TC_WORDS / TC_THREADS) as usize;
const TC_STAGE_B: usize = (TC_BLOCK_N * TC_WORDS / TC_THREADS) as usize;

/// What fresh shared memory holds in the emulation: NaN in both halves, for bf16 and f16 alike, so a
/// word used before it is staged turns the result into NaN.
const POISON: u32 = 0x7fff_7fff;

/// A staged tile: [outer][word], each word a k-pair.
type Tile = Vec<[u32; TC_PITCH]>;
/// One thread's accumulators, `acc[i][j][r]`.
type Acc = [[[f32; 4]; TC_MMA_N]; TC_MMA_M];

/// An input element: f32 (rounded when staged) or raw 16-bit bits.
trait Input: Copy + Default {
    /// `to_half_bits<BF16>` in the kernel.
    fn to_half_bits(self, is_bf16: bool) -> u32;
}

impl Input for f32 {
    fn to_half_bits(self, is_bf16: bool) -> u32 {
        // half's from_f32 rounds to nearest even, as `cvt.rn.{bf16,f16}.f32` does.
        u32::from(if is_bf16 {
            bf16::from_f32(self).to_bits()
        } else {
            f16::from_f32(self).to_bits()
        })
    }
}

impl Input for u16 {
    fn to_half_bits(self, _: bool) -> u32 {
        u32::from(self)
    }
}

/// A kernel pointer argument after `a += batch * stride_a`: every read is bounds-checked.
struct Ptr<'a, T> {
    data: &'a [T],
    offset: i64,
}

impl<T: Copy> Ptr<'_, T> {
    fn read(&self, index: i64) -> T {
        let at = self.offset + index;
        assert!(
            at >= 0 && (at as usize) < self.data.len(),
            "global read at {at} outside a buffer of {}",
            self.data.len()
        );
        self.data[at as usize]
    }
}

/// The output buffer, counting the stores to each element.
struct Out {
    data: Vec<f32>,
    stores: Vec<u32>,
}

impl Out {
    fn store(&mut self, offset: i64, index: i64, v: f32) {
        let at = offset + index;
        assert!(
            at >= 0 && (at as usize) < self.data.len(),
            "C store at {at} outside a buffer of {}",
            self.data.len()
        );
        self.data[at as usize] = v;
        self.stores[at as usize] += 1;
    }
}

/// The kernel's scalar parameters.
#[derive(Debug, Clone, Copy)]
struct Params {
    m: i64,
    n: i64,
    k: i64,
    trans_a: i32,
    trans_b: i32,
    stride_a: i64,
    stride_b: i64,
    stride_c: i64,
    alpha: f32,
}

fn pack_pair(lo: u32, hi: u32) -> u32 {
    lo | (hi << 16)
}

/// `stage_coords` in the .cu: (outer, word).
fn stage_coords(e: i32, k_contiguous: i32, outer_size: i32) -> (i32, i32) {
    if k_contiguous != 0 {
        (e / TC_WORDS, e % TC_WORDS)
    } else {
        (e % outer_size, e / outer_size)
    }
}

/// `load_tile<T, STAGE, OUTER>` in the .cu; `thread_idx` is threadIdx.x, `outer_size` is OUTER.
fn load_tile<T: Input>(
    stage: &mut [[T; 2]],
    thread_idx: i32,
    outer_size: i32,
    src: &Ptr<T>,
    outer0: i64,
    outer_len: i64,
    k: i64,
    k0: i64,
    k_contiguous: i32,
) {
    for i in 0..stage.len() {
        let e = thread_idx + i as i32 * TC_THREADS;
        let (outer, word) = stage_coords(e, k_contiguous, outer_size);
        let go = outer0 + i64::from(outer);
        let gk = k0 + 2 * i64::from(word);
        for h in 0..2 {
            let p = gk + h as i64;
            let mut v = T::default();
            if go < outer_len && p < k {
                v = if k_contiguous != 0 {
                    src.read(go * k + p)
                } else {
                    src.read(p * outer_len + go)
                };
            }
            stage[i][h] = v;
        }
    }
}

/// `store_tile<BF16, T, STAGE, OUTER>` in the .cu.
fn store_tile<T: Input>(
    is_bf16: bool,
    tile: &mut Tile,
    stage: &[[T; 2]],
    thread_idx: i32,
    outer_size: i32,
    k_contiguous: i32,
) {
    for (i, s) in stage.iter().enumerate() {
        let e = thread_idx + i as i32 * TC_THREADS;
        let (outer, word) = stage_coords(e, k_contiguous, outer_size);
        tile[outer as usize][word as usize] =
            pack_pair(s[0].to_half_bits(is_bf16), s[1].to_half_bits(is_bf16));
    }
}

fn decode(bits: u16, is_bf16: bool) -> f32 {
    if is_bf16 {
        bf16::from_bits(bits).to_f32()
    } else {
        f16::from_bits(bits).to_f32()
    }
}

/// One warp's `mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 d, a, b, d`, from the
/// PTX ISA's fragment formulas: `d[lane]`, `a[lane]`, `b[lane]` are each lane's registers. Element
/// i of a fragment is in register i / 2, the even one in the low 16 bits. Each element of A and B must
/// come from exactly one lane.
fn mma_16816(is_bf16: bool, d: &mut [[f32; 4]; 32], a: &[[u32; 4]; 32], b: &[[u32; 2]; 32]) {
    let element = |reg: u32, i: usize| decode((reg >> (16 * (i & 1))) as u16, is_bf16);
    let mut am = [[0.0f32; 16]; 16];
    let mut bm = [[0.0f32; 8]; 16];
    let (mut a_seen, mut b_seen) = ([[0; 16]; 16], [[0; 8]; 16]);
    for lane in 0..32 {
        let group_id = lane >> 2;
        let thread_id_in_group = lane % 4;
        for i in 0..8 {
            // row = groupID for ai where 0 <= i < 2 || 4 <= i < 6, groupID + 8 otherwise;
            // col = threadID_in_group * 2 + (i & 1), plus 8 for i >= 4.
            let row = if i < 2 || (4..6).contains(&i) {
                group_id
            } else {
                group_id + 8
            };
            let col = thread_id_in_group * 2 + (i & 1) + if i >= 4 { 8 } else { 0 };
            am[row][col] = element(a[lane][i / 2], i);
            a_seen[row][col] += 1;
        }
        for i in 0..4 {
            // row = threadID_in_group * 2 + (i & 1), plus 8 for i >= 2; col = groupID.
            let row = thread_id_in_group * 2 + (i & 1) + if i >= 2 { 8 } else { 0 };
            let col = group_id;
            bm[row][col] = element(b[lane][i / 2], i);
            b_seen[row][col] += 1;
        }
    }
    assert!(a_seen.iter().flatten().all(|&s| s == 1));
    assert!(b_seen.iter().flatten().all(|&s| s == 1));
    for lane in 0..32 {
        let group_id = lane >> 2;
        let thread_id_in_group = lane % 4;
        for (i, di) in d[lane].iter_mut().enumerate() {
            // row = groupID for ci where i < 2, groupID + 8 otherwise; col = threadID_in_group * 2 + (i & 1).
            let row = group_id + if i >= 2 { 8 } else { 0 };
            let col = thread_id_in_group * 2 + (i & 1);
            let dot: f32 = (0..16).map(|p| am[row][p] * bm[p][col]).sum();
            *di += dot;
        }
    }
}

/// `multiply_slice<BF16>` in the .cu, for the whole warp at once: `acc[lane]` is each lane's
/// accumulators; the fragment loads are per lane (g, t from the lane), the mma per warp.
fn multiply_slice(
    is_bf16: bool,
    acc: &mut [Acc],
    r#as: &Tile,
    bs: &Tile,
    warp_m: i32,
    warp_n: i32,
) {
    assert_eq!(acc.len(), 32);
    let mut kw = 0;
    while kw < TC_WORDS {
        let mut af = [[[0u32; 4]; TC_MMA_M]; 32];
        let mut bf = [[[0u32; 2]; TC_MMA_N]; 32];
        for lane in 0..32i32 {
            let (g, t) = (lane >> 2, lane % 4);
            let l = lane as usize;
            let at = |tile: &Tile, outer: i32, word: i32| tile[outer as usize][word as usize];
            for i in 0..TC_MMA_M {
                let ar = warp_m * TC_WARP_M + i as i32 * 16;
                af[l][i][0] = at(r#as, ar + g, kw + t);
                af[l][i][1] = at(r#as, ar + g + 8, kw + t);
                af[l][i][2] = at(r#as, ar + g, kw + t + 4);
                af[l][i][3] = at(r#as, ar + g + 8, kw + t + 4);
            }
            for j in 0..TC_MMA_N {
                let bc = warp_n * TC_WARP_N + j as i32 * 8;
                bf[l][j][0] = at(bs, bc + g, kw + t);
                bf[l][j][1] = at(bs, bc + g, kw + t + 4);
            }
        }
        for i in 0..TC_MMA_M {
            for j in 0..TC_MMA_N {
                let mut d = [[0.0f32; 4]; 32];
                let mut a = [[0u32; 4]; 32];
                let mut b = [[0u32; 2]; 32];
                for lane in 0..32 {
                    d[lane] = acc[lane][i][j];
                    a[lane] = af[lane][i];
                    b[lane] = bf[lane][j];
                }
                mma_16816(is_bf16, &mut d, &a, &b);
                for lane in 0..32 {
                    acc[lane][i][j] = d[lane];
                }
            }
        }
        kw += 8;
    }
}

/// Which shared buffers were read and written since the last barrier; a buffer both read and written
/// between two barriers (by any threads) would be a race on the GPU.
#[derive(Default)]
struct Hazards {
    read: [bool; 2],
    written: [bool; 2],
}

impl Hazards {
    fn sync_threads(&mut self) {
        for buf in 0..2 {
            assert!(
                !(self.read[buf] && self.written[buf]),
                "buffer {buf} read and written between the same barriers"
            );
        }
        *self = Self::default();
    }
}

/// One block of `matmul_tc<BF16, T>` in the .cu, at (blockIdx.x, blockIdx.y, blockIdx.z).
fn matmul_tc_block<T: Input>(
    is_bf16: bool,
    block_idx: (i64, i64, i64),
    c: &mut Out,
    a: &[T],
    b: &[T],
    p: Params,
) {
    let Params {
        m,
        n,
        k,
        trans_a,
        trans_b,
        stride_a,
        stride_b,
        stride_c,
        alpha,
    } = p;
    let mut r#as: [Tile; 2] =
        std::array::from_fn(|_| vec![[POISON; TC_PITCH]; TC_BLOCK_M as usize]);
    let mut bs: [Tile; 2] = std::array::from_fn(|_| vec![[POISON; TC_PITCH]; TC_BLOCK_N as usize]);
    let batch = block_idx.2;
    let a = Ptr {
        data: a,
        offset: batch * stride_a,
    };
    let b = Ptr {
        data: b,
        offset: batch * stride_b,
    };
    let c_offset = batch * stride_c;
    let row0 = block_idx.1 * i64::from(TC_BLOCK_M);
    let col0 = block_idx.0 * i64::from(TC_BLOCK_N);
    let a_k_contiguous = i32::from(trans_a == 0);
    let b_k_contiguous = i32::from(trans_b != 0);

    let threads = TC_THREADS as usize;
    let mut acc: Vec<Acc> = vec![[[[0.0; 4]; TC_MMA_N]; TC_MMA_M]; threads];
    let mut stage_a = vec![[[T::default(); 2]; TC_STAGE_A]; threads];
    let mut stage_b = vec![[[T::default(); 2]; TC_STAGE_B]; threads];
    let mut hazards = Hazards::default();
    let slices = (k + i64::from(TC_SLICE) - 1) / i64::from(TC_SLICE);
    for tid in 0..TC_THREADS {
        let s = tid as usize;
        load_tile(
            &mut stage_a[s],
            tid,
            TC_BLOCK_M,
            &a,
            row0,
            m,
            k,
            0,
            a_k_contiguous,
        );
        load_tile(
            &mut stage_b[s],
            tid,
            TC_BLOCK_N,
            &b,
            col0,
            n,
            k,
            0,
            b_k_contiguous,
        );
        store_tile(
            is_bf16,
            &mut r#as[0],
            &stage_a[s],
            tid,
            TC_BLOCK_M,
            a_k_contiguous,
        );
        store_tile(
            is_bf16,
            &mut bs[0],
            &stage_b[s],
            tid,
            TC_BLOCK_N,
            b_k_contiguous,
        );
    }
    hazards.written[0] = true;
    hazards.sync_threads();
    for kt in 0..slices {
        let buf = (kt & 1) as usize;
        let more = kt + 1 < slices;
        if more {
            let k0 = (kt + 1) * i64::from(TC_SLICE);
            for tid in 0..TC_THREADS {
                let s = tid as usize;
                load_tile(
                    &mut stage_a[s],
                    tid,
                    TC_BLOCK_M,
                    &a,
                    row0,
                    m,
                    k,
                    k0,
                    a_k_contiguous,
                );
                load_tile(
                    &mut stage_b[s],
                    tid,
                    TC_BLOCK_N,
                    &b,
                    col0,
                    n,
                    k,
                    k0,
                    b_k_contiguous,
                );
            }
        }
        for warp in 0..TC_THREADS / 32 {
            let (warp_m, warp_n) = (warp / TC_WARPS_N, warp % TC_WARPS_N);
            let lanes = &mut acc[warp as usize * 32..][..32];
            multiply_slice(is_bf16, lanes, &r#as[buf], &bs[buf], warp_m, warp_n);
        }
        hazards.read[buf] = true;
        if more {
            for tid in 0..TC_THREADS {
                let s = tid as usize;
                store_tile(
                    is_bf16,
                    &mut r#as[buf ^ 1],
                    &stage_a[s],
                    tid,
                    TC_BLOCK_M,
                    a_k_contiguous,
                );
                store_tile(
                    is_bf16,
                    &mut bs[buf ^ 1],
                    &stage_b[s],
                    tid,
                    TC_BLOCK_N,
                    b_k_contiguous,
                );
            }
            hazards.written[buf ^ 1] = true;
        }
        hazards.sync_threads();
    }

    // Epilogue.
    for tid in 0..TC_THREADS {
        let (warp, lane) = (tid / 32, tid % 32);
        let (warp_m, warp_n) = (warp / TC_WARPS_N, warp % TC_WARPS_N);
        let (g, t) = (lane >> 2, lane % 4);
        for i in 0..TC_MMA_M {
            for j in 0..TC_MMA_N {
                for r in 0..4 {
                    let row = row0
                        + i64::from(
                            warp_m * TC_WARP_M + i as i32 * 16 + g + if r >= 2 { 8 } else { 0 },
                        );
                    let col = col0
                        + i64::from(warp_n * TC_WARP_N + j as i32 * 8 + 2 * t + (r as i32 & 1));
                    if row < m && col < n {
                        c.store(c_offset, row * n + col, alpha * acc[tid as usize][i][j][r]);
                    }
                }
            }
        }
    }
}

/// A whole launch: grid = (ceil(n / TC_BLOCK_N), ceil(m / TC_BLOCK_M), batch), as the Rust side
/// launches it.
fn launch<T: Input>(is_bf16: bool, batch: i64, c: &mut Out, a: &[T], b: &[T], p: Params) {
    let grid_x = (p.n + i64::from(TC_BLOCK_N) - 1) / i64::from(TC_BLOCK_N);
    let grid_y = (p.m + i64::from(TC_BLOCK_M) - 1) / i64::from(TC_BLOCK_M);
    for z in 0..batch {
        for y in 0..grid_y {
            for x in 0..grid_x {
                matmul_tc_block(is_bf16, (x, y, z), c, a, b, p);
            }
        }
    }
}

/// A small deterministic generator (xorshift64*), so the tests need no seeds from elsewhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// A small integer in [-4, 4]: exact in bf16 and f16, and every sum of products stays exact in f32.
    fn small_int(&mut self) -> f32 {
        (self.next() % 9) as f32 - 4.0
    }
}

/// One case: shapes, flags, batch layout, input values.
#[derive(Debug, Clone, Copy)]
struct Case {
    m: i64,
    n: i64,
    k: i64,
    batch: i64,
    trans_a: i32,
    trans_b: i32,
    /// Element strides; `None` is the packed size (m·k, k·n, m·n).
    stride_a: Option<i64>,
    stride_b: Option<i64>,
    stride_c: Option<i64>,
    alpha: f32,
    integers: bool,
}

impl Case {
    fn new(m: i64, n: i64, k: i64) -> Self {
        Case {
            m,
            n,
            k,
            batch: 1,
            trans_a: 0,
            trans_b: 0,
            stride_a: None,
            stride_b: None,
            stride_c: None,
            alpha: 1.0,
            integers: false,
        }
    }

    fn params(&self) -> Params {
        Params {
            m: self.m,
            n: self.n,
            k: self.k,
            trans_a: self.trans_a,
            trans_b: self.trans_b,
            stride_a: self.stride_a.unwrap_or(self.m * self.k),
            stride_b: self.stride_b.unwrap_or(self.k * self.n),
            stride_c: self.stride_c.unwrap_or(self.m * self.n),
            alpha: self.alpha,
        }
    }
}

/// The buffer length a batch of `size`-element matrices `stride` apart needs.
fn buffer_len(batch: i64, stride: i64, size: i64) -> usize {
    ((batch - 1) * stride + size) as usize
}

/// C by the definition, from the rounded inputs (as f32), accumulated in f64; and Σ|alpha·a·b| per
/// element, the scale of its rounding error.
fn reference(case: &Case, a: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f64>) {
    let p = case.params();
    let len = buffer_len(case.batch, p.stride_c, p.m * p.n);
    let (mut c, mut scale) = (vec![f32::NAN; len], vec![0.0f64; len]);
    for z in 0..case.batch {
        for r in 0..p.m {
            for col in 0..p.n {
                let (mut sum, mut abs) = (0.0f64, 0.0f64);
                for q in 0..p.k {
                    let av = if p.trans_a != 0 {
                        a[(z * p.stride_a + q * p.m + r) as usize]
                    } else {
                        a[(z * p.stride_a + r * p.k + q) as usize]
                    };
                    let bv = if p.trans_b != 0 {
                        b[(z * p.stride_b + col * p.k + q) as usize]
                    } else {
                        b[(z * p.stride_b + q * p.n + col) as usize]
                    };
                    sum += f64::from(av) * f64::from(bv);
                    abs += (f64::from(av) * f64::from(bv)).abs();
                }
                let at = (z * p.stride_c + r * p.n + col) as usize;
                c[at] = (f64::from(p.alpha) * sum) as f32;
                scale[at] = f64::from(p.alpha.abs()) * abs;
            }
        }
    }
    (c, scale)
}

/// Runs `case` through the emulation of one entry point (`is_bf16` × f32 or 16-bit inputs) and
/// compares with the reference: exactly for integer inputs, to 1e-4 of Σ|a·b| otherwise. Every C
/// element must be stored exactly once, and nothing between batches (where strides leave gaps).
fn check(case: &Case, is_bf16: bool, f32_inputs: bool, seed: u64) {
    let p = case.params();
    let mut rng = Rng(seed | 1);
    let mut draw = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                if case.integers {
                    rng.small_int()
                } else {
                    rng.uniform()
                }
            })
            .collect()
    };
    let a = draw(buffer_len(case.batch, p.stride_a, p.m * p.k));
    let b = draw(buffer_len(case.batch, p.stride_b, p.k * p.n));
    let bits =
        |x: &[f32]| -> Vec<u16> { x.iter().map(|&v| v.to_half_bits(is_bf16) as u16).collect() };
    let (a_bits, b_bits) = (bits(&a), bits(&b));
    let rounded = |x: &[u16]| -> Vec<f32> { x.iter().map(|&v| decode(v, is_bf16)).collect() };
    let (want, scale) = reference(case, &rounded(&a_bits), &rounded(&b_bits));

    let len = want.len();
    let mut c = Out {
        data: vec![f32::NAN; len],
        stores: vec![0; len],
    };
    if f32_inputs {
        launch(is_bf16, case.batch, &mut c, &a, &b, p);
    } else {
        launch(is_bf16, case.batch, &mut c, &a_bits, &b_bits, p);
    }

    let what = format!(
        "{case:?}, {}, {} inputs",
        if is_bf16 { "bf16" } else { "f16" },
        if f32_inputs { "f32" } else { "16-bit" }
    );
    for z in 0..case.batch {
        for r in 0..p.m {
            for col in 0..p.n {
                let at = (z * p.stride_c + r * p.n + col) as usize;
                assert_eq!(
                    c.stores[at], 1,
                    "{what}: C[{z}][{r}][{col}] stored {} times",
                    c.stores[at]
                );
                let (got, expected) = (c.data[at], want[at]);
                let ok = if case.integers {
                    got == expected
                } else {
                    (f64::from(got) - f64::from(expected)).abs() <= 1e-4 * scale[at] + 1e-30
                };
                assert!(
                    ok,
                    "{what}: C[{z}][{r}][{col}] = {got}, expected {expected}"
                );
            }
        }
    }
    let stored: u32 = c.stores.iter().sum();
    assert_eq!(
        stored as i64,
        case.batch * p.m * p.n,
        "{what}: stores outside C's elements"
    );
}

/// Every case through all four entry points and all four transpose combinations.
fn check_all(case: Case) {
    for (seed, (trans_a, trans_b)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
        let case = Case {
            trans_a,
            trans_b,
            ..case
        };
        for is_bf16 in [true, false] {
            for f32_inputs in [true, false] {
                check(&case, is_bf16, f32_inputs, 0x5eed + seed as u64);
            }
        }
    }
}

#[test]
fn the_defines_match_the_source() {
    for line in [
        format!("#define TC_BLOCK_M {TC_BLOCK_M}"),
        format!("#define TC_BLOCK_N {TC_BLOCK_N}"),
        format!("#define TC_THREADS {TC_THREADS}"),
        format!("#define TC_SLICE {TC_SLICE}"),
        "#define TC_WORDS (TC_SLICE / 2)".into(),
        "#define TC_PITCH (TC_WORDS + 4)".into(),
        format!("#define TC_WARP_M {TC_WARP_M}"),
        format!("#define TC_WARP_N {TC_WARP_N}"),
        "#define TC_WARPS_N (TC_BLOCK_N / TC_WARP_N)".into(),
        "#define TC_MMA_M (TC_WARP_M / 16)".into(),
        "#define TC_MMA_N (TC_WARP_N / 8)".into(),
        "#define TC_STAGE_A (TC_BLOCK_M * TC_WORDS / TC_THREADS)".into(),
        "#define TC_STAGE_B (TC_BLOCK_N * TC_WORDS / TC_THREADS)".into(),
    ] {
        assert!(
            SOURCE.lines().any(|l| l == line),
            "matmul_tc.cu has no line `{line}`"
        );
    }
    // The geometry the kernel assumes: 8 warps tile the block, staging splits evenly over the threads,
    // and the static shared memory (two buffers per operand) stays under 48 KiB.
    assert_eq!(
        (TC_BLOCK_M / TC_WARP_M) * (TC_BLOCK_N / TC_WARP_N),
        TC_THREADS / 32
    );
    assert_eq!(TC_BLOCK_M * TC_WORDS % TC_THREADS, 0);
    assert_eq!(TC_BLOCK_N * TC_WORDS % TC_THREADS, 0);
    assert_eq!(TC_SLICE % 16, 0);
    let shared = 2 * (TC_BLOCK_M + TC_BLOCK_N) as usize * TC_PITCH * 4;
    assert!(
        shared <= 48 * 1024,
        "{shared} bytes of static shared memory"
    );
}

#[test]
fn staging_writes_every_word_of_a_tile_once() {
    for k_contiguous in [0, 1] {
        for (outer_size, stage) in [(TC_BLOCK_M, TC_STAGE_A), (TC_BLOCK_N, TC_STAGE_B)] {
            let mut seen = vec![[0; TC_WORDS as usize]; outer_size as usize];
            for thread_idx in 0..TC_THREADS {
                for i in 0..stage {
                    let e = thread_idx + i as i32 * TC_THREADS;
                    let (outer, word) = stage_coords(e, k_contiguous, outer_size);
                    seen[outer as usize][word as usize] += 1;
                }
            }
            assert!(seen.iter().flatten().all(|&s| s == 1));
        }
    }
}

/// The fragment loads of one warp hit 32 different banks (4-byte words, 32 banks).
#[test]
fn fragment_loads_are_free_of_bank_conflicts() {
    for kw in [0, 8] {
        for (dr, dw) in [(0, 0), (8, 0), (0, 4), (8, 4)] {
            let mut banks = [false; 32];
            for lane in 0..32i32 {
                let (g, t) = (lane >> 2, lane % 4);
                let address = (g + dr) as usize * TC_PITCH + (kw + t + dw) as usize;
                assert!(!banks[address % 32], "bank conflict");
                banks[address % 32] = true;
            }
        }
    }
}

#[test]
fn tiny_and_ragged_shapes_match_a_plain_matmul() {
    check_all(Case::new(1, 1, 1));
    check_all(Case::new(17, 33, 19));
    check_all(Case::new(3, 2, 47));
}

#[test]
fn shapes_across_several_tiles_match_a_plain_matmul() {
    check_all(Case {
        alpha: -0.75,
        ..Case::new(130, 129, 40)
    });
    // Several slices: both shared buffers are used more than once.
    check_all(Case::new(33, 17, 100));
}

#[test]
fn whole_tiles_match_exactly_with_integer_inputs() {
    check_all(Case {
        integers: true,
        ..Case::new(128, 128, 64)
    });
    check_all(Case {
        integers: true,
        alpha: 0.5,
        ..Case::new(129, 131, 33)
    });
}

#[test]
fn batches_broadcast_and_odd_strides_match_a_plain_matmul() {
    // A broadcast over the batch (stride 0).
    check_all(Case {
        batch: 2,
        stride_a: Some(0),
        ..Case::new(20, 9, 21)
    });
    // B broadcast, integer inputs so the comparison is exact.
    check_all(Case {
        batch: 3,
        stride_b: Some(0),
        integers: true,
        ..Case::new(7, 130, 18)
    });
    // Odd gaps between the batch matrices, C included (its gaps must stay unwritten).
    check_all(Case {
        batch: 2,
        stride_a: Some(5 * 35 + 3),
        stride_b: Some(35 * 6 + 1),
        stride_c: Some(5 * 6 + 7),
        ..Case::new(5, 6, 35)
    });
}

/// Where NVRTC loads, the kernel compiles for sm_80 and sm_90 and really uses the tensor cores.
#[test]
fn compiles_to_mma_instructions_when_nvrtc_is_present() {
    if let Err(why) = super::nvrtc_version() {
        eprintln!("skipped: {why}");
        return;
    }
    let source = super::KernelSource {
        name: "matmul_tc",
        code: SOURCE,
    };
    for arch in ["sm_80", "sm_90"] {
        let ptx = super::compile(&source, arch, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .ptx;
        for kernel in [
            "matmul_tc_bf16_f32in",
            "matmul_tc_f16_f32in",
            "matmul_tc_bf16",
            "matmul_tc_f16",
        ] {
            assert!(
                ptx.contains(&format!(".entry {kernel}(")),
                "{arch}: no entry {kernel}"
            );
        }
        for ty in ["bf16", "f16"] {
            let mma = format!("mma.sync.aligned.m16n8k16.row.col.f32.{ty}.{ty}.f32");
            assert!(ptx.contains(&mma), "{arch}: no {mma} in the PTX");
        }
    }
}
