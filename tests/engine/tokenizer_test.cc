// Tests for the tokenizer.json codec: Gemma's real tokenizer against the golden ids (HF tokenizers' JS port
// and llama.cpp's Gemma 4 vectors), streaming detokenization, the tiny synthetic checkpoint's tokenizer,
// small hand-made tokenizer files for the generic features, load errors, and `conflux tokenize`.
#include "engine/tokenizer.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace conflux {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kGoldenPath = CONFLUX_SHARED_DIR "/reference/tokenizer/gemma3-golden.jsonl";
const std::string kLlamaCppVectorsPath = CONFLUX_SHARED_DIR "/reference/tokenizer/gemma4-llamacpp-vectors.jsonl";
const std::string kTinyTokenizerPath = CONFLUX_SHARED_DIR "/reference/tiny-a/tokenizer.json";

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

// Checked independently of the tokenizer's own UTF-8 code.
bool is_valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto lead = static_cast<unsigned char>(s[i]);
    const size_t length = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
    if (length == 0 || i + length > s.size()) return false;
    uint32_t cp = length == 1 ? lead : lead & (0xFF >> (length + 1));
    for (size_t k = 1; k < length; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};  // shorter encodings are overlong
    if (cp < smallest[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

std::string byte_token(unsigned char byte) {
  char name[8];
  std::snprintf(name, sizeof name, "<0x%02X>", byte);
  return name;
}

// Gemma's real tokenizer, loaded once for the suite.
class GemmaTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(CONFLUX_TOKENIZER_JSON)) return;
    try {
      const auto start = std::chrono::steady_clock::now();
      tokenizer_ = new Tokenizer(Tokenizer::load(CONFLUX_TOKENIZER_JSON));
      load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } catch (const std::exception& e) {
      load_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(fs::exists(CONFLUX_TOKENIZER_JSON))
        << "Gemma's tokenizer.json is missing at " CONFLUX_TOKENIZER_JSON "; run tools/fetch_test_data.sh";
    ASSERT_NE(tokenizer_, nullptr) << "loading " CONFLUX_TOKENIZER_JSON " failed: " << load_error_;
  }
  const Tokenizer& tok() const { return *tokenizer_; }

  static inline Tokenizer* tokenizer_ = nullptr;
  static inline double load_seconds_ = 0;
  static inline std::string load_error_;
};

// Load time is a benchmark figure (conflux bench reports it); here it is only printed, since timed
// assertions fail on a busy shared machine.
TEST_F(GemmaTokenizerTest, LoadsTheRealGemmaFile) {
  std::printf("loaded %s in %.3f s\n", CONFLUX_TOKENIZER_JSON, load_seconds_);
  ASSERT_NE(tokenizer_, nullptr) << load_error_;
  // 262144 model rows plus the added <image_soft_token> at 262144.
  EXPECT_EQ(tokenizer_->vocab_size(), 262145);
}

TEST_F(GemmaTokenizerTest, GoldenIdsAndDecodeMatchOnEveryLine) {
  const auto rows = read_jsonl(kGoldenPath);
  ASSERT_FALSE(rows.empty());
  size_t matching = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    SCOPED_TRACE("golden line " + std::to_string(i + 1) + ": " + rows[i]["text"].dump());
    const std::string text = rows[i]["text"];
    const auto ids = tok().encode(text, false);
    const auto ids_with_bos = tok().encode(text, true);
    const std::string decoded = tok().decode(ids);
    EXPECT_EQ(ids, rows[i]["ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(ids_with_bos, rows[i]["ids_with_bos"].get<std::vector<int32_t>>());
    EXPECT_EQ(decoded, rows[i]["decoded"].get<std::string>());
    matching += ids == rows[i]["ids"] && ids_with_bos == rows[i]["ids_with_bos"] && decoded == rows[i]["decoded"];
  }
  std::printf("%zu/%zu golden lines match\n", matching, rows.size());
  EXPECT_EQ(matching, rows.size());
}

TEST_F(GemmaTokenizerTest, LlamaCppGemma4VectorsMatch) {
  const auto rows = read_jsonl(kLlamaCppVectorsPath);
  ASSERT_FALSE(rows.empty());
  for (size_t i = 0; i < rows.size(); ++i) {
    SCOPED_TRACE("llama.cpp vector " + std::to_string(i + 1) + ": " + rows[i]["text"].dump());
    EXPECT_EQ(tok().encode(rows[i]["text"].get<std::string>(), false), rows[i]["ids"].get<std::vector<int32_t>>());
  }
}

TEST_F(GemmaTokenizerTest, SpecialIdsComeFromTokenizerConfig) {
  std::ifstream in(fs::path(CONFLUX_TOKENIZER_JSON).parent_path() / "tokenizer_config.json");
  ASSERT_TRUE(in) << "tokenizer_config.json should sit beside " CONFLUX_TOKENIZER_JSON;
  const json config = json::parse(in);
  EXPECT_EQ(tok().bos_id(), tok().token_id(config["bos_token"].get<std::string>()));
  EXPECT_EQ(tok().eos_id(), tok().token_id(config["eos_token"].get<std::string>()));
  EXPECT_EQ(tok().pad_id(), tok().token_id(config["pad_token"].get<std::string>()));
  EXPECT_TRUE(tok().is_special(tok().bos_id()));
  EXPECT_EQ(tok().piece(tok().bos_id()), config["bos_token"].get<std::string>());
  // The golden ids_with_bos start with the bos id the config names.
  EXPECT_EQ(read_jsonl(kGoldenPath).at(0)["ids_with_bos"].at(0).get<int32_t>(), tok().bos_id());
  EXPECT_EQ(tok().piece(-1), "");
  EXPECT_EQ(tok().piece(tok().vocab_size()), "");
  EXPECT_EQ(tok().token_id("no such piece \x01"), -1);
}

TEST_F(GemmaTokenizerTest, StreamingNeverEmitsBrokenUtf8) {
  size_t streamed_lines = 0, held_back_pushes = 0;
  for (const auto& row : read_jsonl(kGoldenPath)) {
    const std::string text = row["text"];
    if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) continue;
    SCOPED_TRACE(row["text"].dump());
    const auto ids = row["ids"].get<std::vector<int32_t>>();
    StreamingDetokenizer stream(tok());
    std::string joined;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_TRUE(is_valid_utf8(piece)) << "piece for id " << id;
      held_back_pushes += piece.empty() && !tok().token_bytes(id).empty();
      joined += piece;
    }
    joined += stream.flush();
    EXPECT_EQ(joined, tok().decode(ids));
    ++streamed_lines;
  }
  EXPECT_GT(streamed_lines, 0u);
  EXPECT_GT(held_back_pushes, 0u) << "no golden line split a character across tokens; the test proves nothing";
}

TEST_F(GemmaTokenizerTest, StreamingHoldsASplitCharacterUntilItCompletes) {
  const std::string euro = "\xE2\x82\xAC";  // U+20AC, three bytes
  StreamingDetokenizer stream(tok());
  std::vector<std::string> pieces;
  for (unsigned char byte : euro) {
    const int32_t id = tok().token_id(byte_token(byte));
    ASSERT_GE(id, 0) << byte_token(byte) << " should be a byte-fallback token";
    EXPECT_EQ(tok().token_bytes(id), std::string(1, static_cast<char>(byte)));
    pieces.push_back(stream.push(id));
  }
  EXPECT_EQ(pieces, (std::vector<std::string>{"", "", euro}));
  EXPECT_EQ(stream.flush(), "");
  // An unfinished character left at the end becomes U+FFFD rather than broken bytes.
  EXPECT_EQ(stream.push(tok().token_id(byte_token(0xE2))), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(tok().token_bytes(tok().token_id("▁")), " ");
}

TEST_F(GemmaTokenizerTest, LongInputEncodesQuicklyAndRoundTrips) {
  std::string text;
  for (const auto& row : read_jsonl(kLlamaCppVectorsPath)) text += row["text"].get<std::string>() + " ";
  const size_t kTargetBytes = 1 << 20;  // a megabyte makes any quadratic merge loop take minutes
  const std::string unit = text;
  while (text.size() < kTargetBytes) text += unit;
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok().encode(text, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("encoded %zu bytes into %zu tokens in %.3f s (%.1f MB/s)\n", text.size(), ids.size(), seconds,
              text.size() / seconds / 1e6);
  EXPECT_LT(ids.size(), text.size());
  EXPECT_EQ(tok().decode(ids), text);
}

// ---------------------------------------------------------------------------------------------------------

TEST(TinyTokenizerTest, LoadsThroughTheSameCodePath) {
  const Tokenizer tok = Tokenizer::load(kTinyTokenizerPath);
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.token_id("<|turn>"), 105);
  EXPECT_TRUE(tok.is_special(105));
  const int32_t ab = tok.token_id("ab");
  ASSERT_GE(ab, 0);
  EXPECT_EQ(tok.encode("<|turn>ab", true), (std::vector<int32_t>{2, 105, ab}));
  EXPECT_EQ(tok.decode({105, ab}), "<|turn>ab");
}

// Writes small hand-made tokenizer files into a fresh directory.
class SyntheticTokenizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("conflux_tokenizer_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A minimal BPE tokenizer.json: "a"+"b" -> "ab", "ab"+"c" -> "abc"; "ca" is in the vocabulary without a merge.
  static json base() {
    return json{{"version", "1.0"},
                {"added_tokens", json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
                                              {{"id", 9}, {"content", "<bos>"}, {"special", true}, {"normalized", false}}})},
                {"normalizer", nullptr},
                {"pre_tokenizer", nullptr},
                {"decoder", {{"type", "Sequence"}, {"decoders", json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}}},
                {"model",
                 {{"type", "BPE"},
                  {"unk_token", "<unk>"},
                  {"byte_fallback", true},
                  {"fuse_unk", true},
                  {"vocab", {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"ab", 3}, {"c", 4}, {"abc", 5}, {"ca", 6}, {"<0x20>", 7}, {"<x>", 8}, {"<bos>", 9}}},
                  {"merges", json::array({json::array({"a", "b"}), json::array({"ab", "c"})})}}}};
  }
  std::string write(const json& tokenizer, const std::string& name = "tokenizer.json") {
    return write_text(tokenizer.dump(), name);
  }
  std::string write_text(const std::string& text, const std::string& name = "tokenizer.json") {
    const fs::path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
  // The message of the runtime_error that loading `path` throws ("" if none).
  static std::string load_error(const std::string& path) {
    try {
      Tokenizer::load(path);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(SyntheticTokenizerTest, MergesAsPairsAndAsStringsAgree) {
  json pairs = base();
  json strings = base();
  strings["model"]["merges"] = json::array({"a b", "ab c"});
  const Tokenizer from_pairs = Tokenizer::load(write(pairs, "pairs.json"));
  const Tokenizer from_strings = Tokenizer::load(write(strings, "strings.json"));
  for (const char* text : {"abc", "ab", "cab", "abcab"}) {
    SCOPED_TRACE(text);
    EXPECT_EQ(from_pairs.encode(text, false), from_strings.encode(text, false));
  }
  EXPECT_EQ(from_pairs.encode("abc", false), std::vector<int32_t>{from_pairs.token_id("abc")});
  EXPECT_EQ(from_pairs.encode("cab", false), (std::vector<int32_t>{from_pairs.token_id("c"), from_pairs.token_id("ab")}));
}

TEST_F(SyntheticTokenizerTest, IgnoreMergesTakesWholeVocabularyWords) {
  json config = base();
  const Tokenizer merging = Tokenizer::load(write(config, "merging.json"));
  config["model"]["ignore_merges"] = true;
  const Tokenizer ignoring = Tokenizer::load(write(config, "ignoring.json"));
  const int32_t c = merging.token_id("c"), a = merging.token_id("a"), ca = merging.token_id("ca");
  EXPECT_EQ(merging.encode("ca", false), (std::vector<int32_t>{c, a}));  // no merge builds "ca"
  EXPECT_EQ(ignoring.encode("ca", false), std::vector<int32_t>{ca});
}

TEST_F(SyntheticTokenizerTest, ByteFallbackUnknownAndFusedUnknown) {
  json config = base();
  const Tokenizer fused = Tokenizer::load(write(config, "fused.json"));
  const int32_t unk = fused.token_id("<unk>"), space = fused.token_id("<0x20>"), a = fused.token_id("a");
  EXPECT_EQ(fused.encode("a a", false), (std::vector<int32_t>{a, space, a}));  // ' ' only as a byte token
  EXPECT_EQ(fused.decode({a, space, a}), "a a");
  EXPECT_EQ(fused.encode("zz", false), std::vector<int32_t>{unk});  // no vocab entry, no byte token: unk
  config["model"]["fuse_unk"] = false;
  EXPECT_EQ(Tokenizer::load(write(config, "unfused.json")).encode("zz", false), (std::vector<int32_t>{unk, unk}));
}

TEST_F(SyntheticTokenizerTest, AddedTokenStripFlagsAbsorbSpaces) {
  json config = base();
  config["added_tokens"].push_back({{"id", 8}, {"content", "<x>"}, {"normalized", false}});
  const Tokenizer plain = Tokenizer::load(write(config, "plain.json"));
  const int32_t a = plain.token_id("a"), b = plain.token_id("b"), x = plain.token_id("<x>"), space = plain.token_id("<0x20>");
  EXPECT_EQ(plain.encode("a <x> b", false), (std::vector<int32_t>{a, space, x, space, b}));
  config["added_tokens"].back()["lstrip"] = true;
  config["added_tokens"].back()["rstrip"] = true;
  const Tokenizer stripping = Tokenizer::load(write(config, "stripping.json"));
  EXPECT_EQ(stripping.encode("a <x> b", false), (std::vector<int32_t>{a, x, b}));
  EXPECT_FALSE(stripping.is_special(x));
}

TEST_F(SyntheticTokenizerTest, LlamaStylePrependNormalizerAndStripDecoder) {
  json config = base();
  config["model"]["vocab"]["▁"] = 10;
  config["model"]["vocab"]["▁a"] = 11;
  config["model"]["merges"].push_back(json::array({"▁", "a"}));
  config["normalizer"] = {{"type", "Sequence"},
                          {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "▁"}},
                                                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}})}};
  config["decoder"] = {{"type", "Sequence"},
                       {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                                                 {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                                 {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  const Tokenizer tok = Tokenizer::load(write(config));
  const auto ids = tok.encode("a a", false);
  EXPECT_EQ(ids, (std::vector<int32_t>{11, 11}));
  EXPECT_EQ(tok.decode(ids), "a a");
}

TEST_F(SyntheticTokenizerTest, SpecialIdsFallBackToAddedTokensOrComeFromConfig) {
  const std::string path = write(base());
  EXPECT_EQ(Tokenizer::load(path).bos_id(), 9);  // the added token spelled <bos>
  EXPECT_EQ(Tokenizer::load(path).eos_id(), -1);
  write_text(R"({"bos_token": {"content": "<x>"}, "eos_token": "<unk>"})", "tokenizer_config.json");
  const Tokenizer configured = Tokenizer::load(path);
  EXPECT_EQ(configured.bos_id(), configured.token_id("<x>"));
  EXPECT_EQ(configured.eos_id(), configured.token_id("<unk>"));
  EXPECT_EQ(configured.encode("a", true).front(), configured.token_id("<x>"));
  write_text(R"({"bos_token": "<nope>"})", "tokenizer_config.json");
  const std::string error = load_error(path);
  EXPECT_NE(error.find("tokenizer_config.json"), std::string::npos) << error;
  EXPECT_NE(error.find("bos_token"), std::string::npos) << error;
}

TEST_F(SyntheticTokenizerTest, LoadErrorsNameTheFileAndTheField) {
  const std::string missing = (dir_ / "absent.json").string();
  EXPECT_NE(load_error(missing).find(missing), std::string::npos);

  const std::string invalid = write_text("{\"model\": {\"vocab\": ", "invalid.json");
  EXPECT_NE(load_error(invalid).find(invalid), std::string::npos) << load_error(invalid);

  json no_vocab = base();
  no_vocab["model"].erase("vocab");
  const std::string no_vocab_path = write(no_vocab, "no_vocab.json");
  const std::string error = load_error(no_vocab_path);
  EXPECT_NE(error.find(no_vocab_path), std::string::npos) << error;
  EXPECT_NE(error.find("model.vocab"), std::string::npos) << error;

  json bad_merge = base();
  bad_merge["model"]["merges"].push_back(json::array({"a", "q"}));
  EXPECT_NE(load_error(write(bad_merge, "bad_merge.json")).find("model.merges[2]"), std::string::npos);

  json regex = base();
  regex["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Isolated"}};
  EXPECT_NE(load_error(write(regex, "regex.json")).find("pre_tokenizer.pattern"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------------------

struct CommandResult {
  int exit_code;
  std::string output;
};

CommandResult run_command(const std::string& command) {
  CommandResult result{-1, ""};
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST_F(GemmaTokenizerTest, TokenizeCommandWritesOneIdArrayPerLine) {
  const auto rows = read_jsonl(kGoldenPath);
  const size_t kLinesToRun = 3;
  ASSERT_GE(rows.size(), kLinesToRun);
  const fs::path input = fs::temp_directory_path() / ("conflux_tokenize_input_" + std::to_string(::getpid()));
  {
    std::ofstream out(input);
    for (size_t i = rows.size() - kLinesToRun; i < rows.size(); ++i) out << rows[i]["text"].dump() << "\n";
  }
  for (const bool add_bos : {false, true}) {
    SCOPED_TRACE(add_bos ? "--add-bos" : "without --add-bos");
    const auto result = run_command(std::string(CONFLUX_BINARY) + " tokenize --tokenizer '" CONFLUX_TOKENIZER_JSON "'" +
                                    (add_bos ? " --add-bos" : "") + " < '" + input.string() + "'");
    EXPECT_EQ(result.exit_code, 0);
    std::istringstream lines(result.output);
    std::string line;
    for (size_t i = rows.size() - kLinesToRun; i < rows.size(); ++i) {
      ASSERT_TRUE(std::getline(lines, line)) << "missing output line; got:\n" << result.output;
      EXPECT_EQ(json::parse(line), rows[i][add_bos ? "ids_with_bos" : "ids"]);
    }
    EXPECT_FALSE(std::getline(lines, line)) << "extra output: " << line;
  }
  fs::remove(input);

  const auto help = run_command(std::string(CONFLUX_BINARY) + " tokenize --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--tokenizer"), std::string::npos) << help.output;
  const auto bad_input = run_command("echo 'not json' | " + std::string(CONFLUX_BINARY) +
                                     " tokenize --tokenizer '" CONFLUX_TOKENIZER_JSON "' 2>/dev/null");
  EXPECT_NE(bad_input.exit_code, 0);
}

}  // namespace
}  // namespace conflux
