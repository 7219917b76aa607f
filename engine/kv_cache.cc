// KV cache allocation. See kv_cache.h for the ring-sizing argument.
#include "engine/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace conflux {

KvCache::KvCache(const TextConfig& text, int max_context, int max_chunk, DType dtype)
    : dtype_(dtype), max_context_(max_context) {
  if (dtype != DType::F32 && dtype != DType::BF16)
    throw std::invalid_argument("KV cache dtype must be F32 or BF16, got " + std::string(dtype_name(dtype)));
  layers_.resize(size_t(text.num_layers));
  for (int i = 0; i < text.num_layers; ++i) {
    const LayerGeometry g = text.layer(i);
    Layer& L = layers_[size_t(i)];
    // A chunk of n rows starting at P needs keys P-window+1 .. P+n-1 at once: window + n - 1 slots.
    L.capacity = g.full ? max_context : std::min(max_context, g.window + max_chunk);
    L.row = size_t(g.n_kv_heads) * size_t(g.head_dim);
    // Entries are 4-byte aligned (vector storage), so the f32 view is well formed.
    L.k.assign(size_t(L.capacity) * L.row * dtype_size(dtype), 0);
    L.v.assign(size_t(L.capacity) * L.row * dtype_size(dtype), 0);
  }
}

void KvCache::store(int layer, int slot, const float* k, const float* v) {
  const size_t row = layers_[size_t(layer)].row;
  uint8_t* kd = const_cast<uint8_t*>(static_cast<const uint8_t*>(k_entry(layer, slot)));
  uint8_t* vd = const_cast<uint8_t*>(static_cast<const uint8_t*>(v_entry(layer, slot)));
  if (dtype_ == DType::F32) {
    std::memcpy(kd, k, row * sizeof(float));
    std::memcpy(vd, v, row * sizeof(float));
    return;
  }
  auto* kb = reinterpret_cast<uint16_t*>(kd);
  auto* vb = reinterpret_cast<uint16_t*>(vd);
  for (size_t i = 0; i < row; ++i) {
    kb[i] = f32_to_bf16(k[i]);
    vb[i] = f32_to_bf16(v[i]);
  }
}

void KvCache::load(int layer, int slot, float* k, float* v) const {
  const size_t row = layers_[size_t(layer)].row;
  convert_to_f32(dtype_, k_entry(layer, slot), k, row);
  convert_to_f32(dtype_, v_entry(layer, slot), v, row);
}

size_t KvCache::bytes() const {
  size_t n = 0;
  for (const auto& L : layers_) n += L.k.size() + L.v.size();
  return n;
}

}  // namespace conflux
