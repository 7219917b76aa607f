// Argument parsing for the `conflux` subcommands.
#include "app/cli.h"

#include <algorithm>

namespace conflux::app {

Args::Args(int argc, char** argv, std::vector<std::string> flags) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
    } else if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2);
      auto eq = name.find('=');
      if (eq != std::string::npos) {
        values_[name.substr(0, eq)] = name.substr(eq + 1);
      } else if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
        flags_set_.push_back(name);
      } else {
        if (i + 1 >= argc) throw CliError("option --" + name + " needs a value");
        values_[name] = argv[++i];
      }
    } else {
      positional_.push_back(a);
    }
  }
}

bool Args::flag(const std::string& name) const {
  return std::find(flags_set_.begin(), flags_set_.end(), name) != flags_set_.end();
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::require(const std::string& name) const {
  auto v = get(name);
  if (!v) throw CliError("missing required option --" + name);
  return *v;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  return get(name).value_or(fallback);
}

int Args::get_int(const std::string& name, int fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  try {
    size_t used = 0;
    int x = std::stoi(*v, &used);
    if (used != v->size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    throw CliError("option --" + name + " expects an integer, got '" + *v + "'");
  }
}

double Args::get_double(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  try {
    size_t used = 0;
    double x = std::stod(*v, &used);
    if (used != v->size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    throw CliError("option --" + name + " expects a number, got '" + *v + "'");
  }
}

void Args::reject_unknown(const std::vector<std::string>& known) const {
  auto is_known = [&](const std::string& n) { return std::find(known.begin(), known.end(), n) != known.end(); };
  for (const auto& [k, v] : values_)
    if (!is_known(k)) throw CliError("unknown option --" + k);
  for (const auto& f : flags_set_)
    if (!is_known(f)) throw CliError("unknown option --" + f);
}

LoadOptions load_options(const Args& args) {
  LoadOptions o;
  if (auto q = args.get("quantize")) {
    try {
      o.format = parse_weight_format(*q);
    } catch (const std::invalid_argument& e) {
      throw CliError("--quantize: " + std::string(e.what()));
    }
  }
  o.map_weights = args.flag("mmap");
  return o;
}

DType kv_cache_option(const Args& args, const char* fallback) {
  const std::string v = args.get_or("kv-cache", fallback);
  if (v == "f32") return DType::F32;
  if (v == "bf16") return DType::BF16;
  throw CliError("--kv-cache must be f32 or bf16, got '" + v + "'");
}

}  // namespace conflux::app
