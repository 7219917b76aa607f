// Resampler: libsoxr streaming conversion, mono float32 in and out (see resampler.h).
#include "capture/resampler.h"

#include <soxr.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace conflux::capture {

namespace {

void check_soxr(soxr_error_t error, const char* what) {
  if (error) throw std::runtime_error(std::string("resampler: ") + what + ": " + error);
}

// Output room for `input_count` more input samples: the exact ratio rounded up, plus slack for samples
// the filter held back from earlier calls. Any size is correct (process() loops while soxr has more);
// the slack only saves iterations, so it is a round number of the order of soxr HQ's latency at the
// usual ratios (measured 200..500 output samples).
size_t output_room(size_t input_count, double ratio) {
  constexpr size_t kSlack = 512;
  return static_cast<size_t>(std::ceil(static_cast<double>(input_count) * ratio)) + kSlack;
}

}  // namespace

Resampler::Resampler(double input_rate, double output_rate, Quality quality)
    : input_rate_(input_rate), output_rate_(output_rate) {
  if (!(input_rate > 0) || !(output_rate > 0)) {
    throw std::invalid_argument("resampler: sample rates must be positive");
  }
  if (input_rate == output_rate) return;  // passthrough: no filter, bit-exact copy

  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t q = soxr_quality_spec(quality == Quality::kHigh ? SOXR_HQ : SOXR_VHQ, 0);
  // One thread: the microphone's consumer thread must not spread onto the cores the model uses.
  const soxr_runtime_spec_t runtime = soxr_runtime_spec(1);
  constexpr unsigned kMono = 1;
  soxr_error_t error = nullptr;
  resampler_ = soxr_create(input_rate, output_rate, kMono, &error, &io, &q, &runtime);
  check_soxr(error, "soxr_create");
}

Resampler::~Resampler() {
  if (resampler_) soxr_delete(resampler_);
}

void Resampler::process(const float* input, size_t count, std::vector<float>& out) {
  if (!resampler_) {
    out.insert(out.end(), input, input + count);
    return;
  }
  const double ratio = output_rate_ / input_rate_;
  size_t consumed = 0;
  // soxr stops early when the output room is exhausted; loop until it has taken every input sample.
  while (consumed < count) {
    const size_t old_size = out.size();
    out.resize(old_size + output_room(count - consumed, ratio));
    size_t input_used = 0, produced = 0;
    check_soxr(soxr_process(resampler_, input + consumed, count - consumed, &input_used,
                            out.data() + old_size, out.size() - old_size, &produced),
               "soxr_process");
    out.resize(old_size + produced);
    consumed += input_used;
    if (input_used == 0 && produced == 0) break;  // cannot happen with output room; never spin
  }
}

void Resampler::flush(std::vector<float>& out) {
  if (!resampler_) return;
  // A null input tells soxr the signal has ended; it then releases its tail over one or more calls, so
  // the block size is only a step (of the order of the tail itself, a few hundred samples).
  constexpr size_t kTailBlock = 1024;
  for (;;) {
    const size_t old_size = out.size();
    out.resize(old_size + kTailBlock);
    size_t produced = 0;
    check_soxr(soxr_process(resampler_, nullptr, 0, nullptr, out.data() + old_size, kTailBlock, &produced),
               "soxr_process (flush)");
    out.resize(old_size + produced);
    if (produced == 0) break;
  }
  check_soxr(soxr_clear(resampler_), "soxr_clear");
}

double Resampler::pending_output_samples() const { return resampler_ ? soxr_delay(resampler_) : 0.0; }

}  // namespace conflux::capture
