// Batched matrix product C[b] = alpha · op(A[b]) · op(B[b]) on tensor cores: bf16 or f16 operands, f32
// accumulation, f32 output — the tensor-core twin of `matmul_f32` (matmul.cu), with the same row-major
// buffers, transpose flags, batch strides (0 broadcasts) and edge guards, so any M, N, K ≥ 1 work.
// For sm_80 and later (A100, H100, H200): it uses `mma.sync.aligned.m16n8k16`, which needs sm_80 for
// bf16.
//
// Entry points: `matmul_tc_bf16_f32in` / `matmul_tc_f16_f32in` read f32 operands and round them to
// bf16 / f16 (round to nearest even) as they are staged into shared memory; `matmul_tc_bf16` /
// `matmul_tc_f16` read operands already stored as raw 16-bit bf16 / f16 (unsigned short).
//
// Launch geometry (mirrored by the Rust side from the #defines below): a 1-D block of TC_THREADS = 256
// threads (8 warps) computes a TC_BLOCK_M × TC_BLOCK_N = 128 × 128 tile of C; grid =
// (ceil(n / TC_BLOCK_N), ceil(m / TC_BLOCK_M), batch); no dynamic shared memory (40 KiB static).
//
// Design. K is walked in slices of TC_SLICE = 32. For each slice, both operands are staged into shared
// memory as "k-pair words": a tile [outer][word] of 32-bit words, where word w of row `outer` holds the
// two 16-bit values at k = 2w (low 16 bits) and k = 2w + 1 (high 16 bits). For A, `outer` is the row
// of op(A) (m); for B it is the column of op(B) (n) — B is kept "column-major", which is exactly what
// the mma's `.col` B operand wants. With this layout every mma fragment register is one aligned 32-bit
// shared-memory load, no ldmatrix and no reinterpreting casts needed. Out-of-range elements (past m, n
// or k) are staged as 0, which adds nothing to the products; out-of-range C elements are not stored.
// Global reads are scalar (4 or 2 bytes), so odd sizes, odd strides and unaligned batch offsets are fine.
//
// Two shared buffers and register prefetch: while the warps multiply slice kt out of one buffer, each
// thread already has its share of slice kt+1 loading from global memory into registers; after the
// multiply it converts and writes them into the other buffer, and one __syncthreads per slice suffices
// (a buffer is only rewritten one slice after it was last read, across that barrier).
//
// Warps: warp w covers rows 64·(w / 4) .. +64 and columns 32·(w % 4) .. +32 of the block tile, as
// 4 × 4 mma tiles of 16 × 8 (64 f32 accumulators per thread).
//
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 fragments (PTX ISA, "Matrix Fragments
// for mma.m16n8k16 with floating point type"), with groupID g = lane >> 2 and threadID_in_group
// t = lane % 4. Each .b32 operand register packs two 16-bit elements, the lower-indexed element (a0,
// a2, ..., b0, b2) in the low 16 bits — here always the even k of a k-pair, matching the staging words:
//   A (16 × 16, row-major), 4 registers:  reg0 = A[g    ][2t, 2t+1]      reg1 = A[g + 8][2t, 2t+1]
//                                         reg2 = A[g    ][2t+8, 2t+9]    reg3 = A[g + 8][2t+8, 2t+9]
//   B (16 × 8, "col"), 2 registers:       reg0 = B[2t, 2t+1][g]          reg1 = B[2t+8, 2t+9][g]
//   C / D (16 × 8 f32), 4 registers:      c0, c1 = C[g][2t], C[g][2t+1]  c2, c3 = C[g+8][2t], C[g+8][2t+1]
// (the ISA lists A as elements a0..a7: row g for a0, a1, a4, a5, else g + 8; column 2t + (i & 1), plus
// 8 for i ≥ 4; B as b0..b3: row 2t + (i & 1), plus 8 for i ≥ 2, column g.)
//
// The index arithmetic is reproduced line for line by a CPU emulation test
// (kernels/src/cuda/tc_emulation.rs), which checks it against a plain matmul; keep the two in step.

#define TC_BLOCK_M 128
#define TC_BLOCK_N 128
#define TC_THREADS 256
// K per shared-memory slice, and the same in 32-bit k-pair words.
#define TC_SLICE 32
#define TC_WORDS (TC_SLICE / 2)
// Row pitch of a staged tile in words: 16 data words + 4 padding. With a pitch of 20 words the 32 lanes
// of a fragment load (rows g = 0..7, words t = 0..3) hit 32 different banks; 80 bytes also keeps rows
// 16-byte aligned.
#define TC_PITCH (TC_WORDS + 4)
// Warp tile: 2 × 4 warps of 64 × 32, each 4 × 4 mma tiles of 16 × 8.
#define TC_WARP_M 64
#define TC_WARP_N 32
#define TC_WARPS_N (TC_BLOCK_N / TC_WARP_N)
#define TC_MMA_M (TC_WARP_M / 16)
#define TC_MMA_N (TC_WARP_N / 8)
// k-pair words each thread stages per slice, per operand: 128 × 16 words / 256 threads.
#define TC_STAGE_A (TC_BLOCK_M * TC_WORDS / TC_THREADS)
#define TC_STAGE_B (TC_BLOCK_N * TC_WORDS / TC_THREADS)

// f32 → bf16 / f16 bits, round to nearest even (NVRTC ships no cuda_bf16.h / cuda_fp16.h).
__device__ __forceinline__ unsigned short f32_to_bf16_bits(float x) {
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ unsigned short f32_to_f16_bits(float x) {
    unsigned short r;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(x));
    return r;
}

// One staged element as 16 bits: f32 inputs are rounded here, 16-bit inputs are already bits.
template <bool BF16>
__device__ __forceinline__ unsigned int to_half_bits(float x) {
    return BF16 ? f32_to_bf16_bits(x) : f32_to_f16_bits(x);
}
template <bool BF16>
__device__ __forceinline__ unsigned int to_half_bits(unsigned short x) {
    return x;
}

// The lower-k element goes in the low 16 bits (the mma's packing convention, see the header).
__device__ __forceinline__ unsigned int pack_pair(unsigned int lo, unsigned int hi) { return lo | (hi << 16); }

// Where staging word `e` of a tile [outer][word] lies. When k is the contiguous axis in global memory,
// consecutive threads take consecutive words of a row (consecutive k); otherwise consecutive rows
// (consecutive m or n). Either way a warp's reads are coalesced.
__device__ __forceinline__ void stage_coords(int e, int k_contiguous, int outer_size, int* outer, int* word) {
    if (k_contiguous) {
        *outer = e / TC_WORDS;
        *word = e % TC_WORDS;
    } else {
        *outer = e % outer_size;
        *word = e / outer_size;
    }
}

// Global → registers: this thread's STAGE words of the slice starting at k0, as raw input values (two
// per word, lower k first). The operand is element (o, p) = src[o * k + p] when k is contiguous, else
// src[p * outer_len + o] — A is (row, k) with outer_len = m, B is (column, k) with outer_len = n.
// Out-of-range elements read as 0. Conversion waits until the store, so the loads stay in flight
// during the multiply.
template <typename T, int STAGE, int OUTER>
__device__ __forceinline__ void load_tile(T (&stage)[STAGE][2], const T* src, long long outer0, long long outer_len,
                                          long long k, long long k0, int k_contiguous) {
#pragma unroll
    for (int i = 0; i < STAGE; ++i) {
        const int e = (int)threadIdx.x + i * TC_THREADS;
        int outer, word;
        stage_coords(e, k_contiguous, OUTER, &outer, &word);
        const long long go = outer0 + outer;
        const long long gk = k0 + 2 * word;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const long long p = gk + h;
            T v = (T)0;
            if (go < outer_len && p < k) v = k_contiguous ? src[go * k + p] : src[p * outer_len + go];
            stage[i][h] = v;
        }
    }
}

// Registers → shared: the same words, rounded to 16 bits and packed.
template <bool BF16, typename T, int STAGE, int OUTER>
__device__ __forceinline__ void store_tile(unsigned int (*tile)[TC_PITCH], const T (&stage)[STAGE][2],
                                           int k_contiguous) {
#pragma unroll
    for (int i = 0; i < STAGE; ++i) {
        const int e = (int)threadIdx.x + i * TC_THREADS;
        int outer, word;
        stage_coords(e, k_contiguous, OUTER, &outer, &word);
        tile[outer][word] = pack_pair(to_half_bits<BF16>(stage[i][0]), to_half_bits<BF16>(stage[i][1]));
    }
}

// d += a · b for one 16 × 8 × 16 tile (fragments as in the header).
template <bool BF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned int (&a)[4], const unsigned int (&b)[2]) {
    if (BF16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
}

// One warp's share of one staged slice: TC_SLICE / 16 k-steps of TC_MMA_M × TC_MMA_N mmas.
template <bool BF16>
__device__ __forceinline__ void multiply_slice(float (&acc)[TC_MMA_M][TC_MMA_N][4], const unsigned int (*as)[TC_PITCH],
                                               const unsigned int (*bs)[TC_PITCH], int warp_m, int warp_n, int g,
                                               int t) {
#pragma unroll
    for (int kw = 0; kw < TC_WORDS; kw += 8) {  // 8 words = 16 k: one mma k-step
        unsigned int af[TC_MMA_M][4], bf[TC_MMA_N][2];
#pragma unroll
        for (int i = 0; i < TC_MMA_M; ++i) {
            const int ar = warp_m * TC_WARP_M + i * 16;  // first row of this 16-row mma tile
            af[i][0] = as[ar + g][kw + t];              // row g,     k 2t, 2t+1
            af[i][1] = as[ar + g + 8][kw + t];          // row g + 8, k 2t, 2t+1
            af[i][2] = as[ar + g][kw + t + 4];          // row g,     k 2t+8, 2t+9
            af[i][3] = as[ar + g + 8][kw + t + 4];      // row g + 8, k 2t+8, 2t+9
        }
#pragma unroll
        for (int j = 0; j < TC_MMA_N; ++j) {
            const int bc = warp_n * TC_WARP_N + j * 8;  // first column of this 8-column mma tile
            bf[j][0] = bs[bc + g][kw + t];              // column g, k 2t, 2t+1
            bf[j][1] = bs[bc + g][kw + t + 4];          // column g, k 2t+8, 2t+9
        }
#pragma unroll
        for (int i = 0; i < TC_MMA_M; ++i)
#pragma unroll
            for (int j = 0; j < TC_MMA_N; ++j) mma_16816<BF16>(acc[i][j], af[i], bf[j]);
    }
}

template <bool BF16, typename T>
__device__ __forceinline__ void matmul_tc(float* c, const T* a, const T* b, long long m, long long n, long long k,
                                          int trans_a, int trans_b, long long stride_a, long long stride_b,
                                          long long stride_c, float alpha) {
    // Two buffers per operand: 2 × 2 × 128 × 20 × 4 bytes = 40 KiB.
    __shared__ unsigned int as[2][TC_BLOCK_M][TC_PITCH];
    __shared__ unsigned int bs[2][TC_BLOCK_N][TC_PITCH];
    const long long batch = blockIdx.z;
    a += batch * stride_a;
    b += batch * stride_b;
    c += batch * stride_c;
    const long long row0 = (long long)blockIdx.y * TC_BLOCK_M;
    const long long col0 = (long long)blockIdx.x * TC_BLOCK_N;
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int warp_m = warp / TC_WARPS_N, warp_n = warp % TC_WARPS_N;
    const int g = lane >> 2, t = lane % 4;  // groupID, threadID_in_group
    // op(A) is (row, k); k is contiguous when A is stored [m, k]. op(B) is staged as (column, k); k is
    // contiguous when B is stored [n, k], i.e. transposed.
    const int a_k_contiguous = !trans_a, b_k_contiguous = trans_b != 0;

    float acc[TC_MMA_M][TC_MMA_N][4];
#pragma unroll
    for (int i = 0; i < TC_MMA_M; ++i)
#pragma unroll
        for (int j = 0; j < TC_MMA_N; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;

    T stage_a[TC_STAGE_A][2], stage_b[TC_STAGE_B][2];
    const long long slices = (k + TC_SLICE - 1) / TC_SLICE;
    load_tile<T, TC_STAGE_A, TC_BLOCK_M>(stage_a, a, row0, m, k, 0, a_k_contiguous);
    load_tile<T, TC_STAGE_B, TC_BLOCK_N>(stage_b, b, col0, n, k, 0, b_k_contiguous);
    store_tile<BF16, T, TC_STAGE_A, TC_BLOCK_M>(as[0], stage_a, a_k_contiguous);
    store_tile<BF16, T, TC_STAGE_B, TC_BLOCK_N>(bs[0], stage_b, b_k_contiguous);
    __syncthreads();
    for (long long kt = 0; kt < slices; ++kt) {
        const int buf = (int)(kt & 1);
        const bool more = kt + 1 < slices;
        if (more) {  // start the next slice's global loads before multiplying this one
            const long long k0 = (kt + 1) * TC_SLICE;
            load_tile<T, TC_STAGE_A, TC_BLOCK_M>(stage_a, a, row0, m, k, k0, a_k_contiguous);
            load_tile<T, TC_STAGE_B, TC_BLOCK_N>(stage_b, b, col0, n, k, k0, b_k_contiguous);
        }
        multiply_slice<BF16>(acc, as[buf], bs[buf], warp_m, warp_n, g, t);
        if (more) {  // the other buffer was last read in slice kt - 1, before the previous barrier
            store_tile<BF16, T, TC_STAGE_A, TC_BLOCK_M>(as[buf ^ 1], stage_a, a_k_contiguous);
            store_tile<BF16, T, TC_STAGE_B, TC_BLOCK_N>(bs[buf ^ 1], stage_b, b_k_contiguous);
        }
        __syncthreads();
    }

    // Epilogue: c0, c1 at row g, columns 2t, 2t+1; c2, c3 at row g + 8 (see the header).
#pragma unroll
    for (int i = 0; i < TC_MMA_M; ++i) {
#pragma unroll
        for (int j = 0; j < TC_MMA_N; ++j) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const long long row = row0 + warp_m * TC_WARP_M + i * 16 + g + (r >= 2 ? 8 : 0);
                const long long col = col0 + warp_n * TC_WARP_N + j * 8 + 2 * t + (r & 1);
                if (row < m && col < n) c[row * n + col] = alpha * acc[i][j][r];
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(TC_THREADS)
    matmul_tc_bf16_f32in(float* c, const float* a, const float* b, long long m, long long n, long long k,
                         int trans_a, int trans_b, long long stride_a, long long stride_b, long long stride_c,
                         float alpha) {
    matmul_tc<true, float>(c, a, b, m, n, k, trans_a, trans_b, stride_a, stride_b, stride_c, alpha);
}

extern "C" __global__ void __launch_bounds__(TC_THREADS)
    matmul_tc_f16_f32in(float* c, const float* a, const float* b, long long m, long long n, long long k,
                        int trans_a, int trans_b, long long stride_a, long long stride_b, long long stride_c,
                        float alpha) {
    matmul_tc<false, float>(c, a, b, m, n, k, trans_a, trans_b, stride_a, stride_b, stride_c, alpha);
}

extern "C" __global__ void __launch_bounds__(TC_THREADS)
    matmul_tc_bf16(float* c, const unsigned short* a, const unsigned short* b, long long m, long long n,
                   long long k, int trans_a, int trans_b, long long stride_a, long long stride_b,
                   long long stride_c, float alpha) {
    matmul_tc<true, unsigned short>(c, a, b, m, n, k, trans_a, trans_b, stride_a, stride_b, stride_c, alpha);
}

extern "C" __global__ void __launch_bounds__(TC_THREADS)
    matmul_tc_f16(float* c, const unsigned short* a, const unsigned short* b, long long m, long long n,
                  long long k, int trans_a, int trans_b, long long stride_a, long long stride_b,
                  long long stride_c, float alpha) {
    matmul_tc<false, unsigned short>(c, a, b, m, n, k, trans_a, trans_b, stride_a, stride_b, stride_c, alpha);
}
