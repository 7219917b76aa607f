// `conflux eval` on the held-out set in the repository (tests/data/eval-set: voices and scenes the bundled
// model never saw in training), through the real binary: recordings -> session -> answers -> scores.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>
#include <nlohmann/json.hpp>

#include "tests/support/commands.h"

namespace conflux {
namespace {

namespace fs = std::filesystem;
using testing_support::run_shell;

const std::string kSource = CONFLUX_SOURCE_DIR;
const std::string kModel = kSource + "/assets/model";
const std::string kSet = kSource + "/tests/data/eval-set";
const std::string kConflux = CONFLUX_BINARY;

// `eval --json` prints one line; the output also carries stderr.
nlohmann::json last_json_line(const std::string& output) {
  size_t start = output.rfind("\n{");
  start = start == std::string::npos ? (output.rfind('{', 0) == 0 ? 0 : std::string::npos) : start + 1;
  if (start == std::string::npos) return nullptr;
  return nlohmann::json::parse(output.substr(start, output.find('\n', start) - start), nullptr, false);
}

// The whole repository set: 8 items per task (about a second through the live path).
constexpr int kItemsPerTask = 8;

// What the shipped model scored on this set when it was trained (assets/model/README.md has the figures
// of ten 150-item sets), less one item or one shape of slack, so that a harmless change to the live path
// (one borderline VAD decision, say) does not fail the suite while a broken one (wrong turn layout, image
// size, patch order, audio framing, thought not split from the answer) does: an input-blind model names
// the right colour for ~1 shape in 6 and the right cell for ~1 in 9, and no digit string. Measured (the
// mean of steps 31750-32250 of the run trained on every digit string): scene 8/8 exact (colour, position
// and shape 13/13, count 8/8), combined 8/8, command 5/8 (issue #6 is open: on 1500 held-out items it
// gets 81% of the commands, 94% of the combined questions and 95% of the descriptions); raise these when
// a better model ships.
struct Floor {
  const char* name;
  double min;
};
constexpr Floor kTaskFloors[] = {{"scene", 7.0 / 8}, {"combined", 7.0 / 8}, {"command", 4.0 / 8}};
constexpr Floor kSceneAttributeFloors[] = {{"colour", 12.0 / 13}, {"position", 12.0 / 13}, {"shape", 12.0 / 13},
                                           {"count", 7.0 / 8}};

TEST(Eval, HeldOutItemsAreAnsweredThroughTheLivePath) {
  const auto r = run_shell(kConflux + " eval --model " + kModel + " --set " + kSet + " --limit " +
                           std::to_string(kItemsPerTask) + " --json --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto report = last_json_line(r.output);
  for (const Floor& f : kTaskFloors) {
    ASSERT_TRUE(report.contains(f.name)) << report.dump();
    const auto& t = report[f.name];
    EXPECT_EQ(t["n"], kItemsPerTask) << f.name;
    EXPECT_DOUBLE_EQ(t["accuracy"].get<double>(), t["correct"].get<double>() / kItemsPerTask) << f.name;
    EXPECT_GE(t["accuracy"].get<double>(), f.min) << f.name << ": " << r.output;
  }
  for (const Floor& f : kSceneAttributeFloors)
    EXPECT_GE(report["scene"]["attributes"][f.name].get<double>(), f.min) << f.name << ": " << r.output;
}

// The scene description the model gave for the single item of `set` (from `eval --verbose`).
std::string model_answer(const fs::path& set) {
  const auto r = run_shell(kConflux + " eval --model " + kModel + " --set " + set.string() + " --verbose");
  const std::string marker = "got \"";
  const size_t at = r.output.find(marker);
  if (r.exit_code != 0 || at == std::string::npos) return "";
  const size_t begin = at + marker.size();
  return r.output.substr(begin, r.output.find('"', begin) - begin);
}

// "a red circle at the top left, a blue square in the middle and an orange triangle at the bottom" ->
// [{"colour", "shape", "position"}, ...]; null if the text is not a description of that form.
nlohmann::json parse_description(std::string text) {
  for (size_t at; (at = text.find(" and a")) != std::string::npos;) text.replace(at, 6, ", a");
  nlohmann::json shapes = nlohmann::json::array();
  size_t at = 0;
  while (at <= text.size()) {
    const size_t end = std::min(text.find(", ", at), text.size());
    std::istringstream phrase(text.substr(at, end - at));
    std::string article, colour, shape, word, position;
    phrase >> article >> colour >> shape;
    while (phrase >> word) position += (position.empty() ? "" : " ") + word;
    if ((article != "a" && article != "an") || colour.empty() || shape.empty() || position.empty()) return nullptr;
    shapes.push_back({{"colour", colour}, {"shape", shape}, {"position", position}});
    at = end + 2;
  }
  return shapes;
}

// Scoring, independent of how good the model is: the expectation is first set to the model's own
// description of a held-out frame (an exact match), then one attribute is changed. The item must then
// count as a miss, with exactly that attribute wrong and the pair listed among the confusions.
TEST(Eval, ScoresAttributesAndConfusionsAgainstExpectations) {
  const fs::path set = fs::temp_directory_path() / ("conflux-eval-edit-" + std::to_string(::getpid()));
  fs::remove_all(set);
  const fs::path item = set / "0000-scene", expected_path = item / "expected.json";
  std::vector<fs::path> scenes;
  for (const auto& e : fs::directory_iterator(kSet))
    if (e.path().filename().string().find("-scene") != std::string::npos) scenes.push_back(e.path());
  std::sort(scenes.begin(), scenes.end());
  std::string answer;
  nlohmann::json shapes;
  for (const fs::path& candidate : scenes) {  // the first item the model describes in the expected form
    fs::remove_all(set);
    fs::create_directories(item);
    fs::copy(candidate, item, fs::copy_options::recursive);
    answer = model_answer(set);
    shapes = parse_description(answer);
    if (!shapes.is_null()) break;
  }
  ASSERT_FALSE(shapes.is_null()) << "the model described no held-out scene as \"a COLOUR SHAPE POSITION, ...\"";
  nlohmann::json expected = {{"task", "scene"}, {"question", "what do you see"}, {"answer", answer}, {"scene", shapes}};
  std::ofstream(expected_path) << expected.dump();
  const auto same = run_shell(kConflux + " eval --model " + kModel + " --set " + set.string() + " --json");
  ASSERT_EQ(same.exit_code, 0) << same.output;
  const auto exact = last_json_line(same.output)["scene"];
  EXPECT_EQ(exact["correct"], 1) << same.output;
  for (const char* attribute : {"colour", "shape", "position", "count"})
    EXPECT_DOUBLE_EQ(exact["attributes"][attribute].get<double>(), 1.0) << attribute;

  const std::string colour = shapes[0]["colour"];
  const std::string other = colour == "red" ? "blue" : "red";
  expected["scene"][0]["colour"] = other;
  const size_t at = answer.find(colour);
  expected["answer"] = answer.substr(0, at) + other + answer.substr(at + colour.size());
  std::ofstream(expected_path) << expected.dump();
  const auto r = run_shell(kConflux + " eval --model " + kModel + " --set " + set.string() + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto scene = last_json_line(r.output)["scene"];
  EXPECT_EQ(scene["correct"], 0);
  const double n = double(shapes.size());
  EXPECT_DOUBLE_EQ(scene["attributes"]["colour"].get<double>(), (n - 1) / n);
  EXPECT_DOUBLE_EQ(scene["attributes"]["shape"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(scene["attributes"]["position"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(scene["attributes"]["count"].get<double>(), 1.0);
  const auto table = run_shell(kConflux + " eval --model " + kModel + " --set " + set.string());
  EXPECT_NE(table.output.find("scene confusions"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find(expected["answer"].get<std::string>()), std::string::npos) << table.output;
  fs::remove_all(set);
}

TEST(Eval, MalformedItemIsNamedWithItsField) {
  const fs::path set = fs::temp_directory_path() / ("conflux-eval-bad-" + std::to_string(::getpid()));
  fs::remove_all(set);
  fs::create_directories(set / "0000-command");
  std::ofstream(set / "0000-command" / "expected.json") << R"({"task": "command"})";
  const auto r = run_shell(kConflux + " eval --model " + kModel + " --set " + set.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("0000-command/expected.json"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("answer"), std::string::npos) << r.output;
  fs::remove_all(set);
}

}  // namespace
}  // namespace conflux
