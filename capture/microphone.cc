// Microphone: PortAudio input stream -> SPSC rings -> consumer thread (mix down, resample to 16 kHz,
// stamp on steady_clock) -> chunk callback. See microphone.h for the threading and clock contract.
#include "capture/microphone.h"

#include <fcntl.h>
#include <portaudio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace conflux::capture {

namespace {

using SteadyClock = std::chrono::steady_clock;

SteadyClock::duration seconds(double s) {
  return std::chrono::round<SteadyClock::duration>(std::chrono::duration<double>(s));
}

// The consumer sleeps this long when the rings are empty. The audio framer works in 40 ms tokens
// (640 samples at 16 kHz); polling at an eighth of that adds at most 5 ms of latency while waking the
// thread only 200 times a second. (The callback cannot wake it: signalling may take a lock.)
constexpr std::chrono::milliseconds kPollInterval{5};

// Block headers needed per ring: one per device buffer. No real driver delivers buffers smaller than
// 16 frames (0.33 ms at 48 kHz), so this many headers per ring frame can never run out first.
constexpr size_t kSmallestExpectedBufferFrames = 16;

// Pa_Initialize probes every host API; on a machine without a sound card ALSA and JACK print dozens of
// harmless lines ("cannot find card '0'", "jack server is not running") to stderr. They are hidden by
// pointing stderr at /dev/null for the duration of the call, unless CONFLUX_AUDIO_DEBUG is set. Errors
// that matter come back as PaError and are reported with their text.
PaError initialize_portaudio_quietly() {
  if (std::getenv("CONFLUX_AUDIO_DEBUG")) return Pa_Initialize();
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (saved >= 0 && devnull >= 0) ::dup2(devnull, STDERR_FILENO);
  const PaError error = Pa_Initialize();
  if (saved >= 0) {
    ::dup2(saved, STDERR_FILENO);
    ::close(saved);
  }
  if (devnull >= 0) ::close(devnull);
  return error;
}

// PortAudio is reference counted: every successful Pa_Initialize needs one Pa_Terminate.
class PortAudioLibrary {
 public:
  PortAudioLibrary() {
    if (const PaError error = initialize_portaudio_quietly(); error != paNoError) {
      throw std::runtime_error(std::string("microphone: Pa_Initialize failed: ") + Pa_GetErrorText(error));
    }
  }
  ~PortAudioLibrary() { Pa_Terminate(); }
  PortAudioLibrary(const PortAudioLibrary&) = delete;
  PortAudioLibrary& operator=(const PortAudioLibrary&) = delete;
};

std::vector<DeviceInfo> input_devices() {
  std::vector<DeviceInfo> devices;
  const PaDeviceIndex default_input = Pa_GetDefaultInputDevice();
  const PaDeviceIndex count = Pa_GetDeviceCount();
  for (PaDeviceIndex i = 0; i < count; ++i) {
    const PaDeviceInfo* info = Pa_GetDeviceInfo(i);
    if (!info || info->maxInputChannels <= 0) continue;
    const PaHostApiInfo* host = Pa_GetHostApiInfo(info->hostApi);
    devices.push_back({i, info->name ? info->name : "", host && host->name ? host->name : "",
                       info->maxInputChannels, info->defaultSampleRate, i == default_input});
  }
  return devices;
}

std::string describe(const std::vector<DeviceInfo>& devices) {
  if (devices.empty()) return "(none)";
  std::ostringstream text;
  for (size_t i = 0; i < devices.size(); ++i) {
    const DeviceInfo& d = devices[i];
    text << (i ? ", " : "") << "[" << d.index << "] \"" << d.name << "\" (" << d.max_input_channels
         << " ch, " << d.default_sample_rate << " Hz)";
  }
  return text.str();
}

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Finds the device `wanted` names (see MicrophoneConfig::device) among the input devices.
DeviceInfo resolve_device(const std::string& wanted) {
  const std::vector<DeviceInfo> devices = input_devices();
  auto fail = [&](const std::string& why) -> DeviceInfo {
    throw std::runtime_error("microphone: " + why + "; available input devices: " + describe(devices));
  };
  if (wanted.empty()) {
    for (const DeviceInfo& d : devices) {
      if (d.is_default_input) return d;
    }
    return fail("there is no default input device");
  }
  if (std::all_of(wanted.begin(), wanted.end(), [](unsigned char c) { return std::isdigit(c); })) {
    const int index = std::stoi(wanted);
    for (const DeviceInfo& d : devices) {
      if (d.index == index) return d;
    }
    return fail("no input device has index " + wanted);
  }
  for (const DeviceInfo& d : devices) {
    if (d.name == wanted) return d;
  }
  const std::string wanted_lower = lowercase(wanted);
  for (const DeviceInfo& d : devices) {
    if (lowercase(d.name).find(wanted_lower) != std::string::npos) return d;
  }
  return fail("no input device is named or contains \"" + wanted + "\"");
}

PaSampleFormat pa_format(DeviceSampleFormat format) {
  return format == DeviceSampleFormat::kInt16 ? paInt16 : paFloat32;
}

size_t bytes_per_sample(DeviceSampleFormat format) {
  return format == DeviceSampleFormat::kInt16 ? sizeof(int16_t) : sizeof(float);
}

PaStreamParameters input_parameters(const DeviceInfo& device, int channels, DeviceSampleFormat format) {
  PaStreamParameters params{};
  params.device = device.index;
  params.channelCount = channels;
  params.sampleFormat = pa_format(format);
  params.suggestedLatency = Pa_GetDeviceInfo(device.index)->defaultLowInputLatency;
  params.hostApiSpecificStreamInfo = nullptr;
  return params;
}

// Mono if the device takes it; many hardware inputs only open in stereo, which we then mix down.
int choose_channel_count(const DeviceInfo& device, int requested, double rate, DeviceSampleFormat format) {
  if (requested > 0) return requested;
  for (int channels : {1, 2}) {
    if (channels > device.max_input_channels) break;
    const PaStreamParameters params = input_parameters(device, channels, format);
    if (Pa_IsFormatSupported(&params, nullptr, rate) == paFormatIsSupported) return channels;
  }
  return std::min(device.max_input_channels, 2);
}

}  // namespace

// PortAudio's C callbacks with exactly the signatures it calls; they forward to the Microphone.
struct PortAudioBridge {
  static int stream_callback(const void* input, void* /*output*/, unsigned long frame_count,
                             const PaStreamCallbackTimeInfo* time_info, PaStreamCallbackFlags status_flags,
                             void* user_data) {
    auto* microphone = static_cast<Microphone*>(user_data);
    microphone->on_device_buffer(input, frame_count, time_info ? time_info->inputBufferAdcTime : 0.0,
                                 (status_flags & paInputOverflow) != 0);
    return paContinue;
  }

  // Runs when the stream stops for any reason, including a device that vanished. Only sets a flag:
  // the consumer thread decides whether that was expected and reports it.
  static void stream_finished(void* user_data) {
    static_cast<Microphone*>(user_data)->stream_finished_.store(true, std::memory_order_release);
  }
};

Microphone::Microphone(MicrophoneConfig config, ChunkCallback on_chunk, ErrorCallback on_error)
    : config_(std::move(config)), on_chunk_(std::move(on_chunk)), on_error_(std::move(on_error)) {
  if (!on_chunk_) throw std::invalid_argument("microphone: a chunk callback is required");
  if (!(config_.ring_seconds > 0)) throw std::invalid_argument("microphone: ring_seconds must be positive");
  if (const PaError error = initialize_portaudio_quietly(); error != paNoError) {
    throw std::runtime_error(std::string("microphone: Pa_Initialize failed: ") + Pa_GetErrorText(error));
  }
  try {
    const DeviceInfo device = resolve_device(config_.device);
    device_index_ = device.index;
    device_name_ = device.name;
    device_rate_ = config_.device_sample_rate > 0 ? config_.device_sample_rate : device.default_sample_rate;
    channels_ = choose_channel_count(device, config_.channels, device_rate_, config_.sample_format);
    bytes_per_frame_ = bytes_per_sample(config_.sample_format) * static_cast<size_t>(channels_);

    const PaStreamParameters params = input_parameters(device, channels_, config_.sample_format);
    const unsigned long frames_per_buffer =
        config_.frames_per_buffer > 0 ? config_.frames_per_buffer : paFramesPerBufferUnspecified;
    PaStream* stream = nullptr;
    const PaError error = Pa_OpenStream(&stream, &params, nullptr, device_rate_, frames_per_buffer, paNoFlag,
                                        &PortAudioBridge::stream_callback, this);
    if (error != paNoError) {
      std::ostringstream text;
      text << "microphone: cannot open \"" << device_name_ << "\" at " << device_rate_ << " Hz with "
           << channels_ << " channel(s): " << Pa_GetErrorText(error);
      throw std::runtime_error(text.str());
    }
    stream_ = stream;
    Pa_SetStreamFinishedCallback(stream, &PortAudioBridge::stream_finished);

    const size_t ring_frames = static_cast<size_t>(std::ceil(config_.ring_seconds * device_rate_));
    sample_ring_ = std::make_unique<SpscRing<std::byte>>(ring_frames * bytes_per_frame_);
    block_ring_ = std::make_unique<SpscRing<BlockHeader>>(ring_frames / kSmallestExpectedBufferFrames + 1);
    resampler_ = std::make_unique<Resampler>(device_rate_, kOutputSampleRate, config_.quality);
  } catch (...) {
    if (stream_) Pa_CloseStream(static_cast<PaStream*>(stream_));
    Pa_Terminate();
    throw;
  }
}

Microphone::~Microphone() {
  stop();
  Pa_CloseStream(static_cast<PaStream*>(stream_));
  Pa_Terminate();
}

void Microphone::start() {
  if (running_) return;
  // Neither the callback nor the consumer runs here, so their state can be reset without care.
  anchored_ = false;
  stream_failure_reported_ = false;
  frames_dropped_pending_ = 0;
  stopping_ = false;
  consumer_finish_ = false;
  stream_finished_ = false;
  if (const PaError error = Pa_StartStream(static_cast<PaStream*>(stream_)); error != paNoError) {
    device_errors_.fetch_add(1, std::memory_order_relaxed);
    throw std::runtime_error("microphone: cannot start \"" + device_name_ + "\": " + Pa_GetErrorText(error));
  }
  try {
    consumer_ = std::thread([this] { consumer_loop(); });
  } catch (...) {
    Pa_AbortStream(static_cast<PaStream*>(stream_));  // no consumer: do not leave the device running
    throw;
  }
  running_ = true;
}

void Microphone::stop() {
  if (!running_) return;
  stopping_.store(true, std::memory_order_release);
  PaError error;
  {
    std::lock_guard<std::mutex> lock(stream_control_mutex_);
    // Stops the callback for good; every buffer it pushed is in the rings when this returns.
    error = Pa_StopStream(static_cast<PaStream*>(stream_));
  }
  consumer_finish_.store(true, std::memory_order_release);
  consumer_.join();
  running_ = false;
  // A stream that already stopped by itself (device gone) was reported by the consumer; not again.
  if (error != paNoError && error != paStreamIsStopped) {
    report_error(std::string("Pa_StopStream failed: ") + Pa_GetErrorText(error));
  }
}

MicrophoneStats Microphone::stats() const {
  MicrophoneStats s;
  s.callbacks = callbacks_.load(std::memory_order_relaxed);
  s.device_frames = device_frames_.load(std::memory_order_relaxed);
  s.delivered_samples = delivered_samples_.load(std::memory_order_relaxed);
  s.ring_overflows = ring_overflows_.load(std::memory_order_relaxed);
  s.dropped_frames = dropped_frames_.load(std::memory_order_relaxed);
  s.input_overflows = input_overflows_.load(std::memory_order_relaxed);
  s.device_errors = device_errors_.load(std::memory_order_relaxed);
  s.adc_minus_sample_clock_s = adc_minus_sample_clock_s_.load(std::memory_order_relaxed);
  return s;
}

std::vector<DeviceInfo> Microphone::list_devices() {
  PortAudioLibrary library;
  return input_devices();
}

// ---- real-time side ------------------------------------------------------------------------------

void Microphone::on_device_buffer(const void* input, unsigned long frame_count, double adc_time,
                                  bool input_overflow) {
  callbacks_.fetch_add(1, std::memory_order_relaxed);
  if (input_overflow) input_overflows_.fetch_add(1, std::memory_order_relaxed);
  if (!input || frame_count == 0) return;
  device_frames_.fetch_add(frame_count, std::memory_order_relaxed);

  // The header goes in after the samples, so check its room first: a buffer is stored whole or not at
  // all. Room only grows behind the producer's back, so the header push below cannot fail.
  const size_t bytes = frame_count * bytes_per_frame_;
  if (block_ring_->free_space() == 0 || !sample_ring_->push(static_cast<const std::byte*>(input), bytes)) {
    ring_overflows_.fetch_add(1, std::memory_order_relaxed);
    dropped_frames_.fetch_add(frame_count, std::memory_order_relaxed);
    frames_dropped_pending_ += frame_count;
    return;
  }
  block_ring_->push(BlockHeader{adc_time, frame_count, frames_dropped_pending_});
  frames_dropped_pending_ = 0;
}

// ---- consumer side -------------------------------------------------------------------------------

void Microphone::consumer_loop() {
  for (;;) {
    // Read the flag before draining: once it is set the stream is stopped, so this drain is the last.
    const bool finishing = consumer_finish_.load(std::memory_order_acquire);
    drain_rings();
    if (finishing) break;
    check_stream_health();
    std::this_thread::sleep_for(kPollInterval);
  }
  output_.clear();
  resampler_->flush(output_);  // the last few milliseconds the filter still holds
  deliver(output_);
}

void Microphone::drain_rings() {
  // Only the buffers present now: under a flood of input the loop must still return to check flags.
  for (size_t pending = block_ring_->size(); pending > 0; --pending) {
    BlockHeader block;
    if (!block_ring_->pop(block)) break;
    process_block(block);
  }
}

void Microphone::process_block(const BlockHeader& block) {
  if (!anchored_) anchor_clock(block);
  if (block.frames_dropped_before > 0) start_segment_after_gap(block.frames_dropped_before);

  const size_t bytes = block.frames * bytes_per_frame_;
  block_bytes_.resize(bytes);
  // The producer pushed these bytes before the header we just popped (release/acquire), so all are here.
  const size_t got = sample_ring_->pop(block_bytes_.data(), bytes);
  if (got != bytes) {
    report_error("internal error: sample ring out of step with block headers");
    return;
  }

  if (adc_times_usable_) {
    const double sample_clock_s =
        std::chrono::duration<double>(first_frame_time_ - SteadyClock::time_point{}).count() +
        static_cast<double>(frames_on_timeline_) / device_rate_;
    adc_minus_sample_clock_s_.store(block.adc_time + stream_to_steady_offset_s_ - sample_clock_s,
                                    std::memory_order_relaxed);
  }
  frames_on_timeline_ += block.frames;

  // To mono float32. A mono float32 device is copied, not scaled, so its samples stay bit-exact;
  // int16 is scaled by 1/32768, which is exact in float32 (a power of two).
  const size_t frames = block.frames;
  mono_.resize(frames);
  if (config_.sample_format == DeviceSampleFormat::kFloat32) {
    if (channels_ == 1) {
      std::memcpy(mono_.data(), block_bytes_.data(), bytes);
    } else {
      const auto* interleaved = reinterpret_cast<const float*>(block_bytes_.data());
      const float scale = 1.0f / static_cast<float>(channels_);
      for (size_t f = 0; f < frames; ++f) {
        // Starting from the first channel rather than 0.0f keeps the sign of an all -0.0 frame.
        const float* frame = interleaved + f * channels_;
        float sum = frame[0];
        for (int c = 1; c < channels_; ++c) sum += frame[c];
        mono_[f] = sum * scale;
      }
    }
  } else {
    constexpr float kInt16FullScale = 32768.0f;
    const auto* interleaved = reinterpret_cast<const int16_t*>(block_bytes_.data());
    const float scale = 1.0f / (kInt16FullScale * static_cast<float>(channels_));
    for (size_t f = 0; f < frames; ++f) {
      int32_t sum = 0;
      for (int c = 0; c < channels_; ++c) sum += interleaved[f * channels_ + c];
      mono_[f] = static_cast<float>(sum) * scale;
    }
  }

  output_.clear();
  resampler_->process(mono_.data(), frames, output_);
  deliver(output_);
}

void Microphone::anchor_clock(const BlockHeader& first_block) {
  double stream_now = 0;
  const SteadyClock::time_point before = SteadyClock::now();
  {
    std::lock_guard<std::mutex> lock(stream_control_mutex_);
    if (!stopping_.load(std::memory_order_acquire)) stream_now = Pa_GetStreamTime(static_cast<PaStream*>(stream_));
  }
  const SteadyClock::time_point after = SteadyClock::now();
  const SteadyClock::time_point steady_now = before + (after - before) / 2;

  // Some host APIs report 0 for every time; then the best estimate is that this buffer just ended.
  adc_times_usable_ = stream_now > 0 && first_block.adc_time > 0 && std::isfinite(first_block.adc_time);
  SteadyClock::time_point first_received_frame;
  if (adc_times_usable_) {
    stream_to_steady_offset_s_ =
        std::chrono::duration<double>(steady_now - SteadyClock::time_point{}).count() - stream_now;
    first_received_frame = steady_now - seconds(stream_now - first_block.adc_time);
  } else {
    first_received_frame = steady_now - seconds(static_cast<double>(first_block.frames) / device_rate_);
  }
  // Frames dropped before the first stored buffer still count: the anchor is the stream's first frame.
  first_frame_time_ = first_received_frame - seconds(first_block.frames_dropped_before / device_rate_);
  frames_on_timeline_ = 0;
  segment_start_ = first_frame_time_;
  segment_output_samples_ = 0;
  anchored_ = true;
}

void Microphone::start_segment_after_gap(uint64_t frames_lost) {
  // Finish the signal before the gap (its tail keeps that segment's times), then restart the filter so
  // it never smears audio across samples that were never captured.
  if (frames_on_timeline_ > 0) {
    output_.clear();
    resampler_->flush(output_);
    deliver(output_);
  }
  frames_on_timeline_ += frames_lost;
  segment_start_ = first_frame_time_ + seconds(static_cast<double>(frames_on_timeline_) / device_rate_);
  segment_output_samples_ = 0;
}

void Microphone::deliver(std::vector<float>& samples) {
  if (samples.empty()) return;
  const SteadyClock::time_point first_sample_time =
      segment_start_ + seconds(static_cast<double>(segment_output_samples_) / kOutputSampleRate);
  try {
    on_chunk_(samples.data(), samples.size(), first_sample_time);
  } catch (const std::exception& e) {
    report_error(std::string("chunk callback threw: ") + e.what());
  }
  segment_output_samples_ += samples.size();
  delivered_samples_.fetch_add(samples.size(), std::memory_order_relaxed);
  samples.clear();
}

void Microphone::check_stream_health() {
  if (stream_failure_reported_ || stopping_.load(std::memory_order_acquire)) return;
  if (!stream_finished_.load(std::memory_order_acquire)) return;
  stream_failure_reported_ = true;
  std::string text = "input stream stopped by itself (device removed or failed)";
  const PaHostErrorInfo* host_error = Pa_GetLastHostErrorInfo();
  if (host_error && host_error->errorCode != 0 && host_error->errorText) {
    text += std::string(": ") + host_error->errorText;
  }
  report_error(text);
}

void Microphone::report_error(const std::string& text) {
  device_errors_.fetch_add(1, std::memory_order_relaxed);
  if (!on_error_) return;
  try {
    on_error_(device_name_, text);
  } catch (...) {
    // An error handler that throws must not take the capture thread down with it.
  }
}

}  // namespace conflux::capture
