// Base64 and PCM16 conversions for the network API (see codec.h).
#include "server/codec.h"

#include <cmath>
#include <cstring>

namespace conflux::server {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 6-bit value of a base64 character, or -1.
int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string base64_encode(const void* data, size_t size) {
  const auto* in = static_cast<const uint8_t*>(data);
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const uint32_t v = uint32_t(in[i]) << 16 | uint32_t(in[i + 1]) << 8 | in[i + 2];
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  if (const size_t rest = size - i; rest > 0) {
    const uint32_t v = uint32_t(in[i]) << 16 | (rest == 2 ? uint32_t(in[i + 1]) << 8 : 0u);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += rest == 2 ? kAlphabet[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::vector<uint8_t>> base64_decode(std::string_view text, std::string& error) {
  // Unpadded input is accepted when its length leaves 2 or 3 characters in the last group.
  size_t len = text.size();
  size_t padding = 0;
  while (len > 0 && text[len - 1] == '=' && padding < 2) {
    --len;
    ++padding;
  }
  if (padding > 0 && text.size() % 4 != 0) {
    error = "base64 padding does not end a 4-character group";
    return std::nullopt;
  }
  if (len % 4 == 1) {
    error = "base64 length " + std::to_string(text.size()) + " is not valid (one character left over)";
    return std::nullopt;
  }
  std::vector<uint8_t> out;
  out.reserve(len / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; ++i) {
    const int v = sextet(text[i]);
    if (v < 0) {
      error = "invalid base64 character at offset " + std::to_string(i);
      return std::nullopt;
    }
    acc = acc << 6 | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(uint8_t(acc >> bits & 0xFF));
    }
  }
  return out;
}

void pcm16_to_float(const uint8_t* bytes, size_t n_samples, std::vector<float>& out) {
  out.resize(n_samples);
  for (size_t i = 0; i < n_samples; ++i) {
    int16_t s;
    std::memcpy(&s, bytes + 2 * i, 2);  // little-endian host (x86-64)
    out[i] = float(s) / 32768.f;
  }
}

std::vector<uint8_t> float_to_pcm16(const float* samples, size_t n) {
  std::vector<uint8_t> out(2 * n);
  for (size_t i = 0; i < n; ++i) {
    const float v = std::round(samples[i] * 32768.f);
    const int16_t s = int16_t(std::fmax(-32768.f, std::fmin(32767.f, v)));
    std::memcpy(out.data() + 2 * i, &s, 2);
  }
  return out;
}

}  // namespace conflux::server
