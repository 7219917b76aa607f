// Activation buffers of a Context (private to the engine's model.cc and embedders.cc).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model.h"

namespace conflux {

// Activation buffers, sized once from the config and RuntimeConfig. C = max_chunk rows.
struct Context::Scratch {
  std::vector<float> x;        // (C, D) residual stream
  std::vector<float> xn;       // (C, D) normed input of a block
  std::vector<float> q;        // (C, H * hd_max)
  std::vector<float> k;        // (C, kv_max * hd_max)
  std::vector<float> v;        // (C, kv_max * hd_max)
  std::vector<float> attn;     // (C, H * hd_max)
  std::vector<float> proj;     // (C, D) block output before the residual add
  std::vector<float> gate;     // (C, F)
  std::vector<float> up;       // (C, F)
  std::vector<float> scores;   // (threads, max_context + C) attention weights of one (row, head)
  std::vector<float> mm;       // (threads, matmul_scratch_floats(in_max))
  std::vector<float> head_in;  // (C, D) final-normed rows that want logits
  std::vector<int32_t> block_end;  // (C) last position of each row's image block (or its own)
  std::vector<float> inv_freq_sliding;  // (hd_sliding / 2)
  std::vector<float> inv_freq_full;     // (hd_full / 2)
  // Embedders work through their rows kEmbedderRows at a time (E = min(C, kEmbedderRows)).
  std::vector<float> patch;      // (E, 6912) patch values after LN1
  std::vector<float> mm_hidden;  // (E, M) embedder width
  std::vector<float> pos_row;    // (M) one position-table row widened to f32
  std::vector<float> frames;     // (E, 640) RMS-normed audio frames
};

// Rows the embedders process per matmul. Their rows are independent, so smaller pieces change no
// result. Each piece streams the 6912 x M weights once more: 2 bytes per bf16 weight at ~20 GB/s against
// 2 x 64 flops per weight at ~80 GFLOP/s is ~6% of the piece's arithmetic (0.8% with 512 rows), a small
// price for not holding a 512-row patch buffer: 512 x 6912 x 4 B = 13.5 MiB of peak memory.
constexpr int kEmbedderRows = 64;

}  // namespace conflux
