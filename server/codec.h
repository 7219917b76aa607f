// What the network API's messages carry, without any networking: base64 (RFC 4648, standard alphabet,
// padding required when the length is not a multiple of 4), PCM16 little-endian <-> float samples, and
// raw RGB frames. Every decoder reports what is wrong instead of guessing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace conflux::server {

std::string base64_encode(const void* data, size_t size);
// Decodes standard base64 (whitespace not allowed). Returns nullopt and sets `error` (naming the first bad
// character's offset) on malformed input.
std::optional<std::vector<uint8_t>> base64_decode(std::string_view text, std::string& error);

// PCM16 little-endian mono -> float in [-1, 1): s / 32768, exactly as read_wav converts 16-bit WAV
// samples, so streamed audio equals a WAV file read offline.
void pcm16_to_float(const uint8_t* bytes, size_t n_samples, std::vector<float>& out);
// float -> PCM16 little-endian, rounded and clipped (clients that hold float audio).
std::vector<uint8_t> float_to_pcm16(const float* samples, size_t n);

}  // namespace conflux::server
