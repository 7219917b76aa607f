// Test audio for the session tests (see speech_timeline.h).
#include "tests/session/speech_timeline.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>

namespace conflux {

namespace {
constexpr double kSampleRate = 16000;      // the session's audio rate
constexpr size_t kFrameSamples = 640;      // 40 ms at 16 kHz
}  // namespace

// espeak-ng writes a little near-silence around the words; a sample louder than this (-40 dBFS) is speech.
constexpr float kLoudSampleThreshold = 0.01f;

// Runs a shell command; returns its exit status (0 = success).
int run_command(const std::string& command) { return std::system(command.c_str()); }

bool tool_available(const char* tool) { return run_command(std::string("command -v ") + tool + " >/dev/null 2>&1") == 0; }

std::vector<float> read_f32(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  in.seekg(0, std::ios::end);
  const auto bytes = static_cast<size_t>(in.tellg());
  in.seekg(0);
  std::vector<float> samples(bytes / sizeof(float));
  in.read(reinterpret_cast<char*>(samples.data()), static_cast<std::streamsize>(samples.size() * sizeof(float)));
  return samples;
}

// Speech from espeak-ng (22.05 kHz WAV) resampled by sox to 16 kHz mono float32, trimmed to its loud extent.
Clip synthesize(const std::filesystem::path& dir, const std::string& name, const std::string& espeak_args,
                const std::string& text) {
  const auto wav = dir / (name + ".wav");
  const auto raw = dir / (name + ".f32");
  const std::string espeak = "espeak-ng " + espeak_args + " -w '" + wav.string() + "' \"" + text + "\"";
  if (run_command(espeak) != 0) throw std::runtime_error("espeak-ng failed: " + espeak);
  const std::string sox = "sox '" + wav.string() + "' -r 16000 -c 1 -t raw -e floating-point -b 32 '" + raw.string() + "'";
  if (run_command(sox) != 0) throw std::runtime_error("sox failed: " + sox);
  std::vector<float> samples = read_f32(raw);
  auto loud = [](float x) { return std::fabs(x) > kLoudSampleThreshold; };
  const auto first = std::find_if(samples.begin(), samples.end(), loud);
  const auto last = std::find_if(samples.rbegin(), samples.rend(), loud).base();  // one past the last loud sample
  if (first >= last) throw std::runtime_error("espeak-ng produced no audible speech for " + name);
  return Clip{std::vector<float>(first, last)};
}

std::vector<float> noise_bed(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> gaussian(0.0f, static_cast<float>(std::pow(10.0, kNoiseDbfs / 20.0)));
  std::vector<float> noise(count);
  for (float& x : noise) x = gaussian(rng);
  return noise;
}

// Silence and clips laid end to end: silence_s[0], clips[0], silence_s[1], clips[1], ..., silence_s.back(),
// all over one noise bed, padded with noise to whole frames.
Timeline build_timeline(const std::vector<const Clip*>& clips, const std::vector<double>& silence_s) {
  Timeline t;
  size_t length = 0;
  std::vector<size_t> offsets;
  for (size_t i = 0; i < silence_s.size(); ++i) {
    length += static_cast<size_t>(silence_s[i] * kSampleRate);
    if (i < clips.size()) {
      offsets.push_back(length);
      length += clips[i]->samples.size();
    }
  }
  length = (length + kFrameSamples - 1) / kFrameSamples * kFrameSamples;
  t.samples = noise_bed(length, /*seed=*/20240611);
  for (size_t i = 0; i < clips.size(); ++i) {
    const auto& clip = clips[i]->samples;
    for (size_t j = 0; j < clip.size(); ++j) t.samples[offsets[i] + j] += clip[j];
    t.true_start_s.push_back(offsets[i] / kSampleRate);
    t.true_end_s.push_back((offsets[i] + clip.size() - 1) / kSampleRate);  // the last loud sample
  }
  return t;
}

}  // namespace conflux
