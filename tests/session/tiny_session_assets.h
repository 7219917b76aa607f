// What the session-level tests share: the tiny-a reference model and its tokenizer, and two real
// utterances from espeak-ng (different voices), made once per test binary in a temp folder.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "engine/model.h"
#include "engine/tokenizer.h"
#include "tests/session/speech_timeline.h"

namespace conflux {

struct TinySessionAssets {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  Clip a, b;                  // "what do you see on the table" (en-us), "how many shapes are there" (en-gb)
  std::filesystem::path dir;  // scratch folder, removed with the assets
  std::string error;          // set when espeak-ng or sox is missing: tests then fail with it

  explicit TinySessionAssets(const std::string& name) {
    const std::string tiny_a = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
    model = Model::load(tiny_a);
    tokenizer = std::make_unique<Tokenizer>(Tokenizer::load(tiny_a + "/tokenizer.json"));
    dir = std::filesystem::temp_directory_path() / ("conflux_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    for (const char* tool : {"espeak-ng", "sox"})
      if (!tool_available(tool)) error = std::string(tool) + " is missing: tools/setup.sh installs it";
    if (error.empty()) {
      a = synthesize(dir, "a", "-v en-us -s 160", "what do you see on the table");
      b = synthesize(dir, "b", "-v en-gb -s 140 -p 30", "how many shapes are there");
    }
  }
  ~TinySessionAssets() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

}  // namespace conflux
