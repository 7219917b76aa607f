// Reference case files: parsing and turning them into decoder input.
#include "engine/case_file.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace conflux {

namespace fs = std::filesystem;
using nlohmann::json;

EvalCase load_case(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
  const fs::path dir = fs::path(path).parent_path();
  auto rel = [&](const json& v) { return (dir / v.get<std::string>()).string(); };
  auto fail = [&](const std::string& what) { return std::runtime_error(path + ": " + what); };
  EvalCase c;
  c.path = path;
  c.name = j.value("name", fs::path(path).stem().string());
  if (!j.contains("segments") || !j["segments"].is_array()) throw fail("field segments is missing or not a list");
  for (const auto& s : j["segments"]) {
    CaseSegment seg;
    if (s.contains("tokens")) {
      seg.kind = CaseSegment::Kind::Tokens;
      seg.tokens = s["tokens"].get<std::vector<int32_t>>();
    } else if (s.contains("image")) {
      seg.kind = CaseSegment::Kind::Image;
      const int w = s.at("width").get<int>(), h = s.at("height").get<int>();
      const std::string file = rel(s["image"]);
      std::ifstream img(file, std::ios::binary);
      if (!img) throw fail("image file " + file + " cannot be opened");
      seg.image.width = w;
      seg.image.height = h;
      seg.image.rgb.resize(size_t(w) * h * 3);
      img.read(reinterpret_cast<char*>(seg.image.rgb.data()), std::streamsize(seg.image.rgb.size()));
      if (img.gcount() != std::streamsize(seg.image.rgb.size()))
        throw fail("image file " + file + " is shorter than " + std::to_string(w) + "x" + std::to_string(h) + " RGB8");
      seg.max_soft_tokens = s.value("max_soft_tokens", 280);
    } else if (s.contains("audio")) {
      seg.kind = CaseSegment::Kind::Audio;
      seg.audio = read_f32_file(rel(s["audio"]));
      if (s.contains("n_samples") && s["n_samples"].get<size_t>() != seg.audio.size())
        throw fail("audio file holds " + std::to_string(seg.audio.size()) + " samples, n_samples says " + s["n_samples"].dump());
      if (s.value("sample_rate", 16000) != 16000) throw fail("audio sample_rate must be 16000");
    } else {
      throw fail("a segment has none of tokens, image, audio");
    }
    c.segments.push_back(std::move(seg));
  }
  if (j.contains("evaluated_tokens")) c.evaluated_tokens = j["evaluated_tokens"].get<std::vector<int32_t>>();
  if (j.contains("logit_positions")) c.logit_positions = j["logit_positions"].get<std::vector<int64_t>>();
  if (j.contains("logits")) c.logits_file = rel(j["logits"]);
  if (j.contains("logits_hf_mask")) c.logits_hf_mask_file = rel(j["logits_hf_mask"]);
  if (j.contains("embeddings"))
    for (const auto& e : j["embeddings"]) c.embedding_files.push_back(rel(e.at("file")));
  return c;
}

InputSequence build_case_sequence(Context& ctx, const EvalCase& c) {
  InputSequence seq(ctx.model().config().text.hidden_size);
  for (const auto& s : c.segments) {
    switch (s.kind) {
      case CaseSegment::Kind::Tokens: seq.add_text(s.tokens); break;
      case CaseSegment::Kind::Image: seq.add_image(ctx, s.image, s.max_soft_tokens); break;
      case CaseSegment::Kind::Audio: seq.add_audio(ctx, s.audio); break;
    }
  }
  if (!c.evaluated_tokens.empty() && c.evaluated_tokens != seq.tokens)
    throw std::runtime_error(c.path + ": the sequence built from the segments (" + std::to_string(seq.size()) +
                             " rows) differs from evaluated_tokens (" + std::to_string(c.evaluated_tokens.size()) + ")");
  return seq;
}

}  // namespace conflux
