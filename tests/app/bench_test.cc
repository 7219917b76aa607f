// `conflux make-random` and `conflux bench` end to end through the built binary: a tiny random
// checkpoint is written to a temp folder and benchmarked with --json, and the error and --help paths
// behave as the CLI conventions say (message naming the problem, exit 0 for --help).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <cstring>
#include <map>
#include <string>

#include "engine/model.h"
#include "engine/quant.h"

namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
};

std::string read_text(const fs::path& path) {
  std::string text;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
    std::fclose(f);
  }
  return text;
}

// Runs `conflux <arguments>`; stdout is read through the pipe, stderr through a temp file so the
// two stay apart (bench prints progress on stderr and the JSON alone on stdout).
CommandResult run_conflux(const std::string& arguments, const fs::path& scratch_dir) {
  const fs::path stderr_file = scratch_dir / "stderr.txt";
  const std::string command = std::string(CONFLUX_BINARY) + " " + arguments + " 2>" + stderr_file.string();
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return result;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) result.stdout_text.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.stderr_text = read_text(stderr_file);
  return result;
}

class BenchCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("conflux_bench_" + std::to_string(::getpid()) + "_" +
                                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(BenchCommand, TinyRandomCheckpointBenchmarksToJson) {
  const fs::path model_dir = dir_ / "tiny";
  // A real tokenizer pair to copy in (bench also times loading it): the tiny reference model's.
  const fs::path tokenizer_dir = fs::path(CONFLUX_SHARED_DIR) / "reference/tiny-a";
  const CommandResult made = run_conflux("make-random --preset tiny --dtype bf16 --seed 3 --out " + model_dir.string() +
                                             " --tokenizer " + (tokenizer_dir / "tokenizer.json").string(),
                                         dir_);
  ASSERT_EQ(made.exit_code, 0) << made.stderr_text;
  for (const char* name : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(model_dir / name)) << name;
  EXPECT_NE(made.stdout_text.find("parameters"), std::string::npos) << made.stdout_text;

  const CommandResult bench = run_conflux("bench --model " + model_dir.string() +
                                              " --threads 1 --prompt-tokens 16 --decode-tokens 4 --repeats 1 --formats stored --bandwidth-mib 16 --json",
                                          dir_);
  ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
  nlohmann::json report;
  ASSERT_NO_THROW(report = nlohmann::json::parse(bench.stdout_text)) << bench.stdout_text;
  for (const char* key : {"model", "dtype", "bandwidth_gb_s", "isa", "kv_cache_bytes", "tokenizer_load_s", "runs"})
    EXPECT_TRUE(report.contains(key)) << "missing key " << key << " in " << bench.stdout_text;
  EXPECT_EQ(report["dtype"], "BF16");
  EXPECT_GT(report["kv_cache_bytes"].get<double>(), 0);
  EXPECT_GT(report["tokenizer_load_s"].get<double>(), 0);
  EXPECT_FALSE(report["isa"].get<std::string>().empty());
  ASSERT_TRUE(report["runs"].is_array());
  ASSERT_EQ(report["runs"].size(), 1u);  // --threads 1: one run only
  const nlohmann::json& run = report["runs"][0];
  EXPECT_EQ(run["threads"], 1);
  EXPECT_EQ(run["format"], "BF16");  // --formats stored: the checkpoint's own dtype
  for (const char* key : {"prefill_tokens_per_s", "decode_tokens_per_s", "peak_rss_mb", "weight_bytes"}) {
    ASSERT_TRUE(run.contains(key) && run[key].is_number()) << "missing number " << key << " in " << run.dump();
    const double value = run[key].get<double>();
    EXPECT_TRUE(std::isfinite(value) && value > 0) << key << " = " << value;
  }
}

// The JSON shape on tiny-a: bandwidth_gb_s, and one run per format x thread count with sane
// values (finite, positive; weight bytes in the formats' order). Speeds are not judged here. The
// roofline fraction may exceed 1 on a model this small (its weights stay in cache), so it is only
// required to be positive and finite.
TEST_F(BenchCommand, BenchJsonHasEveryFormatAndThreadCountOnTinyA) {
  const std::string tiny_a = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
  const CommandResult bench = run_conflux("bench --model " + tiny_a +
                                              " --prompt-tokens 16 --decode-tokens 4 --repeats 1 --bandwidth-mib 16 --json",
                                          dir_);
  ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
  nlohmann::json report;
  ASSERT_NO_THROW(report = nlohmann::json::parse(bench.stdout_text)) << bench.stdout_text;
  ASSERT_TRUE(report.contains("bandwidth_gb_s") && report["bandwidth_gb_s"].is_number()) << bench.stdout_text;
  EXPECT_GT(report["bandwidth_gb_s"].get<double>(), 0);
  ASSERT_TRUE(report["bandwidth"].is_array());
  EXPECT_EQ(report["bandwidth"].size(), 2u);  // threads 1 and 2
  ASSERT_TRUE(report["runs"].is_array());
  ASSERT_EQ(report["runs"].size(), 8u);  // 4 formats x 2 thread counts
  EXPECT_EQ(report["kv_cache"], "BF16");  // the default, as llama-bench's 2-byte cache
  std::map<std::string, double> weight_bytes;
  int index = 0;
  for (const char* format : {"f32", "bf16", "q8", "q4"}) {
    for (int threads : {1, 2}) {
      const nlohmann::json& run = report["runs"][size_t(index++)];
      EXPECT_EQ(run["format"], format) << run.dump();
      EXPECT_EQ(run["threads"], threads) << run.dump();
      for (const char* key : {"prefill_tokens_per_s", "decode_tokens_per_s", "roofline_fraction", "peak_rss_mb",
                              "weight_bytes", "decode_bytes_per_token", "weight_stream_gb_s",
                              "roofline_fraction_vs_buffer_test", "roofline_fraction_with_kv", "kv_bytes_per_token"}) {
        ASSERT_TRUE(run.contains(key) && run[key].is_number()) << "missing number " << key << " in " << run.dump();
        const double value = run[key].get<double>();
        EXPECT_TRUE(std::isfinite(value) && value > 0) << key << " = " << value;
      }
      EXPECT_LE(run["decode_bytes_per_token"].get<double>(), run["weight_bytes"].get<double>());
      weight_bytes[format] = run["weight_bytes"].get<double>();
    }
  }
  EXPECT_GT(weight_bytes["f32"], weight_bytes["bf16"]);
  EXPECT_GT(weight_bytes["bf16"], weight_bytes["q8"]);
  EXPECT_GT(weight_bytes["q8"], weight_bytes["q4"]);
}

// Decode from an empty context (llama-bench's tg, the default) against decode after the prompt. With an
// 8-token prompt and 4 decode steps every position stays inside tiny-a's 16-key sliding window, so
// each layer reads all visible K/V rows: 1..4 positions from empty (mean 2.5), 9..12 after the prompt
// (mean 10.5), a ratio of exactly 4.2 whatever the layer geometry; past the window, sliding layers stop
// growing. The roofline counting those reads is the weights-only one scaled by (weights + KV) / weights.
TEST_F(BenchCommand, DecodeFromEmptyOrPromptCountsTheCacheReads) {
  const std::string tiny_a = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
  std::map<std::string, nlohmann::json> runs;
  for (const char* from : {"empty", "prompt"}) {
    const CommandResult bench = run_conflux("bench --model " + tiny_a + " --decode-from " + from +
                                                " --threads 1 --formats f32 --prompt-tokens 8 --decode-tokens 4"
                                                " --repeats 1 --bandwidth-mib 16 --json",
                                            dir_);
    ASSERT_EQ(bench.exit_code, 0) << bench.stderr_text;
    const nlohmann::json report = nlohmann::json::parse(bench.stdout_text);
    EXPECT_EQ(report["decode_from"], from);
    ASSERT_EQ(report["runs"].size(), 1u);
    runs[from] = report["runs"][0];
  }
  for (auto& [from, run] : runs) {
    const double kv = run["kv_bytes_per_token"].get<double>(), weights = run["decode_bytes_per_token"].get<double>();
    EXPECT_GT(kv, 0) << from;
    // Relative 1e-9: both sides are the same few float operations on exact byte counts.
    EXPECT_NEAR(run["roofline_fraction_with_kv"].get<double>(),
                run["roofline_fraction"].get<double>() * (weights + kv) / weights,
                1e-9 * run["roofline_fraction_with_kv"].get<double>())
        << from;
  }
  EXPECT_DOUBLE_EQ(runs["prompt"]["kv_bytes_per_token"].get<double>() / runs["empty"]["kv_bytes_per_token"].get<double>(),
                   10.5 / 2.5);

  // Past the window: after a 32-token prompt the 10 sliding layers of tiny-a each read their 16-key
  // window (2 KV heads x 32 values, K and V, 2 bytes each: 16 x 256 bytes), the 2 full layers every
  // position, 33..36 (mean 34.5) x (1 KV head x 64 values x 2 x 2 bytes = 256): 40960 + 17664 bytes.
  const CommandResult windowed = run_conflux("bench --model " + tiny_a +
                                                 " --decode-from prompt --threads 1 --formats f32 --prompt-tokens 32"
                                                 " --decode-tokens 4 --repeats 1 --bandwidth-mib 16 --json",
                                             dir_);
  ASSERT_EQ(windowed.exit_code, 0) << windowed.stderr_text;
  const nlohmann::json report = nlohmann::json::parse(windowed.stdout_text);
  EXPECT_DOUBLE_EQ(report["runs"][0]["kv_bytes_per_token"].get<double>(), 10 * 16 * 256.0 + 2 * 34.5 * 256.0);

  const CommandResult bad = run_conflux("bench --model " + tiny_a + " --decode-from middle", dir_);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.stderr_text.find("--decode-from must be empty or prompt"), std::string::npos) << bad.stderr_text;
}

// `conflux quantize` writes a folder whose matrices, loaded by --model, are byte for byte what
// quantizing at load gives, with the tokenizer copied and the config's quantization field checked.
TEST_F(BenchCommand, QuantizeWritesAFolderThatLoadsLikeQuantizingAtLoad) {
  const std::string tiny_a = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";
  for (const char* type : {"q8", "q4"}) {
    const fs::path out = dir_ / type;
    const CommandResult r = run_conflux("quantize --model " + tiny_a + " --out " + out.string() + " --type " + type, dir_);
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
    for (const char* name : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"})
      EXPECT_TRUE(fs::exists(out / name)) << name;
    const auto from_file = conflux::Model::load(out.string());
    conflux::LoadOptions opt;
    opt.format = conflux::parse_weight_format(type);
    const auto at_load = conflux::Model::load(tiny_a, opt);
    const conflux::DType want = conflux::weight_format_dtype(opt.format);
    EXPECT_EQ(from_file->weight_dtype(), want);
    EXPECT_EQ(from_file->weights().embed_tokens.ref.dtype, want);
    EXPECT_EQ(from_file->weight_bytes(), at_load->weight_bytes());
    auto same = [](const conflux::TensorRef& a, const conflux::TensorRef& b) {
      const size_t packed = size_t(a.shape[0]) * conflux::row_bytes(a.dtype, a.shape[1]);
      return a.dtype == b.dtype && a.shape == b.shape && std::memcmp(a.data, b.data, packed) == 0 &&
             std::memcmp(a.scales, b.scales, size_t(a.shape[0]) * size_t(a.shape[1] / conflux::kQuantBlock) * 2) == 0;
    };
    EXPECT_TRUE(same(from_file->weights().embed_tokens.ref, at_load->weights().embed_tokens.ref)) << type;
    EXPECT_TRUE(same(from_file->weights().layers[3].down_proj.ref, at_load->weights().layers[3].down_proj.ref)) << type;
    EXPECT_TRUE(same(from_file->weights().audio.projection.ref, at_load->weights().audio.projection.ref)) << type;
    // The folder generates like any other.
    const CommandResult g = run_conflux("generate --model " + out.string() + " --prompt hi --max-tokens 3 --greedy --threads 1", dir_);
    EXPECT_EQ(g.exit_code, 0) << g.stderr_text;
  }
  // A config whose quantization field disagrees with the tensors is named.
  const fs::path cfg = dir_ / "q8" / "config.json";
  std::string text = read_text(cfg);
  text.replace(text.find("q8_0"), 4, "q4_0");
  std::FILE* f = std::fopen(cfg.c_str(), "wb");
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  try {
    conflux::Model::load((dir_ / "q8").string());
    ADD_FAILURE() << "expected a CheckpointError";
  } catch (const conflux::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("quantization_config"), std::string::npos) << e.what();
  }
  const CommandResult bad = run_conflux("quantize --model " + tiny_a + " --out " + (dir_ / "x").string() + " --type q3", dir_);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.stderr_text.find("q3"), std::string::npos) << bad.stderr_text;
}

TEST_F(BenchCommand, UnknownPresetFailsNamingIt) {
  const CommandResult r = run_conflux("make-random --preset bogus --dtype bf16 --out " + (dir_ / "x").string(), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("bogus"), std::string::npos) << r.stderr_text;
  EXPECT_FALSE(fs::exists(dir_ / "x" / "model.safetensors"));
}

TEST_F(BenchCommand, HelpExitsZero) {
  const CommandResult bench = run_conflux("bench --help", dir_);
  EXPECT_EQ(bench.exit_code, 0);
  EXPECT_NE(bench.stdout_text.find("--prompt-tokens"), std::string::npos) << bench.stdout_text;
  const CommandResult make = run_conflux("make-random --help", dir_);
  EXPECT_EQ(make.exit_code, 0);
  EXPECT_NE(make.stdout_text.find("--preset"), std::string::npos) << make.stdout_text;
}

TEST_F(BenchCommand, BadNumbersAreRejected) {
  const CommandResult r = run_conflux("bench --model " + dir_.string() + " --repeats 0", dir_);
  EXPECT_EQ(r.exit_code, 2);  // a CliError: the options are checked before the model is loaded
  EXPECT_NE(r.stderr_text.find("--repeats"), std::string::npos) << r.stderr_text;
}

}  // namespace

namespace conflux {
namespace {

const std::string kTinyA = std::string(CONFLUX_SHARED_DIR) + "/reference/tiny-a";

// `conflux generate` runs one multimodal turn (image + 22.05 kHz WAV, resampled) through the chat
// template and streams the answer; greedy decoding is deterministic, so two runs agree.
TEST_F(BenchCommand, GenerateWithImageAndAudioIsDeterministic) {
  const fs::path wav = dir_ / "hello.wav";
  ASSERT_EQ(std::system(("espeak-ng -w " + wav.string() + " 'hello there' 2>/dev/null").c_str()), 0) << "espeak-ng missing";
  const std::string args = "generate --model " + kTinyA + " --prompt 'what is this' --image " + kTinyA +
                           "/cases/image.png --budget 70 --audio " + wav.string() + " --max-tokens 5 --greedy --threads 1";
  const CommandResult a = run_conflux(args, dir_), b = run_conflux(args, dir_);
  ASSERT_EQ(a.exit_code, 0) << a.stderr_text;
  EXPECT_FALSE(a.stdout_text.empty());
  EXPECT_EQ(a.stdout_text, b.stdout_text);
  EXPECT_NE(a.stderr_text.find("5 tokens"), std::string::npos) << a.stderr_text;
}

TEST_F(BenchCommand, GenerateNamesAMissingImage) {
  const CommandResult r = run_conflux("generate --model " + kTinyA + " --prompt hi --image /nonexistent/cat.png", dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("/nonexistent/cat.png"), std::string::npos) << r.stderr_text;
}

}  // namespace
}  // namespace conflux
