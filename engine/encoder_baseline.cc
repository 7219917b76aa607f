// Encoder baseline: random-weight ViT and audio transformer of Gemma 4 E4B's encoder sizes, run on the
// engine's kernels (BF16 matmul, layer_norm, gelu_tanh, softmax) so their cost compares like for like
// with the encoder-free embedders.
//
// Parameter arithmetic (d = 1024, 4d = 4096 MLP, out_dim = D = 3840 of the 12B text model):
//   one layer   = q, k, v 3d² + out d² + up 4d² + down 4d² + two LayerNorms 2·2d
//               = 4·1024² + 2·1024·4096 + 4096 = 4,194,304 + 8,388,608 + 4,096 = 12,587,008
//   vision      = 12 layers 151,044,096 + final LN 2,048 + patch embed 768·1024 = 786,432
//               + position tables 2·128·1024 = 262,144 + projection 1024·3840 = 3,932,160
//               = 156,026,880  (~150M: the E4B vision encoder)
//   audio       = 24 layers 302,088,192 + final LN 2,048
//               + input 640·1024 = 655,360 + projection 3,932,160
//               = 306,677,760  (~305M: the E4B audio encoder)
//   BF16 bytes  = 2 · 462,704,640 = ~0.93 GB for both.
//
// FLOPs of one 280-token image (2520 teacher patches): matmuls 2·2520·151M = ~0.76 TFLOP, attention
// 12 layers · 2·2520²·1024·2 (scores and weighted sum) = ~0.31 TFLOP. Measured with 2 threads on a
// 2-core AMD EPYC (AVX-512) shared with other jobs: ~57 CPU-s (50-66 s wall) per 280-token image,
// ~0.9 CPU-s (0.9-1.4 s wall) per 25 audio frames (1 s of speech).
#include "engine/encoder_baseline.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/dtype.h"
#include "engine/ops.h"

namespace conflux {

namespace {

constexpr int kRowsPerTask = 8;      // rows per task of the row-wise ops: enough work to amortise a claim
constexpr int kMlpChunkRows = 256;   // MLP rows per pass: bounds the (rows, 4d) hidden buffer to 4 MB at d=1024
constexpr size_t kFillBlock = 1 << 16;  // weights generated per task at construction

// Runs fn(row) for every row in [0, n) on the pool, kRowsPerTask rows per task.
template <class F>
void for_rows(ThreadPool& pool, int n, F&& fn) {
  const int n_tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
  pool.parallel_for(n_tasks, [&](int task, int) {
    const int r1 = std::min(n, (task + 1) * kRowsPerTask);
    for (int r = task * kRowsPerTask; r < r1; ++r) fn(r);
  });
}

// splitmix64's finaliser: a good 64-bit mix, so value i of tensor t is a pure function of (seed, t, i)
// and the parallel fill gives the same weights for any thread count.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;  // 2^64 / phi, splitmix64's increment

// Uniform in [-1, 1) from the top 24 bits (a float's mantissa).
float uniform_pm1(uint64_t h) { return float(h >> 40) * 0x1p-23f - 1.f; }

// Hands out distinct tensor ids and fills tensors deterministically from the seed.
class WeightGenerator {
 public:
  WeightGenerator(uint64_t seed, ThreadPool& pool) : seed_(seed), pool_(pool) {}

  // values = offset + scale · U(-1, 1), stored in BF16.
  void fill(EncoderBaselineTensor& t, const char* name, int64_t rows, int64_t cols, float scale, float offset = 0.f) {
    const size_t n = size_t(rows) * size_t(cols);
    t.bf16.resize(n);
    const uint64_t base = mix64(seed_ ^ mix64(++next_id_ * kGolden));
    const int n_tasks = int((n + kFillBlock - 1) / kFillBlock);
    uint16_t* dst = t.bf16.data();
    pool_.parallel_for(n_tasks, [&](int task, int) {
      const size_t i1 = std::min(n, (size_t(task) + 1) * kFillBlock);
      for (size_t i = size_t(task) * kFillBlock; i < i1; ++i)
        dst[i] = f32_to_bf16(offset + scale * uniform_pm1(mix64(base + i * kGolden)));
    });
    t.ref.name = name;
    t.ref.file = "(encoder baseline: random weights)";
    t.ref.dtype = DType::BF16;
    t.ref.shape = {rows, cols};
    t.ref.data = dst;
    t.ref.nbytes = n * sizeof(uint16_t);
  }

  // A (rows, cols) weight matrix applied as y = W x: U(-a, a) with a = sqrt(3 / cols) has variance
  // 1 / cols, so each output keeps the variance of its inputs (LeCun-style), for any depth of stack.
  void matrix(EncoderBaselineTensor& t, const char* name, int64_t rows, int64_t cols) {
    fill(t, name, rows, cols, std::sqrt(3.f / float(cols)));
  }

  // LayerNorm weight 1 ± 0.1 and bias ± 0.05: near identity, but random so they are exercised.
  void norm(EncoderBaselineNorm& nrm, int dim) {
    const uint64_t base = mix64(seed_ ^ mix64(++next_id_ * kGolden));
    nrm.weight.resize(size_t(dim));
    nrm.bias.resize(size_t(dim));
    for (int i = 0; i < dim; ++i) {
      nrm.weight[size_t(i)] = 1.f + 0.1f * uniform_pm1(mix64(base + uint64_t(2 * i) * kGolden));
      nrm.bias[size_t(i)] = 0.05f * uniform_pm1(mix64(base + uint64_t(2 * i + 1) * kGolden));
    }
  }

  void stack(EncoderBaselineStack& s, int dim, int heads, int layers) {
    s.dim = dim;
    s.heads = heads;
    s.layers.resize(size_t(layers));
    const int64_t d = dim, hidden = int64_t(EncoderBaseline::kMlpRatio) * dim;
    for (auto& L : s.layers) {
      norm(L.attn_norm, dim);
      matrix(L.q, "q", d, d);
      matrix(L.k, "k", d, d);
      matrix(L.v, "v", d, d);
      matrix(L.out, "out", d, d);
      norm(L.mlp_norm, dim);
      matrix(L.up, "up", hidden, d);
      matrix(L.down, "down", d, hidden);
    }
    norm(s.final_norm, dim);
  }

 private:
  uint64_t seed_;
  ThreadPool& pool_;
  uint64_t next_id_ = 0;
};

int64_t count_stack(int dim, int layers) {
  const int64_t d = dim;
  const int64_t per_layer = 3 * d * d /* q, k, v */ + d * d /* out */ + 2 * (EncoderBaseline::kMlpRatio * d * d) + 2 * (2 * d);
  return int64_t(layers) * per_layer + 2 * d;  // + final LayerNorm
}

int64_t numel(const EncoderBaselineTensor& t) { return int64_t(t.bf16.size()); }
int64_t numel(const EncoderBaselineNorm& n) { return int64_t(n.weight.size() + n.bias.size()); }
int64_t numel(const EncoderBaselineStack& s) {
  int64_t total = numel(s.final_norm);
  for (const auto& L : s.layers)
    total += numel(L.attn_norm) + numel(L.q) + numel(L.k) + numel(L.v) + numel(L.out) + numel(L.mlp_norm) + numel(L.up) + numel(L.down);
  return total;
}

void check_positive(int v, const char* what) {
  if (v <= 0) throw std::invalid_argument(std::string("encoder baseline: ") + what + " must be positive, got " + std::to_string(v));
}

}  // namespace

// Activations, sized once for the larger of the two encoders. R = max(9 · max_image_tokens,
// max_audio_frames) rows, d = the larger width.
struct EncoderBaseline::Scratch {
  std::vector<float> x;       // (R, d) residual stream
  std::vector<float> xn;      // (R, d) normed rows (block inputs); then the attention block's output
  std::vector<float> proj;    // (R, d) K, then V rows before their transpose; the attention (heads
                              // concatenated); the MLP block's output; the pooled image rows
  std::vector<float> wide;    // (max(3d, 768) · R): [Kᵀ (d, n) | Vᵀ (d, n) | Q (n, d)]; first the image's patches
  std::vector<float> hidden;  // (kMlpChunkRows, 4d)
  std::vector<float> scores;  // (threads, R) one (row, head)'s attention weights; no R² buffer
  std::vector<float> mm;      // (threads, matmul_scratch_floats(largest input width))
  std::vector<float> out;     // (max(max_image_tokens, max_audio_frames), out_dim) when the caller passes none
  std::vector<float> pos;     // (threads, d) a widened position-table row
};

EncoderBaselineConfig encoder_baseline_e4b_config(int out_dim, uint64_t seed) {
  EncoderBaselineConfig c;  // the member defaults are the E4B sizes
  c.out_dim = out_dim;
  c.seed = seed;
  return c;
}

int64_t EncoderBaseline::count_vision_parameters(const EncoderBaselineConfig& c) {
  const int64_t d = c.vision_dim;
  return int64_t(kTeacherPatchValues) * d + 2 * int64_t(kPositionTableSide) * d + count_stack(c.vision_dim, c.vision_layers) +
         int64_t(c.out_dim) * d;
}

int64_t EncoderBaseline::count_audio_parameters(const EncoderBaselineConfig& c) {
  const int64_t d = c.audio_dim;
  return int64_t(kFrameSamples) * d + count_stack(c.audio_dim, c.audio_layers) + int64_t(c.out_dim) * d;
}

EncoderBaseline::EncoderBaseline(const EncoderBaselineConfig& config, ThreadPool& pool)
    : config_(config), pool_(pool), s_(std::make_unique<Scratch>()) {
  const EncoderBaselineConfig& c = config_;
  check_positive(c.vision_layers, "vision_layers");
  check_positive(c.vision_dim, "vision_dim");
  check_positive(c.vision_heads, "vision_heads");
  check_positive(c.audio_layers, "audio_layers");
  check_positive(c.audio_dim, "audio_dim");
  check_positive(c.audio_heads, "audio_heads");
  check_positive(c.out_dim, "out_dim");
  check_positive(c.max_image_tokens, "max_image_tokens");
  check_positive(c.max_audio_frames, "max_audio_frames");
  if (c.vision_dim % c.vision_heads != 0 || c.audio_dim % c.audio_heads != 0)
    throw std::invalid_argument("encoder baseline: each dim must be a multiple of its head count");

  WeightGenerator gen(c.seed, pool);
  gen.matrix(vision_.patch_embed, "vision.patch_embed", c.vision_dim, kTeacherPatchValues);
  // Position tables with std 0.5 (U(-a, a) has std a / sqrt(3)): the scale of the patch embedding output
  // (inputs in [0, 1] through a variance-preserving matrix), so positions are neither lost nor dominant.
  const float pos_scale = 0.5f * std::sqrt(3.f);
  gen.fill(vision_.pos_cols, "vision.pos_cols", kPositionTableSide, c.vision_dim, pos_scale);
  gen.fill(vision_.pos_rows, "vision.pos_rows", kPositionTableSide, c.vision_dim, pos_scale);
  gen.stack(vision_.stack, c.vision_dim, c.vision_heads, c.vision_layers);
  gen.matrix(vision_.projection, "vision.projection", c.out_dim, c.vision_dim);
  gen.matrix(audio_.input, "audio.input", c.audio_dim, kFrameSamples);
  gen.stack(audio_.stack, c.audio_dim, c.audio_heads, c.audio_layers);
  gen.matrix(audio_.projection, "audio.projection", c.out_dim, c.audio_dim);

  const size_t rows = std::max(size_t(kPoolSide * kPoolSide) * size_t(c.max_image_tokens), size_t(c.max_audio_frames));
  const size_t d = size_t(std::max(c.vision_dim, c.audio_dim));
  const size_t threads = size_t(pool.size());
  const int widest_input = std::max({kMlpRatio * c.vision_dim, kMlpRatio * c.audio_dim, kTeacherPatchValues, kFrameSamples});
  s_->x.resize(rows * d);
  s_->xn.resize(rows * d);
  s_->proj.resize(rows * d);
  s_->wide.resize(rows * std::max(3 * d, size_t(kTeacherPatchValues)));
  s_->hidden.resize(size_t(kMlpChunkRows) * size_t(kMlpRatio) * d);
  s_->scores.resize(threads * rows);
  // The stand-in weights are bf16, never quantized: one activation row's worth covers matmul's needs.
  s_->mm.resize(matmul_scratch_floats(widest_input, 1, int(threads)));
  s_->out.resize(size_t(std::max(c.max_image_tokens, c.max_audio_frames)) * size_t(c.out_dim));
  s_->pos.resize(threads * d);
}

EncoderBaseline::~EncoderBaseline() = default;

int64_t EncoderBaseline::vision_parameters() const {
  return numel(vision_.patch_embed) + numel(vision_.pos_cols) + numel(vision_.pos_rows) + numel(vision_.stack) +
         numel(vision_.projection);
}

int64_t EncoderBaseline::audio_parameters() const {
  return numel(audio_.input) + numel(audio_.stack) + numel(audio_.projection);
}

size_t EncoderBaseline::weight_bytes() const {
  // Matrices in BF16 (2 bytes); the LayerNorms, 4 · d per layer in f32, are counted at 4 bytes.
  auto norms = [](const EncoderBaselineStack& s) { return int64_t(s.layers.size()) * 4 * s.dim + 2 * s.dim; };
  const int64_t norm_params = norms(vision_.stack) + norms(audio_.stack);
  const int64_t bf16_params = vision_parameters() + audio_parameters() - norm_params;
  return size_t(bf16_params) * 2 + size_t(norm_params) * 4;
}

size_t EncoderBaseline::scratch_bytes() const {
  const Scratch& s = *s_;
  return sizeof(float) * (s.x.size() + s.xn.size() + s.proj.size() + s.wide.size() + s.hidden.size() + s.scores.size() +
                          s.mm.size() + s.out.size() + s.pos.size());
}

// Bidirectional multi-head attention of the n rows of s_->xn (normed) into s_->proj (n, d).
// K and V are stored transposed, (d, n) = (H, hd, n): one query's scores are then hd axpys of length n
// over contiguous key columns (measured ~2.5x faster than n/4 dot_rows calls of length hd over strided
// key rows, whose horizontal sums dominate at hd = 64), and its output hd/4 dot_rows of length n.
// Parallel over (head, row); each task computes its row of scores into a per-thread buffer (no n² buffer).
void EncoderBaseline::attention(const EncoderBaselineLayer& L, int dim, int heads, int n) {
  const int hd = dim / heads;
  float* kt = s_->wide.data();                     // (d, n)
  float* vt = kt + size_t(dim) * n;                // (d, n)
  float* q = vt + size_t(dim) * n;                 // (n, d)
  float* rows = s_->proj.data();                   // (n, d) K, then V, before transposing
  const float* xn = s_->xn.data();
  constexpr int kColsPerTask = 16;  // 16 floats = one 64-byte line of each source row per task
  auto transpose_into = [&](float* dst) {
    pool_.parallel_for((dim + kColsPerTask - 1) / kColsPerTask, [&](int task, int) {
      const int c0 = task * kColsPerTask, c1 = std::min(dim, c0 + kColsPerTask);
      for (int i = 0; i < n; ++i)
        for (int c = c0; c < c1; ++c) dst[size_t(c) * n + i] = rows[size_t(i) * dim + c];
    });
  };
  matmul(pool_, xn, n, L.k.ref, rows, s_->mm.data());
  transpose_into(kt);
  matmul(pool_, xn, n, L.v.ref, rows, s_->mm.data());
  transpose_into(vt);
  matmul(pool_, xn, n, L.q.ref, q, s_->mm.data());

  const float scale = 1.f / std::sqrt(float(hd));  // scaled dot-product attention
  constexpr int kRowsPerDot = 4;                    // dot_rows's limit
  const size_t score_stride = s_->scores.size() / size_t(pool_.size());
  float* att = s_->proj.data();  // (n, d): K and V rows are no longer needed
  auto task = [&](int task_id, int thread) {
    // Head-major task order: consecutive tasks read the same head's keys and values (cache-resident).
    const int h = task_id / n, j = task_id % n;
    const float* qj = q + size_t(j) * dim + size_t(h) * hd;  // (hd)
    const float* kh = kt + size_t(h) * hd * n;               // (hd, n)
    const float* vh = vt + size_t(h) * hd * n;               // (hd, n)
    float* sc = s_->scores.data() + size_t(thread) * score_stride;  // (n)
    std::fill_n(sc, n, 0.f);
    for (int c = 0; c < hd; ++c) axpy(qj[c] * scale, kh + size_t(c) * n, sc, n);
    softmax(sc, n);
    float* o = att + size_t(j) * dim + size_t(h) * hd;  // (hd)
    for (int c = 0; c < hd; c += kRowsPerDot)
      dot_rows(DType::F32, sc, vh + size_t(c) * n, size_t(n), std::min(kRowsPerDot, hd - c), n, o + c);
  };
  pool_.parallel_for(n * heads, task);
}

// x (n, d) in s_->x through every layer of the stack, then the final LayerNorm into s_->xn (n, d).
void EncoderBaseline::run_stack(const EncoderBaselineStack& stack, int n) {
  const int d = stack.dim, hidden_dim = kMlpRatio * stack.dim;
  float* x = s_->x.data();
  float* xn = s_->xn.data();
  float* proj = s_->proj.data();
  float* mm = s_->mm.data();
  auto add_into = [&](int j, const float* block_out) {  // x[j] += block_out[j]
    float* xj = x + size_t(j) * d;
    const float* bj = block_out + size_t(j) * d;
    for (int i = 0; i < d; ++i) xj[i] += bj[i];
  };
  for (const EncoderBaselineLayer& L : stack.layers) {
    // Attention block: x += out(attention(LN(x))).
    for_rows(pool_, n, [&](int j) {
      layer_norm(x + size_t(j) * d, L.attn_norm.weight.data(), L.attn_norm.bias.data(), xn + size_t(j) * d, d, kLayerNormEps);
    });
    attention(L, d, stack.heads, n);            // xn -> proj (n, d)
    matmul(pool_, proj, n, L.out.ref, xn, mm);  // (n, d)
    for_rows(pool_, n, [&](int j) { add_into(j, xn); });

    // MLP block: x += down(gelu(up(LN(x)))), in row chunks so the (rows, 4d) activation stays small.
    for_rows(pool_, n, [&](int j) {
      layer_norm(x + size_t(j) * d, L.mlp_norm.weight.data(), L.mlp_norm.bias.data(), xn + size_t(j) * d, d, kLayerNormEps);
    });
    for (int r0 = 0; r0 < n; r0 += kMlpChunkRows) {
      const int m = std::min(kMlpChunkRows, n - r0);
      float* h = s_->hidden.data();  // (m, 4d)
      matmul(pool_, xn + size_t(r0) * d, m, L.up.ref, h, mm);
      for_rows(pool_, m, [&](int j) {
        float* hj = h + size_t(j) * hidden_dim;
        for (int i = 0; i < hidden_dim; ++i) hj[i] = gelu_tanh(hj[i]);
      });
      matmul(pool_, h, m, L.down.ref, proj + size_t(r0) * d, mm);
    }
    for_rows(pool_, n, [&](int j) { add_into(j, proj); });
  }
  for_rows(pool_, n, [&](int j) {
    layer_norm(x + size_t(j) * d, stack.final_norm.weight.data(), stack.final_norm.bias.data(), xn + size_t(j) * d, d,
               kLayerNormEps);
  });
}

float EncoderBaseline::encode_image(const uint8_t* rgb, int width, int height, float* out) {
  constexpr int kModelPatch = kTeacherPatchSize * kPoolSide;  // 48
  if (width <= 0 || height <= 0 || width % kModelPatch != 0 || height % kModelPatch != 0)
    throw std::invalid_argument("encoder baseline: image " + std::to_string(width) + "x" + std::to_string(height) +
                                " is not a positive multiple of 48 both ways");
  const int cols = width / kModelPatch, rows = height / kModelPatch, tokens = cols * rows;
  if (tokens > config_.max_image_tokens)
    throw std::invalid_argument("encoder baseline: image of " + std::to_string(tokens) + " model patches exceeds max_image_tokens " +
                                std::to_string(config_.max_image_tokens));
  const int gw = width / kTeacherPatchSize, gh = height / kTeacherPatchSize, n = gw * gh;  // teacher grid
  const int d = config_.vision_dim;

  // Teacher patches, raster order: patch j = (py, px), values (r, c, ch) HWC, byte / 255.
  float* patches = s_->wide.data();  // (n, 768)
  for_rows(pool_, n, [&](int j) {
    const int py = j / gw, px = j % gw;
    float* dst = patches + size_t(j) * kTeacherPatchValues;
    for (int r = 0; r < kTeacherPatchSize; ++r) {
      const uint8_t* src = rgb + ((size_t(py) * kTeacherPatchSize + r) * size_t(width) + size_t(px) * kTeacherPatchSize) * 3;
      for (int i = 0; i < kTeacherPatchSize * 3; ++i) dst[r * kTeacherPatchSize * 3 + i] = float(src[i]) / 255.f;
    }
  });
  matmul(pool_, patches, n, vision_.patch_embed.ref, s_->x.data(), s_->mm.data());  // (n, d)

  // Factored position add: column row + row row of the tables. A grid wider than the table samples it
  // nearest-neighbour, as ViTs resample a learned table for other resolutions.
  auto table_index = [](int i, int extent) {
    return extent <= kPositionTableSide ? i : int(int64_t(i) * kPositionTableSide / extent);
  };
  const size_t d_stride = s_->pos.size() / size_t(pool_.size());
  pool_.parallel_for((n + kRowsPerTask - 1) / kRowsPerTask, [&](int task, int thread) {
    float* pos = s_->pos.data() + size_t(thread) * d_stride;  // (d)
    for (int j = task * kRowsPerTask; j < std::min(n, (task + 1) * kRowsPerTask); ++j) {
      float* xj = s_->x.data() + size_t(j) * d;
      convert_to_f32(DType::BF16, vision_.pos_cols.bf16.data() + size_t(table_index(j % gw, gw)) * d, pos, size_t(d));
      for (int i = 0; i < d; ++i) xj[i] += pos[i];
      convert_to_f32(DType::BF16, vision_.pos_rows.bf16.data() + size_t(table_index(j / gw, gh)) * d, pos, size_t(d));
      for (int i = 0; i < d; ++i) xj[i] += pos[i];
    }
  });

  run_stack(vision_.stack, n);  // -> xn (n, d)

  // 3x3 average pooling: model patch (mx, my) = mean of teacher patches (3mx + a, 3my + b).
  float* pooled = s_->proj.data();  // (tokens, d)
  constexpr float kInvPool = 1.f / float(kPoolSide * kPoolSide);
  for_rows(pool_, tokens, [&](int t) {
    const int my = t / cols, mx = t % cols;
    float* dst = pooled + size_t(t) * d;
    std::fill_n(dst, d, 0.f);
    for (int b = 0; b < kPoolSide; ++b)
      for (int a = 0; a < kPoolSide; ++a) {
        const float* src = s_->xn.data() + (size_t(my * kPoolSide + b) * gw + size_t(mx * kPoolSide + a)) * d;
        for (int i = 0; i < d; ++i) dst[i] += src[i];
      }
    for (int i = 0; i < d; ++i) dst[i] *= kInvPool;
  });
  float* y = out ? out : s_->out.data();  // (tokens, out_dim)
  matmul(pool_, pooled, tokens, vision_.projection.ref, y, s_->mm.data());
  double sum = 0.0;
  for (size_t i = 0; i < size_t(tokens) * config_.out_dim; ++i) sum += y[i];
  return float(sum);
}

// Bidirectional within each window of at most max_audio_frames frames: the chunk arrives whole, so every
// frame may see all of it (the upper bound on cost; a causal mask would halve only the attention, which
// is under 1% of the work at 25 frames). Windows are independent, like a chunked streaming encoder.
// No position signal: the output is discarded, and a relative-position bias would not change the cost.
float EncoderBaseline::encode_audio(const float* frames, int n_frames, float* out) {
  if (n_frames < 0) throw std::invalid_argument("encoder baseline: negative frame count " + std::to_string(n_frames));
  double sum = 0.0;
  for (int off = 0; off < n_frames; off += config_.max_audio_frames) {
    const int m = std::min(config_.max_audio_frames, n_frames - off);
    matmul(pool_, frames + size_t(off) * kFrameSamples, m, audio_.input.ref, s_->x.data(), s_->mm.data());  // (m, d)
    run_stack(audio_.stack, m);  // -> xn (m, d)
    float* y = out ? out + size_t(off) * config_.out_dim : s_->out.data();  // (m, out_dim)
    matmul(pool_, s_->xn.data(), m, audio_.projection.ref, y, s_->mm.data());
    for (size_t i = 0; i < size_t(m) * config_.out_dim; ++i) sum += y[i];
  }
  return float(sum);
}

}  // namespace conflux
