// Gathers and layout changes, the twins of the CPU engine's embedding, index_select and permute.

// out[i, :] = table[ids[i], :] for `ids` already checked in range on the host; one block per id.
extern "C" __global__ void embedding_f32(float* out, const float* table, const int* ids, long long count,
                                         long long d) {
    for (long long i = blockIdx.x; i < count; i += gridDim.x) {
        const float* src = table + (long long)ids[i] * d;
        for (long long c = threadIdx.x; c < d; c += blockDim.x) out[i * d + c] = src[c];
    }
}

#define MAX_DIMS 6

struct Layout {
    int rank;
    long long out_shape[MAX_DIMS];
    // For each output axis, the stride of the input axis it comes from.
    long long in_stride[MAX_DIMS];
};

// A general permute (transpose, reshape-with-copy) of a contiguous tensor: walks the output in order
// and reads the input through permuted strides.
extern "C" __global__ void permute_f32(float* out, const float* x, long long n, Layout l) {
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
