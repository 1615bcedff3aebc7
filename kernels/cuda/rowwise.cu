// Row-wise ops over the last axis of a contiguous f32 [rows, n] buffer: reductions, softmax,
// log-softmax and layer norm — the CUDA twins of the CPU engine's. One block per row; each thread
// strides over the row, then the block combines partial results through warp shuffles and shared memory.
// Accumulation is f32 with a max-shift for the softmax family, as on the CPU.

#define WARP 32
// NVRTC has no <math.h>: +∞ by its bits.
#define POS_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = WARP / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = WARP / 2; offset > 0; offset /= 2) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
    return v;
}

__device__ __forceinline__ float warp_min(float v) {
    for (int offset = WARP / 2; offset > 0; offset /= 2) v = fminf(v, __shfl_down_sync(0xffffffffu, v, offset));
    return v;
}

// kind: 0 sum, 1 max, 2 min. Every thread of the block gets the result.
__device__ float block_reduce(float v, int kind) {
    __shared__ float partial[WARP];
    __shared__ float result;
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    const int warps = (blockDim.x + WARP - 1) / WARP;
    v = kind == 0 ? warp_sum(v) : kind == 1 ? warp_max(v) : warp_min(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const float identity = kind == 0 ? 0.0f : kind == 1 ? -POS_INF : POS_INF;
        float w = lane < warps ? partial[lane] : identity;
        w = kind == 0 ? warp_sum(w) : kind == 1 ? warp_max(w) : warp_min(w);
        if (lane == 0) result = w;
    }
    __syncthreads();
    const float r = result;
    __syncthreads();  // `result` and `partial` are reused by the next call
    return r;
}

// op: 0 sum, 1 mean, 2 max, 3 min, 4 l2-norm; out has one value per row.
extern "C" __global__ void reduce_rows_f32(float* out, const float* x, long long rows, long long n, int op) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* r = x + row * n;
        float acc = op == 2 ? -POS_INF : op == 3 ? POS_INF : 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = r[i];
            if (op == 2) acc = fmaxf(acc, v);
            else if (op == 3) acc = fminf(acc, v);
            else if (op == 4) acc = fmaf(v, v, acc);
            else acc += v;
        }
        const float total = block_reduce(acc, op == 2 ? 1 : op == 3 ? 2 : 0);
        if (threadIdx.x == 0) {
            out[row] = op == 1 ? total / (float)n : op == 4 ? sqrtf(total) : total;
        }
    }
}

// log: 0 softmax, 1 log-softmax.
extern "C" __global__ void softmax_rows_f32(float* out, const float* x, long long rows, long long n, int log) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* r = x + row * n;
        float* o = out + row * n;
        float m = -POS_INF;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, r[i]);
        m = block_reduce(m, 1);
        float s = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) s += expf(r[i] - m);
        s = block_reduce(s, 0);
        if (log) {
            const float log_s = logf(s);
            for (long long i = threadIdx.x; i < n; i += blockDim.x) o[i] = r[i] - m - log_s;
        } else {
            const float inv = 1.0f / s;
            for (long long i = threadIdx.x; i < n; i += blockDim.x) o[i] = expf(r[i] - m) * inv;
        }
    }
}

// (x − mean) / sqrt(var + eps) · weight + bias over each row; var is the biased variance, as in PyTorch.
extern "C" __global__ void layer_norm_rows_f32(float* out, const float* x, const float* weight, const float* bias,
                                               long long rows, long long n, float eps) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* r = x + row * n;
        float* o = out + row * n;
        float s = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) s += r[i];
        const float mean = block_reduce(s, 0) / (float)n;
        float q = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            const float c = r[i] - mean;
            q = fmaf(c, c, q);
        }
        const float inv_std = rsqrtf(block_reduce(q, 0) / (float)n + eps);
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            o[i] = fmaf((r[i] - mean) * inv_std, weight[i], bias[i]);
        }
    }
}

// The backward passes of the row ops, one block per row as their forward kernels.

// Softmax VJP from the saved output y. log 0: dx = y (g − Σ g y); log 1: dx = g − exp(y) Σ g.
extern "C" __global__ void softmax_backward_rows_f32(float* dx, const float* y, const float* g, long long rows,
                                                     long long n, int log) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* yr = y + row * n;
        const float* gr = g + row * n;
        float* o = dx + row * n;
        float s = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) s += log ? gr[i] : gr[i] * yr[i];
        s = block_reduce(s, 0);
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            o[i] = log ? gr[i] - expf(yr[i]) * s : yr[i] * (gr[i] - s);
        }
    }
}

// Layer-norm VJP: dx = rstd (ĝ − mean ĝ − x̂ mean(ĝ x̂)) with ĝ = g w, and g x̂ (summed over rows by the
// caller for the weight's gradient). The statistics are recomputed as layer_norm_rows_f32 computes them.
extern "C" __global__ void layer_norm_backward_rows_f32(float* dx, float* g_xhat, const float* x,
                                                        const float* weight, const float* g, long long rows,
                                                        long long n, float eps) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* r = x + row * n;
        const float* gr = g + row * n;
        float s = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) s += r[i];
        const float mean = block_reduce(s, 0) / (float)n;
        float q = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            const float c = r[i] - mean;
            q = fmaf(c, c, q);
        }
        const float inv_std = rsqrtf(block_reduce(q, 0) / (float)n + eps);
        float a = 0.0f, b = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            const float gw = gr[i] * weight[i];
            a += gw;
            b = fmaf(gw, (r[i] - mean) * inv_std, b);
        }
        const float mean_gw = block_reduce(a, 0) / (float)n;
        const float mean_gw_xhat = block_reduce(b, 0) / (float)n;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            const float xhat = (r[i] - mean) * inv_std;
            dx[row * n + i] = inv_std * (gr[i] * weight[i] - mean_gw - xhat * mean_gw_xhat);
            g_xhat[row * n + i] = gr[i] * xhat;
        }
    }
}

// Cross-entropy: loss = lse − x[label] per row (0 where the label is `ignore`), and the row's
// log-sum-exp for the backward pass. Labels were range-checked on the host.
extern "C" __global__ void cross_entropy_rows_f32(float* loss, float* lse, const float* x, const int* labels,
                                                  long long rows, long long n, int ignore) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* r = x + row * n;
        float m = -POS_INF;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, r[i]);
        m = block_reduce(m, 1);
        float s = 0.0f;
        for (long long i = threadIdx.x; i < n; i += blockDim.x) s += expf(r[i] - m);
        s = block_reduce(s, 0);
        if (threadIdx.x == 0) {
            const float l = logf(s) + m;
            lse[row] = l;
            loss[row] = labels[row] == ignore ? 0.0f : l - r[labels[row]];
        }
    }
}

// Cross-entropy VJP: dx = g[row] (softmax(x) − onehot(label)), 0 on rows labelled `ignore`.
extern "C" __global__ void cross_entropy_backward_rows_f32(float* dx, const float* x, const float* lse,
                                                           const int* labels, const float* g, long long rows,
                                                           long long n, int ignore) {
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* r = x + row * n;
        float* o = dx + row * n;
        const int label = labels[row];
        const float scale = label == ignore ? 0.0f : g[row];
        const float shift = lse[row];
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            o[i] = scale * (expf(r[i] - shift) - (i == label ? 1.0f : 0.0f));
        }
    }
}

// The same families along a middle axis: x viewed as [outer, len, inner], one thread per (outer, inner)
// column walking its `len` entries, so neighbouring threads read neighbouring addresses.
extern "C" __global__ void reduce_strided_f32(float* out, const float* x, long long outer, long long len,
                                              long long inner, int op) {
    const long long columns = outer * inner;
    for (long long col = blockIdx.x * (long long)blockDim.x + threadIdx.x; col < columns;
         col += (long long)gridDim.x * blockDim.x) {
        const float* c = x + (col / inner) * len * inner + col % inner;
        float acc = op == 2 ? -POS_INF : op == 3 ? POS_INF : 0.0f;
        for (long long j = 0; j < len; ++j) {
            const float v = c[j * inner];
            if (op == 2) acc = fmaxf(acc, v);
            else if (op == 3) acc = fminf(acc, v);
            else if (op == 4) acc = fmaf(v, v, acc);
            else acc += v;
        }
        out[col] = op == 1 ? acc / (float)len : op == 4 ? sqrtf(acc) : acc;
    }
}

extern "C" __global__ void softmax_strided_f32(float* out, const float* x, long long outer, long long len,
                                               long long inner, int log) {
    const long long columns = outer * inner;
    for (long long col = blockIdx.x * (long long)blockDim.x + threadIdx.x; col < columns;
         col += (long long)gridDim.x * blockDim.x) {
        const long long base = (col / inner) * len * inner + col % inner;
        float m = -POS_INF;
        for (long long j = 0; j < len; ++j) m = fmaxf(m, x[base + j * inner]);
        float s = 0.0f;
        for (long long j = 0; j < len; ++j) s += expf(x[base + j * inner] - m);
        if (log) {
            const float log_s = logf(s);
            for (long long j = 0; j < len; ++j) out[base + j * inner] = x[base + j * inner] - m - log_s;
        } else {
            const float inv = 1.0f / s;
            for (long long j = 0; j < len; ++j) out[base + j * inner] = expf(x[base + j * inner] - m) * inv;
        }
    }
}

// Does candidate (v, i) beat the current best (bv, bi)? Larger value wins, the lower index on ties — the
// CPU engine's "first on ties". A NaN never wins, as `>` is false for it there too.
__device__ __forceinline__ bool beats(float v, long long i, float bv, long long bi) {
    return v > bv || (v == bv && i < bi) || (bi < 0 && v == v);
}

// Position of the largest value of each row (last axis), as i32; one block per row.
extern "C" __global__ void argmax_rows_f32(int* out, const float* x, long long rows, long long n) {
    __shared__ float best_v[WARP];
    __shared__ long long best_i[WARP];
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const float* r = x + row * n;
        float bv = -POS_INF;
        long long bi = -1;  // none yet
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            if (beats(r[i], i, bv, bi)) {
                bv = r[i];
                bi = i;
            }
        }
        for (int o = WARP / 2; o > 0; o /= 2) {
            const float ov = __shfl_down_sync(0xffffffffu, bv, o);
            const long long oi = __shfl_down_sync(0xffffffffu, bi, o);
            if (oi >= 0 && beats(ov, oi, bv, bi)) {
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
            for (int w = 1; w < (blockDim.x + WARP - 1) / WARP; ++w) {
                if (best_i[w] >= 0 && beats(best_v[w], best_i[w], bv, bi)) {
                    bv = best_v[w];
                    bi = best_i[w];
                }
            }
            // The CPU's sequential scan never moves off a leading NaN: 0 then, and for an all-NaN row.
            out[row] = (bi < 0 || r[0] != r[0]) ? 0 : (int)bi;
        }
        __syncthreads();
    }
}

// Argmax along a middle axis of [outer, len, inner]: one thread per column, first index on ties.
extern "C" __global__ void argmax_strided_f32(int* out, const float* x, long long outer, long long len,
                                              long long inner) {
    const long long columns = outer * inner;
    for (long long col = blockIdx.x * (long long)blockDim.x + threadIdx.x; col < columns;
         col += (long long)gridDim.x * blockDim.x) {
        const float* c = x + (col / inner) * len * inner + col % inner;
        long long best = 0;
        for (long long j = 1; j < len; ++j) {
            if (c[j * inner] > c[best * inner]) best = j;
        }
        out[col] = (int)best;
    }
}
