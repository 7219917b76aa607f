// Microphone: live audio input through PortAudio, delivered as 16 kHz mono float32 chunks stamped on
// std::chrono::steady_clock.
//
// Threads: PortAudio's callback thread only copies the device's samples and the ADC time of each
// buffer into lock-free SPSC rings (no allocation, lock, logging or I/O there). A consumer thread owned
// by this class drains the rings, mixes to mono, resamples to 16 kHz (libsoxr; skipped when the device
// already runs at 16 kHz, so samples stay bit-exact), stamps the chunks and calls the chunk callback.
//
// Clock: the stream's time base (PortAudio's, in which ADC times are given) is anchored to steady_clock
// ONCE per start(), from the first buffer: its ADC time is mapped onto steady_clock through the offset
// between Pa_GetStreamTime() and steady_clock::now() read back to back (with ALSA both are
// CLOCK_MONOTONIC, so that offset is ~0 there; other host APIs may differ). From then on a sample's time is
// the anchor plus its sample count divided by the nominal rate, i.e. the audio is its own clock; this
// keeps chunk times exactly 1/16000 s per sample apart (no driver jitter) at the cost of the drift
// between the device's crystal and steady_clock (typically under 100 ppm, i.e. under 6 ms per minute),
// which stats().adc_minus_sample_clock_s shows. Buffers dropped because the ring was full are skipped
// on that timeline: the resampler is flushed and restarted after the gap and time jumps by the exact
// number of frames lost, so every delivered sample keeps its true time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "capture/resampler.h"
#include "capture/spsc_ring.h"

namespace conflux::capture {

// One input-capable device as PortAudio reports it (for `conflux devices` and device selection).
struct DeviceInfo {
  int index = -1;
  std::string name;
  std::string host_api;
  int max_input_channels = 0;
  double default_sample_rate = 0;
  bool is_default_input = false;
};

// Sample format the device stream is opened with. PortAudio converts to it when the hardware differs;
// Int16 exists for devices (and test files) that deliver 16-bit integers directly.
enum class DeviceSampleFormat { kFloat32, kInt16 };

struct MicrophoneConfig {
  // "" = the default input device; all digits = a PortAudio device index; anything else = an exact
  // device name, or failing that a case-insensitive substring of one.
  std::string device;
  double device_sample_rate = 0;  // 0 = the device's default rate
  int channels = 0;               // 0 = mono if the device accepts it, else stereo; mixed down to mono
  DeviceSampleFormat sample_format = DeviceSampleFormat::kFloat32;
  unsigned long frames_per_buffer = 0;  // 0 = let PortAudio choose (lowest latency)
  double ring_seconds = 2.0;            // audio the ring holds if the consumer thread stalls
  Resampler::Quality quality = Resampler::Quality::kHigh;
};

// Counters, readable from any thread while running.
struct MicrophoneStats {
  uint64_t callbacks = 0;          // PortAudio callbacks with input
  uint64_t device_frames = 0;      // frames the device delivered (at the device rate)
  uint64_t delivered_samples = 0;  // 16 kHz mono samples handed to the chunk callback
  uint64_t ring_overflows = 0;     // device buffers dropped because the ring was full
  uint64_t dropped_frames = 0;     // frames in those buffers
  uint64_t input_overflows = 0;    // callbacks PortAudio flagged paInputOverflow (driver lost data)
  uint64_t device_errors = 0;      // errors reported through the error callback
  double adc_minus_sample_clock_s = 0;  // latest buffer's ADC time minus its time on the sample clock
};

class Microphone {
 public:
  static constexpr double kOutputSampleRate = 16000;  // the model's audio rate

  using ChunkCallback = std::function<void(const float* samples, size_t count,
                                           std::chrono::steady_clock::time_point first_sample_time)>;
  // Called on the consumer thread when the device fails or its stream stops by itself (device removed).
  using ErrorCallback = std::function<void(const std::string& device_name, const std::string& error_text)>;

  // Resolves the device and opens (does not start) the stream. Throws std::runtime_error naming the
  // device and listing the available inputs when it does not exist, or with PortAudio's error text.
  Microphone(MicrophoneConfig config, ChunkCallback on_chunk, ErrorCallback on_error = {});
  ~Microphone();  // stops and closes
  Microphone(const Microphone&) = delete;
  Microphone& operator=(const Microphone&) = delete;

  void start();  // may be called again after stop()
  // Stops the device, delivers what is still buffered (including the resampler's tail), joins the
  // consumer thread. Safe to call twice. Never call it from the chunk or error callback.
  void stop();
  bool running() const { return running_; }

  MicrophoneStats stats() const;
  const std::string& device_name() const { return device_name_; }
  double device_sample_rate() const { return device_rate_; }
  int device_channels() const { return channels_; }

  // Input devices PortAudio can see (initialises PortAudio for the call).
  static std::vector<DeviceInfo> list_devices();

 private:
  friend struct MicrophoneTestAccess;  // tests drive the callback body and stop the stream underneath
  friend struct PortAudioBridge;       // PortAudio's C callbacks, with PortAudio's exact signatures

  // What the callback records per device buffer, pushed after that buffer's samples.
  struct BlockHeader {
    double adc_time;                   // PortAudio stream time of the buffer's first frame
    uint64_t frames;                   // frames in the buffer
    uint64_t frames_dropped_before;    // frames lost to ring overflow just before this buffer
  };

  // Real-time side (PortAudio's callback thread): copies only.
  void on_device_buffer(const void* input, unsigned long frame_count, double adc_time, bool input_overflow);

  void consumer_loop();
  void drain_rings();
  void process_block(const BlockHeader& block);
  void deliver(std::vector<float>& samples);
  void anchor_clock(const BlockHeader& first_block);
  void start_segment_after_gap(uint64_t frames_lost);
  void check_stream_health();
  void report_error(const std::string& text);

  MicrophoneConfig config_;
  ChunkCallback on_chunk_;
  ErrorCallback on_error_;

  std::string device_name_;
  int device_index_ = -1;
  double device_rate_ = 0;
  int channels_ = 1;
  size_t bytes_per_frame_ = 0;
  void* stream_ = nullptr;  // PaStream*

  std::unique_ptr<SpscRing<std::byte>> sample_ring_;  // interleaved device frames, as delivered
  std::unique_ptr<SpscRing<BlockHeader>> block_ring_;
  std::unique_ptr<Resampler> resampler_;

  // Touched only by the callback thread.
  uint64_t frames_dropped_pending_ = 0;

  // Touched only by the consumer thread (and start/stop while it is not running).
  bool anchored_ = false;
  bool adc_times_usable_ = false;                // the host API gives real ADC times (not 0)
  double stream_to_steady_offset_s_ = 0;         // steady minus stream time, fixed at the anchor
  std::chrono::steady_clock::time_point first_frame_time_;  // the anchor: the stream's first frame
  uint64_t frames_on_timeline_ = 0;              // device frames received or dropped since the anchor
  std::chrono::steady_clock::time_point segment_start_;  // time of the current segment's first sample
  uint64_t segment_output_samples_ = 0;          // 16 kHz samples delivered in the current segment
  bool stream_failure_reported_ = false;
  std::vector<std::byte> block_bytes_;
  std::vector<float> mono_;
  std::vector<float> output_;

  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};        // stop() has begun: the stream stopping is expected
  std::atomic<bool> consumer_finish_{false};  // the stream is stopped: drain, flush and exit
  std::atomic<bool> stream_finished_{false};  // set by PortAudio when the stream stops for any reason
  std::mutex stream_control_mutex_;           // serialises Pa_GetStreamTime with Pa_StopStream
  std::thread consumer_;

  std::atomic<uint64_t> callbacks_{0};
  std::atomic<uint64_t> device_frames_{0};
  std::atomic<uint64_t> delivered_samples_{0};
  std::atomic<uint64_t> ring_overflows_{0};
  std::atomic<uint64_t> dropped_frames_{0};
  std::atomic<uint64_t> input_overflows_{0};
  std::atomic<uint64_t> device_errors_{0};
  std::atomic<double> adc_minus_sample_clock_s_{0};
};

}  // namespace conflux::capture
