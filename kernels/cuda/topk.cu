// Top-k along the last axis of a contiguous f32 [rows, n] buffer, the twin of the CPU engine's top_k:
// the k largest values of each row, sorted descending, ties to the lower index, with their i32 indices.
// One block per row; k passes, each finding the next entry in (value descending, index ascending) order
// after the previous one — O(k·n) per row, fine for the small k of TopK SAEs and sampling.

#define WARP 32
#define POS_INF __int_as_float(0x7f800000)

// (value, index) pairs ordered by value descending, then index ascending: `a` comes first?
__device__ __forceinline__ bool first(float av, long long ai, float bv, long long bi) {
    return av > bv || (av == bv && ai < bi);
}

extern "C" __global__ void top_k_f32(float* values, int* indices, const float* x, long long rows, long long n,
                                     long long k) {
    __shared__ float best_v[WARP];
    __shared__ long long best_i[WARP];
    __shared__ float prev_v;
    __shared__ long long prev_i;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* r = x + row * n;
        if (threadIdx.x == 0) {
            prev_v = POS_INF;
            prev_i = -1;
        }
        __syncthreads();
        for (long long pass = 0; pass < k; ++pass) {
            const float pv = prev_v;
            const long long pi = prev_i;
            float bv = -POS_INF;
            long long bi = n;  // "none"
            for (long long i = threadIdx.x; i < n; i += blockDim.x) {
                const float v = r[i];
                // Only entries after the previous pick in the order are candidates.
                if (first(pv, pi, v, i) && (bi == n || first(v, i, bv, bi))) {
                    bv = v;
                    bi = i;
                }
            }
            for (int o = WARP / 2; o > 0; o /= 2) {
                const float ov = __shfl_down_sync(0xffffffffu, bv, o);
                const long long oi = __shfl_down_sync(0xffffffffu, bi, o);
                if (oi != n && (bi == n || first(ov, oi, bv, bi))) {
                    bv = ov;
                    bi = oi;
                }
            }
            if (threadIdx.x % WARP == 0) {
                best_v[threadIdx.x / WARP] = bv;
                best_i[threadIdx.x / WARP] = bi;
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                float v = best_v[0];
                long long i = best_i[0];
                for (int w = 1; w < (blockDim.x + WARP - 1) / WARP; ++w) {
                    if (best_i[w] != n && (i == n || first(best_v[w], best_i[w], v, i))) {
                        v = best_v[w];
                        i = best_i[w];
                    }
                }
                values[row * k + pass] = v;
                indices[row * k + pass] = (int)i;
                prev_v = v;
                prev_i = i;
            }
            __syncthreads();
        }
    }
}

// keep_top_k's second half: `out` [rows, n] arrives zeroed and receives each row's top-k values at their
// indices (from top_k_f32).
extern "C" __global__ void scatter_rows_f32(float* out, const float* values, const int* indices, long long rows,
                                            long long n, long long k) {
    const long long total = rows * k;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < total;
         p += (long long)gridDim.x * blockDim.x) {
        out[(p / k) * n + indices[p]] = values[p];
    }
}
