// Element-wise ops on contiguous f32 buffers: the CUDA twins of the CPU engine's unary and binary
// families. One thread per element, grid-stride loops so any launch size covers any length. Binary ops
// take the broadcast already resolved into strides of the output's shape (up to 6 axes), as the CPU
// engine does.

#define MAX_DIMS 6

struct Strides {
    int rank;
    long long shape[MAX_DIMS];
    long long lhs[MAX_DIMS];
    long long rhs[MAX_DIMS];
};

__device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; // sqrt(2 / pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float gelu_erf(float x) {
    return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

// op: 0 relu, 1 gelu-tanh, 2 gelu-erf, 3 exp, 4 log, 5 sqrt, 6 abs, 7 neg, 8 tanh, 9 sigmoid, 10 erf
extern "C" __global__ void unary_f32(float* out, const float* x, long long n, int op) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        float r;
        switch (op) {
            case 0: r = v > 0.0f ? v : 0.0f; break;
            case 1: r = gelu_tanh(v); break;
            case 2: r = gelu_erf(v); break;
            case 3: r = expf(v); break;
            case 4: r = logf(v); break;
            case 5: r = sqrtf(v); break;
            case 6: r = fabsf(v); break;
            case 7: r = -v; break;
            case 8: r = tanhf(v); break;
            case 10: r = erff(v); break;
            default: r = 1.0f / (1.0f + expf(-v)); break;
        }
        out[i] = r;
    }
}

// dx = g · gelu′(x). tanh_form 1: s + 2x s (1 − s) u′ with s = sigmoid(2u), u = c(x + a x³);
// tanh_form 0 (exact): Φ(x) + x φ(x).
extern "C" __global__ void gelu_backward_f32(float* dx, const float* x, const float* g, long long n, int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i];
        float d;
        if (tanh_form) {
            const float c = 0.7978845608028654f, a = 0.044715f;
            const float v2 = v * v;
            const float s = 1.0f / (1.0f + expf(-2.0f * c * v * (1.0f + a * v2)));
            d = s + 2.0f * v * s * (1.0f - s) * c * (1.0f + 3.0f * a * v2);
        } else {
            const float cdf = 0.5f * (1.0f + erff(v * 0.7071067811865476f));
            d = cdf + v * 0.3989422804014327f * expf(-0.5f * v * v);
        }
        dx[i] = g[i] * d;
    }
}

// op: 0 add, 1 sub, 2 mul, 3 div, 4 maximum, 5 minimum, 6 greater, 7 less, 8 equal
__device__ __forceinline__ float binary(float a, float b, int op) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return fmaxf(a, b);
        case 5: return fminf(a, b);
        case 6: return a > b ? 1.0f : 0.0f;
        case 7: return a < b ? 1.0f : 0.0f;
        default: return a == b ? 1.0f : 0.0f;
    }
}

extern "C" __global__ void binary_f32(float* out, const float* lhs, const float* rhs, long long n, int op,
                                      Strides s) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long rest = i, l = 0, r = 0;
        for (int d = s.rank - 1; d >= 0; --d) {
            long long coord = rest % s.shape[d];
            rest /= s.shape[d];
            l += coord * s.lhs[d];
            r += coord * s.rhs[d];
        }
        out[i] = binary(lhs[l], rhs[r], op);
    }
}

// out = x * mul + add
extern "C" __global__ void affine_f32(float* out, const float* x, long long n, float mul, float add) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = fmaf(x[i], mul, add);
    }
}

// Limits every element to [lo, hi]; NaN stays NaN, as Rust's f32::clamp.
extern "C" __global__ void clamp_f32(float* out, const float* x, long long n, float lo, float hi) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i];
        out[i] = v < lo ? lo : (v > hi ? hi : v);
    }
}

struct Strides3 {
    int rank;
    long long shape[MAX_DIMS];
    long long cond[MAX_DIMS];
    long long on_true[MAX_DIMS];
    long long on_false[MAX_DIMS];
};

// out = cond != 0 ? on_true : on_false, the three operands broadcast to the output through their strides.
extern "C" __global__ void where_f32(float* out, const float* cond, const float* on_true, const float* on_false,
                                     long long n, Strides3 s) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long rest = i, c = 0, t = 0, f = 0;
        for (int d = s.rank - 1; d >= 0; --d) {
            const long long coord = rest % s.shape[d];
            rest /= s.shape[d];
            c += coord * s.cond[d];
            t += coord * s.on_true[d];
            f += coord * s.on_false[d];
        }
        out[i] = cond[c] != 0.0f ? on_true[t] : on_false[f];
    }
}

// Entries above the causal diagonal of each [q, k] matrix set to `fill`: query i keeps keys 0..=i + k − q.
extern "C" __global__ void causal_mask_f32(float* out, const float* x, long long n, long long q, long long k,
                                           float fill) {
    const long long shift = k - q;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long key = i % k, query = (i / k) % q;
        out[i] = key > query + shift ? fill : x[i];
    }
}

// f32 → i32 truncating toward zero, saturating, NaN → 0: Rust's `as`, and PTX's cvt.rzi.s32.f32.
extern "C" __global__ void f32_to_i32(int* out, const float* x, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = __float2int_rz(x[i]);
    }
}

// i32 → f32, rounding to nearest as Rust's `as`.
extern "C" __global__ void i32_to_f32(float* out, const int* x, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = (float)x[i];
    }
}
