// HF tokenizer.json loader and codec: BPE with byte fallback, Gemma's normalizer / pre-tokenizer /
// decoder, added and special tokens matched inside text. Special ids come from the file, never constants.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace conflux {

class Tokenizer {
 public:
  // Loads tokenizer.json; throws std::runtime_error naming the file and the field that is wrong.
  // If tokenizer_config.json sits beside it, its bos/eos token strings are read from there.
  static Tokenizer load(const std::string& tokenizer_json_path);
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Text -> ids. Added/special tokens written literally in `text` (e.g. "<|turn>") become their ids.
  // add_bos prepends the bos id (HF's add_special_tokens=true for Gemma).
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  // ids -> text as HF's decode(ids) with default options (special tokens kept as their text).
  std::string decode(const std::vector<int32_t>& ids) const;

  int32_t vocab_size() const;
  // Id of an exact vocabulary or added-token string, or -1.
  int32_t token_id(std::string_view piece) const;
  // The vocabulary string of an id ("" when out of range).
  const std::string& piece(int32_t id) const;
  bool is_special(int32_t id) const;
  int32_t bos_id() const;  // -1 when the file has none
  int32_t eos_id() const;
  int32_t pad_id() const;

  // Raw bytes this token contributes to decoded text (byte-fallback tokens give their single byte,
  // "▁" becomes a space). Used by StreamingDetokenizer.
  std::string token_bytes(int32_t id) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of ids into text pieces that are always complete UTF-8: bytes of an unfinished
// multi-byte character (e.g. split across byte-fallback tokens) are held back until it completes.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tok) : tok_(&tok) {}
  // Returns the text that became complete with this token (may be empty).
  std::string push(int32_t id);
  // Returns whatever is held back (invalid trailing bytes become U+FFFD).
  std::string flush();
  void reset() { pending_.clear(); }

 private:
  const Tokenizer* tok_;
  std::string pending_;
};

}  // namespace conflux
