// Batched f32 matrix product C[b] = alpha · op(A[b]) · op(B[b]) over row-major buffers, either operand
// optionally transposed — the f32 path of the engine's matmul (the bf16/f16 tensor-core path is a
// separate kernel). Classic shared-memory tiling: each 16×16 thread block computes a 64×64 tile of C,
// every thread a 4×4 register block, stepping through K in slices of 16; edges are guarded, so any M,
// N, K work. Accumulation is f32.

#define TILE 64
#define SLICE 16
#define PER_THREAD 4

extern "C" __global__ void matmul_f32(float* c, const float* a, const float* b, long long m, long long n,
                                      long long k, int trans_a, int trans_b, long long stride_a,
                                      long long stride_b, long long stride_c, float alpha) {
    __shared__ float as[SLICE][TILE + 1];  // +1: no bank conflicts on the transposed store
    __shared__ float bs[SLICE][TILE + 1];
    const long long batch = blockIdx.z;
    a += batch * stride_a;
    b += batch * stride_b;
    c += batch * stride_c;
    const long long row0 = (long long)blockIdx.y * TILE;
    const long long col0 = (long long)blockIdx.x * TILE;
    const int tx = threadIdx.x, ty = threadIdx.y;  // 16 × 16
    const int tid = ty * 16 + tx;
    float acc[PER_THREAD][PER_THREAD] = {};
    for (long long k0 = 0; k0 < k; k0 += SLICE) {
        // Load a 64×16 slice of op(A) and a 16×64 slice of op(B): 1024 values each, 4 per thread.
        for (int e = tid; e < TILE * SLICE; e += 256) {
            const int r = e / SLICE, s = e % SLICE;
            const long long gr = row0 + r, gk = k0 + s;
            float v = 0.0f;
            if (gr < m && gk < k) v = trans_a ? a[gk * m + gr] : a[gr * k + gk];
            as[s][r] = v;
        }
        for (int e = tid; e < TILE * SLICE; e += 256) {
            const int s = e / TILE, col = e % TILE;
            const long long gk = k0 + s, gc = col0 + col;
            float v = 0.0f;
            if (gk < k && gc < n) v = trans_b ? b[gc * k + gk] : b[gk * n + gc];
            bs[s][col] = v;
        }
        __syncthreads();
        for (int s = 0; s < SLICE; ++s) {
            float ar[PER_THREAD], br[PER_THREAD];
            for (int i = 0; i < PER_THREAD; ++i) ar[i] = as[s][ty * PER_THREAD + i];
            for (int j = 0; j < PER_THREAD; ++j) br[j] = bs[s][tx * PER_THREAD + j];
            for (int i = 0; i < PER_THREAD; ++i)
                for (int j = 0; j < PER_THREAD; ++j) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < PER_THREAD; ++i) {
        const long long r = row0 + ty * PER_THREAD + i;
        if (r >= m) continue;
        for (int j = 0; j < PER_THREAD; ++j) {
            const long long col = col0 + tx * PER_THREAD + j;
            if (col < n) c[r * n + col] = alpha * acc[i][j];
        }
    }
}
