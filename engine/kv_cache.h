// KV cache made for streaming. Sliding layers keep a ring of the last `window + max_chunk` positions
// (the window of history plus room for one prefill chunk); full layers keep every position up to a
// fixed capacity. Everything is allocated once, up front. Entries are f32 (the default, and what the
// reference tests use) or bf16 (half the memory and half the attention reads; rounded once on store).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/config.h"
#include "engine/dtype.h"

namespace conflux {

class KvCache {
 public:
  // max_context: positions the full layers can hold; max_chunk: most rows appended in one call;
  // dtype: F32 or BF16.
  KvCache(const TextConfig& text, int max_context, int max_chunk, DType dtype = DType::F32);

  // Slot of `pos` in layer `layer` (ring index on sliding layers).
  int slot(int layer, int64_t pos) const {
    const Layer& L = layers_[size_t(layer)];
    return int(pos % L.capacity);
  }
  DType dtype() const { return dtype_; }
  // The entry of a slot in the cache's dtype: (n_kv, hd) values, row_floats() of them.
  const void* k_entry(int layer, int slot) const { return entry(layers_[size_t(layer)].k, layer, slot); }
  const void* v_entry(int layer, int slot) const { return entry(layers_[size_t(layer)].v, layer, slot); }
  // Writes / reads one slot's K and V rows as f32 (converted for a bf16 cache).
  void store(int layer, int slot, const float* k, const float* v);
  void load(int layer, int slot, float* k, float* v) const;
  // f32 caches only: direct pointers (tests read the cache through these).
  const float* k(int layer, int slot) const { return static_cast<const float*>(k_entry(layer, slot)); }
  const float* v(int layer, int slot) const { return static_cast<const float*>(v_entry(layer, slot)); }
  int capacity(int layer) const { return layers_[size_t(layer)].capacity; }
  size_t row_floats(int layer) const { return layers_[size_t(layer)].row; }
  int max_context() const { return max_context_; }
  size_t bytes() const;

 private:
  struct Layer {
    int capacity = 0;        // slots
    size_t row = 0;          // n_kv * hd values per slot
    std::vector<uint8_t> k;  // (capacity, n_kv, hd) in dtype_
    std::vector<uint8_t> v;  // (capacity, n_kv, hd) in dtype_
  };
  const void* entry(const std::vector<uint8_t>& buf, int layer, int slot) const {
    return buf.data() + size_t(slot) * layers_[size_t(layer)].row * dtype_size(dtype_);
  }
  DType dtype_ = DType::F32;
  std::vector<Layer> layers_;
  int max_context_ = 0;
};

}  // namespace conflux
