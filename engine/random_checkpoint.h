// Random-weight checkpoints of gemma4_unified architecture, written from the same tensor table the
// loader reads (engine/weights.h): for benchmarks and for tests on shapes other than the references.
#pragma once
#include <cstdint>
#include <string>

#include "engine/config.h"
#include "engine/dtype.h"

namespace conflux {

// Writes DIR/config.json and DIR/model.safetensors (tensors in `dtype`), and a generation_config.json.
// Matrices ~ N(0, 0.02); the embedding ~ N(0, embed_std); norm weights ~ 1 + N(0, 0.1); biases ~
// N(0, 0.05); layer_scalar ~ U(0.5, 1.5); position table ~ N(0, 0.5).
void write_random_checkpoint(const std::string& dir, const ModelConfig& config, DType dtype, uint64_t seed,
                             float embed_std = 0.5f);

}  // namespace conflux
