// `conflux logits`: evaluate a reference case and write its logits rows (and optionally the
// soft-token embeddings) as raw little-endian float32.
#include <cstdio>
#include <fstream>

#include "app/cli.h"
#include "engine/case_file.h"

namespace conflux::app {

namespace {
const char* kUsage =
    "usage: conflux logits --model DIR --case CASE.json --out FILE [options]\n"
    "\n"
    "Evaluates a case (reference/README.md format) and writes the logits of its text rows as raw\n"
    "little-endian float32, shape (rows, vocab).\n"
    "\n"
    "  --image-attention hf|all-layers  image soft tokens bidirectional on sliding layers only (hf,\n"
    "                                   default) or on every layer (llama.cpp)\n"
    "  --embeddings-out FILE            also write the soft-token embeddings of the media, in order\n"
    "  --threads N                      worker threads (default: all cores)\n"
    "  --chunk N                        rows per decode call (default 512; 1 = token by token)\n";

void write_f32(const std::string& path, const float* data, size_t n) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path + ": cannot create");
  out.write(reinterpret_cast<const char*>(data), std::streamsize(n * sizeof(float)));
  if (!out) throw std::runtime_error(path + ": write failed");
}
}  // namespace

ImageAttention parse_image_attention(const std::string& s) {
  if (s == "hf") return ImageAttention::SlidingOnly;
  if (s == "all-layers") return ImageAttention::AllLayers;
  throw CliError("--image-attention must be hf or all-layers, got '" + s + "'");
}

int cmd_logits(int argc, char** argv) {
  Args args(argc, argv);
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  args.reject_unknown({"model", "case", "out", "image-attention", "embeddings-out", "threads", "chunk"});
  RuntimeConfig rc;  // options first, so a typo is reported before any file is read
  rc.n_threads = args.get_int("threads", 0);
  rc.image_attention = parse_image_attention(args.get_or("image-attention", "hf"));
  const std::string out = args.require("out");
  const auto model = Model::load(args.require("model"));
  const EvalCase c = load_case(args.require("case"));
  const int chunk = args.get_int("chunk", 512);
  if (chunk < 1) throw CliError("--chunk must be at least 1");
  // An image is one bidirectional block and goes in one decode call, whatever --chunk says.
  rc.max_chunk = chunk;
  for (const auto& s : c.segments)
    if (s.kind == CaseSegment::Kind::Image)
      rc.max_chunk = std::max(rc.max_chunk, plan_resize(s.image.width, s.image.height, s.max_soft_tokens).n_tokens());
  Context ctx(*model, rc);
  const InputSequence seq = build_case_sequence(ctx, c);
  if (seq.size() > rc.max_context) throw std::runtime_error(c.path + ": " + std::to_string(seq.size()) + " rows exceed the context");
  std::vector<float> logits;
  feed_sequence(ctx, seq, ChunkPolicy{chunk, false, 0}, {}, logits);
  write_f32(out, logits.data(), logits.size());
  if (auto emb = args.get("embeddings-out")) {
    std::vector<float> rows;
    for (const auto& m : seq.media)
      rows.insert(rows.end(), seq.embeddings.begin() + size_t(m.first_row) * seq.hidden,
                  seq.embeddings.begin() + size_t(m.first_row + m.n_rows) * seq.hidden);
    write_f32(*emb, rows.data(), rows.size());
  }
  const int V = model->config().text.vocab_size;
  std::fprintf(stderr, "conflux logits: %s: %d positions, %zu logits rows x %d -> %s\n", c.name.c_str(), seq.size(),
               logits.size() / size_t(V), V, out.c_str());
  return 0;
}

}  // namespace conflux::app
