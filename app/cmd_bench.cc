// `conflux bench`: prefill and decode throughput of a checkpoint, llama-bench style. For each thread
// count: a pp-style prefill of --prompt-tokens random ids from an empty context, then --decode-tokens
// greedy single-token steps, each phase timed --repeats times and reported as the median.
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "app/cli.h"
#include "engine/tokenizer.h"
#include "engine/model.h"
#include "engine/ops.h"

namespace conflux::app {

int run_live_bench(const Args& args, const Model& model, const Tokenizer& tok);

namespace {

const char* kUsage =
    "usage: conflux bench --model DIR [options]\n"
    "\n"
    "Measures prefill tokens/s (random prompt from an empty context, fed in chunks of 512) and decode\n"
    "tokens/s (greedy single-token steps after that prompt); each is the median of --repeats runs.\n"
    "Also reports weight bytes, dtype, kernel ISA, KV cache bytes and peak RSS (MiB; the JSON's\n"
    "peak_rss_mb is MiB too).\n"
    "\n"
    "  --model DIR          checkpoint folder (config.json + safetensors)\n"
    "  --threads N          only this thread count (default: 1 and 2)\n"
    "  --prompt-tokens N    prefill length (default 512)\n"
    "  --decode-tokens N    decode steps after the prefill (default 64)\n"
    "  --repeats N          runs per measurement, median reported (default 3)\n"
    "  --json               print one JSON object instead of the table\n"
    "\n"
    "conflux bench --model DIR --scenario live [--speed realtime|max] [--encoder-baseline] [--json]\n"
    "  plays a scripted live timeline (espeak-ng speech between silences, videotestsrc camera frames)\n"
    "  through the streaming session and reports audio/video frame->KV latency, end-of-turn->first-token\n"
    "  (p50/p95/p99), decode tokens/s, real-time factor, drops and peak RSS; --encoder-baseline adds the\n"
    "  same run with E4B-sized stand-in encoders. Also: --turns N (3), --budget N (the model's), --video-fps F (5),\n"
    "  --answer-tokens N (16), --threads N.\n";

// pp512 convention (llama-bench): the prompt goes in 512-row decode calls.
constexpr int kPrefillChunk = 512;
constexpr int kDefaultPromptTokens = 512;
constexpr int kDefaultDecodeTokens = 64;
constexpr int kDefaultRepeats = 3;
const std::vector<int> kDefaultThreadCounts = {1, 2};
// Fixed, so every run and every checkpoint sees the same prompt.
constexpr uint64_t kPromptSeed = 42;
constexpr double kBytesPerMib = 1024.0 * 1024.0;

using Clock = std::chrono::steady_clock;

struct BenchSettings {
  int prompt_tokens = kDefaultPromptTokens;
  int decode_tokens = kDefaultDecodeTokens;
  int repeats = kDefaultRepeats;
};

struct ThreadRun {
  int threads = 0;
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  double peak_rss_mb = 0;
  size_t kv_cache_bytes = 0;
};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 ? v[mid] : 0.5 * (v[mid - 1] + v[mid]);
}

// Linux reports ru_maxrss in KiB; this is the process's peak so far, so it only grows across runs.
double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  constexpr double kBytesPerKib = 1024.0;
  return double(usage.ru_maxrss) * kBytesPerKib / kBytesPerMib;
}

int32_t argmax(const float* v, int n) { return int32_t(std::max_element(v, v + n) - v); }

// Uniform ids over the vocabulary, skipping the marker/control ids so every row is ordinary text.
std::vector<int32_t> random_prompt(const ModelConfig& config, int n) {
  const SpecialTokens& k = config.tokens;
  const int32_t special[] = {k.boi, k.eoi, k.image, k.video, k.boa, k.eoa, k.audio, k.bos, k.eos, k.pad};
  std::mt19937_64 rng(kPromptSeed);
  std::uniform_int_distribution<int32_t> pick(0, config.text.vocab_size - 1);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) {
    do id = pick(rng);
    while (std::find(std::begin(special), std::end(special), id) != std::end(special));
  }
  return ids;
}

// Prefill from position 0 in kPrefillChunk pieces; the logits of the last prompt row land in `logits`.
double time_prefill(Context& ctx, const std::vector<int32_t>& prompt, float* logits) {
  ctx.reset();
  const auto start = Clock::now();
  for (size_t done = 0; done < prompt.size();) {
    DecodeBatch batch;
    batch.n = int(std::min(prompt.size() - done, size_t(kPrefillChunk)));
    batch.tokens = prompt.data() + done;
    ctx.decode(batch, logits);  // only the chunk's last row wants logits: the final chunk's is the prompt's
    done += size_t(batch.n);
  }
  return seconds_since(start);
}

// Greedy decode continuing from the prefill: argmax of each step's logits is the next input.
// Allocation-free: the batch lives on the stack and `logits` is the caller's buffer.
double time_decode(Context& ctx, int steps, float* logits) {
  const int vocab = ctx.model().config().text.vocab_size;
  int32_t next = argmax(logits, vocab);
  DecodeBatch batch;
  batch.n = 1;
  batch.tokens = &next;
  const auto start = Clock::now();
  for (int i = 0; i < steps; ++i) {
    ctx.decode(batch, logits);
    next = argmax(logits, vocab);
  }
  return seconds_since(start);
}

ThreadRun bench_threads(const Model& model, const std::vector<int32_t>& prompt, const BenchSettings& s, int threads) {
  RuntimeConfig rc;
  rc.n_threads = threads;
  rc.max_chunk = kPrefillChunk;
  rc.max_context = s.prompt_tokens + s.decode_tokens + 1;  // +1: the last decode's token fits too
  // One Context per thread count; reset() rewinds it, and its cache rows are simply overwritten.
  Context ctx(model, rc);
  std::vector<float> logits(size_t(model.config().text.vocab_size));
  std::vector<double> prefill_s, decode_s;
  for (int r = 0; r < s.repeats; ++r) {
    prefill_s.push_back(time_prefill(ctx, prompt, logits.data()));
    decode_s.push_back(time_decode(ctx, s.decode_tokens, logits.data()));
    std::fprintf(stderr, "conflux bench: threads %d run %d/%d: prefill %.3f s, decode %.3f s\n", threads, r + 1,
                 s.repeats, prefill_s.back(), decode_s.back());
  }
  ThreadRun run;
  run.threads = threads;
  run.prefill_tokens_per_s = s.prompt_tokens / median(prefill_s);
  run.decode_tokens_per_s = s.decode_tokens / median(decode_s);
  run.peak_rss_mb = peak_rss_mb();
  run.kv_cache_bytes = ctx.kv_bytes();
  return run;
}

int positive_option(const Args& args, const std::string& name, int fallback) {
  const int v = args.get_int(name, fallback);
  if (v < 1) throw CliError("--" + name + " must be at least 1, got " + std::to_string(v));
  return v;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  Args args(argc, argv, {"json", "encoder-baseline"});
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.get_or("scenario", "engine") == "live") {
    args.reject_unknown({"model", "scenario", "threads", "speed", "turns", "budget", "answer-tokens", "video-fps", "json",
                         "encoder-baseline"});
    const std::string dir = args.require("model");
    const auto model = Model::load(dir);
    const Tokenizer tok = Tokenizer::load((std::filesystem::path(dir) / "tokenizer.json").string());
    return run_live_bench(args, *model, tok);
  }
  if (args.get_or("scenario", "engine") != "engine") throw CliError("--scenario must be engine or live");
  args.reject_unknown({"model", "scenario", "threads", "prompt-tokens", "decode-tokens", "repeats", "json"});
  BenchSettings settings;
  settings.prompt_tokens = positive_option(args, "prompt-tokens", kDefaultPromptTokens);
  settings.decode_tokens = positive_option(args, "decode-tokens", kDefaultDecodeTokens);
  settings.repeats = positive_option(args, "repeats", kDefaultRepeats);
  const std::vector<int> thread_counts =
      args.get("threads") ? std::vector<int>{positive_option(args, "threads", 1)} : kDefaultThreadCounts;
  const bool as_json = args.flag("json");
  const std::string model_dir = args.require("model");

  const auto model = Model::load(model_dir);
  // Tokenizer load time (the 33 MB Gemma tokenizer.json is parsed at every start), median of the repeats.
  double tokenizer_load_s = -1;
  if (const auto tok_path = std::filesystem::path(model_dir) / "tokenizer.json"; std::filesystem::exists(tok_path)) {
    std::vector<double> times;
    for (int i = 0; i < settings.repeats; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const Tokenizer tok = Tokenizer::load(tok_path.string());
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    tokenizer_load_s = times[times.size() / 2];
  }
  const std::vector<int32_t> prompt = random_prompt(model->config(), settings.prompt_tokens);
  std::vector<ThreadRun> runs;
  for (int threads : thread_counts) runs.push_back(bench_threads(*model, prompt, settings, threads));

  const std::string dtype(dtype_name(model->weight_dtype()));
  const size_t kv_bytes = runs.front().kv_cache_bytes;  // depends on the context size only, not on threads
  if (as_json) {
    nlohmann::json out = {{"model", model_dir},
                          {"dtype", dtype},
                          {"weight_bytes", model->weight_bytes()},
                          {"isa", kernel_isa()},
                          {"kv_cache_bytes", kv_bytes},
                          {"prompt_tokens", settings.prompt_tokens},
                          {"decode_tokens", settings.decode_tokens},
                          {"repeats", settings.repeats},
                          {"tokenizer_load_s", tokenizer_load_s >= 0 ? nlohmann::json(tokenizer_load_s) : nlohmann::json(nullptr)},
                          {"runs", nlohmann::json::array()}};
    for (const ThreadRun& r : runs)
      out["runs"].push_back({{"threads", r.threads},
                             {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                             {"decode_tokens_per_s", r.decode_tokens_per_s},
                             {"peak_rss_mb", r.peak_rss_mb}});
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("model    %s\ndtype    %s\nweights  %zu bytes (%.1f MiB)\nisa      %s\nkv cache %zu bytes (%.1f MiB)\n",
              model_dir.c_str(), dtype.c_str(), model->weight_bytes(), double(model->weight_bytes()) / kBytesPerMib,
              kernel_isa(), kv_bytes, double(kv_bytes) / kBytesPerMib);
  if (tokenizer_load_s >= 0) std::printf("tokenizer.json loads in %.3f s\n", tokenizer_load_s);
  std::printf("prompt %d tokens, decode %d tokens, median of %d\n\n", settings.prompt_tokens, settings.decode_tokens,
              settings.repeats);
  const std::string pp = "pp" + std::to_string(settings.prompt_tokens) + " tok/s";
  const std::string tg = "tg" + std::to_string(settings.decode_tokens) + " tok/s";
  std::printf("| threads | %12s | %12s | peak RSS MiB |\n", pp.c_str(), tg.c_str());
  std::printf("|--------:|-------------:|-------------:|-------------:|\n");
  for (const ThreadRun& r : runs)
    std::printf("| %7d | %12.2f | %12.2f | %12.1f |\n", r.threads, r.prefill_tokens_per_s, r.decode_tokens_per_s,
                r.peak_rss_mb);
  return 0;
}

}  // namespace conflux::app
