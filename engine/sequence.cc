// Building decoder input sequences from text, images and audio, and feeding them in chunks.
#include "engine/sequence.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace conflux {

void InputSequence::add_text(const std::vector<int32_t>& ids) {
  for (int32_t id : ids) {
    tokens.push_back(id);
    is_embedding.push_back(0);
    image_block.push_back(-1);
  }
  embeddings.resize(tokens.size() * size_t(hidden), 0.f);
}

void InputSequence::add_image(Context& ctx, const ImageRGB& image, int max_soft_tokens) {
  const SpecialTokens& tk = ctx.model().config().tokens;
  const ImageRGB resized = preprocess_image(image, max_soft_tokens);
  const int cols = resized.width / kModelPatchSize, rows = resized.height / kModelPatchSize, n = cols * rows;
  std::vector<float> patches;  // (n, 6912)
  std::vector<int32_t> gx, gy;
  extract_all_patches(resized, patches, gx, gy);
  add_text({tk.boi});
  const int first = size();
  const int block = int(std::count_if(media.begin(), media.end(), [](const MediaSpan& m) { return m.kind == MediaSpan::Kind::Image; }));
  tokens.resize(size_t(first + n), tk.image);
  is_embedding.resize(size_t(first + n), 1);
  image_block.resize(size_t(first + n), block);
  embeddings.resize(size_t(first + n) * hidden, 0.f);
  ctx.embed_image_patches(patches.data(), gx.data(), gy.data(), n, embeddings.data() + size_t(first) * hidden);
  media.push_back({MediaSpan::Kind::Image, first, n, cols, rows});
  add_text({tk.eoi});
}

void InputSequence::add_audio(Context& ctx, const std::vector<float>& samples) {
  const ModelConfig& c = ctx.model().config();
  const int S = c.audio.samples_per_token;
  const int n = int((samples.size() + size_t(S) - 1) / size_t(S));  // ceil: a partial last frame is one token
  std::vector<float> frames(size_t(n) * S, 0.f);                     // (n, 640), tail zero-padded
  std::copy(samples.begin(), samples.end(), frames.begin());
  add_text({c.tokens.boa});
  const int first = size();
  tokens.resize(size_t(first + n), c.tokens.audio);
  is_embedding.resize(size_t(first + n), 1);
  image_block.resize(size_t(first + n), -1);  // audio is always causal
  embeddings.resize(size_t(first + n) * hidden, 0.f);
  ctx.embed_audio_frames(frames.data(), n, embeddings.data() + size_t(first) * hidden);
  media.push_back({MediaSpan::Kind::Audio, first, n, 0, 0});
  add_text({c.tokens.eoa});
}

void feed_sequence(Context& ctx, const InputSequence& seq, const ChunkPolicy& policy,
                   const std::vector<uint8_t>& want_logits, std::vector<float>& logits_out) {
  const int n = seq.size(), V = ctx.model().config().text.vocab_size;
  const int cap = std::min(ctx.runtime().max_chunk, policy.max_rows > 0 ? policy.max_rows : ctx.runtime().max_chunk);
  std::vector<uint8_t> want(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j) want[size_t(j)] = want_logits.empty() ? !seq.is_embedding[size_t(j)] : want_logits[size_t(j)];
  std::mt19937_64 rng(policy.seed);
  int row = 0;
  while (row < n) {
    int m = policy.random_sizes ? int(std::uniform_int_distribution<int>(1, cap)(rng)) : cap;
    m = std::min(m, n - row);
    // Never cut an image: extend to the end of a block that starts inside, or stop before it.
    const int last = row + m - 1;
    if (last + 1 < n && seq.image_block[size_t(last)] >= 0 && seq.image_block[size_t(last + 1)] == seq.image_block[size_t(last)]) {
      int start = last;
      while (start > row && seq.image_block[size_t(start - 1)] == seq.image_block[size_t(last)]) --start;
      int end = last;
      while (end + 1 < n && seq.image_block[size_t(end + 1)] == seq.image_block[size_t(last)]) ++end;
      if (start > row) m = start - row;            // feed up to the image; the image goes next time
      else if (end - row + 1 <= ctx.runtime().max_chunk) m = end - row + 1;  // the whole image fits
      else throw std::invalid_argument("an image of " + std::to_string(end - start + 1) +
                                       " soft tokens does not fit in max_chunk " + std::to_string(ctx.runtime().max_chunk));
    }
    DecodeBatch b;
    b.n = m;
    b.tokens = seq.tokens.data() + row;
    b.embeddings = seq.embeddings.data() + size_t(row) * seq.hidden;
    b.is_embedding = seq.is_embedding.data() + row;
    b.image_block = seq.image_block.data() + row;
    b.want_logits = want.data() + row;
    const int n_out = int(std::count(want.begin() + row, want.begin() + row + m, uint8_t(1)));
    const size_t old = logits_out.size();
    logits_out.resize(old + size_t(n_out) * V);
    ctx.decode(b, n_out ? logits_out.data() + old : nullptr);
    row += m;
  }
}

std::vector<float> read_f32_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error(path + ": cannot open");
  const auto size = size_t(in.tellg());
  if (size % 4) throw std::runtime_error(path + ": size " + std::to_string(size) + " is not a multiple of 4 (float32)");
  std::vector<float> v(size / 4);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(size));
  return v;
}

std::vector<float> read_wav(const std::string& path, int* sample_rate) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto u32 = [&](size_t off) { uint32_t v; std::memcpy(&v, data.data() + off, 4); return v; };
  auto u16 = [&](size_t off) { uint16_t v; std::memcpy(&v, data.data() + off, 2); return v; };
  if (data.size() < 12 || std::memcmp(data.data(), "RIFF", 4) || std::memcmp(data.data() + 8, "WAVE", 4))
    throw std::runtime_error(path + ": not a RIFF/WAVE file");
  int format = 0, channels = 0, bits = 0;
  size_t off = 12;
  while (off + 8 <= data.size()) {
    const uint32_t len = u32(off + 4);
    const size_t body = off + 8;
    if (body + len > data.size() && std::memcmp(data.data() + off, "data", 4))
      throw std::runtime_error(path + ": chunk runs past the end of the file (truncated)");
    if (!std::memcmp(data.data() + off, "fmt ", 4)) {
      if (len < 16) throw std::runtime_error(path + ": fmt chunk too short");
      format = u16(body);
      channels = u16(body + 2);
      *sample_rate = int(u32(body + 4));
      bits = u16(body + 14);
      if (format == 0xFFFE && len >= 26) format = u16(body + 24);  // WAVE_FORMAT_EXTENSIBLE: sub-format
    } else if (!std::memcmp(data.data() + off, "data", 4)) {
      if (channels <= 0) throw std::runtime_error(path + ": data chunk before fmt chunk");
      const size_t avail = std::min<size_t>(len, data.size() - body);
      const int bytes = bits / 8;
      if (!((format == 1 && bits == 16) || (format == 3 && bits == 32)))
        throw std::runtime_error(path + ": unsupported WAV encoding (format " + std::to_string(format) + ", " +
                                 std::to_string(bits) + " bits); use 16-bit PCM or 32-bit float");
      const size_t frames = avail / size_t(bytes * channels);
      std::vector<float> out(frames, 0.f);
      for (size_t f = 0; f < frames; ++f) {
        float acc = 0.f;
        for (int ch = 0; ch < channels; ++ch) {
          const size_t p = body + (f * size_t(channels) + size_t(ch)) * size_t(bytes);
          if (format == 1) {
            int16_t s;
            std::memcpy(&s, data.data() + p, 2);
            acc += float(s) / 32768.f;
          } else {
            float s;
            std::memcpy(&s, data.data() + p, 4);
            acc += s;
          }
        }
        out[f] = acc / float(channels);
      }
      return out;
    }
    off = body + len + (len & 1);  // chunks are word-aligned
  }
  throw std::runtime_error(path + ": no data chunk");
}

}  // namespace conflux
