// `conflux tokenize`: one JSON string per line on stdin -> one JSON array of token ids per line on stdout.
// Lets scripts compare our tokenizer with others on the same inputs.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "app/cli.h"
#include "engine/tokenizer.h"

namespace conflux::app {

namespace {

constexpr char kUsage[] =
    "usage: conflux tokenize --tokenizer FILE [--add-bos]\n"
    "\n"
    "Reads one JSON string per line on stdin and writes its token ids as a JSON array, one line each, on\n"
    "stdout. Blank lines are skipped. Added tokens written in the text (e.g. <bos>) become their ids.\n"
    "\n"
    "  --tokenizer FILE  HF tokenizer.json; a tokenizer_config.json beside it supplies bos/eos/pad\n"
    "  --add-bos         prepend the bos id (HF's add_special_tokens=true)\n";

bool is_blank(const std::string& line) { return line.find_first_not_of(" \t\r") == std::string::npos; }

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  Args args(argc, argv, {"add-bos"});
  if (args.help()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  args.reject_unknown({"tokenizer", "add-bos"});
  if (!args.positional().empty()) throw CliError("unexpected argument '" + args.positional()[0] + "' (input comes on stdin)");
  const Tokenizer tokenizer = Tokenizer::load(args.require("tokenizer"));
  const bool add_bos = args.flag("add-bos");

  std::string line;
  for (size_t line_number = 1; std::getline(std::cin, line); ++line_number) {
    if (is_blank(line)) continue;
    nlohmann::json text;
    try {
      text = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw CliError("stdin line " + std::to_string(line_number) + " is not valid JSON: " + e.what());
    }
    if (!text.is_string()) throw CliError("stdin line " + std::to_string(line_number) + " is not a JSON string");
    std::string out = "[";
    for (int32_t id : tokenizer.encode(text.get_ref<const std::string&>(), add_bos)) {
      if (out.size() > 1) out += ',';
      out += std::to_string(id);
    }
    out += "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);  // one answer per line as it comes, so a caller can drive this interactively
  }
  return 0;
}

}  // namespace conflux::app
