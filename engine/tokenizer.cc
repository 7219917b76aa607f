// HF tokenizer.json loader and codec (interface in tokenizer.h). The component types Gemma's file uses, and
// their close relatives, are implemented generically: normalizers Replace/Prepend/Strip/Sequence,
// pre-tokenizers Split/Metaspace/Sequence, the BPE model (byte fallback, unk fusing, ignore_merges), and
// decoders Replace/ByteFallback/Fuse/Strip/Metaspace/Sequence. Any other component is rejected at load time
// with the file and field named, so a tokenizer this code would silently get wrong never loads.
#include "engine/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>
#include <stdexcept>

namespace conflux {
namespace {

using json = nlohmann::json;

constexpr char kReplacementChar[] = "\xEF\xBF\xBD";  // U+FFFD in UTF-8

[[noreturn]] void fail_field(const std::string& file, const std::string& field, const std::string& problem) {
  throw std::runtime_error(file + ": field '" + field + "': " + problem);
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open file (" + std::strerror(errno) + ")");
  in.seekg(0, std::ios::end);
  std::string data(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  if (!in) throw std::runtime_error(path + ": read failed");
  return data;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Length (1-4) of the well-formed UTF-8 character at the start of `s`, or 0 if it is not one. Sets
// *truncated when the bytes are a valid beginning that `s` cuts off (more bytes could complete it).
size_t utf8_char_length(std::string_view s, bool* truncated = nullptr) {
  const auto lead = static_cast<unsigned char>(s[0]);
  if (lead < 0x80) return 1;
  size_t need = 0;
  unsigned char second_lo = 0x80, second_hi = 0xBF;  // the second byte's range excludes overlongs/surrogates
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 3;
    if (lead == 0xE0) second_lo = 0xA0;
    if (lead == 0xED) second_hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 4;
    if (lead == 0xF0) second_lo = 0x90;
    if (lead == 0xF4) second_hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t i = 1; i < need; ++i) {
    if (i >= s.size()) {
      if (truncated) *truncated = true;
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < (i == 1 ? second_lo : 0x80) || b > (i == 1 ? second_hi : 0xBF)) return 0;
  }
  return need;
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_char_length(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// Byte length of the Unicode whitespace character (Rust's char::is_whitespace, as HF uses) at s[pos], or 0.
size_t whitespace_length_at(std::string_view s, size_t pos) {
  std::string_view rest = s.substr(pos);
  if (rest.empty()) return 0;
  const char c = rest[0];
  if (c == ' ' || (c >= '\t' && c <= '\r')) return 1;
  for (std::string_view ws : {"\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF",
                              "\xE2\x81\x9F", "\xE3\x80\x80"})
    if (rest.starts_with(ws)) return ws.size();
  // U+2000..U+200A are E2 80 80..8A.
  if (rest.size() >= 3 && rest.starts_with("\xE2\x80") && static_cast<unsigned char>(rest[2]) >= 0x80 &&
      static_cast<unsigned char>(rest[2]) <= 0x8A)
    return 3;
  return 0;
}

// Byte length of the whitespace character that ends right before s[pos], or 0.
size_t whitespace_length_before(std::string_view s, size_t pos) {
  constexpr size_t kLongestWhitespaceBytes = 3;
  for (size_t n = 1; n <= kLongestWhitespaceBytes && n <= pos; ++n)
    if (whitespace_length_at(s, pos - n) == n) return n;
  return 0;
}

void replace_all(std::string& s, std::string_view pattern, std::string_view content) {
  if (pattern.empty() || s.find(pattern) == std::string::npos) return;
  std::string out;
  size_t from = 0;
  for (size_t hit; (hit = s.find(pattern, from)) != std::string::npos; from = hit + pattern.size()) {
    out.append(s, from, hit - from);
    out += content;
  }
  out.append(s, from);
  s = std::move(out);
}

// ---------------------------------------------------------------------------------------------------------
// A small JSON reader. tokenizer.json is 33 MB, nearly all of it model.vocab and model.merges, and
// nlohmann::json::parse needs ~0.5 s just to build that DOM (1.3M small nodes). This reader streams those
// two fields straight into the tokenizer's tables and returns everything else as nlohmann::json values.
class JsonReader {
 public:
  JsonReader(std::string_view text, const std::string& file) : text_(text), file_(file) {}

  [[noreturn]] void fail(const std::string& problem) const {
    throw std::runtime_error(file_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " + problem);
  }
  char peek() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' || text_[pos_] == '\t'))
      ++pos_;
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }
  bool consume(char c) {
    if (pos_ >= text_.size() || peek() != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c) {
    if (!consume(c)) fail(std::string("expected '") + c + "'");
  }
  bool at_end() {
    peek();
    return pos_ >= text_.size();
  }

  // Calls on_member(key) for each member, with the reader positioned at the member's value.
  template <class OnMember>
  void read_object(OnMember&& on_member) {
    expect('{');
    if (consume('}')) return;
    std::string key;
    do {
      read_string_into(key);
      expect(':');
      on_member(key);
    } while (consume(','));
    expect('}');
  }
  template <class OnElement>
  void read_array(OnElement&& on_element) {
    expect('[');
    if (consume(']')) return;
    do on_element();
    while (consume(','));
    expect(']');
  }

  void read_string_into(std::string& out) {
    out.clear();
    if (peek() != '"') fail("expected a string");
    ++pos_;
    while (true) {
      const size_t run = pos_;
      while (pos_ < text_.size() && text_[pos_] != '"' && text_[pos_] != '\\') ++pos_;
      out.append(text_.data() + run, pos_ - run);
      if (pos_ >= text_.size()) fail("unterminated string");
      if (text_[pos_++] == '"') return;
      read_escape(out);
    }
  }
  std::string read_string() {
    std::string s;
    read_string_into(s);
    return s;
  }

  int64_t read_integer() {
    peek();
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text_.data() + pos_, text_.data() + text_.size(), value);
    if (ec != std::errc() || end == text_.data() + pos_) fail("expected an integer");
    pos_ = static_cast<size_t>(end - text_.data());
    return value;
  }

  json read_value() {
    switch (peek()) {
      case '{': {
        json object = json::object();
        read_object([&](const std::string& key) { object[key] = read_value(); });
        return object;
      }
      case '[': {
        json array = json::array();
        read_array([&] { array.push_back(read_value()); });
        return array;
      }
      case '"': return read_string();
      case 't': read_word("true"); return true;
      case 'f': read_word("false"); return false;
      case 'n': read_word("null"); return nullptr;
      default: return read_number();
    }
  }

 private:
  void read_word(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail("unexpected character");
    pos_ += word.size();
  }
  json read_number() {
    const size_t start = pos_;
    bool is_float = false;
    while (pos_ < text_.size() && std::strchr("+-0123456789.eE", text_[pos_]) && text_[pos_] != '\0') {
      if (std::strchr(".eE", text_[pos_])) is_float = true;
      ++pos_;
    }
    if (pos_ == start) fail("unexpected character");
    const std::string number(text_.substr(start, pos_ - start));
    if (is_float) return std::strtod(number.c_str(), nullptr);
    pos_ = start;
    return read_integer();
  }
  uint32_t read_hex4() {
    uint32_t value = 0;
    auto [end, ec] = std::from_chars(text_.data() + pos_, text_.data() + std::min(pos_ + 4, text_.size()), value, 16);
    if (ec != std::errc() || end != text_.data() + pos_ + 4) fail("bad \\u escape");
    pos_ += 4;
    return value;
  }
  void read_escape(std::string& out) {
    if (pos_ >= text_.size()) fail("unterminated string");
    const char c = text_[pos_++];
    switch (c) {
      case '"': case '\\': case '/': out += c; return;
      case 'b': out += '\b'; return;
      case 'f': out += '\f'; return;
      case 'n': out += '\n'; return;
      case 'r': out += '\r'; return;
      case 't': out += '\t'; return;
      case 'u': break;
      default: fail("bad escape");
    }
    uint32_t cp = read_hex4();
    const bool high_surrogate = cp >= 0xD800 && cp <= 0xDBFF;
    if (high_surrogate && text_.substr(pos_, 2) == "\\u") {
      pos_ += 2;
      const uint32_t low = read_hex4();
      if (low >= 0xDC00 && low <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
      } else {
        out += kReplacementChar;  // lone high surrogate; the second escape stands on its own
        cp = (low >= 0xD800 && low <= 0xDFFF) ? 0xFFFD : low;
      }
    } else if (cp >= 0xD800 && cp <= 0xDFFF) {
      cp = 0xFFFD;  // lone surrogates cannot be encoded as UTF-8
    }
    append_utf8(out, cp);
  }

  std::string_view text_;
  const std::string& file_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Pipeline components, each Sequence flattened into a list of steps.

struct NormalizerStep {
  enum class Kind { kReplace, kPrepend, kStrip } kind;
  std::string pattern, content;
  bool strip_left = false, strip_right = false;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kMetaspace } kind;
  std::string pattern;  // Split: the delimiter; Metaspace: the replacement for ' '
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool prepend_always = false, prepend_first = false, split = true;  // Metaspace
};

struct DecoderStep {
  enum class Kind { kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind;
  std::string pattern, content;  // Replace; Strip's content; Metaspace's replacement in `pattern`
  int strip_start = 0, strip_stop = 0;
  bool strip_first_space = false;  // Metaspace: drop the space its prepend added to the first token
};

std::string string_pattern(const json& step, const std::string& file, const std::string& field) {
  const auto it = step.find("pattern");
  if (it == step.end() || !it->is_object()) fail_field(file, field + ".pattern", "is missing");
  const auto text = it->find("String");
  if (text == it->end() || !text->is_string())
    fail_field(file, field + ".pattern", "only {\"String\": ...} patterns are supported (Regex is not)");
  return text->get<std::string>();
}

std::string string_member(const json& object, const char* key, const std::string& file, const std::string& field) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) fail_field(file, field + "." + key, "is missing or not a string");
  return it->get<std::string>();
}

bool bool_member(const json& object, const char* key, bool fallback) {
  const auto it = object.find(key);
  return it != object.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// Calls add(step, field) for every non-Sequence step of a component, in order.
void flatten(const json& node, const std::string& file, const std::string& field, const char* list_key,
             const std::function<void(const json&, const std::string&, const std::string&)>& add) {
  if (node.is_null()) return;
  if (!node.is_object() || !node.contains("type") || !node["type"].is_string())
    fail_field(file, field + ".type", "is missing");
  const std::string type = node["type"];
  if (type != "Sequence") return add(node, type, field);
  const auto list = node.find(list_key);
  if (list == node.end() || !list->is_array()) fail_field(file, field + "." + list_key, "is missing");
  for (size_t i = 0; i < list->size(); ++i)
    flatten((*list)[i], file, field + "." + list_key + "[" + std::to_string(i) + "]", list_key, add);
}

// Metaspace's prepend_scheme, with the legacy add_prefix_space flag as fallback.
std::string metaspace_prepend_scheme(const json& step) {
  if (step.contains("prepend_scheme") && step["prepend_scheme"].is_string()) return step["prepend_scheme"];
  return bool_member(step, "add_prefix_space", true) ? "always" : "never";
}

std::vector<NormalizerStep> parse_normalizer(const json& node, const std::string& file) {
  std::vector<NormalizerStep> steps;
  flatten(node, file, "normalizer", "normalizers", [&](const json& step, const std::string& type, const std::string& field) {
    if (type == "Replace") {
      steps.push_back({NormalizerStep::Kind::kReplace, string_pattern(step, file, field), string_member(step, "content", file, field)});
    } else if (type == "Prepend") {
      steps.push_back({NormalizerStep::Kind::kPrepend, "", string_member(step, "prepend", file, field)});
    } else if (type == "Strip") {
      steps.push_back({NormalizerStep::Kind::kStrip, "", "", bool_member(step, "strip_left", true), bool_member(step, "strip_right", true)});
    } else {
      fail_field(file, field + ".type", "normalizer '" + type + "' is not supported");
    }
  });
  return steps;
}

std::vector<PreTokenizerStep> parse_pre_tokenizer(const json& node, const std::string& file) {
  std::vector<PreTokenizerStep> steps;
  flatten(node, file, "pre_tokenizer", "pretokenizers", [&](const json& step, const std::string& type, const std::string& field) {
    PreTokenizerStep s;
    if (type == "Split") {
      s.kind = PreTokenizerStep::Kind::kSplit;
      s.pattern = string_pattern(step, file, field);
      const std::string behavior = string_member(step, "behavior", file, field);
      static const std::pair<const char*, SplitBehavior> kBehaviors[] = {
          {"Removed", SplitBehavior::kRemoved}, {"Isolated", SplitBehavior::kIsolated},
          {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious}, {"MergedWithNext", SplitBehavior::kMergedWithNext},
          {"Contiguous", SplitBehavior::kContiguous}};
      const auto it = std::find_if(std::begin(kBehaviors), std::end(kBehaviors), [&](auto& b) { return behavior == b.first; });
      if (it == std::end(kBehaviors)) fail_field(file, field + ".behavior", "unknown value '" + behavior + "'");
      s.behavior = it->second;
      s.invert = bool_member(step, "invert", false);
    } else if (type == "Metaspace") {
      s.kind = PreTokenizerStep::Kind::kMetaspace;
      s.pattern = string_member(step, "replacement", file, field);
      const std::string scheme = metaspace_prepend_scheme(step);
      s.prepend_always = scheme == "always";
      s.prepend_first = scheme == "first";
      s.split = bool_member(step, "split", true);
    } else {
      fail_field(file, field + ".type", "pre-tokenizer '" + type + "' is not supported");
    }
    steps.push_back(std::move(s));
  });
  return steps;
}

std::vector<DecoderStep> parse_decoder(const json& node, const std::string& file) {
  std::vector<DecoderStep> steps;
  flatten(node, file, "decoder", "decoders", [&](const json& step, const std::string& type, const std::string& field) {
    DecoderStep s;
    if (type == "Replace") {
      s.kind = DecoderStep::Kind::kReplace;
      s.pattern = string_pattern(step, file, field);
      s.content = string_member(step, "content", file, field);
    } else if (type == "ByteFallback") {
      s.kind = DecoderStep::Kind::kByteFallback;
    } else if (type == "Fuse") {
      s.kind = DecoderStep::Kind::kFuse;
    } else if (type == "Strip") {
      s.kind = DecoderStep::Kind::kStrip;
      s.content = string_member(step, "content", file, field);
      s.strip_start = step.value("start", 0);
      s.strip_stop = step.value("stop", 0);
    } else if (type == "Metaspace") {
      s.kind = DecoderStep::Kind::kMetaspace;
      s.pattern = string_member(step, "replacement", file, field);
      s.strip_first_space = metaspace_prepend_scheme(step) != "never";
    } else {
      fail_field(file, field + ".type", "decoder '" + type + "' is not supported");
    }
    steps.push_back(std::move(s));
  });
  return steps;
}

// "<0x41>" -> 0x41, or -1 when `piece` is not a byte-fallback token.
int byte_token_value(std::string_view piece) {
  constexpr size_t kByteTokenLength = 6;  // "<0x" + two hex digits + ">"
  if (piece.size() != kByteTokenLength || !piece.starts_with("<0x") || piece.back() != '>') return -1;
  int value = 0;
  auto [end, ec] = std::from_chars(piece.data() + 3, piece.data() + 5, value, 16);
  return ec == std::errc() && end == piece.data() + 5 ? value : -1;
}

// String -> id over strings that live elsewhere (the id -> piece table). Open addressing over one flat
// array: a node-based std::unordered_map costs several cache misses per lookup, and loading resolves ~1.5M
// merge strings, which made it the bulk of the load time.
class PieceIndex {
 public:
  int32_t find(std::string_view piece, const std::vector<std::string>& pieces) const {
    if (slots_.empty()) return -1;
    const uint64_t hash = std::hash<std::string_view>{}(piece);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id < 0) return -1;
      if (slot.hash == uint32_t(hash >> 32) && pieces[size_t(slot.id)] == piece) return slot.id;
    }
  }
  // Maps pieces[id] to id, replacing an earlier id with the same string.
  void assign(int32_t id, const std::vector<std::string>& pieces) {
    if ((count_ + 1) * 2 > slots_.size()) grow(pieces);  // keep the load factor at most 1/2
    const std::string& piece = pieces[size_t(id)];
    const uint64_t hash = std::hash<std::string_view>{}(piece);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.id >= 0 && !(slot.hash == uint32_t(hash >> 32) && pieces[size_t(slot.id)] == piece)) continue;
      if (slot.id < 0) ++count_;
      slot = {uint32_t(hash >> 32), id};
      return;
    }
  }
  // Indexes every non-empty piece at once, sized up front.
  void build(const std::vector<std::string>& pieces) {
    slots_.clear();
    count_ = 0;
    reserve(pieces.size());
    for (size_t id = 0; id < pieces.size(); ++id)
      if (!pieces[id].empty()) assign(int32_t(id), pieces);
  }

 private:
  struct Slot {
    uint32_t hash;  // high half of the hash, to skip most string compares
    int32_t id;     // -1: empty
  };
  void reserve(size_t count) {
    size_t size = 16;
    while (size < count * 2) size *= 2;
    slots_.assign(size, Slot{0, -1});
    mask_ = size - 1;
  }
  void grow(const std::vector<std::string>& pieces) {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(count_ + 1, old.size()));
    count_ = 0;
    for (const Slot& slot : old)
      if (slot.id >= 0) assign(slot.id, pieces);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, count_ = 0;
};

struct AddedToken {
  std::string content;  // as matched: the normalized content for normalized tokens
  int32_t id;
  bool lstrip, rstrip, single_word;
};

// Byte trie over added-token contents, for leftmost-longest matching like HF's Aho-Corasick pass.
class AddedTokenTrie {
 public:
  bool empty() const { return nodes_.size() == 1; }
  void insert(std::string_view content, int32_t token_index) {
    size_t node = 0;
    for (unsigned char byte : content) {
      int32_t next = child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.emplace_back(byte, next);
        nodes_.emplace_back();
      }
      node = static_cast<size_t>(next);
    }
    if (nodes_[node].token < 0) nodes_[node].token = token_index;
  }
  // Longest token starting at text[pos]: {token index, end offset}, or {-1, pos}.
  std::pair<int32_t, size_t> longest_match(std::string_view text, size_t pos) const {
    std::pair<int32_t, size_t> best{-1, pos};
    size_t node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      const int32_t next = child(node, static_cast<unsigned char>(text[i]));
      if (next < 0) break;
      node = static_cast<size_t>(next);
      if (nodes_[node].token >= 0) best = {nodes_[node].token, i + 1};
    }
    return best;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t token = -1;
  };
  int32_t child(size_t node, unsigned char byte) const {
    for (const auto& [b, next] : nodes_[node].children)
      if (b == byte) return next;
    return -1;
  }
  std::vector<Node> nodes_{1};
};

// A stretch of text after added-token splitting: either plain text [begin, end) or an added token.
struct Span {
  size_t begin, end;
  int32_t token_id;  // -1 for plain text
};

struct MergeResult {
  int32_t rank;  // position in model.merges: lower merges first
  int32_t merged_id;
};

// (left id, right id) -> merge, open addressing for the same reason as PieceIndex.
class MergeTable {
 public:
  void reserve(size_t count) {
    size_t size = 16;
    while (size < count * 2) size *= 2;  // load factor at most 1/2
    slots_.assign(size, Slot{kEmpty, {}});
    mask_ = size - 1;
  }
  // Keeps the first (lowest-rank) merge of a pair, like HF.
  void insert(int32_t left, int32_t right, MergeResult merge) {
    const uint64_t key = pair_key(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return;
      if (slots_[i].key == kEmpty) {
        slots_[i] = {key, merge};
        return;
      }
    }
  }
  const MergeResult* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pair_key(left, right);
    for (size_t i = slot_of(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // the pair (-1, -1), which no merge has
  static uint64_t pair_key(int32_t left, int32_t right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }
  size_t slot_of(uint64_t key) const {
    constexpr uint64_t kGoldenRatio64 = 0x9E3779B97F4A7C15ull;  // Fibonacci hashing spreads sequential ids
    return size_t((key * kGoldenRatio64) >> 32) & mask_;
  }
  struct Slot {
    uint64_t key;
    MergeResult merge;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Merges as read from the file, before their tokens are resolved to ids: merge i is the bytes
// text[begin[i], begin[i+1]), the first left_length[i] of them its left token.
struct MergeStrings {
  std::string text;
  std::vector<size_t> begin;
  std::vector<size_t> left_length;
  void add(std::string_view left, std::string_view right) {
    begin.push_back(text.size());
    left_length.push_back(left.size());
    text.append(left).append(right);
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::string path;
  std::vector<std::string> pieces;  // by id
  PieceIndex piece_ids;
  MergeTable merges;
  std::array<int32_t, 256> byte_token_ids;
  int32_t unk_id = -1;
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  std::vector<AddedToken> added_tokens;
  std::vector<bool> special;  // by id
  AddedTokenTrie raw_added, normalized_added;  // matched before / after normalization
  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<DecoderStep> decoder;
  int32_t bos = -1, eos = -1, pad = -1;

  int32_t find(std::string_view piece) const { return piece_ids.find(piece, pieces); }
  // Stores a piece; the index is updated here only when `index` (model.vocab is indexed in one go after).
  void set_piece(int32_t id, const std::string& piece, bool index) {
    if (static_cast<size_t>(id) >= pieces.size()) pieces.resize(static_cast<size_t>(id) + 1);
    pieces[static_cast<size_t>(id)] = piece;
    if (index) piece_ids.assign(id, pieces);
  }

  void read_model(JsonReader& reader, json& model_options, MergeStrings& merge_strings, bool& have_vocab, bool& have_merges);
  void resolve_merges(const MergeStrings& merge_strings);
  void read_added_tokens(const json& root);
  void read_special_ids();

  std::string normalize(std::string_view text) const;
  std::vector<std::string> pre_tokenize(std::string text, bool at_text_start) const;
  void split_on_added(std::string_view text, const AddedTokenTrie& trie, std::vector<Span>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  std::vector<std::string> run_decoder(std::vector<std::string> tokens, bool per_token_bytes) const;
};

void Tokenizer::Impl::read_model(JsonReader& reader, json& model_options, MergeStrings& merge_strings,
                                 bool& have_vocab, bool& have_merges) {
  reader.read_object([&](const std::string& key) {
    if (key == "vocab" && reader.peek() == '{') {
      have_vocab = true;
      reader.read_object([&](const std::string& piece) {
        const int64_t id = reader.read_integer();
        if (id < 0 || id > INT32_MAX) fail_field(path, "model.vocab", "id " + std::to_string(id) + " out of range");
        set_piece(static_cast<int32_t>(id), piece, false);
      });
    } else if (key == "merges" && reader.peek() == '[') {
      // Two spellings: "left right" strings (older files) or ["left", "right"] pairs.
      have_merges = true;
      std::string left, right;
      reader.read_array([&] {
        if (reader.peek() == '"') {
          reader.read_string_into(left);
          const size_t space = left.find(' ');
          if (space == std::string::npos)
            fail_field(path, "model.merges[" + std::to_string(merge_strings.begin.size()) + "]", "'" + left + "' has no space");
          merge_strings.add(std::string_view(left).substr(0, space), std::string_view(left).substr(space + 1));
        } else {
          reader.expect('[');
          reader.read_string_into(left);
          reader.expect(',');
          reader.read_string_into(right);
          reader.expect(']');
          merge_strings.add(left, right);
        }
      });
    } else {
      model_options[key] = reader.read_value();
    }
  });
}

void Tokenizer::Impl::resolve_merges(const MergeStrings& m) {
  merges.reserve(m.begin.size());
  for (size_t i = 0; i < m.begin.size(); ++i) {
    const size_t end = i + 1 < m.begin.size() ? m.begin[i + 1] : m.text.size();
    const std::string_view whole = std::string_view(m.text).substr(m.begin[i], end - m.begin[i]);
    const std::string_view left = whole.substr(0, m.left_length[i]), right = whole.substr(m.left_length[i]);
    const int32_t left_id = find(left), right_id = find(right), merged_id = find(whole);
    if (left_id < 0 || right_id < 0 || merged_id < 0)
      fail_field(path, "model.merges[" + std::to_string(i) + "]",
                 "'" + std::string(left) + "' + '" + std::string(right) + "' uses a token missing from model.vocab");
    merges.insert(left_id, right_id, MergeResult{static_cast<int32_t>(i), merged_id});
  }
}

void Tokenizer::Impl::read_added_tokens(const json& root) {
  const auto list = root.find("added_tokens");
  if (list == root.end() || list->is_null()) return;
  if (!list->is_array()) fail_field(path, "added_tokens", "is not an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& entry = (*list)[i];
    const std::string field = "added_tokens[" + std::to_string(i) + "]";
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer())
      fail_field(path, field + ".id", "is missing");
    const int64_t id = entry["id"].get<int64_t>();
    if (id < 0 || id > INT32_MAX) fail_field(path, field + ".id", "out of range");
    const std::string content = string_member(entry, "content", path, field);
    const bool is_special = bool_member(entry, "special", false);
    // HF's default: special tokens match the raw text, others the normalized text.
    const bool normalized = bool_member(entry, "normalized", !is_special);
    set_piece(static_cast<int32_t>(id), content, true);
    if (special.size() <= static_cast<size_t>(id)) special.resize(static_cast<size_t>(id) + 1);
    special[static_cast<size_t>(id)] = is_special;
    const std::string match = normalized ? normalize(content) : content;
    if (match.empty()) continue;
    added_tokens.push_back({match, static_cast<int32_t>(id), bool_member(entry, "lstrip", false),
                            bool_member(entry, "rstrip", false), bool_member(entry, "single_word", false)});
    (normalized ? normalized_added : raw_added).insert(match, static_cast<int32_t>(added_tokens.size() - 1));
  }
}

// bos/eos/pad come from tokenizer_config.json beside tokenizer.json; without one, from the added tokens
// spelled <bos>/<eos>/<pad>.
void Tokenizer::Impl::read_special_ids() {
  const std::filesystem::path config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (!std::filesystem::exists(config_path)) {
    auto added_id = [&](std::string_view name) {
      for (const auto& t : added_tokens)
        if (t.content == name) return t.id;
      return int32_t{-1};
    };
    bos = added_id("<bos>"), eos = added_id("<eos>"), pad = added_id("<pad>");
    return;
  }
  const std::string config_file = config_path.string();
  const std::string text = read_whole_file(config_file);
  JsonReader reader(text, config_file);
  const json config = reader.read_value();
  if (!reader.at_end()) reader.fail("trailing characters");
  if (!config.is_object()) throw std::runtime_error(config_file + ": not a JSON object");
  auto id_of = [&](const char* key) -> int32_t {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) return -1;
    // Either "<bos>" or an AddedToken object {"content": "<bos>", ...}.
    const json& name = it->is_object() && it->contains("content") ? (*it)["content"] : *it;
    if (!name.is_string()) fail_field(config_file, key, "is neither a string nor {\"content\": string}");
    const int32_t id = find(name.get<std::string>());
    if (id < 0) fail_field(config_file, key, "'" + name.get<std::string>() + "' is not in " + path);
    return id;
  };
  bos = id_of("bos_token"), eos = id_of("eos_token"), pad = id_of("pad_token");
}

std::string Tokenizer::Impl::normalize(std::string_view text) const {
  std::string s(text);
  for (const auto& step : normalizer) {
    switch (step.kind) {
      case NormalizerStep::Kind::kReplace: replace_all(s, step.pattern, step.content); break;
      case NormalizerStep::Kind::kPrepend:
        if (!s.empty()) s.insert(0, step.content);
        break;
      case NormalizerStep::Kind::kStrip: {
        size_t begin = 0, end = s.size();
        while (step.strip_left && begin < end && whitespace_length_at(s, begin)) begin += whitespace_length_at(s, begin);
        while (step.strip_right && end > begin && whitespace_length_before(s, end)) end -= whitespace_length_before(s, end);
        s = s.substr(begin, end - begin);
        break;
      }
    }
  }
  return s;
}

namespace {

// HF's Split: cut `text` at each occurrence of `delimiter` and arrange the pieces as `behavior` says.
std::vector<std::string> split_on(std::string_view text, std::string_view delimiter, SplitBehavior behavior, bool invert) {
  std::vector<std::pair<std::string_view, bool>> runs;  // (run, is_delimiter) covering `text`
  size_t from = 0;
  for (size_t hit; !delimiter.empty() && (hit = text.find(delimiter, from)) != std::string_view::npos;
       from = hit + delimiter.size()) {
    if (hit > from) runs.emplace_back(text.substr(from, hit - from), invert);
    runs.emplace_back(text.substr(hit, delimiter.size()), !invert);
  }
  if (from < text.size()) runs.emplace_back(text.substr(from), invert);

  std::vector<std::string> out;
  bool previous_was_delimiter = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& [run, is_delimiter] : runs)
        if (!is_delimiter) out.emplace_back(run);
      break;
    case SplitBehavior::kIsolated:
      for (const auto& [run, is_delimiter] : runs) out.emplace_back(run);
      break;
    case SplitBehavior::kContiguous:
      for (const auto& [run, is_delimiter] : runs) {
        if (is_delimiter && previous_was_delimiter) out.back() += run;
        else out.emplace_back(run);
        previous_was_delimiter = is_delimiter;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& [run, is_delimiter] : runs) {
        if (is_delimiter && !previous_was_delimiter && !out.empty()) out.back() += run;
        else out.emplace_back(run);
        previous_was_delimiter = is_delimiter;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
        if (it->second && !previous_was_delimiter && !out.empty()) out.back().insert(0, it->first);
        else out.emplace_back(it->first);
        previous_was_delimiter = it->second;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  return out;
}

}  // namespace

std::vector<std::string> Tokenizer::Impl::pre_tokenize(std::string text, bool at_text_start) const {
  std::vector<std::string> words;
  words.push_back(std::move(text));
  for (const auto& step : pre_tokenizer) {
    std::vector<std::string> next;
    for (size_t w = 0; w < words.size(); ++w) {
      std::string word = std::move(words[w]);
      if (step.kind == PreTokenizerStep::Kind::kSplit) {
        for (auto& piece : split_on(word, step.pattern, step.behavior, step.invert)) next.push_back(std::move(piece));
        continue;
      }
      replace_all(word, " ", step.pattern);
      const bool prepend = step.prepend_always || (step.prepend_first && at_text_start && w == 0);
      if (prepend && !word.starts_with(step.pattern)) word.insert(0, step.pattern);
      if (!step.split) {
        next.push_back(std::move(word));
        continue;
      }
      for (auto& piece : split_on(word, step.pattern, SplitBehavior::kMergedWithNext, false)) next.push_back(std::move(piece));
    }
    words = std::move(next);
  }
  std::erase_if(words, [](const std::string& w) { return w.empty(); });
  return words;
}

// Appends the spans of `text` to `out`: added tokens found by leftmost-longest match, and the text between.
void Tokenizer::Impl::split_on_added(std::string_view text, const AddedTokenTrie& trie, std::vector<Span>& out) const {
  if (trie.empty()) {
    if (!text.empty()) out.push_back({0, text.size(), -1});
    return;
  }
  // A single_word token must not touch a word character; non-ASCII letters count as word characters.
  auto is_word_byte = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || (c & 0x80); };
  size_t text_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    auto [index, end] = trie.longest_match(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = added_tokens[static_cast<size_t>(index)];
    if (token.single_word && ((pos > 0 && is_word_byte(text[pos - 1])) || (end < text.size() && is_word_byte(text[end])))) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    while (token.lstrip && begin > text_begin && whitespace_length_before(text, begin)) begin -= whitespace_length_before(text, begin);
    while (token.rstrip && end < text.size() && whitespace_length_at(text, end)) end += whitespace_length_at(text, end);
    if (begin > text_begin) out.push_back({text_begin, begin, -1});
    out.push_back({begin, end, token.id});
    text_begin = pos = end;
  }
  if (text_begin < text.size()) out.push_back({text_begin, text.size(), -1});
}

// BPE on one pre-tokenized word: start from characters (or their byte tokens), then repeatedly apply the
// lowest-ranked merge, leftmost first on ties, as HF does. A priority queue of candidate pairs over a linked
// list of symbols keeps this O(n log n) on long words; Gemma has no word splitting, so a whole paragraph
// can be one word.
void Tokenizer::Impl::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    if (const int32_t id = find(word); id >= 0) return out.push_back(id);
  }
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours in the list, -1 at the ends
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto append = [&](int32_t id) {
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1});
    if (index > 0) symbols[static_cast<size_t>(index - 1)].next = index;
  };
  bool previous_was_unk = false;
  for (size_t pos = 0; pos < word.size();) {
    const size_t length = std::max<size_t>(1, utf8_char_length(word.substr(pos)));  // invalid bytes go alone
    const std::string_view character = word.substr(pos, length);
    pos += length;
    if (const int32_t id = find(character); id >= 0) {
      append(id);
      previous_was_unk = false;
      continue;
    }
    const bool bytes_known = byte_fallback && std::all_of(character.begin(), character.end(), [&](char c) {
                               return byte_token_ids[static_cast<unsigned char>(c)] >= 0;
                             });
    if (bytes_known) {
      for (char c : character) append(byte_token_ids[static_cast<unsigned char>(c)]);
      previous_was_unk = false;
      continue;
    }
    if (unk_id < 0) throw std::runtime_error(path + ": text has a character not in the vocabulary and model.unk_token is unset");
    if (!(fuse_unk && previous_was_unk)) append(unk_id);
    previous_was_unk = true;
  }

  struct Candidate {
    int32_t rank, left, left_id, right_id, merged_id;
    bool operator<(const Candidate& o) const {  // std::priority_queue pops the largest: invert
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate> queue;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[static_cast<size_t>(left)].next;
    if (right < 0) return;
    const int32_t left_id = symbols[static_cast<size_t>(left)].id, right_id = symbols[static_cast<size_t>(right)].id;
    if (const MergeResult* merge = merges.find(left_id, right_id))
      queue.push({merge->rank, left, left_id, right_id, merge->merged_id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);

  constexpr int32_t kMergedAway = -1;
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<size_t>(c.left)];
    // Entries go stale when either side has since merged into something else; skip those.
    if (left.id != c.left_id || left.next < 0 || symbols[static_cast<size_t>(left.next)].id != c.right_id) continue;
    Symbol& right = symbols[static_cast<size_t>(left.next)];
    left.id = c.merged_id;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = c.left;
    right.id = kMergedAway;
    consider(left.prev);
    consider(c.left);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<size_t>(i)].next)
    out.push_back(symbols[static_cast<size_t>(i)].id);
}

// The decoder chain over token strings. With per_token_bytes, byte tokens become their raw byte (even when
// it is not valid UTF-8 alone) and steps that depend on a token's position in the sequence are skipped:
// that is what one token contributes to a stream.
std::vector<std::string> Tokenizer::Impl::run_decoder(std::vector<std::string> tokens, bool per_token_bytes) const {
  for (const auto& step : decoder) {
    switch (step.kind) {
      case DecoderStep::Kind::kReplace:
        for (auto& t : tokens) replace_all(t, step.pattern, step.content);
        break;
      case DecoderStep::Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          replace_all(tokens[i], step.pattern, " ");
          if (i == 0 && step.strip_first_space && !per_token_bytes && tokens[i].starts_with(' ')) tokens[i].erase(0, 1);
        }
        break;
      case DecoderStep::Kind::kStrip:
        if (per_token_bytes) break;
        for (auto& t : tokens) {
          for (int n = 0; n < step.strip_start && t.starts_with(step.content); ++n) t.erase(0, step.content.size());
          for (int n = 0; n < step.strip_stop && t.ends_with(step.content); ++n) t.resize(t.size() - step.content.size());
        }
        break;
      case DecoderStep::Kind::kFuse: {
        std::string fused;
        for (const auto& t : tokens) fused += t;
        tokens.assign(1, std::move(fused));
        break;
      }
      case DecoderStep::Kind::kByteFallback: {
        // A run of byte tokens becomes its bytes if they are valid UTF-8, else one U+FFFD per byte (HF).
        std::vector<std::string> next;
        std::string run;
        size_t run_tokens = 0;
        auto flush_run = [&] {
          if (run_tokens == 0) return;
          if (per_token_bytes || is_valid_utf8(run)) {
            next.push_back(run);
          } else {
            std::string replacement;
            for (size_t i = 0; i < run_tokens; ++i) replacement += kReplacementChar;
            next.push_back(std::move(replacement));
          }
          run.clear();
          run_tokens = 0;
        };
        for (auto& t : tokens) {
          if (const int byte = byte_token_value(t); byte >= 0) {
            run += static_cast<char>(byte);
            ++run_tokens;
          } else {
            flush_run();
            next.push_back(std::move(t));
          }
        }
        flush_run();
        tokens = std::move(next);
        break;
      }
    }
  }
  return tokens;
}

// ---------------------------------------------------------------------------------------------------------

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) { impl_->byte_token_ids.fill(-1); }
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::string& tokenizer_json_path) {
  Tokenizer tok;
  Impl& impl = *tok.impl_;
  impl.path = tokenizer_json_path;
  const std::string& path = impl.path;
  const std::string text = read_whole_file(path);
  JsonReader reader(text, path);
  json root = json::object(), model = json::object();
  MergeStrings merge_strings;
  bool have_model = false, have_vocab = false, have_merges = false;
  if (reader.peek() != '{') reader.fail("the top level is not an object");
  reader.read_object([&](const std::string& key) {
    if (key == "model" && reader.peek() == '{') {
      have_model = true;
      impl.read_model(reader, model, merge_strings, have_vocab, have_merges);
    } else {
      root[key] = reader.read_value();
    }
  });
  if (!reader.at_end()) reader.fail("trailing characters after the top-level object");

  if (!have_model) fail_field(path, "model", "is missing or not an object");
  if (model.contains("type") && model["type"] != "BPE")
    fail_field(path, "model.type", "only BPE is supported, not " + model["type"].dump());
  if (!have_vocab) fail_field(path, "model.vocab", "is missing or not an object");
  if (!have_merges) fail_field(path, "model.merges", "is missing or not an array");
  impl.piece_ids.build(impl.pieces);
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(affix);
    if (it != model.end() && !it->is_null() && *it != "") fail_field(path, std::string("model.") + affix, "is not supported");
  }
  impl.resolve_merges(merge_strings);
  impl.byte_fallback = bool_member(model, "byte_fallback", false);
  impl.fuse_unk = bool_member(model, "fuse_unk", false);
  impl.ignore_merges = bool_member(model, "ignore_merges", false);
  // model.dropout is ignored on purpose: it randomizes merges for training, and inference must be repeatable.
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    impl.unk_id = impl.find(model["unk_token"].get<std::string>());
    if (impl.unk_id < 0) fail_field(path, "model.unk_token", model["unk_token"].dump() + " is not in model.vocab");
  }
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    impl.byte_token_ids[static_cast<size_t>(byte)] = impl.find(name);
  }

  impl.normalizer = parse_normalizer(root.value("normalizer", json()), path);
  impl.pre_tokenizer = parse_pre_tokenizer(root.value("pre_tokenizer", json()), path);
  impl.decoder = parse_decoder(root.value("decoder", json()), path);
  impl.read_added_tokens(root);
  impl.special.resize(impl.pieces.size());
  impl.read_special_ids();
  return tok;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  const Impl& impl = *impl_;
  std::vector<int32_t> ids;
  if (add_bos && impl.bos >= 0) ids.push_back(impl.bos);
  std::vector<Span> raw_spans, normalized_spans;
  impl.split_on_added(text, impl.raw_added, raw_spans);
  for (const Span& raw : raw_spans) {
    if (raw.token_id >= 0) {
      ids.push_back(raw.token_id);
      continue;
    }
    const std::string normalized = impl.normalize(text.substr(raw.begin, raw.end - raw.begin));
    normalized_spans.clear();
    impl.split_on_added(normalized, impl.normalized_added, normalized_spans);
    for (const Span& span : normalized_spans) {
      if (span.token_id >= 0) {
        ids.push_back(span.token_id);
        continue;
      }
      const bool at_text_start = raw.begin == 0 && span.begin == 0;
      for (const auto& word : impl.pre_tokenize(normalized.substr(span.begin, span.end - span.begin), at_text_start))
        impl.encode_word(word, ids);
    }
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids)
    if (id >= 0 && id < vocab_size()) tokens.push_back(impl_->pieces[static_cast<size_t>(id)]);  // HF skips unknown ids
  std::string text;
  for (const auto& t : impl_->run_decoder(std::move(tokens), false)) text += t;
  return text;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  std::string bytes;
  for (const auto& t : impl_->run_decoder({impl_->pieces[static_cast<size_t>(id)]}, true)) bytes += t;
  return bytes;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->pieces.size()); }
int32_t Tokenizer::token_id(std::string_view piece) const { return impl_->find(piece); }
const std::string& Tokenizer::piece(int32_t id) const {
  static const std::string kNone;
  return id >= 0 && id < vocab_size() ? impl_->pieces[static_cast<size_t>(id)] : kNone;
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() && impl_->special[static_cast<size_t>(id)];
}
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }

// ---------------------------------------------------------------------------------------------------------

std::string StreamingDetokenizer::push(int32_t id) {
  pending_ += tok_->token_bytes(id);
  std::string ready;
  size_t pos = 0;
  while (pos < pending_.size()) {
    bool truncated = false;
    const size_t length = utf8_char_length(std::string_view(pending_).substr(pos), &truncated);
    if (truncated) break;  // the next token may complete it
    if (length == 0) {
      ready += kReplacementChar;  // a byte no continuation can make valid
      ++pos;
    } else {
      ready.append(pending_, pos, length);
      pos += length;
    }
  }
  pending_.erase(0, pos);
  return ready;
}

std::string StreamingDetokenizer::flush() {
  std::string rest = push(-1);  // id -1 contributes no bytes; this emits whatever is complete
  for (size_t i = 0; i < pending_.size(); ++i) rest += kReplacementChar;  // one per byte, as HF's ByteFallback
  pending_.clear();
  return rest;
}

}  // namespace conflux
