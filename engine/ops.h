// Kernels of the forward pass. Each SIMD kernel has a plain scalar twin in namespace `scalar`; tests
// compare the two on odd sizes. SIMD variants (AVX2+FMA+F16C, AVX-512) are chosen at run time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "engine/dtype.h"
#include "engine/thread_pool.h"

namespace conflux {

struct TensorRef;

// Which instruction set the dispatched kernels use ("avx512-vnni", "avx512", "avx2", "scalar").
const char* kernel_isa();
// Forces the scalar kernels (tests and benchmarks compare against them). Not thread-safe.
void force_scalar_kernels(bool on);

// out[r] = dot(x, w + r * stride) for r in [0, rows), rows <= 4, w in dtype `t`, length n.
void dot_rows(DType t, const float* x, const void* w, size_t stride, int rows, int n, float* out);

// Same result as dot_rows, for W read once from memory (decode): each row is streamed front to back on
// its own, which keeps the hardware prefetchers ahead; dot_rows shares each x load among the rows,
// which pays when W is in cache (prefill).
void dot_rows_streaming(DType t, const float* x, const void* w, size_t stride, int rows, int n, float* out);

// convert_to_f32 with SIMD (the prefill widens every f16/bf16 W block once per chunk).
void widen_to_f32(DType t, const void* src, float* dst, size_t n);

// y[j * ldy + r] = dot(x + j * ld, w + r * ld) for j < nx <= 4, r < nw <= 4, all f32 of length n: the
// register-blocked core of the prefill GEMM.
void dot_tile(const float* x, int nx, const float* w, int nw, size_t ld, int n, float* y, size_t ldy);

// Block-quantized weights (Q8_0 / Q4_0, engine/quant.h) are multiplied with integer dot products
// against the activation quantized the same way, as llama.cpp's q8_0 dot does: per block of 32,
// dx = max|x| / 127 and xq = round(x / dx), so that one block's dot is dw * dx * Σ wq·xq.
// n must be a multiple of 32; q: (n) int8, d: (n / 32).
void quantize_activation(const float* x, int n, int8_t* q, float* d);
// out[r] = Σ_b dw[r][b] · dx[b] · Σ_i wq[r][b][i] · xq[b][i] for r < rows (any count). W row r is at
// w + r * row_bytes(t, n), its f16 scales at scales + r * (n / 32); t is Q8_0 or Q4_0.
void dot_rows_quant(DType t, const int8_t* xq, const float* xd, const void* w, const uint16_t* scales, int rows, int n,
                    float* out);

// y (n, out_dim) = x (n, in_dim) · Wᵀ for W (out_dim, in_dim) in its stored dtype. Multi-threaded over
// blocks of W rows. For n > 1, each block of an f16/bf16 W is widened to f32 once and reused across
// the n rows; for quantized W the n rows of x are quantized once, up front.
// `scratch` must hold matmul_scratch_floats(in_dim, n, pool.size()) floats (no allocation here).
// cap > 0 soft-caps the result, y = cap·tanh(y / cap) (the head's final_logit_softcapping), each task
// on the rows it just wrote: in parallel and while they are in its cache, where a pass over the whole
// 262144-wide logits row afterwards was one thread's ~60 µs per token.
void matmul(ThreadPool& pool, const float* x, int n, const TensorRef& w, float* y, float* scratch, float cap = 0.f);
size_t matmul_scratch_floats(int in_dim, int max_rows, int threads);

// Several matrices that read the same input (a layer's K, V and Q; its gate and up), y_i = x · W_iᵀ,
// each W_i (out_i, in_dim) into its own y_i (n, out_i). Results are those of one matmul per matrix; for
// one activation row (decode) they run as one parallel region, which spares the small ones a region's
// start and end each. Scratch as matmul's for in_dim.
struct MatmulOut {
  const TensorRef* w;
  float* y;
  float cap = 0.f;  // > 0: soft-cap y as matmul's cap does
};
constexpr int kMaxSharedInput = 4;
void matmul_shared_input(ThreadPool& pool, const float* x, int n, std::initializer_list<MatmulOut> outs,
                         float* scratch);

// y = x * (mean(x²) + eps)^-1/2 * w   (w == nullptr: scale-free). In place allowed.
void rms_norm(const float* x, const float* w, float* y, int n, float eps);
// y = (x - mean) / sqrt(var + eps) * w + b  with the population variance. In place allowed.
void layer_norm(const float* x, const float* w, const float* b, float* y, int n, float eps);
// gelu_pytorch_tanh: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
float gelu_tanh(float x);
// a[i] = gelu_tanh(a[i]) * b[i] (SIMD variants use the same tanh as softcap).
void gelu_mul(float* a, const float* b, int n);
// NeoX rotate-half RoPE over hd dims: pairs (i, i + hd/2) for i < n_pairs rotate by pos * inv_freq[i];
// the rest are identity (proportional RoPE).
void rope_neox(float* x, int hd, int n_pairs, const float* inv_freq, int64_t pos);
// The same rotation in two steps: the (cos, sin) of each pair's angle at `pos` once (cos_sin: n_pairs x
// 2), then applied to any number of heads. Identical results to rope_neox.
void rope_angles(int n_pairs, const float* inv_freq, int64_t pos, float* cos_sin);
void rope_neox_table(float* x, int hd, int n_pairs, const float* cos_sin);
// y[i] = cap * tanh(y[i] / cap). SIMD variants use tanh(|v|) = (1 - e) / (1 + e), e = exp(-2|v|), with a
// polynomial exp (within 2e-6 of libm's tanh, tested): over the 262144-entry logits row libm's tanh
// was a quarter of a small model's decode step.
void softcap(float* y, int n, float cap);

// Numerically safe softmax in place; entries equal to -inf get 0. Returns log Σ exp(x) of the input
// (-inf when every entry is -inf or n == 0), which merges softmaxes taken over parts of a row.
float softmax(float* x, int n);
float dot_f32(const float* a, const float* b, int n);
// Attention over one head and nk keys stored `stride` elements apart in dtype t (F32 or BF16: a run
// of KV cache slots): scores[i] = dot(q, k_i) (hd values each), and out += Σ_i p[i] · v_i (out
// accumulates; the caller zeroes it before the first run of slots).
void attention_scores(const float* q, const void* k, DType t, size_t stride, int nk, int hd, float* scores);
void attention_values(const float* p, const void* v, DType t, size_t stride, int nk, int hd, float* out);
// Index of the largest entry, the first of equal maxima; NaN never wins, and 0 when nothing exceeds -inf.
int32_t argmax(const float* x, int n);
// Σ x[i] over a long buffer with independent accumulators: a read-only memory stream (the bandwidth
// test of `conflux bench`); the sum only keeps the loads from being optimised away.
float stream_sum(const float* x, size_t n);
// y += a * x
void axpy(float a, const float* x, float* y, int n);

namespace scalar {
int32_t argmax(const float* x, int n);
void dot_rows(DType t, const float* x, const void* w, size_t stride, int rows, int n, float* out);
void quantize_activation(const float* x, int n, int8_t* q, float* d);
void dot_rows_quant(DType t, const int8_t* xq, const float* xd, const void* w, const uint16_t* scales, int rows, int n,
                    float* out);
float dot_f32(const float* a, const float* b, int n);
void axpy(float a, const float* x, float* y, int n);
float stream_sum(const float* x, size_t n);
void softcap(float* y, int n, float cap);
void gelu_mul(float* a, const float* b, int n);
}  // namespace scalar

namespace detail {
// The kernel level chosen at start-up (or forced scalar); used by the quantized kernels' dispatch.
enum class Isa { Scalar, Avx2, Avx512 };
Isa active_isa();
bool cpu_has_avx512_vnni();
// Tests: run the kernels at `isa`, at most the detected level (returns the level actually set).
Isa force_isa(Isa isa);
Isa detected_isa();
}  // namespace detail

}  // namespace conflux
