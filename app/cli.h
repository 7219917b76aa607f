// Tiny argument parser shared by the subcommands: `--name value` and `--flag`, with --help text.
// Errors name the option and go to stderr via CliError; main() turns them into exit code 2.
#pragma once
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/model.h"

namespace conflux::app {

struct CliError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Args {
 public:
  // `flags` are options that take no value; every other `--x` takes the next argument.
  Args(int argc, char** argv, std::vector<std::string> flags = {});
  bool help() const { return help_; }
  bool flag(const std::string& name) const;
  std::optional<std::string> get(const std::string& name) const;
  std::string require(const std::string& name) const;  // throws CliError("missing --name")
  std::string get_or(const std::string& name, const std::string& fallback) const;
  int get_int(const std::string& name, int fallback) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // Throws CliError naming any option that was not looked up (typos get caught).
  void reject_unknown(const std::vector<std::string>& known) const;

 private:
  bool help_ = false;
  std::map<std::string, std::string> values_;
  std::vector<std::string> flags_set_;
  std::vector<std::string> positional_;
};

// --quantize q8|q4|bf16|f32: the format every matrix is converted to at load (absent: as stored).
// Throws CliError naming a bad value.
LoadOptions load_options(const Args& args);
// --kv-cache f32|bf16 (default f32). Throws CliError naming a bad value.
DType kv_cache_option(const Args& args, const char* fallback = "f32");

// Subcommand entry point: argv[0] is the subcommand name. Returns the process exit code.
using CommandFn = int (*)(int argc, char** argv);

}  // namespace conflux::app
