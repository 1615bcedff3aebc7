// One Adam step with PyTorch's arithmetic (torch.optim.Adam, no weight decay, not amsgrad), the twin of
// the CPU engine's, term for term: m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
// p ← p − step_size · m / (sqrt(v) / sqrt(1−β2ᵗ) + eps), with step_size = lr / (1−β1ᵗ) and
// sqrt(1−β2ᵗ) computed once on the host in f64, as PyTorch does.
extern "C" __global__ void adam_step_f32(float* param_out, float* m_out, float* v_out, const float* param,
                                         const float* grad, const float* m, const float* v, long long n,
                                         float beta1, float beta2, float eps, float step_size,
                                         float bias_correction2_sqrt) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float g = grad[i];
        const float m_new = beta1 * m[i] + (1.0f - beta1) * g;
        const float v_new = beta2 * v[i] + (1.0f - beta2) * g * g;
        const float denom = sqrtf(v_new) / bias_correction2_sqrt + eps;
        param_out[i] = param[i] - step_size * m_new / denom;
        m_out[i] = m_new;
        v_out[i] = v_new;
    }
}
