// Test audio for the session tests: real speech from espeak-ng (resampled to 16 kHz by sox) laid on a
// seeded -60 dBFS noise bed, with the true start and end of each utterance.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace conflux {

// Background "silence": seeded white noise at -60 dBFS (Gaussian with sigma = 10^(-60/20) has that RMS),
// a quiet room plus microphone hiss rather than digital zero. It lies under the whole timeline, speech
// included: splicing clips with digital silence between them into the noise would make the noise's return
// after a clip an energy step that WebRTC rightly calls speech.
inline constexpr double kNoiseDbfs = -60.0;

struct Clip {
  std::vector<float> samples;  // trimmed to the first..last loud sample
};

struct Timeline {
  std::vector<float> samples;  // whole 40 ms frames
  std::vector<double> true_start_s, true_end_s;
};

// Runs a shell command; returns its exit status (0 = success).
int run_command(const std::string& command);
bool tool_available(const char* tool);
std::vector<float> read_f32(const std::filesystem::path& path);
// Speech from espeak-ng (22.05 kHz WAV) resampled by sox to 16 kHz mono float32, trimmed to its loud extent.
Clip synthesize(const std::filesystem::path& dir, const std::string& name, const std::string& espeak_args,
                const std::string& text);
std::vector<float> noise_bed(size_t count, uint32_t seed);
// Silence and clips laid end to end: silence_s[0], clips[0], silence_s[1], clips[1], ..., silence_s.back(),
// all over one noise bed, padded with noise to whole frames.
Timeline build_timeline(const std::vector<const Clip*>& clips, const std::vector<double>& silence_s);

}  // namespace conflux
