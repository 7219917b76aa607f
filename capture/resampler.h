// Resampler: streaming mono float32 sample-rate conversion (libsoxr) for the microphone path.
// Feed blocks of any size as they arrive; output appears as soon as the filter has enough history.
// When the input rate already equals the output rate it is a plain copy, so samples stay bit-exact.
#pragma once

#include <cstddef>
#include <vector>

// libsoxr's handle type, declared here so users of this header need not include <soxr.h>.
typedef struct soxr* soxr_t;

namespace conflux::capture {

class Resampler {
 public:
  // kHigh is soxr's 20-bit recipe and kVeryHigh its 28-bit one. Both are linear phase, so every
  // frequency is delayed equally and soxr removes that delay: output sample k lines up with input
  // time k / output_rate (the test measures the residual alignment error).
  enum class Quality { kHigh, kVeryHigh };

  Resampler(double input_rate, double output_rate, Quality quality = Quality::kHigh);
  ~Resampler();
  Resampler(const Resampler&) = delete;
  Resampler& operator=(const Resampler&) = delete;

  double input_rate() const { return input_rate_; }
  double output_rate() const { return output_rate_; }
  bool is_passthrough() const { return resampler_ == nullptr; }

  // Appends the output produced by `count` more input samples to `out` (possibly none yet: the filter
  // holds back the last few milliseconds until later input or flush() arrives).
  void process(const float* input, size_t count, std::vector<float>& out);

  // Ends the current signal: appends the samples still held inside the filter, then makes the
  // resampler ready for a new, unrelated signal (as after construction).
  void flush(std::vector<float>& out);

  // Output samples owed for input already given (soxr's current latency); 0 for a passthrough.
  double pending_output_samples() const;

 private:
  double input_rate_;
  double output_rate_;
  soxr_t resampler_ = nullptr;  // null when the rates are equal (passthrough)
};

}  // namespace conflux::capture
