// The encoder-free embedders (architecture doc §4.2, §5): one patch or one audio frame at a time or in
// batches, each row independent of the others.
#include <algorithm>

#include "engine/context_scratch.h"
#include "engine/model.h"
#include "engine/ops.h"

namespace conflux {

void Context::embed_image_patches(const float* patches, const int32_t* gx, const int32_t* gy, int n, float* out) {
  const ModelConfig& c = model_.config();
  if (!c.vision.present) throw std::invalid_argument("this model has no vision embedder");
  const VisionWeights& w = model_.weights().vision;
  const int P = c.vision.model_patch_size() * c.vision.model_patch_size() * 3;  // 48 * 48 * 3 = 6912
  const int M = c.vision.mm_embed_dim, D = c.text.hidden_size;
  const float ln_eps = c.vision.layer_norm_eps;
  const TensorRef& pos = w.pos_embedding.ref;  // (posemb, 2, M)
  const size_t pos_elem = dtype_size(pos.dtype);
  const int rows = std::min(rc_.max_chunk, kEmbedderRows);
  for (int off = 0; off < n; off += rows) {
    const int m = std::min(rows, n - off);
    float* ln1 = s_->patch.data();      // (m, P)
    float* hid = s_->mm_hidden.data();  // (m, M)
    for (int j = 0; j < m; ++j)
      layer_norm(patches + size_t(off + j) * P, w.patch_ln1_w.f32, w.patch_ln1_b.f32, ln1 + size_t(j) * P, P, ln_eps);
    matmul(*pool_, ln1, m, w.patch_dense_w.ref, hid, s_->mm.data());
    for (int j = 0; j < m; ++j) {
      float* hj = hid + size_t(j) * M;
      for (int i = 0; i < M; ++i) hj[i] += w.patch_dense_b.f32[i];
      layer_norm(hj, w.patch_ln2_w.f32, w.patch_ln2_b.f32, hj, M, ln_eps);
      const int x = gx[off + j], y = gy[off + j];
      if (x < 0 || y < 0 || x >= c.vision.mm_posemb_size || y >= c.vision.mm_posemb_size)
        throw std::invalid_argument("patch position (" + std::to_string(x) + ", " + std::to_string(y) +
                                    ") outside the position table of " + std::to_string(c.vision.mm_posemb_size));
      // pos_embedding[x, 0, :] is the column table, pos_embedding[y, 1, :] the row table.
      const uint8_t* base = static_cast<const uint8_t*>(pos.data);
      convert_to_f32(pos.dtype, base + (size_t(x) * 2 + 0) * M * pos_elem, s_->pos_row.data(), size_t(M));
      for (int i = 0; i < M; ++i) hj[i] += s_->pos_row[size_t(i)];
      convert_to_f32(pos.dtype, base + (size_t(y) * 2 + 1) * M * pos_elem, s_->pos_row.data(), size_t(M));
      for (int i = 0; i < M; ++i) hj[i] += s_->pos_row[size_t(i)];
      layer_norm(hj, w.pos_norm_w.f32, w.pos_norm_b.f32, hj, M, ln_eps);
      rms_norm(hj, nullptr, hj, M, c.vision.rms_norm_eps);
    }
    matmul(*pool_, hid, m, w.projection.ref, out + size_t(off) * D, s_->mm.data());
  }
}

void Context::embed_audio_frames(const float* frames, int n, float* out) {
  const ModelConfig& c = model_.config();
  if (!c.audio.present) throw std::invalid_argument("this model has no audio embedder");
  const int S = c.audio.samples_per_token, D = c.text.hidden_size;
  const int rows = std::min(rc_.max_chunk, kEmbedderRows);
  for (int off = 0; off < n; off += rows) {
    const int m = std::min(rows, n - off);
    float* xn = s_->frames.data();  // (m, S)
    for (int j = 0; j < m; ++j) rms_norm(frames + size_t(off + j) * S, nullptr, xn + size_t(j) * S, S, c.audio.rms_norm_eps);
    matmul(*pool_, xn, m, model_.weights().audio.projection.ref, out + size_t(off) * D, s_->mm.data());
  }
}

}  // namespace conflux
