// Layout changes — permute, slice, concat, index-select — the twins of the CPU engine's. They move
// 32-bit words, so one kernel serves f32 and i32 tensors alike. Each thread writes one output element.

#define MAX_DIMS 6

struct Layout {
    int rank;
    long long out_shape[MAX_DIMS];
    // For each output axis, the stride of the input axis it comes from.
    long long in_stride[MAX_DIMS];
};

// A general permute of a contiguous tensor: walks the output in order and reads the input through
// permuted strides.
extern "C" __global__ void permute_b32(unsigned int* out, const unsigned int* x, long long n, Layout l) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long rest = i, src = 0;
        for (int d = l.rank - 1; d >= 0; --d) {
            src += (rest % l.out_shape[d]) * l.in_stride[d];
            rest /= l.out_shape[d];
        }
        out[i] = x[src];
    }
}

// out [outer, count, inner] = x [outer, len, inner] at start..start + count of the middle axis.
extern "C" __global__ void slice_b32(unsigned int* out, const unsigned int* x, long long outer, long long len,
                                     long long inner, long long start, long long count) {
    const long long n = outer * count * inner;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long in = i % inner, j = (i / inner) % count, o = i / (inner * count);
        out[i] = x[(o * len + start + j) * inner + in];
    }
}

// Writes one part of a concat: out [outer, out_len, inner] at offset..offset + part_len of the middle
// axis takes part [outer, part_len, inner].
extern "C" __global__ void place_b32(unsigned int* out, const unsigned int* part, long long outer,
                                     long long part_len, long long out_len, long long offset, long long inner) {
    const long long n = outer * part_len * inner;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long in = i % inner, j = (i / inner) % part_len, o = i / (inner * part_len);
        out[(o * out_len + offset + j) * inner + in] = part[i];
    }
}

// out [outer, count, inner] = x [outer, len, inner] at the (range-checked) indices of the middle axis.
extern "C" __global__ void index_select_b32(unsigned int* out, const unsigned int* x, const int* indices,
                                            long long outer, long long len, long long inner, long long count) {
    const long long n = outer * count * inner;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long in = i % inner, j = (i / inner) % count, o = i / (inner * count);
        out[i] = x[(o * len + indices[j]) * inner + in];
    }
}
