// Activation buffers of a Context (private to the engine's model.cc and embedders.cc).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/model.h"

namespace conflux {

// A float buffer allocated once and left untouched (no zero fill): its pages become resident when
// first written, so scratch for inputs a request never carries (images, audio) or for the widest
// matmul input costs address space, not memory. Never reallocated, so still nothing allocates later.
class UntouchedBuffer {
 public:
  void allocate(size_t n) {
    data_.reset(new float[n]);  // default-initialized: large blocks come straight from mmap, untouched
    size_ = n;
  }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  float& operator[](size_t i) { return data_[i]; }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<float[]> data_;
  size_t size_ = 0;
};

// Activation buffers, sized once from the config and RuntimeConfig. C = max_chunk rows of a batch;
// P = min(C, RuntimeConfig::piece_rows) rows of one piece (below).
struct Context::Scratch {
  std::vector<float> x;        // (C, D) residual stream of the whole batch
  std::vector<float> xn;       // (P, D) normed input of a block
  std::vector<float> q;        // (P, H * hd_max)
  std::vector<float> k;        // (P, kv_max * hd_max)
  std::vector<float> v;        // (P, kv_max * hd_max)
  std::vector<float> attn;     // (P, H * hd_max)
  std::vector<float> proj;     // (P, D) block output before the residual add
  std::vector<float> gate;     // (P, F)
  std::vector<float> up;       // (P, F)
  std::vector<float> scores;   // (threads, G, max_context + C) attention weights of one (row, KV head)
  std::vector<float> partial;  // (2 * kSplitTasksPerThread * threads, G, hd_max + 1) split outputs, log-sum-exp
  UntouchedBuffer mm;          // matmul scratch: max(matmul_scratch_floats(in_max, P), embedders' (6912, E))
  std::vector<float> head_in;  // (P, D) final-normed rows that want logits
  std::vector<int32_t> block_end;  // (C) last position of each row's image block (or its own)
  std::vector<float> inv_freq_sliding;  // (hd_sliding / 2)
  std::vector<float> inv_freq_full;     // (hd_full / 2)
  // RoPE (cos, sin) of a piece's positions for one layer kind, reused by every head and every layer of
  // that kind while the piece stays the same (a decode step computes them twice instead of per head
  // and layer: 90 times on the 18-layer bench model).
  struct RopeTable {
    int64_t first_pos = -1;       // position of row 0; -1 = empty
    int rows = 0;                 // rows filled
    int pairs = 0;                // rotating pairs per row
    std::vector<float> cos_sin;   // (P, rope_pairs, 2)
  };
  RopeTable rope_sliding, rope_full;
  // Embedders work through their rows kEmbedderRows at a time (E = min(C, kEmbedderRows)).
  UntouchedBuffer patch;      // (E, 6912) patch values after LN1
  UntouchedBuffer mm_hidden;  // (E, M) embedder width
  UntouchedBuffer pos_row;    // (M) one position-table row widened to f32
  UntouchedBuffer frames;     // (E, 640) RMS-normed audio frames
};

// Rows the embedders process per matmul. Their rows are independent, so smaller pieces change no
// result. Each piece streams the 6912 x M weights once more: 2 bytes per bf16 weight at ~20 GB/s against
// 2 x 64 flops per weight at ~80 GFLOP/s is ~6% of the piece's arithmetic (0.8% with 512 rows), a small
// price for not holding a 512-row patch buffer: 512 x 6912 x 4 B = 13.5 MiB of peak memory.
constexpr int kEmbedderRows = 64;

// Attention tasks per pool thread that decode aims for: with fewer (row, KV head) pairs than this, each
// pair's keys are split among several tasks (Context::attention). Two per thread let a thread that
// finishes early take a second piece.
constexpr int kSplitTasksPerThread = 2;
// Most query heads per KV head that attention handles (Gemma 4 12B: 16 / 8 = 2; the bench models 4).
constexpr int kMaxGroup = 32;

// RuntimeConfig::piece_rows: rows the decoder layers process per matmul. Only the residual stream
// holds a whole chunk; every other activation holds one piece, which keeps a 512-row prefill of the
// 270M-class bench model at ~4 MiB of activations instead of 26 MiB (its MLP rows alone were
// 2 x 512 x 2048 x 4 B = 8 MiB). The price is streaming each layer's weights once per piece: prefill
// does 2 x 64 flops per weight streamed, which keeps two cores' arithmetic (~160 GFLOP/s) ahead of the
// ~5 GB/s of f32 weights that needs; measured, pp512 is within noise of 128-row pieces on the 270M
// and 2-6% below on the 1B, against 8-10 MiB less peak memory than whole-chunk activations.

}  // namespace conflux
