// `conflux generate`: one chat turn (text, optionally an image and/or a WAV clip) through Gemma 4's
// chat template, prefilled into the KV cache, with the answer streamed to stdout token by token.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "app/cli.h"
#include "capture/resampler.h"
#include "engine/chat_template.h"
#include "engine/image.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/sequence.h"
#include "engine/tokenizer.h"

namespace conflux::app {

ImageAttention parse_image_attention(const std::string& s);

namespace {

const char* kUsage =
    "usage: conflux generate --model DIR --prompt TEXT [options]\n"
    "\n"
    "One user turn through Gemma 4's chat template; the answer streams to stdout.\n"
    "\n"
    "  --image FILE          a PNG or JPEG shown before the prompt\n"
    "  --audio FILE.wav      a WAV clip (16-bit PCM or float, any rate, mixed to mono) heard before the prompt\n"
    "  --budget N            image soft-token budget, 1..1120 (default: the model's preprocessor_config.json\n"
    "                        max_soft_tokens, else 280)\n"
    "  --system TEXT         a system prompt\n"
    "  --thinking            let the model think first (enable_thinking)\n"
    "  --max-tokens N        stop after N tokens (default 256)\n"
    "  --greedy              argmax decoding (default: generation_config.json's sampling)\n"
    "  --temperature T --top-k K --top-p P --seed S   sampling overrides\n"
    "  --threads N           worker threads (default: all cores)\n"
    "  --max-context N       KV capacity in positions (default 4096)\n"
    "  --image-attention hf|all-layers\n"
    "  --quantize q8|q4|bf16|f32  convert the weights to this format at load (default: as stored)\n"
    "  --mmap                 read weights in place from the file mapping instead of copying them\n"
    "  --kv-cache f32|bf16   KV cache entries (default f32; bf16 halves its memory and reads)\n";

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int cmd_generate(int argc, char** argv) {
  Args args(argc, argv, {"greedy", "thinking", "mmap"});
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  args.reject_unknown({"model", "prompt", "image", "audio", "budget", "system", "thinking", "max-tokens", "greedy",
                       "temperature", "top-k", "top-p", "seed", "threads", "max-context", "image-attention", "quantize", "mmap",
                       "kv-cache"});
  const std::string dir = args.require("model");
  const std::string prompt = args.require("prompt");
  const int budget = args.get_int("budget", default_image_budget(dir));
  const int max_tokens = args.get_int("max-tokens", 256);
  RuntimeConfig rc;
  rc.n_threads = args.get_int("threads", 0);
  rc.max_context = args.get_int("max-context", 4096);
  rc.image_attention = parse_image_attention(args.get_or("image-attention", "hf"));
  rc.kv_dtype = kv_cache_option(args);

  // Inputs are read before the model so that a bad file fails fast.
  ImageRGB image;
  if (auto p = args.get("image")) image = load_image(*p);
  std::vector<float> audio;
  if (auto p = args.get("audio")) {
    int rate = 0;
    audio = read_wav(*p, &rate);
    const int embedder_rate = 16000;  // 640 samples = 40 ms per audio token
    if (rate != embedder_rate) {  // any rate: resampled with soxr, as the microphone path does
      capture::Resampler resampler(rate, embedder_rate);
      std::vector<float> resampled;
      resampler.process(audio.data(), audio.size(), resampled);
      resampler.flush(resampled);
      audio = std::move(resampled);
    }
  }
  if (args.get("image")) {
    const ResizePlan plan = plan_resize(image.width, image.height, budget);
    rc.max_chunk = std::max(rc.max_chunk, plan.n_tokens());  // an image is one chunk
  }

  const auto t_load = Clock::now();
  const auto model = Model::load(dir, load_options(args));
  const Tokenizer tok = Tokenizer::load((std::filesystem::path(dir) / "tokenizer.json").string());
  GenerationConfig gen;
  const auto gen_path = std::filesystem::path(dir) / "generation_config.json";
  if (std::filesystem::exists(gen_path)) gen = load_generation_config(gen_path.string());
  const double load_s = seconds_since(t_load);

  // The turn: media first, then the text, as in Gemma's examples.
  std::vector<ChatMessage> messages;
  if (auto sys = args.get("system")) messages.push_back({"system", {{ChatPart::Kind::Text, *sys}}});
  ChatMessage user{"user", {}};
  if (args.get("image")) user.parts.push_back({ChatPart::Kind::Image, ""});
  if (args.get("audio")) user.parts.push_back({ChatPart::Kind::Audio, ""});
  user.parts.push_back({ChatPart::Kind::Text, prompt});
  messages.push_back(user);
  ChatTemplateOptions opts;
  opts.enable_thinking = args.flag("thinking");
  if (tok.bos_id() >= 0) opts.bos_token = tok.piece(tok.bos_id());
  const std::string rendered = render_chat(messages, opts);

  // Expand each placeholder into <|image>/<|audio> + soft tokens + end marker. The placeholder strings
  // are the tokenizer's own pieces for the config's image and audio token ids.
  const ModelConfig& cfg = model->config();
  const std::string image_ph = tok.piece(cfg.tokens.image), audio_ph = tok.piece(cfg.tokens.audio);
  Context ctx(*model, rc);
  InputSequence seq(cfg.text.hidden_size);
  const auto t_prefill = Clock::now();
  size_t at = 0;
  while (at < rendered.size()) {
    const size_t i = image_ph.empty() ? std::string::npos : rendered.find(image_ph, at);
    const size_t a = audio_ph.empty() ? std::string::npos : rendered.find(audio_ph, at);
    const size_t next = std::min(i, a);
    seq.add_text(tok.encode(std::string_view(rendered).substr(at, next - at), false));
    if (next == std::string::npos) break;
    if (next == i) {
      seq.add_image(ctx, image, budget);
      at = i + image_ph.size();
    } else {
      seq.add_audio(ctx, audio);
      at = a + audio_ph.size();
    }
  }
  if (seq.size() >= rc.max_context)
    throw std::runtime_error("the prompt has " + std::to_string(seq.size()) + " positions; --max-context is " +
                             std::to_string(rc.max_context));
  std::vector<uint8_t> want(size_t(seq.size()), 0);
  want.back() = 1;
  std::vector<float> logits;
  feed_sequence(ctx, seq, {}, want, logits);
  const double prefill_s = seconds_since(t_prefill);

  SamplingParams sp;
  sp.temperature = gen.do_sample ? gen.temperature : 0.f;
  sp.top_k = gen.top_k;
  sp.top_p = gen.top_p;
  if (args.flag("greedy")) sp.temperature = 0.f;
  sp.temperature = float(args.get_double("temperature", sp.temperature));
  sp.top_k = args.get_int("top-k", sp.top_k);
  sp.top_p = float(args.get_double("top-p", sp.top_p));
  sp.seed = uint64_t(args.get_int("seed", 0));
  sp.suppress_tokens = gen.suppress_tokens;
  sp.stop_tokens = gen.eos_token_ids;
  if (sp.stop_tokens.empty() && tok.eos_id() >= 0) sp.stop_tokens.push_back(tok.eos_id());
  const int V = cfg.text.vocab_size;
  Sampler sampler(sp, V);
  StreamingDetokenizer detok(tok);

  const auto t_decode = Clock::now();
  int generated = 0;
  for (; generated < max_tokens && ctx.n_past() < rc.max_context; ++generated) {
    const int32_t id = sampler.sample(logits.data());
    if (sampler.is_stop(id)) break;
    const std::string piece = detok.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    DecodeBatch b;
    b.n = 1;
    b.tokens = &id;
    ctx.decode(b, logits.data());
  }
  const std::string rest = detok.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  const double decode_s = seconds_since(t_decode);
  std::fprintf(stderr, "[load %.2f s | prompt %d positions in %.2f s (%.1f tok/s) | %d tokens in %.2f s (%.1f tok/s)]\n",
               load_s, seq.size(), prefill_s, seq.size() / prefill_s, generated, decode_s,
               generated > 0 ? generated / decode_s : 0.0);
  return 0;
}

}  // namespace conflux::app
