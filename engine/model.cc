// The decoder forward pass (architecture doc §3), written to read like the math. Activations are
// allocated once per Context from one size table; decode() allocates nothing.
#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>

#include "engine/context_scratch.h"
#include "engine/ops.h"
#include "engine/quant.h"

namespace conflux {

namespace fs = std::filesystem;

namespace {
// MemAvailable of /proc/meminfo (free memory plus what the kernel can reclaim, the page cache
// included), in bytes; the largest size_t when it cannot be read, so copying is never refused for that.
size_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return std::numeric_limits<size_t>::max();
}
}  // namespace

std::unique_ptr<Model> Model::load(const std::string& dir, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  const std::string cfg = (fs::path(dir) / "config.json").string();
  if (!fs::exists(cfg)) throw CheckpointError(dir + ": no config.json (expected a checkpoint folder)");
  m->config_ = load_model_config(cfg);
  m->ckpt_ = std::make_unique<Checkpoint>(dir);
  bind_weights(*m->ckpt_, m->config_, m->weights_);
  check_quantization_config(cfg, m->config_, m->weights_);
  const std::optional<DType> target =
      options.format == WeightFormat::AsStored ? std::nullopt : std::optional(weight_format_dtype(options.format));
  m->weights_mapped_ = options.map_weights;
  if (!options.map_weights) {
    const size_t bytes = m->weight_bytes();
    const size_t limit = options.copy_limit_bytes ? *options.copy_limit_bytes : available_memory_bytes() / 10 * 9;
    if (bytes > limit) {
      m->weights_mapped_ = true;
      std::fprintf(stderr,
                   "conflux: %s: the weights (%.2f GiB) exceed the %.2f GiB a copy may take (90%% of MemAvailable): "
                   "matrices kept in their stored format are read in place from the file mapping, as --mmap does\n",
                   dir.c_str(), double(bytes) / (1 << 30), double(limit) / (1 << 30));
    }
  }
  convert_weights(m->config_, m->weights_, target, /*copy_unchanged=*/!m->weights_mapped_);
  return m;
}

size_t Model::weight_bytes() const {
  ModelWeights& w = const_cast<ModelWeights&>(weights_);  // the table only takes addresses
  size_t n = 0;
  for (const TensorSlot& slot : tensor_table(config_, w))
    if (slot.weight->present()) n += slot.weight->ref.nbytes;
  return n;
}

std::vector<const TensorRef*> Model::decode_matrices() const {
  std::vector<const TensorRef*> out;
  for (const LayerWeights& L : weights_.layers)
    for (const Weight* m : {&L.q_proj, &L.k_proj, &L.v_proj, &L.o_proj, &L.gate_proj, &L.up_proj, &L.down_proj})
      if (m->present()) out.push_back(&m->ref);
  out.push_back(&(weights_.lm_head.present() ? weights_.lm_head : weights_.embed_tokens).ref);
  return out;
}

size_t Model::decode_bytes_per_token() const {
  size_t n = 0;
  for (const TensorRef* m : decode_matrices()) n += m->nbytes;
  return n;
}

namespace {

std::vector<float> rope_inv_freq(const LayerGeometry& g) {
  // f_i = theta^(-2i / hd) for the rotating pairs; the exponent uses the full head_dim even when only
  // part of it rotates (proportional RoPE, doc §3.5).
  std::vector<float> f(size_t(g.head_dim / 2), 0.f);
  for (int i = 0; i < g.rope_pairs; ++i) f[size_t(i)] = float(std::pow(double(g.rope_theta), -2.0 * i / g.head_dim));
  return f;
}

}  // namespace

Context::Context(const Model& model, const RuntimeConfig& rc)
    : model_(model),
      rc_(rc),
      pool_(std::make_unique<ThreadPool>(rc.n_threads)),
      kv_(model.config().text, rc.max_context, rc.max_chunk, rc.kv_dtype),
      s_(std::make_unique<Scratch>()) {
  const ModelConfig& c = model.config();
  const TextConfig& t = c.text;
  const size_t C = size_t(rc.max_chunk), D = size_t(t.hidden_size), F = size_t(t.intermediate_size);
  int hd_max = 0, kv_max = 0;
  for (int i = 0; i < t.num_layers; ++i) {
    const LayerGeometry g = t.layer(i);
    hd_max = std::max(hd_max, g.head_dim);
    kv_max = std::max(kv_max, g.n_kv_heads);
    if (g.full && s_->inv_freq_full.empty()) s_->inv_freq_full = rope_inv_freq(g);
    if (!g.full && s_->inv_freq_sliding.empty()) s_->inv_freq_sliding = rope_inv_freq(g);
  }
  const size_t M = size_t(c.vision.present ? c.vision.mm_embed_dim : 0);
  const size_t patch_vals = size_t(c.vision.model_patch_size()) * c.vision.model_patch_size() * 3;
  // Widest matmul input of the decoder (C rows) and of the embedders (E rows, below).
  const int in_max = int(std::max({D, F, size_t(t.num_heads) * hd_max}));
  const int embed_in_max = int(std::max({c.vision.present ? patch_vals : 0, M,
                                         size_t(c.audio.present ? c.audio.samples_per_token : 0)}));
  const size_t threads = size_t(pool_->size());
  const size_t P = std::min(C, size_t(std::max(1, rc.piece_rows)));
  s_->x.assign(C * D, 0.f);
  s_->xn.assign(P * D, 0.f);
  s_->q.assign(P * size_t(t.num_heads) * hd_max, 0.f);
  s_->k.assign(P * size_t(kv_max) * hd_max, 0.f);
  s_->v.assign(P * size_t(kv_max) * hd_max, 0.f);
  s_->attn.assign(P * size_t(t.num_heads) * hd_max, 0.f);
  s_->proj.assign(P * D, 0.f);
  s_->gate.assign(P * F, 0.f);
  s_->up.assign(P * F, 0.f);
  int kv_min = kv_max;
  for (int i = 0; i < t.num_layers; ++i) kv_min = std::min(kv_min, t.layer(i).n_kv_heads);
  const size_t group_max = size_t(t.num_heads / std::max(1, kv_min));  // query heads per KV head, widest
  if (group_max > size_t(kMaxGroup))
    throw std::invalid_argument("Context: " + std::to_string(group_max) + " query heads per KV head exceed the " +
                                std::to_string(kMaxGroup) + " attention supports");
  s_->scores.assign(threads * group_max * (size_t(rc.max_context) + C), 0.f);
  s_->partial.assign(kSplitTasksPerThread * 2 * threads * group_max * size_t(hd_max + 1), 0.f);
  const size_t E = std::min(C, size_t(kEmbedderRows));
  s_->mm.allocate(std::max(matmul_scratch_floats(in_max, int(P), int(threads)),
                           matmul_scratch_floats(embed_in_max, int(E), int(threads))));
  s_->head_in.assign(P * D, 0.f);
  s_->block_end.assign(C, 0);
  int pairs_sliding = 0, pairs_full = 0;
  for (int i = 0; i < t.num_layers; ++i) {
    int& pairs = t.layer(i).full ? pairs_full : pairs_sliding;
    pairs = std::max(pairs, t.layer(i).rope_pairs);
  }
  s_->rope_sliding.cos_sin.assign(P * 2 * size_t(pairs_sliding), 0.f);  // rotating pairs x (cos, sin)
  s_->rope_full.cos_sin.assign(P * 2 * size_t(pairs_full), 0.f);
  if (c.vision.present) {
    s_->patch.allocate(E * patch_vals);
    s_->mm_hidden.allocate(E * M);
    s_->pos_row.allocate(M);
  }
  if (c.audio.present) s_->frames.allocate(E * size_t(c.audio.samples_per_token));
}

Context::~Context() = default;

size_t Context::activation_bytes() const {
  size_t n = 0;
  for (const auto* v : {&s_->x, &s_->xn, &s_->q, &s_->k, &s_->v, &s_->attn, &s_->proj, &s_->gate, &s_->up, &s_->scores,
                        &s_->head_in})
    n += v->size() * sizeof(float);
  for (const auto* b : {&s_->mm, &s_->patch, &s_->mm_hidden, &s_->pos_row, &s_->frames}) n += b->size() * sizeof(float);
  return n;
}

void Context::decode_tokens(const int32_t* ids, int n, float* logits_out) {
  for (int off = 0; off < n; off += rc_.max_chunk) {
    const int m = std::min(rc_.max_chunk, n - off);
    DecodeBatch b;
    b.n = m;
    b.tokens = ids + off;
    const bool last = off + m == n;
    // Logits only for the final row of the final piece.
    static thread_local std::vector<uint8_t> none;
    if (!last || !logits_out) {
      none.assign(size_t(rc_.max_chunk), 0);
      b.want_logits = none.data();
    }
    decode(b, last ? logits_out : nullptr);
  }
}

void Context::decode(const DecodeBatch& b, float* logits_out) {
  const ModelConfig& c = model_.config();
  const TextConfig& t = c.text;
  const ModelWeights& w = model_.weights();
  const int n = b.n, D = t.hidden_size;
  if (n <= 0) return;
  if (n > rc_.max_chunk)
    throw std::invalid_argument("decode: " + std::to_string(n) + " rows exceed max_chunk " + std::to_string(rc_.max_chunk));
  if (n_past_ + n > rc_.max_context)
    throw std::invalid_argument("decode: context full (" + std::to_string(n_past_) + " + " + std::to_string(n) +
                                " positions > max_context " + std::to_string(rc_.max_context) + ")");

  // The workers slept through whatever came since the last step (sampling, the session's bookkeeping);
  // getting them up now hides their wake-up behind the serial input rows below. Measured on the 270M
  // q8 decode with 2 threads: the first layer's first matmul took 3x an ordinary layer's before.
  pool_->wake_workers();

  // 1. Input rows: text ids are looked up and scaled by sqrt(D); soft tokens are used as they are.
  const float embed_scale = std::sqrt(float(D));
  const TensorRef& E = w.embed_tokens.ref;
  for (int j = 0; j < n; ++j) {
    float* xj = s_->x.data() + size_t(j) * D;
    if (b.is_embedding && b.is_embedding[j]) {
      std::copy_n(b.embeddings + size_t(j) * D, D, xj);
      continue;
    }
    const int32_t id = b.tokens[j];
    if (id < 0 || id >= t.vocab_size)
      throw std::invalid_argument("decode: token id " + std::to_string(id) + " outside the vocabulary of " +
                                  std::to_string(t.vocab_size));
    dequantize_rows(E, id, 1, xj);  // one row of the table, in whatever format it is stored
    for (int i = 0; i < D; ++i) xj[i] *= embed_scale;
  }

  // 2. Image blocks: each row's last visible future position (itself unless inside an image).
  for (int j = 0; j < n; ++j) s_->block_end[size_t(j)] = int32_t(n_past_ + j);
  if (b.image_block) {
    for (int j = 0; j < n; ++j) {
      if (b.image_block[j] < 0) continue;
      int e = j;
      while (e + 1 < n && b.image_block[e + 1] == b.image_block[j]) ++e;
      for (int r = j; r <= e; ++r) s_->block_end[size_t(r)] = int32_t(n_past_ + e);
      j = e;
    }
  }

  // 3. The layers.
  for (int l = 0; l < t.num_layers; ++l) layer_forward(l, n, s_->block_end.data());

  // 4. Head: final norm, tied embedding (or lm_head), soft-cap, for the rows that want logits, gathered
  // a piece of head_in at a time.
  n_past_ += n;
  if (!logits_out) return;
  const TensorRef& head = w.lm_head.present() ? w.lm_head.ref : E;
  const int piece_rows = int(s_->head_in.size() / size_t(D));
  float* out = logits_out;
  auto flush = [&](int rows) {
    matmul(*pool_, s_->head_in.data(), rows, head, out, s_->mm.data(), t.final_logit_softcapping);
    out += size_t(rows) * t.vocab_size;
  };
  int gathered = 0;
  for (int j = 0; j < n; ++j) {
    const bool want = b.want_logits ? b.want_logits[j] != 0 : j == n - 1;
    if (!want) continue;
    rms_norm(s_->x.data() + size_t(j) * D, w.final_norm.f32, s_->head_in.data() + size_t(gathered) * D, D,
             t.rms_norm_eps);
    if (++gathered == piece_rows) flush(std::exchange(gathered, 0));
  }
  if (gathered > 0) flush(gathered);
}

void Context::layer_forward(int l, int n, const int32_t* block_end) {
  const TextConfig& t = model_.config().text;
  const LayerWeights& L = model_.weights().layers[size_t(l)];
  const LayerGeometry g = t.layer(l);
  const int D = t.hidden_size, F = t.intermediate_size, H = t.num_heads, hd = g.head_dim, nkv = g.n_kv_heads;
  const int P = int(s_->xn.size() / size_t(D));  // rows per piece (RuntimeConfig::piece_rows)
  const float eps = t.rms_norm_eps;
  float* x = s_->x.data();       // (n, D) the whole batch
  float* xn = s_->xn.data();     // (P, D) one piece from here on
  float* q = s_->q.data();       // (P, H * hd)
  float* k = s_->k.data();       // (P, nkv * hd)
  float* v = s_->v.data();       // (P, nkv * hd)
  float* proj = s_->proj.data(); // (P, D)
  float* mm = s_->mm.data();
  const float* inv_freq = g.full ? s_->inv_freq_full.data() : s_->inv_freq_sliding.data();
  // (cos, sin) of rows j0.. of this piece: (m, rope_pairs, 2), computed once per piece and layer kind.
  auto rope_table = [&](int j0, int m) -> const float* {
    Scratch::RopeTable& r = g.full ? s_->rope_full : s_->rope_sliding;
    const int64_t first = n_past_ + j0;
    if (r.first_pos != first || r.rows < m || r.pairs != g.rope_pairs) {
      for (int j = 0; j < m; ++j) rope_angles(g.rope_pairs, inv_freq, first + j, r.cos_sin.data() + size_t(j) * 2 * g.rope_pairs);
      r.first_pos = first;
      r.rows = m;
      r.pairs = g.rope_pairs;
    }
    return r.cos_sin.data();
  };
  auto norm_rows = [&](int j0, int m, const float* weight) {
    for (int j = 0; j < m; ++j) rms_norm(x + size_t(j0 + j) * D, weight, xn + size_t(j) * D, D, eps);
  };
  // x[j0 + j] = (x[j0 + j] + norm(proj[j])) * scalar: a block's output joins the residual stream.
  auto add_residual = [&](int j0, int m, const float* weight, float scalar) {
    for (int j = 0; j < m; ++j) {
      float* pj = proj + size_t(j) * D;
      rms_norm(pj, weight, pj, D, eps);
      float* xj = x + size_t(j0 + j) * D;
      for (int i = 0; i < D; ++i) xj[i] = (xj[i] + pj[i]) * scalar;
    }
  };

  // Attention block: x = x + post_attn_norm(o_proj(attention(input_norm(x)))).
  // Pass 1: every row's key and value into the cache, since a row inside an image block attends to
  // the later rows of its block, which may lie in a later piece. A single piece (every decode step)
  // projects its queries here too, from the same normed rows, in the same parallel region.
  const bool one_piece = n <= P;
  for (int j0 = 0; j0 < n; j0 += P) {
    const int m = std::min(P, n - j0);
    norm_rows(j0, m, L.input_norm.f32);
    const MatmulOut K{&L.k_proj.ref, k}, V{&L.v_proj.ref, v}, Q{&L.q_proj.ref, q};
    if (g.k_eq_v) {
      if (one_piece) matmul_shared_input(*pool_, xn, m, {K, Q}, mm);
      else matmul(*pool_, xn, m, L.k_proj.ref, k, mm);
      std::copy_n(k, size_t(m) * nkv * hd, v);  // V is the raw k_proj output (before k_norm, RoPE)
    } else {
      if (one_piece) matmul_shared_input(*pool_, xn, m, {K, V, Q}, mm);
      else matmul_shared_input(*pool_, xn, m, {K, V}, mm);
    }
    const float* angles = rope_table(j0, m);
    for (int j = 0; j < m; ++j) {
      const int64_t pos = n_past_ + j0 + j;
      for (int h = 0; h < nkv; ++h) {
        float* kh = k + (size_t(j) * nkv + h) * hd;
        rms_norm(kh, L.k_norm.f32, kh, hd, eps);
        rope_neox_table(kh, hd, g.rope_pairs, angles + size_t(j) * 2 * g.rope_pairs);
        float* vh = v + (size_t(j) * nkv + h) * hd;
        rms_norm(vh, nullptr, vh, hd, eps);  // v_norm: scale-free
      }
      kv_.store(l, kv_.slot(l, pos), k + size_t(j) * nkv * hd, v + size_t(j) * nkv * hd);
    }
  }
  // Pass 2: queries (a single piece has them from pass 1), attention over the cache, output
  // projection, residual.
  for (int j0 = 0; j0 < n; j0 += P) {
    const int m = std::min(P, n - j0);
    if (!one_piece) {
      norm_rows(j0, m, L.input_norm.f32);
      matmul(*pool_, xn, m, L.q_proj.ref, q, mm);
    }
    const float* angles = rope_table(j0, m);
    for (int j = 0; j < m; ++j)
      for (int h = 0; h < H; ++h) {
        float* qh = q + (size_t(j) * H + h) * hd;
        rms_norm(qh, L.q_norm.f32, qh, hd, eps);
        rope_neox_table(qh, hd, g.rope_pairs, angles + size_t(j) * 2 * g.rope_pairs);
      }
    attention(l, j0, m, block_end);
    matmul(*pool_, s_->attn.data(), m, L.o_proj.ref, proj, mm);
    add_residual(j0, m, L.post_attn_norm.f32, 1.f);
  }

  // MLP block: x = (x + post_ffn_norm(down(gelu(gate(xn)) * up(xn)))) * layer_scalar, xn = pre_ffn_norm(x).
  for (int j0 = 0; j0 < n; j0 += P) {
    const int m = std::min(P, n - j0);
    norm_rows(j0, m, L.pre_ffn_norm.f32);
    matmul_shared_input(*pool_, xn, m, {{&L.gate_proj.ref, s_->gate.data()}, {&L.up_proj.ref, s_->up.data()}}, mm);
    gelu_mul(s_->gate.data(), s_->up.data(), m * F);
    matmul(*pool_, s_->gate.data(), m, L.down_proj.ref, proj, mm);
    add_residual(j0, m, L.post_ffn_norm.f32, L.layer_scalar.f32[0]);  // layer_scalar scales the whole stream
  }
}

// Attention of the m rows from batch row j0 on (their queries in s_->q) over the cache, into s_->attn.
// A task is one (row, KV head): the group's query heads share every key and value row it loads. With
// fewer such tasks than kSplitTasksPerThread per thread (decode), each one's keys are split among
// several tasks, and their partial softmax-weighted sums are merged by log-sum-exp (flash-decoding), so
// both cores stream the cache.
void Context::attention(int l, int j0, int m, const int32_t* block_end) {
  const TextConfig& t = model_.config().text;
  const LayerGeometry g = t.layer(l);
  const int H = t.num_heads, hd = g.head_dim, nkv = g.n_kv_heads, G = H / nkv;
  const bool bidirectional = !g.full || rc_.image_attention == ImageAttention::AllLayers;
  const size_t score_stride = size_t(rc_.max_context) + size_t(rc_.max_chunk);
  const size_t elem = dtype_size(kv_.dtype());
  const size_t row = kv_.row_floats(l);
  const int cap = kv_.capacity(l);
  // Keys per block: one block of rows (16 KiB) stays in L1 while the group's heads pass over it.
  constexpr size_t kBlockBytes = 16 * 1024;
  const int block_keys = int(std::max<size_t>(1, kBlockBytes / (size_t(hd) * elem)));
  const int groups = m * nkv, threads = pool_->size();
  const int wanted = kSplitTasksPerThread * threads;
  const int splits = groups >= wanted ? 1 : (wanted + groups - 1) / groups;
  auto head_entry = [&](const void* entry, int kvh) {
    return static_cast<const uint8_t*>(entry) + size_t(kvh) * hd * elem;
  };
  auto task = [&](int task_id, int thread) {
    const int split = task_id % splits, group = task_id / splits;
    const int j = group / nkv, kvh = group % nkv;  // GQA: contiguous query heads share a KV head
    const int64_t pos = n_past_ + j0 + j;
    // Visible keys: [lo, hi]. Causal, extended to the end of the row's image block where images are
    // bidirectional; sliding layers also drop keys that are window or more positions back.
    const int64_t hi = bidirectional ? std::max<int64_t>(pos, block_end[j0 + j]) : pos;
    const int64_t lo = g.full ? 0 : std::max<int64_t>(0, pos - g.window + 1);
    const int64_t nk = hi - lo + 1;
    const int64_t k0 = lo + nk * split / splits, k1 = lo + nk * (split + 1) / splits;  // this task's keys
    const int count = int(k1 - k0);
    const float* q0 = s_->q.data() + (size_t(j) * H + size_t(kvh) * G) * hd;  // (G, hd)
    float* sc = s_->scores.data() + size_t(thread) * size_t(G) * score_stride;  // (G, count)
    // Calls f(first slot, offset in [k0, k1), rows) for the blocks of keys k0..k1; the slots lie in at
    // most two runs (a sliding layer's ring may wrap once), cut into blocks of block_keys.
    auto for_blocks = [&](auto&& f) {
      for (int i = 0; i < count;) {
        const int first = kv_.slot(l, k0 + i), run = std::min({count - i, cap - first, block_keys});
        f(first, i, run);
        i += run;
      }
    };
    for_blocks([&](int first, int i, int rows) {
      for (int h = 0; h < G; ++h)  // scaling 1.0: q_norm and k_norm stand in for 1/sqrt(hd)
        attention_scores(q0 + size_t(h) * hd, head_entry(kv_.k_entry(l, first), kvh), kv_.dtype(), row, rows, hd,
                         sc + size_t(h) * count + i);
    });
    float lse[kMaxGroup];
    for (int h = 0; h < G; ++h) lse[h] = softmax(sc + size_t(h) * count, count);
    // Outputs: straight into attn, or this split's slot of `partial` (hd values, then the log-sum-exp).
    auto out_of = [&](int h) {
      return splits == 1 ? s_->attn.data() + (size_t(j) * H + size_t(kvh) * G + h) * hd
                         : s_->partial.data() + (size_t(task_id) * G + h) * size_t(hd + 1);
    };
    for (int h = 0; h < G; ++h) std::fill_n(out_of(h), hd, 0.f);
    for_blocks([&](int first, int i, int rows) {
      for (int h = 0; h < G; ++h)
        attention_values(sc + size_t(h) * count + i, head_entry(kv_.v_entry(l, first), kvh), kv_.dtype(), row, rows,
                         hd, out_of(h));
    });
    if (splits > 1)
      for (int h = 0; h < G; ++h) out_of(h)[hd] = lse[h];
  };
  pool_->parallel_for(groups * splits, task);
  if (splits == 1) return;
  // Merge: out = Σ_s exp(lse_s - LSE) out_s, where out_s is normalized over its own keys.
  for (int grp = 0; grp < groups; ++grp) {
    const int j = grp / nkv, kvh = grp % nkv;
    for (int h = 0; h < G; ++h) {
      const auto part = [&](int split) { return s_->partial.data() + (size_t(grp * splits + split) * G + h) * size_t(hd + 1); };
      float top = -std::numeric_limits<float>::infinity();
      for (int sp = 0; sp < splits; ++sp) top = std::max(top, part(sp)[hd]);
      double total = 0.0;
      for (int sp = 0; sp < splits; ++sp) total += std::exp(double(part(sp)[hd]) - top);
      float* out = s_->attn.data() + (size_t(j) * H + size_t(kvh) * G + h) * hd;
      std::fill_n(out, hd, 0.f);
      for (int sp = 0; sp < splits; ++sp) {
        const float w = float(std::exp(double(part(sp)[hd]) - top) / total);
        if (w > 0.f) axpy(w, part(sp), out, hd);
      }
    }
  }
}

}  // namespace conflux

namespace conflux {

void Context::evict(int64_t begin, int64_t end) {
  const TextConfig& t = model_.config().text;
  const int64_t shift = end - begin;
  if (begin < 0 || shift < 0 || end > n_past_)
    throw std::invalid_argument("evict: range [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") is not inside the " + std::to_string(n_past_) + " cached positions");
  if (shift == 0) return;
  if (end > n_past_ - (t.sliding_window - 1))
    throw std::invalid_argument("evict: range ends at " + std::to_string(end) + ", inside the last sliding window (" +
                                std::to_string(t.sliding_window) + ") of " + std::to_string(n_past_) + " positions");
  const int64_t new_past = n_past_ - shift;
  for (int l = 0; l < t.num_layers; ++l) {
    const LayerGeometry g = t.layer(l);
    const float* inv_freq = g.full ? s_->inv_freq_full.data() : s_->inv_freq_sliding.data();
    const size_t row = kv_.row_floats(l);
    const int cap = kv_.capacity(l);
    // New positions whose entries must exist afterwards: all of them on full layers, the last
    // `capacity` on ring layers. Copy through a staging buffer because ring slots overlap.
    const int64_t first = std::max<int64_t>(0, new_past - cap);
    const int64_t moved_first = std::max(first, begin);  // entries before `begin` stay where they are
    const size_t count = size_t(new_past - moved_first);
    std::vector<float> k_stage(count * row), v_stage(count * row);
    for (int64_t q = moved_first; q < new_past; ++q)
      kv_.load(l, kv_.slot(l, q + shift), k_stage.data() + size_t(q - moved_first) * row,
               v_stage.data() + size_t(q - moved_first) * row);
    for (int64_t q = moved_first; q < new_past; ++q) {
      float* k = k_stage.data() + size_t(q - moved_first) * row;
      // Re-rotated in f32; a bf16 cache rounds the result once more on store.
      for (int h = 0; h < g.n_kv_heads; ++h) rope_neox(k + size_t(h) * g.head_dim, g.head_dim, g.rope_pairs, inv_freq, -shift);
      kv_.store(l, kv_.slot(l, q), k, v_stage.data() + size_t(q - moved_first) * row);
    }
  }
  n_past_ = new_past;
}

}  // namespace conflux
