// Sparse codes (TopK SAEs): the twins of the CPU engine's sparse_matmul and gather_dot. `values` and
// `indices` are [n, k] (indices validated on the host), `table` [m, d]. One block per row i; threads
// stride over the d columns, so the k table rows are read coalesced.

// out[i, :] = Σ_j values[i, j] · table[indices[i, j], :]
extern "C" __global__ void sparse_matmul_f32(float* out, const float* values, const int* indices,
                                             const float* table, long long n, long long k, long long d) {
    for (long long i = blockIdx.x; i < n; i += gridDim.x) {
        for (long long c = threadIdx.x; c < d; c += blockDim.x) {
            float acc = 0.0f;
            for (long long j = 0; j < k; ++j) {
                acc = fmaf(values[i * k + j], table[(long long)indices[i * k + j] * d + c], acc);
            }
            out[i * d + c] = acc;
        }
    }
}

// out[i, j] = lhs[i, :] · table[indices[i, j], :]; one warp per (i, j).
extern "C" __global__ void gather_dot_f32(float* out, const float* lhs, const int* indices, const float* table,
                                          long long n, long long k, long long d) {
    const long long warps_per_block = blockDim.x / 32;
    const long long lane = threadIdx.x % 32;
    for (long long pair = blockIdx.x * warps_per_block + threadIdx.x / 32; pair < n * k;
         pair += (long long)gridDim.x * warps_per_block) {
        const long long i = pair / k;
        const float* a = lhs + i * d;
        const float* b = table + (long long)indices[pair] * d;
        float acc = 0.0f;
        for (long long c = lane; c < d; c += 32) acc = fmaf(a[c], b[c], acc);
        for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
        if (lane == 0) out[pair] = acc;
    }
}

// out[r, :] = Σ over the pairs p = i·k + j with indices[i, j] = r of values[p] · rhs[i, :]. The host
// groups the pairs by row (`row_start` [rows + 1], `pairs` in ascending p within a row), so each output
// row is summed by one block in the CPU engine's order: deterministic, no atomics.
extern "C" __global__ void scatter_outer_f32(float* out, const float* values, const float* rhs,
                                             const int* row_start, const int* pairs, long long rows,
                                             long long k, long long d) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const int begin = row_start[r], end = row_start[r + 1];
        for (long long c = threadIdx.x; c < d; c += blockDim.x) {
            float acc = 0.0f;
            for (int p = begin; p < end; ++p) {
                const long long pair = pairs[p];
                acc = fmaf(values[pair], rhs[(pair / k) * d + c], acc);
            }
            out[r * d + c] = acc;
        }
    }
}
