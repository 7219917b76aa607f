// KV cache made for streaming. Sliding layers keep a ring of the last `window + max_chunk` positions
// (the window of history plus room for one prefill chunk); full layers keep every position up to a
// fixed capacity. Everything is allocated once, up front.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/config.h"

namespace conflux {

class KvCache {
 public:
  // max_context: positions the full layers can hold; max_chunk: most rows appended in one call.
  KvCache(const TextConfig& text, int max_context, int max_chunk);

  // Slot of `pos` in layer `layer` (ring index on sliding layers).
  int slot(int layer, int64_t pos) const {
    const Layer& L = layers_[size_t(layer)];
    return int(pos % L.capacity);
  }
  float* k(int layer, int slot) { return layers_[size_t(layer)].k.data() + size_t(slot) * layers_[size_t(layer)].row; }
  float* v(int layer, int slot) { return layers_[size_t(layer)].v.data() + size_t(slot) * layers_[size_t(layer)].row; }
  const float* k(int layer, int slot) const { return layers_[size_t(layer)].k.data() + size_t(slot) * layers_[size_t(layer)].row; }
  const float* v(int layer, int slot) const { return layers_[size_t(layer)].v.data() + size_t(slot) * layers_[size_t(layer)].row; }
  int capacity(int layer) const { return layers_[size_t(layer)].capacity; }
  size_t row_floats(int layer) const { return layers_[size_t(layer)].row; }
  int max_context() const { return max_context_; }
  size_t bytes() const;

 private:
  struct Layer {
    int capacity = 0;        // slots
    size_t row = 0;          // n_kv * hd floats per slot
    std::vector<float> k;    // (capacity, n_kv, hd)
    std::vector<float> v;    // (capacity, n_kv, hd)
  };
  std::vector<Layer> layers_;
  int max_context_ = 0;
};

}  // namespace conflux
