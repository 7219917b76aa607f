// A flat decoder input built from text, images and audio: text ids, soft-token embeddings and image
// blocks, in order. feed_sequence() appends it to a Context in chunks of any size (never splitting an
// image, which must be one bidirectional block) and collects the logits of the rows asked for.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "engine/image.h"
#include "engine/model.h"

namespace conflux {

struct MediaSpan {
  enum class Kind { Image, Audio } kind;
  int first_row = 0;  // row of the first soft token
  int n_rows = 0;     // soft tokens
  int grid_cols = 0, grid_rows = 0;  // images only
};

struct InputSequence {
  int hidden = 0;                     // D
  std::vector<int32_t> tokens;        // (n) ids; the placeholder id on soft-token rows
  std::vector<uint8_t> is_embedding;  // (n)
  std::vector<int32_t> image_block;   // (n) -1, or the index of the image the row belongs to
  std::vector<float> embeddings;      // (n, D) soft-token rows; zeros on text rows
  std::vector<MediaSpan> media;

  explicit InputSequence(int hidden_size) : hidden(hidden_size) {}
  int size() const { return int(tokens.size()); }
  void add_text(const std::vector<int32_t>& ids);
  // <|image> + one soft token per 48x48 patch of the preprocessed image (raster order) + <image|>.
  void add_image(Context& ctx, const ImageRGB& image, int max_soft_tokens);
  // <|audio> + one soft token per 640 samples (tail zero-padded) + <audio|>. Samples: 16 kHz mono.
  void add_audio(Context& ctx, const std::vector<float>& samples);
};

// How feed_sequence splits the rows into decode() calls.
struct ChunkPolicy {
  int max_rows = 0;        // 0: as large as the Context allows
  bool random_sizes = false;
  uint64_t seed = 0;       // for random sizes in [1, max_rows]
};

// Appends `seq` to ctx. For every row with want_logits[row] != 0 (all text rows when want_logits is
// empty), one logits row (V floats) is appended to logits_out in row order.
void feed_sequence(Context& ctx, const InputSequence& seq, const ChunkPolicy& policy,
                   const std::vector<uint8_t>& want_logits, std::vector<float>& logits_out);

// Reads raw little-endian float32 (e.g. 16 kHz mono samples). Throws naming the file.
std::vector<float> read_f32_file(const std::string& path);
// Reads a WAV file (PCM 16-bit or float 32-bit, any channel count mixed to mono) and returns its
// samples and rate. Throws naming the file and what is wrong.
std::vector<float> read_wav(const std::string& path, int* sample_rate);

}  // namespace conflux
