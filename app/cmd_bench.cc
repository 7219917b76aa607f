// `conflux bench`: in one process, a read-only memory-bandwidth test and then, for each weight format
// (f32, bf16, q8, q4: the checkpoint converted at load) and thread count, llama-bench-style prefill
// (pp: --prompt-tokens random ids from an empty context) and decode (tg: --decode-tokens greedy steps,
// from an empty context as llama-bench's, or after the prompt) throughput, each the median of --repeats
// runs, decode as a fraction of the bandwidth roofline, and the peak RSS of that format (the high-water
// mark is reset between formats).
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "app/cli.h"
#include "engine/model.h"
#include "engine/ops.h"
#include "engine/quant.h"
#include "engine/tokenizer.h"

namespace conflux::app {

int run_live_bench(const Args& args, const Model& model, const Tokenizer& tok);

namespace {

const char* kUsage =
    "usage: conflux bench --model DIR [options]\n"
    "\n"
    "First measures read-only memory bandwidth (a stream over --bandwidth-mib MiB, far larger than the\n"
    "caches, median of 5 passes) for each thread count. Then, for each weight format of --formats (the\n"
    "checkpoint converted at load) and thread count: prefill tokens/s (random prompt from an empty\n"
    "context, fed in chunks of 512) and decode tokens/s (greedy single-token steps from an empty context,\n"
    "as llama-bench's tg, or after that prompt), each the median of --repeats runs; the roofline\n"
    "fraction = (weight bytes one decoded token reads / bandwidth) / measured time per token, with the\n"
    "bandwidth measured by streaming those same weights around each quarter of each decode (median over\n"
    "the runs; for comparison also against the buffer test), and the same counting the KV-cache bytes\n"
    "the decode's attention reads too; and the peak RSS of that format (MiB).\n"
    "\n"
    "  --model DIR          checkpoint folder (config.json + safetensors)\n"
    "  --formats LIST       comma-separated weight formats (default f32,bf16,q8,q4; 'stored' = as stored)\n"
    "  --threads N          only this thread count (default: 1 and 2)\n"
    "  --bandwidth-mib N    bandwidth test buffer (default 512)\n"
    "  --prompt-tokens N    prefill length (default 512)\n"
    "  --decode-tokens N    decode steps (default 128, llama-bench's tg128)\n"
    "  --decode-from empty|prompt\n"
    "                       decode from an empty context (default, as llama-bench) or after the prompt\n"
    "                       (the live case: attention reads --prompt-tokens more cached positions)\n"
    "  --repeats N          runs per measurement, median reported (default 3)\n"
    "  --kv-cache f32|bf16  KV cache entries (default bf16, 2 bytes as llama-bench's default f16 cache)\n"
    "  --mmap               read weights already in a run's format in place from the file mapping\n"
    "  --piece-rows N       rows per matmul inside a prefill chunk (default 64; up to 512 trades\n"
    "                       activation memory for fewer passes over the weights)\n"
    "  --json               print one JSON object instead of the table: bandwidth_gb_s (the most threads'),\n"
    "                       bandwidth [{threads, gb_s}], runs [{format, threads, prefill_tokens_per_s,\n"
    "                       decode_tokens_per_s, roofline_fraction, peak_rss_mb, weight_bytes,\n"
    "                       decode_bytes_per_token, kv_bytes_per_token, weight_stream_gb_s,\n"
    "                       roofline_fraction_with_kv, roofline_fraction_vs_buffer_test}],\n"
    "                       and the load averages before and after\n"
    "\n"
    "conflux bench --model DIR --scenario live [--speed realtime|max] [--encoder-baseline] [--json]\n"
    "  plays a scripted live timeline (espeak-ng speech between silences, videotestsrc camera frames)\n"
    "  through the streaming session and reports audio/video frame->KV latency, end-of-turn->first-token\n"
    "  (p50/p95/p99; with thinking also end-of-turn->answer, the first token after the thought), decode\n"
    "  tokens/s, real-time factor, drops and peak RSS; --encoder-baseline adds the same run with E4B-sized\n"
    "  stand-in encoders. Also: --turns N (3), --budget N (the model's), --video-fps F (5), --answer-tokens N\n"
    "  (16, 64 with thinking), --thinking on|off and --image-at-turn-end on|off (the model's), --threads N.\n";

// pp512 convention (llama-bench): the prompt goes in 512-row decode calls.
constexpr int kPrefillChunk = 512;
constexpr int kDefaultPromptTokens = 512;
constexpr int kDefaultDecodeTokens = 128;  // llama-bench's tg128
constexpr int kDefaultRepeats = 3;
const std::vector<int> kDefaultThreadCounts = {1, 2};
// Fixed, so every run and every checkpoint sees the same prompt.
constexpr uint64_t kPromptSeed = 42;
constexpr double kBytesPerMib = 1024.0 * 1024.0;
constexpr int kDefaultBandwidthMib = 512;  // 16x the 32 MiB L3 of the bench machines
constexpr int kBandwidthPasses = 5;
const char* const kDefaultFormats = "f32,bf16,q8,q4";

using Clock = std::chrono::steady_clock;

struct BenchSettings {
  int prompt_tokens = kDefaultPromptTokens;
  int decode_tokens = kDefaultDecodeTokens;
  // llama-bench's tg starts from an empty context; after the prompt is the live case, whose attention
  // also reads prompt_tokens more cached positions per layer (up to each sliding window).
  bool decode_after_prompt = false;
  int repeats = kDefaultRepeats;
  int piece_rows = RuntimeConfig{}.piece_rows;
  // As llama-bench, whose default cache is f16: the same 2 bytes per entry as bf16.
  DType kv_dtype = DType::BF16;
};

struct ThreadRun {
  std::string format;
  int threads = 0;
  double roofline_fraction = 0;  // median over the runs of each decode against the stream around it
  double bandwidth_gb_s = 0;
  size_t weight_bytes = 0;
  size_t decode_bytes_per_token = 0;
  double kv_bytes_per_token = 0;  // mean over the decode steps: K and V rows the attention reads
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  double peak_rss_mb = 0;
  size_t kv_cache_bytes = 0;
  double weight_stream_gb_s = 0;  // the decode's own weights streamed around its pieces (median of the runs)
  double roofline_vs_buffer = 0;  // the median decode against the buffer test at the start
  double roofline_with_kv = 0;    // (weights + KV bytes read) against the weights' stream
};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t mid = v.size() / 2;
  return v.size() % 2 ? v[mid] : 0.5 * (v[mid - 1] + v[mid]);
}

// The resident high-water mark (VmHWM, KiB in /proc/self/status). Writing "5" to
// /proc/self/clear_refs resets it to the current RSS, so each format's peak is its own; where that
// is not allowed, ru_maxrss (the process's peak so far) is reported instead.
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.flush();
  return bool(f);
}

double status_field_mb(const char* field) {
  constexpr double kBytesPerKib = 1024.0;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(std::strlen(field))) * kBytesPerKib / kBytesPerMib;
  return 0;
}
double current_rss_mb() { return status_field_mb("VmRSS:"); }

double peak_rss_mb() {
  constexpr double kBytesPerKib = 1024.0;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * kBytesPerKib / kBytesPerMib;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_maxrss) * kBytesPerKib / kBytesPerMib;
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string one, five, fifteen;
  f >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

// One piece of a read-only stream: `floats` values from `data`, summed by stream_sum.
struct StreamPart {
  const float* data;
  size_t floats;
};

// Read-only bandwidth (GB/s, 1e9 bytes) of streaming `parts` on `pool`, claimed dynamically (a
// descheduled thread does not stall the others): the median of `passes` timed passes after `warmups`
// untimed ones.
double stream_bandwidth(ThreadPool& pool, const std::vector<StreamPart>& parts, int warmups, int passes) {
  size_t floats = 0;
  for (const StreamPart& p : parts) floats += p.floats;
  std::vector<float> sums(parts.size());
  std::vector<double> rates;
  for (int pass = 0; pass < warmups + passes; ++pass) {
    const auto start = Clock::now();
    pool.parallel_for(int(parts.size()),
                      [&](int i, int) { sums[size_t(i)] = stream_sum(parts[size_t(i)].data, parts[size_t(i)].floats); });
    const double s = seconds_since(start);
    if (pass >= warmups) rates.push_back(double(floats) * sizeof(float) / s / 1e9);
  }
  volatile float keep = sums.empty() ? 0.f : sums[0];  // the sums are the loads' only use
  (void)keep;
  return median(rates);
}

// The buffer test: `threads` threads over 64 equal parts of `buf`, one warm-up pass (pool, TLB).
double measure_bandwidth(const std::vector<float>& buf, int threads) {
  ThreadPool pool(threads);
  constexpr int kParts = 64;
  const size_t part = buf.size() / kParts;
  std::vector<StreamPart> parts;
  for (int p = 0; p < kParts; ++p) parts.push_back({buf.data() + size_t(p) * part, part});
  return stream_bandwidth(pool, parts, 1, kBandwidthPasses);
}

// The packed bytes of every matrix one decoded token reads (Model::decode_matrices; block scales
// left out), cut into parts of at most 2 MiB so the pool's threads share them dynamically.
std::vector<StreamPart> weight_stream_parts(const Model& model) {
  constexpr size_t kPartBytes = 2 << 20;
  std::vector<StreamPart> parts;
  for (const TensorRef* m : model.decode_matrices()) {
    size_t bytes = m->nbytes;
    if (m->scales) bytes -= size_t(m->numel() / kQuantBlock) * sizeof(uint16_t);
    const auto* base = static_cast<const uint8_t*>(m->data);
    for (size_t off = 0; off + sizeof(float) <= bytes; off += kPartBytes) {
      const size_t n = std::min(kPartBytes, bytes - off) / sizeof(float);
      parts.push_back({reinterpret_cast<const float*>(base + off), n});
    }
  }
  return parts;
}

// One pass streaming the decode's weights on the run's pool: the roofline's denominator, measured on
// the same bytes and threads as the decode it judges.
double weight_stream_pass(ThreadPool& pool, const std::vector<StreamPart>& parts) {
  return stream_bandwidth(pool, parts, 0, 1);
}

// Mean bytes of K and V cache rows one decode step's attention reads, over `steps` steps whose new
// token lands at positions first, first + 1, ...: every layer reads each visible position's K and V
// row (n_kv, hd) in the cache's dtype; a sliding layer sees at most its window, a full layer all.
double kv_bytes_per_decode_token(const TextConfig& t, int64_t first, int steps, DType kv_dtype) {
  double total = 0;
  for (int i = 0; i < steps; ++i) {
    const int64_t visible = first + i + 1;  // the new token attends to itself too
    for (int l = 0; l < t.num_layers; ++l) {
      const LayerGeometry g = t.layer(l);
      const int64_t seen = g.window > 0 ? std::min<int64_t>(visible, g.window) : visible;
      total += double(seen) * 2.0 * double(g.n_kv_heads) * double(g.head_dim) * double(dtype_size(kv_dtype));
    }
  }
  return total / steps;
}

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

// A timed decode and the bandwidth memory gave while it ran.
struct DecodeTiming {
  double seconds = 0;      // the decode steps alone
  double stream_gb_s = 0;  // the weights' stream around its pieces, weighted by each piece's time
};

// Greedy decode: argmax of each step's logits is the next input. After the prompt it continues from
// the prefill's last logits; from an empty context (llama-bench's tg) it starts with `first`.
// The steps run in kDecodePieces pieces with one pass streaming the decode's weights before each piece
// and after the last (a few milliseconds against a piece's tenths of a second); a piece's bandwidth is
// the mean of the two passes around it. On these shared machines the bandwidth swings by a third from
// one minute to the next (other tenants), so a denominator measured once, before the decode, judged
// the same kernels anywhere between 74% and 114%.
// Allocation-free: the batch lives on the stack and `logits` is the caller's buffer.
DecodeTiming time_decode(Context& ctx, const std::vector<StreamPart>& parts, int steps, bool after_prompt, int32_t first,
                         float* logits) {
  constexpr int kDecodePieces = 4;
  const int vocab = ctx.model().config().text.vocab_size;
  int32_t next = first;
  if (after_prompt)
    next = argmax(logits, vocab);
  else
    ctx.reset();
  DecodeBatch batch;
  batch.n = 1;
  batch.tokens = &next;
  DecodeTiming timing;
  double stream_before = weight_stream_pass(ctx.pool(), parts), weighted = 0;
  for (int piece = 0; piece < kDecodePieces; ++piece) {
    const int begin = steps * piece / kDecodePieces, end = steps * (piece + 1) / kDecodePieces;
    const auto start = Clock::now();
    for (int i = begin; i < end; ++i) {
      ctx.decode(batch, logits);
      next = argmax(logits, vocab);
    }
    const double piece_s = seconds_since(start);
    const double stream_after = weight_stream_pass(ctx.pool(), parts);
    timing.seconds += piece_s;
    weighted += piece_s * 0.5 * (stream_before + stream_after);
    stream_before = stream_after;
  }
  timing.stream_gb_s = weighted / timing.seconds;
  return timing;
}

ThreadRun bench_threads(const Model& model, const std::vector<int32_t>& prompt, const BenchSettings& s, int threads,
                        const std::string& format) {
  RuntimeConfig rc;
  rc.n_threads = threads;
  rc.max_chunk = kPrefillChunk;
  rc.piece_rows = s.piece_rows;
  rc.kv_dtype = s.kv_dtype;
  // Room for the prompt and then the decode (the empty-context decode needs less); +1: the last
  // decode's token fits too.
  rc.max_context = s.prompt_tokens + s.decode_tokens + 1;
  // One Context per thread count; reset() rewinds it, and its cache rows are simply overwritten.
  Context ctx(model, rc);
  std::vector<float> logits(size_t(model.config().text.vocab_size));
  const std::vector<StreamPart> parts = weight_stream_parts(model);
  const double bytes_per_token = double(model.decode_bytes_per_token());
  std::vector<double> prefill_s, decode_s, stream_gb_s, fractions;
  for (int r = 0; r < s.repeats; ++r) {
    prefill_s.push_back(time_prefill(ctx, prompt, logits.data()));
    const DecodeTiming d = time_decode(ctx, parts, s.decode_tokens, s.decode_after_prompt, prompt[0], logits.data());
    decode_s.push_back(d.seconds);
    stream_gb_s.push_back(d.stream_gb_s);
    // This decode's weight bytes against what memory delivered in the same time.
    fractions.push_back(bytes_per_token * s.decode_tokens / (d.seconds * d.stream_gb_s * 1e9));
    std::fprintf(stderr,
                 "conflux bench: %s threads %d run %d/%d: prefill %.3f s, decode %.3f s, weights stream %.2f GB/s, "
                 "roofline %.1f%%\n",
                 format.c_str(), threads, r + 1, s.repeats, prefill_s.back(), decode_s.back(), stream_gb_s.back(),
                 100.0 * fractions.back());
  }
  ThreadRun run;
  run.format = format;
  run.threads = threads;
  run.weight_bytes = model.weight_bytes();
  run.decode_bytes_per_token = model.decode_bytes_per_token();
  run.kv_bytes_per_token = kv_bytes_per_decode_token(model.config().text, s.decode_after_prompt ? s.prompt_tokens : 0,
                                                     s.decode_tokens, s.kv_dtype);
  run.prefill_tokens_per_s = s.prompt_tokens / median(prefill_s);
  run.decode_tokens_per_s = s.decode_tokens / median(decode_s);
  run.weight_stream_gb_s = median(stream_gb_s);
  run.roofline_fraction = median(fractions);
  run.roofline_with_kv = run.roofline_fraction * (bytes_per_token + run.kv_bytes_per_token) / bytes_per_token;
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
  Args args(argc, argv, {"json", "encoder-baseline", "mmap"});
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.get_or("scenario", "engine") == "live") {
    args.reject_unknown({"model", "scenario", "threads", "speed", "turns", "budget", "answer-tokens", "video-fps", "json",
                         "encoder-baseline", "thinking", "image-at-turn-end"});
    const std::string dir = args.require("model");
    const auto model = Model::load(dir);
    const Tokenizer tok = Tokenizer::load((std::filesystem::path(dir) / "tokenizer.json").string());
    return run_live_bench(args, *model, tok);
  }
  if (args.get_or("scenario", "engine") != "engine") throw CliError("--scenario must be engine or live");
  args.reject_unknown({"model", "scenario", "threads", "prompt-tokens", "decode-tokens", "decode-from", "repeats", "json",
                       "formats", "bandwidth-mib", "piece-rows", "kv-cache", "mmap"});
  BenchSettings settings;
  settings.prompt_tokens = positive_option(args, "prompt-tokens", kDefaultPromptTokens);
  settings.decode_tokens = positive_option(args, "decode-tokens", kDefaultDecodeTokens);
  if (const std::string from = args.get_or("decode-from", "empty"); from == "prompt")
    settings.decode_after_prompt = true;
  else if (from != "empty")
    throw CliError("--decode-from must be empty or prompt, got '" + from + "'");
  settings.repeats = positive_option(args, "repeats", kDefaultRepeats);
  settings.piece_rows = positive_option(args, "piece-rows", settings.piece_rows);
  settings.kv_dtype = kv_cache_option(args, "bf16");
  const int bandwidth_mib = positive_option(args, "bandwidth-mib", kDefaultBandwidthMib);
  const std::vector<int> thread_counts =
      args.get("threads") ? std::vector<int>{positive_option(args, "threads", 1)} : kDefaultThreadCounts;
  std::vector<WeightFormat> formats;
  {
    std::stringstream list(args.get_or("formats", kDefaultFormats));
    for (std::string f; std::getline(list, f, ',');) {
      try {
        formats.push_back(parse_weight_format(f));
      } catch (const std::invalid_argument& e) {
        throw CliError("--formats: " + std::string(e.what()));
      }
    }
    if (formats.empty()) throw CliError("--formats lists no format");
  }
  const bool as_json = args.flag("json");
  const bool map_weights = args.flag("mmap");
  const std::string model_dir = args.require("model");
  const std::string load_before = load_average();

  // 1. Memory bandwidth, before any model is resident; the buffer is freed before the models load.
  std::vector<std::pair<int, double>> bandwidth;  // (threads, GB/s)
  {
    std::vector<float> buf(size_t(bandwidth_mib) * size_t(kBytesPerMib) / sizeof(float),
                           1.f);  // written: pages resident
    for (int threads : thread_counts) {
      bandwidth.emplace_back(threads, measure_bandwidth(buf, threads));
      std::fprintf(stderr, "conflux bench: bandwidth with %d thread(s): %.2f GB/s\n", threads, bandwidth.back().second);
    }
  }
  auto bandwidth_for = [&](int threads) {
    for (const auto& [t, gb] : bandwidth)
      if (t == threads) return gb;
    return 0.0;
  };

  // 2. Each format: converted (or copied as stored) at load, or with --mmap read in place where it is
  // already in that format; then every thread count.
  std::vector<ThreadRun> runs;
  std::string stored_dtype;
  {
    LoadOptions mapped;  // only reads the header: nothing is copied
    mapped.map_weights = true;
    stored_dtype = std::string(dtype_name(Model::load(model_dir, mapped)->weight_dtype()));
  }
  size_t kv_bytes = 0;
  bool peak_is_per_format = true;
  std::vector<double> baseline_rss;
  for (WeightFormat format : formats) {
    malloc_trim(0);  // hand freed heap back first, so the reset high-water mark starts from what is live
    peak_is_per_format = reset_peak_rss() && peak_is_per_format;
    baseline_rss.push_back(current_rss_mb());
    LoadOptions load;
    load.format = format;
    load.map_weights = map_weights;
    std::unique_ptr<Model> model = Model::load(model_dir, load);
    const std::string name = format == WeightFormat::AsStored ? stored_dtype : weight_format_name(format);
    const std::vector<int32_t> prompt = random_prompt(model->config(), settings.prompt_tokens);
    for (int threads : thread_counts) {
      ThreadRun r = bench_threads(*model, prompt, settings, threads, name);
      r.bandwidth_gb_s = bandwidth_for(threads);
      // The roofline fraction (bench_threads) judged each decode against the weights' stream around it;
      // this is the same median decode against the big-buffer test at the start.
      r.roofline_vs_buffer = double(r.decode_bytes_per_token) / (r.bandwidth_gb_s * 1e9) * r.decode_tokens_per_s;
      kv_bytes = r.kv_cache_bytes;  // depends on the context size only
      runs.push_back(r);
    }
  }
  // 3. Tokenizer load time (the 33 MB Gemma tokenizer.json is parsed at every start), median of the
  // repeats; measured after the formats so that its parse buffers are not in their RSS.
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

  const std::string load_after = load_average();

  double bandwidth_max = 0;
  for (const auto& [t, gb] : bandwidth) bandwidth_max = std::max(bandwidth_max, gb);
  if (as_json) {
    nlohmann::json out = {
        {"model", model_dir},
        {"dtype", stored_dtype},
        {"isa", kernel_isa()},
        {"kv_cache_bytes", kv_bytes},
        {"prompt_tokens", settings.prompt_tokens},
        {"piece_rows", settings.piece_rows},
        {"kv_cache", std::string(dtype_name(settings.kv_dtype))},
        {"decode_tokens", settings.decode_tokens},
        {"decode_from", settings.decode_after_prompt ? "prompt" : "empty"},
        {"repeats", settings.repeats},
        {"tokenizer_load_s", tokenizer_load_s >= 0 ? nlohmann::json(tokenizer_load_s) : nlohmann::json(nullptr)},
        {"bandwidth_gb_s", bandwidth_max},
        {"bandwidth", nlohmann::json::array()},
        {"bandwidth_buffer_mib", bandwidth_mib},
        {"peak_rss_per_format", peak_is_per_format},
        {"rss_before_model_mb",
         baseline_rss.empty() ? 0.0 : *std::min_element(baseline_rss.begin(), baseline_rss.end())},
        {"load_average_before", load_before},
        {"load_average_after", load_after},
        {"runs", nlohmann::json::array()}};
    for (const auto& [t, gb] : bandwidth) out["bandwidth"].push_back({{"threads", t}, {"gb_s", gb}});
    for (const ThreadRun& r : runs)
      out["runs"].push_back({{"format", r.format},
                             {"threads", r.threads},
                             {"prefill_tokens_per_s", r.prefill_tokens_per_s},
                             {"decode_tokens_per_s", r.decode_tokens_per_s},
                             {"roofline_fraction", r.roofline_fraction},
                             {"weight_stream_gb_s", r.weight_stream_gb_s},
                             {"roofline_fraction_vs_buffer_test", r.roofline_vs_buffer},
                             {"roofline_fraction_with_kv", r.roofline_with_kv},
                             {"kv_bytes_per_token", r.kv_bytes_per_token},
                             {"peak_rss_mb", r.peak_rss_mb},
                             {"weight_bytes", r.weight_bytes},
                             {"decode_bytes_per_token", r.decode_bytes_per_token}});
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf(
      "model    %s\nstored   %s\nisa      %s\nkv cache %zu bytes (%.1f MiB)\nload avg %s (before), %s (after)\n",
      model_dir.c_str(), stored_dtype.c_str(), kernel_isa(), kv_bytes, double(kv_bytes) / kBytesPerMib,
      load_before.c_str(), load_after.c_str());
  for (const auto& [t, gb] : bandwidth)
    std::printf("bandwidth %d thread(s): %.2f GB/s (read-only, %d MiB)\n", t, gb, bandwidth_mib);
  if (tokenizer_load_s >= 0) std::printf("tokenizer.json loads in %.3f s\n", tokenizer_load_s);
  if (!baseline_rss.empty())
    std::printf("RSS before each model loads: %.1f MiB (the binary and its libraries)\n",
                *std::min_element(baseline_rss.begin(), baseline_rss.end()));
  std::printf("prompt %d tokens (pieces of %d rows), decode %d tokens from %s, median of %d\n\n",
              settings.prompt_tokens, settings.piece_rows, settings.decode_tokens,
              settings.decode_after_prompt ? "the prompt" : "an empty context", settings.repeats);
  const std::string pp = "pp" + std::to_string(settings.prompt_tokens) + " tok/s";
  const std::string tg = "tg" + std::to_string(settings.decode_tokens) + " tok/s";
  std::printf(
      "| format | threads | weights MiB | %12s | %12s | stream GB/s | roofline | with KV | vs buffer | peak RSS MiB |\n",
      pp.c_str(), tg.c_str());
  std::printf(
      "|--------|--------:|------------:|-------------:|-------------:|------------:|---------:|--------:|----------:|-------------:|\n");
  for (const ThreadRun& r : runs)
    std::printf("| %-6s | %7d | %11.1f | %12.2f | %12.2f | %11.2f | %7.0f%% | %6.0f%% | %8.0f%% | %12.1f |\n",
                r.format.c_str(), r.threads, double(r.weight_bytes) / kBytesPerMib, r.prefill_tokens_per_s,
                r.decode_tokens_per_s, r.weight_stream_gb_s, 100.0 * r.roofline_fraction, 100.0 * r.roofline_with_kv,
                100.0 * r.roofline_vs_buffer, r.peak_rss_mb);
  return 0;
}

}  // namespace conflux::app
