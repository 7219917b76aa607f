// The matmuls of the forward pass on the thread pool: y = x · Wᵀ for W in any stored format, cut into
// tasks of W rows. One activation row (decode) streams W once through the decode kernels, several
// matrices that share the input in one parallel region; several rows (prefill) widen or unpack each
// block of W once and run it against all of them. The kernels themselves are in ops.cc / ops_quant.cc.
#include <immintrin.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/ops.h"
#include "engine/quant.h"
#include "engine/safetensors.h"

namespace conflux {

namespace {
constexpr int kRowsPerDot = 4;     // W rows sharing one pass over x (dot_rows's limit)
constexpr int kTileRows = 4;       // dot_tile: up to 4 x rows by 4 W rows
constexpr int kRowsPerTask = 16;   // W rows per task: small enough to balance 2..16 threads

// Floats holding n quantized activation rows: n * in_dim int8 values, then n * in_dim / 32 scales.
size_t quantized_rows_floats(int in_dim, int n) {
  return (size_t(n) * size_t(in_dim) + sizeof(float) - 1) / sizeof(float) + size_t(n) * size_t(in_dim / kQuantBlock);
}
}  // namespace

size_t matmul_scratch_floats(int in_dim, int max_rows, int threads) {
  const size_t widen = size_t(threads) * size_t(kRowsPerTask) * size_t(in_dim);  // one W block per thread
  // Quantized W: the activation rows, plus (n > 1, Q4_0) one block of W rows unpacked to int8 per thread.
  const size_t unpacked = max_rows > 1 ? size_t(threads) * size_t(kRowsPerTask) * size_t(in_dim) / sizeof(float) : 0;
  return std::max(widen, quantized_rows_floats(in_dim, max_rows) + unpacked);
}

namespace {

// Rows of W per decode task. A single activation row streams W once: tasks of out_dim / (4 · threads)
// rows (at least 16, at most 4096) leave 4 tasks per thread to balance a descheduled thread; with 16,
// claiming and reporting tasks cost a third of a 2048 x 640 q8 matmul on the bench machine. Several
// rows (prefill) keep kRowsPerTask W rows per task, so the block stays in L1/L2 while all n activation
// rows pass over it.
int decode_rows_per_task(int out_dim, int threads) {
  constexpr int kTasksPerThread = 4;
  const int rows = (out_dim / (threads * kTasksPerThread) + kRowsPerDot - 1) / kRowsPerDot * kRowsPerDot;
  constexpr int kMaxRowsPerTask = 4096;
  return std::clamp(rows, kRowsPerTask, kMaxRowsPerTask);
}

// Q4_0 rows to Q8_0-layout int8 (nibble - 8, weights in order), same scales: prefill then runs the Q8_0
// kernel over the unpacked block, unpacking once per block instead of once per activation row.
void unpack_q4_rows(const uint8_t* q4, int rows, int in_dim, int8_t* out) {
  // SSE2 (every x86-64): low nibbles are weights 0..15 of a block, high nibbles 16..31.
  const __m128i low4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
  constexpr int kHalf = kQuantBlock / 2;
  for (size_t b = 0; b < size_t(rows) * size_t(in_dim / kQuantBlock); ++b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q4 + b * kHalf));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, low4), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), eight);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + b * kQuantBlock), lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + b * kQuantBlock + kHalf), hi);
  }
}

// Several activation rows (prefill) against a block-quantized W.
void matmul_quantized(ThreadPool& pool, const float* x, int n, const TensorRef& w, float* y, float* scratch, float cap) {
  const int out_dim = int(w.shape[0]);
  const int in_dim = int(w.shape[1]);
  const int nb = in_dim / kQuantBlock;
  int8_t* xq = reinterpret_cast<int8_t*>(scratch);                                           // (n, in_dim)
  float* xd = scratch + (size_t(n) * size_t(in_dim) + sizeof(float) - 1) / sizeof(float);    // (n, nb)
  int8_t* unpacked = reinterpret_cast<int8_t*>(scratch + quantized_rows_floats(in_dim, n));  // (threads, 16, in_dim)
  auto quantize_row = [&](int j, int) {
    quantize_activation(x + size_t(j) * in_dim, in_dim, xq + size_t(j) * in_dim, xd + size_t(j) * nb);
  };
  pool.parallel_for(n, quantize_row);
  const size_t rb = row_bytes(w.dtype, in_dim);
  const int per_task = kRowsPerTask;
  const int n_tasks = (out_dim + per_task - 1) / per_task;
  const bool unpack = w.dtype == DType::Q4_0;
  auto task = [&](int t, int thread) {
    const int r0 = t * per_task, r1 = std::min(out_dim, r0 + per_task);
    DType wt = w.dtype;
    const uint8_t* wblock = static_cast<const uint8_t*>(w.data) + size_t(r0) * rb;
    if (unpack) {  // rows of in_dim int8 values, the Q8_0 layout
      int8_t* buf = unpacked + size_t(thread) * size_t(kRowsPerTask) * size_t(in_dim);
      unpack_q4_rows(wblock, r1 - r0, in_dim, buf);
      wblock = reinterpret_cast<const uint8_t*>(buf);
      wt = DType::Q8_0;
    }
    for (int j = 0; j < n; ++j) {
      const int8_t* xqj = xq + size_t(j) * in_dim;
      const float* xdj = xd + size_t(j) * nb;
      float* yj = y + size_t(j) * out_dim;
      // The task's rows in one call: the kernel prepares x once for all of them.
      dot_rows_quant(wt, xqj, xdj, wblock, w.scales + size_t(r0) * nb, r1 - r0, in_dim, yj + r0);
      if (cap > 0.f) softcap(yj + r0, r1 - r0, cap);
    }
  };
  pool.parallel_for(n_tasks, task);
}

// One decode task: rows [r0, r1) of W against the single activation row (x, or its quantized form xq/xd
// for a block-quantized W), streamed from memory once, front to back.
void decode_rows(const TensorRef& w, const float* x, const int8_t* xq, const float* xd, int r0, int r1, float* y) {
  const int in_dim = int(w.shape[1]);
  if (is_quantized(w.dtype)) {
    // The task's rows in one call: the kernel prepares x once for all of them.
    const int nb = in_dim / kQuantBlock;
    const uint8_t* rows = static_cast<const uint8_t*>(w.data) + size_t(r0) * row_bytes(w.dtype, in_dim);
    dot_rows_quant(w.dtype, xq, xd, rows, w.scales + size_t(r0) * nb, r1 - r0, in_dim, y + r0);
    return;
  }
  const size_t row_bytes_f = size_t(in_dim) * dtype_size(w.dtype);
  for (int r = r0; r < r1; r += kRowsPerDot) {
    const uint8_t* wr = static_cast<const uint8_t*>(w.data) + size_t(r) * row_bytes_f;
    dot_rows_streaming(w.dtype, x, wr, size_t(in_dim), std::min(kRowsPerDot, r1 - r), in_dim, y + r);
  }
}

// Decode (one activation row) for up to kMaxSharedInput matrices that read it, as one parallel region:
// the tasks of all of them in one list, so that the small ones (the 12B's K and V are a quarter of Q) do
// not each pay a region's start and end. On the 270M bench model with two threads, a 256 x 640 K alone
// ran at ~45% of the head matmul's bandwidth, 2048-row matrices at ~85%.
void matmul_decode(ThreadPool& pool, const float* x, std::initializer_list<MatmulOut> outs, float* scratch) {
  const int count = int(outs.size());
  if (count < 1 || count > kMaxSharedInput)
    throw std::invalid_argument("matmul: " + std::to_string(count) + " matrices share an input, 1 to " +
                                std::to_string(kMaxSharedInput) + " supported");
  const MatmulOut* jobs = outs.begin();
  const int in_dim = int(jobs[0].w->shape[1]);
  bool any_quantized = false;
  int total_rows = 0;
  for (const MatmulOut& o : outs) {
    if (int(o.w->shape[1]) != in_dim)
      throw std::invalid_argument("matmul: " + o.w->name + " " + o.w->shape_str() + " does not take the shared " +
                                  std::to_string(in_dim) + "-wide input");
    any_quantized = any_quantized || is_quantized(o.w->dtype);
    total_rows += int(o.w->shape[0]);
  }
  int8_t* xq = reinterpret_cast<int8_t*>(scratch);                                          // (in_dim)
  float* xd = scratch + (size_t(in_dim) + sizeof(float) - 1) / sizeof(float);              // (in_dim / 32)
  if (any_quantized) quantize_activation(x, in_dim, xq, xd);
  // Tasks never straddle two matrices: first_task[i] is matrix i's first task.
  const int per_task = decode_rows_per_task(total_rows, pool.size());
  int first_task[kMaxSharedInput + 1] = {0};
  for (int i = 0; i < count; ++i)
    first_task[i + 1] = first_task[i] + (int(jobs[i].w->shape[0]) + per_task - 1) / per_task;
  auto task = [&](int t, int) {
    int i = 0;
    while (t >= first_task[i + 1]) ++i;
    const TensorRef& w = *jobs[i].w;
    const int r0 = (t - first_task[i]) * per_task, r1 = std::min(int(w.shape[0]), r0 + per_task);
    decode_rows(w, x, xq, xd, r0, r1, jobs[i].y);
    if (jobs[i].cap > 0.f) softcap(jobs[i].y + r0, r1 - r0, jobs[i].cap);
  };
  pool.parallel_for(first_task[count], task);
}

}  // namespace

void matmul_shared_input(ThreadPool& pool, const float* x, int n, std::initializer_list<MatmulOut> outs,
                         float* scratch) {
  if (n == 1) return matmul_decode(pool, x, outs, scratch);
  for (const MatmulOut& o : outs) matmul(pool, x, n, *o.w, o.y, scratch, o.cap);
}

void matmul(ThreadPool& pool, const float* x, int n, const TensorRef& w, float* y, float* scratch, float cap) {
  if (n == 1) return matmul_decode(pool, x, {MatmulOut{&w, y, cap}}, scratch);
  if (is_quantized(w.dtype)) return matmul_quantized(pool, x, n, w, y, scratch, cap);
  const int out_dim = int(w.shape[0]);
  const int in_dim = int(w.shape[1]);
  const size_t elem = dtype_size(w.dtype);
  const int per_task = kRowsPerTask;
  const int n_tasks = (out_dim + per_task - 1) / per_task;
  const bool widen = w.dtype != DType::F32;
  auto task = [&](int t, int thread) {
    const int r0 = t * per_task, r1 = std::min(out_dim, r0 + per_task);
    const uint8_t* wrows = static_cast<const uint8_t*>(w.data) + size_t(r0) * size_t(in_dim) * elem;
    const void* wsrc = wrows;
    if (widen) {
      // Widen this block of W once; the n rows of x then run the f32 kernel over it.
      float* buf = scratch + size_t(thread) * size_t(kRowsPerTask) * size_t(in_dim);
      widen_to_f32(w.dtype, wrows, buf, size_t(r1 - r0) * size_t(in_dim));
      wsrc = buf;
    }
    // Several rows: the f32 block is in cache; 4 x 4 tiles of (x rows, W rows) share every load.
    const float* wblock = static_cast<const float*>(wsrc);
    // W rows outer: their 4 rows stay in L1 while the x rows stream past from L2.
    for (int r = r0; r < r1; r += kTileRows) {
      for (int j = 0; j < n; j += kTileRows) {
        dot_tile(x + size_t(j) * in_dim, std::min(kTileRows, n - j), wblock + size_t(r - r0) * in_dim,
                 std::min(kTileRows, r1 - r), size_t(in_dim), in_dim, y + size_t(j) * out_dim + r, size_t(out_dim));
      }
    }
    if (cap > 0.f)
      for (int j = 0; j < n; ++j) softcap(y + size_t(j) * out_dim + r0, r1 - r0, cap);
  };
  pool.parallel_for(n_tasks, task);
}

}  // namespace conflux
