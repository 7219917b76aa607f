// Evaluation cases in the format of ../shared/reference/README.md: segments of token ids, images
// (raw RGB8) and audio (raw float32), the rows to return logits for, and the expected outputs.
#pragma once
#include <string>
#include <vector>

#include "engine/sequence.h"

namespace conflux {

struct CaseSegment {
  enum class Kind { Tokens, Image, Audio } kind = Kind::Tokens;
  std::vector<int32_t> tokens;
  ImageRGB image;
  int max_soft_tokens = 0;
  std::vector<float> audio;  // 16 kHz mono
};

struct EvalCase {
  std::string path;                       // the case .json
  std::string name;
  std::vector<CaseSegment> segments;
  std::vector<int32_t> evaluated_tokens;  // expected flattened ids (placeholders on soft rows), may be empty
  std::vector<int64_t> logit_positions;   // positions that have a logits row
  std::string logits_file, logits_hf_mask_file;  // absolute paths, may be empty
  std::vector<std::string> embedding_files;      // absolute paths, one per media item
};

// Parses a case file; media files are resolved relative to it. Throws naming the file and field.
EvalCase load_case(const std::string& path);

// Builds the decoder input of a case (embedding its media with ctx).
InputSequence build_case_sequence(Context& ctx, const EvalCase& c);

}  // namespace conflux
