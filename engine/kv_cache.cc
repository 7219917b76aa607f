// KV cache allocation. See kv_cache.h for the ring-sizing argument.
#include "engine/kv_cache.h"

#include <algorithm>

namespace conflux {

KvCache::KvCache(const TextConfig& text, int max_context, int max_chunk) : max_context_(max_context) {
  layers_.resize(size_t(text.num_layers));
  for (int i = 0; i < text.num_layers; ++i) {
    const LayerGeometry g = text.layer(i);
    Layer& L = layers_[size_t(i)];
    // A chunk of n rows starting at P needs keys P-window+1 .. P+n-1 at once: window + n - 1 slots.
    L.capacity = g.full ? max_context : std::min(max_context, g.window + max_chunk);
    L.row = size_t(g.n_kv_heads) * size_t(g.head_dim);
    L.k.assign(size_t(L.capacity) * L.row, 0.f);
    L.v.assign(size_t(L.capacity) * L.row, 0.f);
  }
}

size_t KvCache::bytes() const {
  size_t n = 0;
  for (const auto& L : layers_) n += (L.k.size() + L.v.size()) * sizeof(float);
  return n;
}

}  // namespace conflux
