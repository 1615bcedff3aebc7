// Attention in TransformerLens' [batch, pos, head, d_head] layout, the twins of the CPU engine's
// attention_pattern and attention_values: pattern = softmax(scale · q kᵀ) per batch and head, with
// keys after a query's position masked to 0 when causal (queries are the last q_len of k_len positions);
// z = pattern · v. One block per (batch, head, query) row.

#define WARP 32
#define POS_INF __int_as_float(0x7f800000)

__device__ float block_max(float v) {
    __shared__ float partial[WARP];
    __shared__ float result;
    for (int o = WARP / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    if (threadIdx.x % WARP == 0) partial[threadIdx.x / WARP] = v;
    __syncthreads();
    if (threadIdx.x < WARP) {
        float w = threadIdx.x < (blockDim.x + WARP - 1) / WARP ? partial[threadIdx.x] : -POS_INF;
        for (int o = WARP / 2; o > 0; o /= 2) w = fmaxf(w, __shfl_down_sync(0xffffffffu, w, o));
        if (threadIdx.x == 0) result = w;
    }
    __syncthreads();
    const float r = result;
    __syncthreads();
    return r;
}

__device__ float block_sum(float v) {
    __shared__ float partial[WARP];
    __shared__ float result;
    for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
    if (threadIdx.x % WARP == 0) partial[threadIdx.x / WARP] = v;
    __syncthreads();
    if (threadIdx.x < WARP) {
        float w = threadIdx.x < (blockDim.x + WARP - 1) / WARP ? partial[threadIdx.x] : 0.0f;
        for (int o = WARP / 2; o > 0; o /= 2) w += __shfl_down_sync(0xffffffffu, w, o);
        if (threadIdx.x == 0) result = w;
    }
    __syncthreads();
    const float r = result;
    __syncthreads();
    return r;
}

// pattern [batch, heads, q_len, k_len] from q [batch, q_len, heads, d] and k [batch, k_len, heads, d].
extern "C" __global__ void attention_pattern_f32(float* pattern, const float* q, const float* k, long long batch,
                                                 long long heads, long long q_len, long long k_len, long long d,
                                                 float scale, int causal) {
    const long long rows = batch * heads * q_len;
    const long long shift = k_len - (q_len < k_len ? q_len : k_len);
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const long long t = row % q_len, h = (row / q_len) % heads, b = row / (q_len * heads);
        const float* qr = q + ((b * q_len + t) * heads + h) * d;
        float* out = pattern + row * k_len;
        long long visible = causal ? t + shift + 1 : k_len;
        if (visible > k_len) visible = k_len;
        float m = -POS_INF;
        for (long long j = threadIdx.x; j < visible; j += blockDim.x) {
            const float* kr = k + ((b * k_len + j) * heads + h) * d;
            float s = 0.0f;
            for (long long c = 0; c < d; ++c) s = fmaf(qr[c], kr[c], s);
            s *= scale;
            out[j] = s;
            m = fmaxf(m, s);
        }
        m = block_max(m);
        float sum = 0.0f;
        for (long long j = threadIdx.x; j < visible; j += blockDim.x) {
            const float e = expf(out[j] - m);
            out[j] = e;
            sum += e;
        }
        const float inv = 1.0f / block_sum(sum);
        for (long long j = threadIdx.x; j < k_len; j += blockDim.x) out[j] = j < visible ? out[j] * inv : 0.0f;
    }
}

// z [batch, q_len, heads, d] = pattern [batch, heads, q_len, k_len] · v [batch, k_len, heads, d].
extern "C" __global__ void attention_values_f32(float* z, const float* pattern, const float* v, long long batch,
                                                long long heads, long long q_len, long long k_len, long long d) {
    const long long rows = batch * heads * q_len;
    for (long long row = blockIdx.x; row < rows; row += gridDim.x) {
        const long long t = row % q_len, h = (row / q_len) % heads, b = row / (q_len * heads);
        const float* p = pattern + row * k_len;
        float* out = z + ((b * q_len + t) * heads + h) * d;
        for (long long c = threadIdx.x; c < d; c += blockDim.x) {
            float acc = 0.0f;
            for (long long j = 0; j < k_len; ++j) acc = fmaf(p[j], v[((b * k_len + j) * heads + h) * d + c], acc);
            out[c] = acc;
        }
    }
}
