// RepOps kernels for NVIDIA GPUs: each output element is the reference's (primitives/src/repops)
// sequence of IEEE-754 binary32 operations, bit for bit.
//
// Every rounding is explicit: `__fadd_rn`, `__fsub_rn`, `__fmul_rn`, `__fdiv_rn`, `__fsqrt_rn`
// and `__fmaf_rn` are never contracted or reassociated by the compiler, whatever its `--fmad`
// setting (CubeCL compiles with NVRTC's default, which lets a plain `a * b + c` become one fused
// multiply-add and round once where the reference rounds twice). Subnormals are kept (NVRTC's
// default `-ftz=false`). A NaN is made the canonical `0x7fc00000` by inline PTX (`testp`/`selp`),
// which the compiler cannot fold away as it may an `isnan` test (and the GPU's own NaN is
// `0x7fffffff`). No split-k, no tensor cores, no atomics: each output is computed by one thread
// in the reference's order.
//
// The constants (`EXP_*`, `LN_*`, ...) are defined ahead of this file from the reference's own
// (src/cuda/mod.rs), so they cannot drift from it, with `PARAMS_BY_VALUE`. Scalars (sizes,
// hyperparameters as bits) arrive as the last kernel parameter, CubeCL's "info" argument: a
// 16-word struct passed by value where the GPU supports it (as CubeCL passes its own), else a
// pointer to it in device memory. `P(i)` reads word `i`, `PF(i)` reads it as a float.

typedef unsigned int u32;

struct Params {
    u32 v[16];
};
#if PARAMS_BY_VALUE
#define PARAMS const Params params
#define P(i) (params.v[i])
#else
#define PARAMS const Params* __restrict__ params_ptr
#define P(i) (params_ptr->v[i])
#endif
#define PF(i) __uint_as_float(P(i))

__device__ __forceinline__ float canon(float x) {
    float r;
    asm("{\n\t.reg .pred nan;\n\ttestp.notanumber.f32 nan, %1;\n\tselp.f32 %0, 0f7FC00000, %1, nan;\n\t}"
        : "=f"(r)
        : "f"(x));
    return r;
}
__device__ __forceinline__ bool is_nan(float x) {
    return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u;
}
__device__ __forceinline__ float r_add(float a, float b) { return canon(__fadd_rn(a, b)); }
__device__ __forceinline__ float r_sub(float a, float b) { return canon(__fsub_rn(a, b)); }
__device__ __forceinline__ float r_mul(float a, float b) { return canon(__fmul_rn(a, b)); }
__device__ __forceinline__ float r_div(float a, float b) { return canon(__fdiv_rn(a, b)); }
__device__ __forceinline__ float r_sqrt(float x) { return canon(__fsqrt_rn(x)); }

// 2^k for -126 <= k <= 127 (k clamped like the reference's `pow2`).
__device__ __forceinline__ float pow2(int k) {
    int b = k + 127;
    b = b < 1 ? 1 : (b > 254 ? 254 : b);
    return __uint_as_float(((u32)b) << 23);
}

// Horner's rule as the reference writes it: p = c[N-1], then p = p * x + c[i] (two roundings)
// for i = N-2 down to 0.
template <int N>
__device__ __forceinline__ float horner(const float (&c)[N], float x) {
    float p = c[N - 1];
#pragma unroll
    for (int i = N - 2; i >= 0; i--) p = r_add(r_mul(p, x), c[i]);
    return p;
}

// The reference's `exp`.
__device__ float r_exp(float x) {
    if (is_nan(x)) return CANONICAL_NAN;
    if (x > EXP_MAX) return __uint_as_float(0x7f800000u);
    if (x < EXP_MIN) return 0.0f;
    float kf = r_sub(r_add(r_mul(x, LOG2_E), ROUND_MAGIC), ROUND_MAGIC);
    float r = r_sub(r_sub(x, r_mul(kf, LN2_HI)), r_mul(kf, LN2_LO));
    const float c[8] = {EXP_C0, EXP_C1, EXP_C2, EXP_C3, EXP_C4, EXP_C5, EXP_C6, EXP_C7};
    const float p = horner(c, r);
    int k = (int)kf;
    int k1 = k / 2;
    int k2 = k - k1;
    return r_mul(r_mul(p, pow2(k1)), pow2(k2));
}

// The reference's `ln`.
__device__ float r_ln(float x) {
    if (is_nan(x) || x < 0.0f) return CANONICAL_NAN;
    if (x == 0.0f) return __uint_as_float(0xff800000u);
    if (x == __uint_as_float(0x7f800000u)) return x;
    u32 bits = __float_as_uint(x);
    int e = 0;
    if (bits < 0x00800000u) {
        bits = __float_as_uint(r_mul(x, pow2(25)));
        e = -25;
    }
    e = e + ((int)(bits >> 23) - 127);
    float m = __uint_as_float((bits & 0x007fffffu) | 0x3f800000u);
    if (m > SQRT_2) {
        m = r_mul(m, 0.5f);
        e = e + 1;
    }
    float f = r_sub(m, 1.0f);
    float s = r_div(f, r_add(2.0f, f));
    float z = r_mul(s, s);
    const float c[7] = {LN_C0, LN_C1, LN_C2, LN_C3, LN_C4, LN_C5, LN_C6};
    const float p = horner(c, z);
    float ln_m = r_add(r_add(s, s), r_mul(r_mul(s, z), p));
    float ef = (float)e;
    return r_add(r_mul(ef, LN2_HI), r_add(ln_m, r_mul(ef, LN2_LO)));
}

// ---- Matrix products -------------------------------------------------------------------------
//
// C (M x N) = op(A) . op(B); each C[i][j] = fma over k ascending from +0.0, in one thread's
// registers. A block computes a 64 x 64 tile of C with 256 threads (4 x 4 each), staging 16-deep
// slices of A and B in shared memory. Only the k < K of the last slice enter the chain (an extra
// fma(0, 0, acc) would turn an accumulated -0.0 into +0.0).

#define BM 64
#define BN 64
#define BK 16

// One k of a thread's 4 x 4 outputs: acc[r][c] = fma(A[row r][k], B[k][col c], acc[r][c]).
__device__ __forceinline__ void fma_step(float (&acc)[4][4], const float* a_k, const float* b_k,
                                         u32 tx, u32 ty) {
    float a[4], b[4];
#pragma unroll
    for (int r = 0; r < 4; r++) a[r] = a_k[ty + 16 * r];
#pragma unroll
    for (int c = 0; c < 4; c++) b[c] = b_k[tx + 16 * c];
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[r][c] = __fmaf_rn(a[r], b[c], acc[r][c]);
}

// Stages a BK-deep slice (k0 ..) of an operand in shared memory as tile[kk][x], x < 64 being the
// tile's rows (of A) or columns (of B) from x0: element (x, k) of the operand is
// src[k * ld + x] when K_MAJOR, else src[x * ld + k]. Outside the matrix (x >= extent or
// k >= K) it stores 0, which no chain reads.
template <bool K_MAJOR>
__device__ __forceinline__ void stage(const float* __restrict__ src, float (*tile)[BM + 1],
                                      u32 x0, u32 extent, u32 k0, u32 K, u32 ld) {
    for (u32 idx = threadIdx.x; idx < BM * BK; idx += 256) {
        u32 x, kk;
        if (K_MAJOR) { kk = idx / BM; x = idx % BM; }
        else { x = idx / BK; kk = idx % BK; }
        const u32 gx = x0 + x, gk = k0 + kk;
        float v = 0.0f;
        if (gx < extent && gk < K) v = K_MAJOR ? src[(size_t)gk * ld + gx] : src[(size_t)gx * ld + gk];
        tile[kk][x] = v;
    }
}

// LAYOUT 0: A is M x K, B is K x N (A . B)
// LAYOUT 1: A is K x M, B is K x N (A^T . B)
// LAYOUT 2: A is M x K, B is N x K (A . B^T)
template <int LAYOUT>
__device__ void gemm(const float* __restrict__ A, const float* __restrict__ B,
                     float* __restrict__ C, const u32 M, const u32 N, const u32 K) {
    __shared__ float As[BK][BM + 1];
    __shared__ float Bs[BK][BM + 1];  // BN == BM
    const u32 tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const u32 m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    float acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < 4; c++) acc[r][c] = 0.0f;

    for (u32 k0 = 0; k0 < K; k0 += BK) {
        stage<LAYOUT == 1>(A, As, m0, M, k0, K, LAYOUT == 1 ? M : K);
        stage<LAYOUT != 2>(B, Bs, n0, N, k0, K, LAYOUT == 2 ? K : N);
        __syncthreads();
        const u32 depth = (K - k0) < BK ? (K - k0) : BK;
        if (depth == BK) {
            // A whole slice: a constant trip count, unrolled.
#pragma unroll
            for (u32 kk = 0; kk < BK; kk++) fma_step(acc, As[kk], Bs[kk], tx, ty);
        } else {
            for (u32 kk = 0; kk < depth; kk++) fma_step(acc, As[kk], Bs[kk], tx, ty);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        u32 i = m0 + ty + 16 * r;
#pragma unroll
        for (int c = 0; c < 4; c++) {
            u32 j = n0 + tx + 16 * c;
            if (i < M && j < N) C[(size_t)i * N + j] = canon(acc[r][c]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256)
repops_matmul(const float* a, const float* b, float* out, PARAMS) { gemm<0>(a, b, out, P(0), P(1), P(2)); }
extern "C" __global__ void __launch_bounds__(256)
repops_matmul_tn(const float* a, const float* b, float* out, PARAMS) { gemm<1>(a, b, out, P(0), P(1), P(2)); }
extern "C" __global__ void __launch_bounds__(256)
repops_matmul_nt(const float* a, const float* b, float* out, PARAMS) { gemm<2>(a, b, out, P(0), P(1), P(2)); }

// ---- Elementwise (one thread per value; P(0) is the number of values) ------------------------

#define ELEMENTWISE_INDEX                                    \
    const u32 n = blockIdx.x * blockDim.x + threadIdx.x;   \
    if (n >= P(0)) return;

// X + b, b (1 x cols) added to every row; P(1) = cols.
extern "C" __global__ void repops_bias_add(const float* x, const float* b, float* out, PARAMS) {
    ELEMENTWISE_INDEX
    out[n] = r_add(x[n], b[n % P(1)]);
}

extern "C" __global__ void repops_relu(const float* x, float* out, PARAMS) {
    ELEMENTWISE_INDEX
    float v = x[n];
    out[n] = is_nan(v) ? CANONICAL_NAN : (v > 0.0f ? v : 0.0f);
}

extern "C" __global__ void repops_relu_backward(const float* x, const float* dy, float* out,
                                                PARAMS) {
    ELEMENTWISE_INDEX
    out[n] = x[n] > 0.0f ? canon(dy[n]) : 0.0f;
}

// The optimizers' updates; P(1..8) = lr, mu, b1, b2, eps, c1, c2 (as bits).
extern "C" __global__ void repops_momentum(const float* v, const float* g, float* out, PARAMS) {
    ELEMENTWISE_INDEX
    out[n] = r_add(r_mul(PF(2), v[n]), g[n]);
}

extern "C" __global__ void repops_sgd_step(const float* w, const float* v, float* out, PARAMS) {
    ELEMENTWISE_INDEX
    out[n] = r_sub(w[n], r_mul(PF(1), v[n]));
}

extern "C" __global__ void repops_adam_m(const float* m, const float* g, float* out, PARAMS) {
    ELEMENTWISE_INDEX
    const float b1 = PF(3);
    out[n] = r_add(r_mul(b1, m[n]), r_mul(r_sub(1.0f, b1), g[n]));
}

extern "C" __global__ void repops_adam_v(const float* v, const float* g, float* out, PARAMS) {
    ELEMENTWISE_INDEX
    const float b2 = PF(4);
    const float gn = g[n];
    out[n] = r_add(r_mul(b2, v[n]), r_mul(r_sub(1.0f, b2), r_mul(gn, gn)));
}

extern "C" __global__ void repops_adam_step(const float* w, const float* m, const float* v,
                                            float* out, PARAMS) {
    ELEMENTWISE_INDEX
    const float lr = PF(1), eps = PF(5), c1 = PF(6), c2 = PF(7);
    const float step = r_div(r_mul(lr, r_div(m[n], c1)), r_add(r_sqrt(r_div(v[n], c2)), eps));
    out[n] = r_sub(w[n], step);
}

// ---- Reductions (one thread per sum, in the reference's order) -------------------------------

// Column sums of a rows x cols matrix, top to bottom; P(0) = rows, P(1) = cols.
extern "C" __global__ void repops_col_sum(const float* x, float* out, PARAMS) {
    const u32 j = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 rows = P(0), cols = P(1);
    if (j >= cols) return;
    float acc = 0.0f;
    for (u32 i = 0; i < rows; i++) acc = r_add(acc, x[(size_t)i * cols + j]);
    out[j] = acc;
}

// The mean of P(0) values, left to right, by one thread.
extern "C" __global__ void repops_mean(const float* x, float* out, PARAMS) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    const u32 len = P(0);
    float acc = 0.0f;
    for (u32 i = 0; i < len; i++) acc = r_add(acc, x[i]);
    out[0] = r_div(acc, (float)len);
}

// The reference's running row maximum: from the first value (canonical), NaN if any is NaN.
__device__ float row_max(const float* row, u32 cols) {
    float m = cols > 0 ? canon(row[0]) : 0.0f;
    for (u32 j = 1; j < cols; j++) {
        float v = row[j];
        if (is_nan(m) || is_nan(v)) m = CANONICAL_NAN;
        else if (v > m) m = v;
    }
    return m;
}

// A row's maximum and sum of e^(z_j - max), left to right.
__device__ __forceinline__ void softmax_sums(const float* row, u32 cols, float* m, float* total) {
    *m = row_max(row, cols);
    float sum = 0.0f;
    for (u32 j = 0; j < cols; j++) sum = r_add(sum, r_exp(r_sub(row[j], *m)));
    *total = sum;
}

// Per-row softmax cross-entropy of rows x cols logits; one thread per row; P(0) = rows,
// P(1) = cols; labels were checked (< cols) before the launch.
extern "C" __global__ void repops_softmax_xent(const float* logits, const u32* labels, float* out,
                                               PARAMS) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 rows = P(0), cols = P(1);
    if (i >= rows) return;
    const float* row = logits + (size_t)i * cols;
    float m, total;
    softmax_sums(row, cols, &m, &total);
    out[i] = r_sub(r_ln(total), r_sub(row[labels[i]], m));
}

// Its batch-mean gradient: (e^(z_j - max) / sum - [j == y]) / rows.
extern "C" __global__ void repops_softmax_xent_backward(const float* logits, const u32* labels,
                                                        float* out, PARAMS) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 rows = P(0), cols = P(1);
    if (i >= rows) return;
    const float* row = logits + (size_t)i * cols;
    float m, total;
    softmax_sums(row, cols, &m, &total);
    const float b = (float)rows;
    const u32 y = labels[i];
    for (u32 j = 0; j < cols; j++) {
        const float prob = r_div(r_exp(r_sub(row[j], m)), total);
        const float g = j == y ? r_sub(prob, 1.0f) : prob;
        out[(size_t)i * cols + j] = r_div(g, b);
    }
}

// Per-row squared error (y - t)^2 of a rows x 1 output against targets given as their f32
// bits (canonical if NaN); one thread per row; P(0) = rows.
extern "C" __global__ void repops_squared_error(const float* y, const u32* targets, float* out,
                                                PARAMS) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 rows = P(0);
    if (i >= rows) return;
    const float d = r_sub(y[i], canon(__uint_as_float(targets[i])));
    out[i] = r_mul(d, d);
}

// Its batch-mean gradient: (2 (y - t)) / rows.
extern "C" __global__ void repops_squared_error_backward(const float* y, const u32* targets,
                                                         float* out, PARAMS) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 rows = P(0);
    if (i >= rows) return;
    const float d = r_sub(y[i], canon(__uint_as_float(targets[i])));
    out[i] = r_div(r_mul(2.0f, d), (float)rows);
}
