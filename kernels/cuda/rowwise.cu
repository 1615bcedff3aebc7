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
