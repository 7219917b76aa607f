// `conflux eval`: accuracy through the live path. Every recording of a set is replayed into a fresh
// streaming session (VAD, turn layout, images sampled by the frame rate, greedy answers) exactly as live
// input would be, and the answer is compared with the item's expected.json. Reports exact-match accuracy
// per task, per-attribute accuracy for scene descriptions, and the most common confusions.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "app/cli.h"
#include "app/live.h"
#include "capture/recording.h"
#include "engine/chat_template.h"
#include "engine/image.h"
#include "engine/model.h"
#include "engine/session/session.h"
#include "engine/tokenizer.h"

namespace conflux::app {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kUsage =
    "usage: conflux eval --model DIR --set DIR [options]\n"
    "\n"
    "Replays every recording in the set (a folder of recordings, each with an expected.json) through a\n"
    "fresh streaming session as if it were live input, and scores the answers (exact match).\n"
    "\n"
    "  --json              print one JSON object: task -> {n, correct, accuracy} (scene also has attributes)\n"
    "  --limit N           at most N items per task (in folder order)\n"
    "  --tasks a,b         only these tasks (command, scene, combined, or any task name the set uses)\n"
    "  --budget N          image soft tokens per frame (default: the model's preprocessor_config.json)\n"
    "  --max-tokens N      answer length limit, thought included (default 128)\n"
    "  --thinking on|off, --image-at-turn-end on|off   how the model is run (default: its generation_config.json)\n"
    "  --threads N         worker threads (default: all cores)\n"
    "  --verbose           one line per item (with thinking, also the whole generated text)\n"
    "\n"
    "expected.json: {\"task\": NAME, \"answer\": TEXT, \"question\": TEXT (for the confusion table),\n"
    "                \"scene\": [{\"colour\", \"shape\", \"position\"}, ...] (optional: scores descriptions per attribute)}\n";

struct Item {
  std::string dir, task, question, expected;
  json scene;  // expected shapes in the order the description lists them, or null
};

struct TaskScore {
  int n = 0, correct = 0;
  std::map<std::string, std::pair<int, int>> attributes;  // name -> (correct, total)
  std::map<std::pair<std::string, std::string>, int> confusions;  // (expected, got) -> count
};

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (size_t next; (next = s.find(sep, at)) != std::string::npos; at = next + sep.size()) out.push_back(s.substr(at, next - at));
  out.push_back(s.substr(at));
  return out;
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \n\t"), e = s.find_last_not_of(" \n\t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Scores a description "a COLOUR SHAPE POSITION, an ... and a ..." against the expected shapes, phrase by
// phrase in order: colour, shape and position per expected shape, count per scene.
void score_attributes(const std::string& answer, const json& scene, TaskScore& score) {
  std::string text = answer;
  for (size_t at; (at = text.find(" and a")) != std::string::npos;) text.replace(at, 6, ", a");  // "and a", "and an"
  const std::vector<std::string> phrases = split(text, ", ");
  // The count is right when the answer describes as many shapes as there are, each as "a/an X Y ...".
  const bool well_formed = std::all_of(phrases.begin(), phrases.end(), [](const std::string& p) {
    return (p.rfind("a ", 0) == 0 || p.rfind("an ", 0) == 0) && split(p, " ").size() >= 4;
  });
  auto& count = score.attributes["count"];
  count.second += 1;
  count.first += well_formed && phrases.size() == scene.size() ? 1 : 0;
  for (size_t i = 0; i < scene.size(); ++i) {
    std::vector<std::string> words = i < phrases.size() ? split(phrases[i], " ") : std::vector<std::string>{};
    const auto word = [&](size_t k) { return k < words.size() ? words[k] : std::string(); };
    std::string position;
    for (size_t k = 3; k < words.size(); ++k) position += (k > 3 ? " " : "") + words[k];
    const std::pair<const char*, std::string> got[] = {{"colour", word(1)}, {"shape", word(2)}, {"position", position}};
    for (const auto& [name, value] : got) {
      auto& a = score.attributes[name];
      a.second += 1;
      a.first += value == scene[i].value(name, "") ? 1 : 0;
    }
  }
}

Item load_item(const fs::path& dir) {
  const fs::path path = dir / "expected.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path.string() + ": cannot open (every item of a set needs one)");
  const json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw std::runtime_error(path.string() + ": not a JSON object");
  for (const char* field : {"task", "answer"})
    if (!j.contains(field) || !j[field].is_string())
      throw std::runtime_error(path.string() + ": field " + field + " is missing or not a string");
  Item it;
  it.dir = dir.string();
  it.task = j["task"];
  it.expected = j["answer"];
  it.question = j.value("question", "");
  if (j.contains("scene")) {
    if (!j["scene"].is_array()) throw std::runtime_error(path.string() + ": field scene is not a list");
    it.scene = j["scene"];
  }
  return it;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  Args args(argc, argv, {"json", "verbose"});
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  args.reject_unknown({"model", "set", "json", "limit", "tasks", "budget", "max-tokens", "threads", "verbose", "thinking",
                       "image-at-turn-end"});
  const std::string model_dir = args.require("model");
  const std::string set_dir = args.require("set");
  const int limit = args.get_int("limit", 0);
  const bool as_json = args.flag("json"), verbose = args.flag("verbose");
  std::vector<std::string> only;
  if (auto t = args.get("tasks")) only = split(*t, ",");

  // 1. The set: every sub-folder with an expected.json, in name order.
  if (!fs::is_directory(set_dir)) throw std::runtime_error(set_dir + ": not a folder");
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(set_dir))
    if (e.is_directory() && fs::exists(e.path() / "expected.json")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  std::vector<Item> items;
  std::map<std::string, int> per_task;
  for (const auto& d : dirs) {
    Item it = load_item(d);
    if (!only.empty() && std::find(only.begin(), only.end(), it.task) == only.end()) continue;
    if (limit > 0 && per_task[it.task] >= limit) continue;
    ++per_task[it.task];
    items.push_back(std::move(it));
  }
  if (items.empty()) throw std::runtime_error(set_dir + ": no items (sub-folders with an expected.json) to evaluate");

  // 2. The model, loaded once; a fresh session per item.
  const auto model = Model::load(model_dir);
  const Tokenizer tok = Tokenizer::load((fs::path(model_dir) / "tokenizer.json").string());
  const int budget = args.get_int("budget", default_image_budget(model_dir));
  // How the model is run, read once: greedy with its own stop and suppressed tokens, and its thinking
  // settings (the model's way of running, not the recording's).
  SessionConfig model_way;
  apply_generation_config(model_dir, tok, model_way.sampling);
  apply_model_session_defaults(model_dir, args, model_way);
  std::map<std::string, TaskScore> scores;
  for (const Item& it : items) {
    const Recording rec = load_recording(it.dir);
    RuntimeConfig rc;
    SessionConfig cfg;
    session_settings_from_json(rec.settings_json, rc, cfg);  // VAD, frame rate, ... as recorded
    rc.n_threads = args.get_int("threads", 0);
    cfg.image_budget = budget;
    rc.max_chunk = std::max(512, budget);
    cfg.sampling = model_way.sampling;
    cfg.thinking = model_way.thinking;
    cfg.image_at_turn_end = model_way.image_at_turn_end;
    cfg.max_answer_tokens = args.get_int("max-tokens", 128);
    cfg.video_queue_waits = true;  // fed as fast as possible: every frame, bounded memory
    cfg.recorder = nullptr;
    Session session(*model, tok, rc, cfg);
    session.start();
    feed_recording(session, rec, SessionClock::now(), /*speed=*/0);
    session.wait_idle();
    session.stop();
    const auto& answers = session.answers();
    // The answer without its thought (the thought is what the model saw, not what it says).
    const std::string full = answers.empty() ? "" : tok.decode(answers.back());
    const std::string got = trim(chat_strip_thinking(full));
    TaskScore& s = scores[it.task];
    ++s.n;
    const bool ok = got == trim(it.expected);
    s.correct += ok ? 1 : 0;
    if (!ok) ++s.confusions[{it.expected, got}];
    if (!it.scene.is_null() && it.task == "scene") score_attributes(got, it.scene, s);
    if (verbose)
      std::fprintf(stderr, "%s %-40s %s | expected \"%s\" got \"%s\"%s\n", ok ? "ok  " : "MISS",
                   fs::path(it.dir).filename().c_str(), it.question.c_str(), it.expected.c_str(), got.c_str(),
                   answers.size() > 1 ? (" (" + std::to_string(answers.size()) + " turns)").c_str() : "");
    if (verbose && cfg.thinking) std::fprintf(stderr, "     generated: %s\n", full.c_str());
  }

  // 3. Report.
  if (as_json) {
    json out = json::object();
    for (const auto& [task, s] : scores) {
      json t = {{"n", s.n}, {"correct", s.correct}, {"accuracy", double(s.correct) / s.n}};
      for (const auto& [name, a] : s.attributes) t["attributes"][name] = double(a.first) / a.second;
      out[task] = t;
    }
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("%-10s %5s %8s %9s\n", "task", "n", "correct", "accuracy");
  for (const auto& [task, s] : scores) {
    std::printf("%-10s %5d %8d %8.1f%%\n", task.c_str(), s.n, s.correct, 100.0 * s.correct / s.n);
    for (const auto& [name, a] : s.attributes)
      std::printf("  %-8s %5d %8d %8.1f%%   (per %s)\n", name.c_str(), a.second, a.first, 100.0 * a.first / a.second,
                  name == "count" ? "scene" : "shape");
  }
  for (const auto& [task, s] : scores) {
    if (s.confusions.empty()) continue;
    std::vector<std::pair<int, std::pair<std::string, std::string>>> sorted;
    for (const auto& [k, n] : s.confusions) sorted.push_back({n, k});
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::printf("\n%s confusions (expected -> got), most common first:\n", task.c_str());
    for (size_t i = 0; i < std::min<size_t>(sorted.size(), 10); ++i)
      std::printf("  %3dx  \"%s\" -> \"%s\"\n", sorted[i].first, sorted[i].second.first.c_str(), sorted[i].second.second.c_str());
  }
  return 0;
}

}  // namespace conflux::app
