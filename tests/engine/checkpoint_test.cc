// Checkpoint loading: good random checkpoints (single file and sharded) and every kind of bad one —
// truncated, lying header, missing tensor, wrong shape, config that disagrees — each with a clear
// error that names the file and the tensor or field.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "engine/random_checkpoint.h"
#include "engine/safetensors.h"

namespace conflux {
namespace {

namespace fs = std::filesystem;

// A small model whose geometry differs from tiny-a: 7 layers, full at 2 and 6, 6 query heads,
// 3 KV heads of 16 on sliding layers, and on full layers heads of 24 with their own v_proj: without
// attention_k_eq_v HF ignores num_global_key_value_heads, so full layers keep 3 KV heads.
ModelConfig small_config(bool k_eq_v) {
  ModelConfig c;
  c.model_type = "gemma4_unified";
  TextConfig& t = c.text;
  t.vocab_size = 97;
  t.hidden_size = 48;
  t.intermediate_size = 80;
  t.num_layers = 7;
  t.layer_is_full = {false, false, true, false, false, false, true};
  t.num_heads = 6;
  t.head_dim = 16;
  t.global_head_dim = 24;
  t.num_kv_heads = 3;
  t.num_global_kv_heads = k_eq_v ? 1 : 2;
  t.attention_k_eq_v = k_eq_v;
  t.sliding_window = 5;
  t.final_logit_softcapping = 30.f;
  t.max_position_embeddings = 1024;
  t.full_partial_rotary_factor = 0.5f;
  c.vision.present = true;
  c.vision.mm_embed_dim = 32;
  c.vision.mm_posemb_size = 64;
  c.vision.output_proj_dims = 32;
  c.audio.present = true;
  c.tokens.boi = 90; c.tokens.boa = 91; c.tokens.image = 92; c.tokens.audio = 93; c.tokens.eoi = 94;
  c.tokens.eoa = 95; c.tokens.video = 96; c.tokens.bos = 2; c.tokens.eos = 1; c.tokens.pad = 0;
  return c;
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("conflux_ckpt_" + std::to_string(::getpid()) + "_" +
                                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    write_random_checkpoint(dir_.string(), small_config(false), DType::BF16, 7);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string load_error() {
    try {
      Model::load(dir_.string());
    } catch (const CheckpointError& e) {
      return e.what();
    }
    return "";
  }
  std::string file() const { return (dir_ / "model.safetensors").string(); }

  // Rewrites the safetensors header through `edit`, keeping the payload.
  void edit_header(const std::function<void(nlohmann::json&)>& edit) {
    std::ifstream in(file(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint64_t len;
    std::memcpy(&len, bytes.data(), 8);
    auto header = nlohmann::json::parse(bytes.substr(8, len));
    edit(header);
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    const uint64_t new_len = h.size();
    std::ofstream out(file(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&new_len), 8);
    out << h << bytes.substr(8 + len);
  }

  fs::path dir_;
};

TEST_F(CheckpointTest, RandomCheckpointLoadsWithGeometryFromShapes) {
  auto m = Model::load(dir_.string());
  EXPECT_EQ(m->weight_dtype(), DType::BF16);
  EXPECT_EQ(m->weights().layers.size(), 7u);
  EXPECT_TRUE(m->weights().layers[2].v_proj.present());  // full layer with its own V
  EXPECT_EQ(m->weights().layers[2].k_proj.rows(), 3 * 24);
  EXPECT_EQ(m->weights().layers[0].k_proj.rows(), 3 * 16);
}

TEST_F(CheckpointTest, TruncatedFileNamesTheFileAndTensor) {
  const auto size = fs::file_size(file());
  fs::resize_file(file(), size - 100);
  const std::string e = load_error();
  EXPECT_NE(e.find(file()), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST_F(CheckpointTest, FileShorterThanItsHeaderLength) {
  fs::resize_file(file(), 20);
  const std::string e = load_error();
  EXPECT_NE(e.find(file()), std::string::npos) << e;
  EXPECT_NE(e.find("header length"), std::string::npos) << e;
}

TEST_F(CheckpointTest, HeaderWhoseSizesLie) {
  edit_header([](nlohmann::json& h) { h["model.language_model.norm.weight"]["data_offsets"][1] = h["model.language_model.norm.weight"]["data_offsets"][0].get<uint64_t>() + 6; });
  const std::string e = load_error();
  EXPECT_NE(e.find("model.language_model.norm.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("needs"), std::string::npos) << e;
}

TEST_F(CheckpointTest, HeaderWhoseOffsetsRunPastTheData) {
  edit_header([](nlohmann::json& h) {
    auto& t = h["model.language_model.layers.0.mlp.up_proj.weight"];
    t["data_offsets"] = {uint64_t(1) << 40, (uint64_t(1) << 40) + 80 * 48 * 2};
  });
  const std::string e = load_error();
  EXPECT_NE(e.find("model.language_model.layers.0.mlp.up_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("past the end"), std::string::npos) << e;
}

TEST_F(CheckpointTest, HeaderThatIsNotJson) {
  std::fstream f(file(), std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(8);
  f << "#garbage";
  f.close();
  const std::string e = load_error();
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
}

TEST_F(CheckpointTest, MissingTensorIsNamed) {
  edit_header([](nlohmann::json& h) { h.erase("model.language_model.layers.3.mlp.down_proj.weight"); });
  const std::string e = load_error();
  EXPECT_NE(e.find("missing tensor model.language_model.layers.3.mlp.down_proj.weight"), std::string::npos) << e;
}

TEST_F(CheckpointTest, WrongShapeIsNamedWithBothShapes) {
  edit_header([](nlohmann::json& h) { h["model.language_model.layers.1.mlp.gate_proj.weight"]["shape"] = {48, 80}; });
  const std::string e = load_error();
  EXPECT_NE(e.find("layers.1.mlp.gate_proj.weight has shape [48, 80]"), std::string::npos) << e;
  EXPECT_NE(e.find("[80, 48]"), std::string::npos) << e;
}

TEST_F(CheckpointTest, ConfigThatDisagreesWithTheTensors) {
  // Claim 4 KV heads on sliding layers while k_proj holds 3 x 16 rows.
  const fs::path cfg = dir_ / "config.json";
  std::ifstream in(cfg);
  auto j = nlohmann::json::parse(in);
  in.close();
  j["text_config"]["num_key_value_heads"] = 2;
  std::ofstream(cfg) << j.dump();
  const std::string e = load_error();
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("self_attn.k_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("2 KV heads"), std::string::npos) << e;
}

TEST_F(CheckpointTest, ConfigWithBadFieldIsNamed) {
  const fs::path cfg = dir_ / "config.json";
  std::ifstream in(cfg);
  auto j = nlohmann::json::parse(in);
  in.close();
  j["text_config"]["layer_types"][1] = "diagonal_attention";
  std::ofstream(cfg) << j.dump();
  const std::string e = load_error();
  EXPECT_NE(e.find("text_config.layer_types"), std::string::npos) << e;
}

TEST_F(CheckpointTest, ShardedCheckpointLoadsTheSameTensors) {
  // Split the single file into two shards plus an index.
  Checkpoint whole(dir_.string());
  std::vector<TensorToWrite> a, b;
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  int i = 0;
  for (const auto& name : whole.names()) {
    const TensorRef& t = whole.get(name);
    (i++ % 2 ? a : b).push_back({name, t.dtype, t.shape, t.data});
    index["weight_map"][name] = i % 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  const fs::path sharded = dir_ / "sharded";
  fs::create_directories(sharded);
  write_safetensors((sharded / "model-00001-of-00002.safetensors").string(), a);
  write_safetensors((sharded / "model-00002-of-00002.safetensors").string(), b);
  std::ofstream(sharded / "model.safetensors.index.json") << index.dump();
  fs::copy_file(dir_ / "config.json", sharded / "config.json");
  auto m = Model::load(sharded.string());
  Checkpoint split(sharded.string());
  EXPECT_EQ(split.names(), whole.names());
  EXPECT_EQ(split.total_bytes(), whole.total_bytes());
}

TEST_F(CheckpointTest, MissingFolderOrConfig) {
  EXPECT_THROW(Model::load((dir_ / "nope").string()), CheckpointError);
  fs::remove(dir_ / "config.json");
  EXPECT_NE(load_error().find("no config.json"), std::string::npos);
}

}  // namespace
}  // namespace conflux

namespace conflux {
namespace {

// The 12B preset reproduces the published checkpoint exactly: 11,959,730,224 parameters in 677
// tensors (architecture doc §2), no lm_head (tied), no v_proj on the 8 full layers.
TEST(Presets, Gemma4_12bMatchesThePublishedTensorSet) {
  ModelWeights w;
  const ModelConfig c = gemma4_12b_config();
  int64_t params = 0;
  int tensors = 0;
  for (const TensorSlot& s : tensor_table(c, w)) {
    if (!s.required) continue;
    int64_t n = 1;
    for (auto d : s.shape) n *= d;
    params += n;
    ++tensors;
  }
  EXPECT_EQ(params, 11959730224);
  EXPECT_EQ(tensors, 677);
  int full = 0;
  for (int i = 0; i < c.text.num_layers; ++i) full += c.text.layer(i).full;
  EXPECT_EQ(full, 8);
  EXPECT_TRUE(c.text.layer(47).full);
  EXPECT_EQ(c.text.layer(5).rope_pairs, 64);  // 0.25 * 512 / 2
}

}  // namespace
}  // namespace conflux
