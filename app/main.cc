// `conflux`: one binary, one subcommand per file (app/cmd_*.cc). This file only dispatches.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "app/cli.h"

namespace conflux::app {
int cmd_logits(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_preprocess(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_make_random(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_devices(int argc, char** argv);
int cmd_run(int argc, char** argv);
int cmd_record(int argc, char** argv);
int cmd_replay(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_serve(int argc, char** argv);
}  // namespace conflux::app

namespace {

struct Subcommand {
  const char* name;
  conflux::app::CommandFn fn;
  const char* summary;
};

const Subcommand kSubcommands[] = {
    {"run", conflux::app::cmd_run, "the live assistant: window, or the terminal without a display (mic, camera or --media FILE)"},
    {"record", conflux::app::cmd_record, "run live and record what the model consumed into a folder"},
    {"replay", conflux::app::cmd_replay, "feed a recording (or a media file) back; checks the answers reproduce"},
    {"eval", conflux::app::cmd_eval, "accuracy through the live path: replay a set of recordings, score the answers"},
    {"serve", conflux::app::cmd_serve, "serve sessions over WebSocket (OpenAI-Realtime-style events; docs/network-api.md)"},
    {"generate", conflux::app::cmd_generate, "one chat turn (text, --image, --audio), streamed to stdout"},
    {"logits", conflux::app::cmd_logits, "evaluate a reference case file and write its logits rows"},
    {"tokenize", conflux::app::cmd_tokenize, "JSON strings on stdin -> JSON id arrays on stdout"},
    {"preprocess", conflux::app::cmd_preprocess, "resize an image for the vision embedder"},
    {"bench", conflux::app::cmd_bench, "engine speed (prefill, decode, RSS) or --scenario live latencies"},
    {"devices", conflux::app::cmd_devices, "list microphones and cameras"},
    {"make-random", conflux::app::cmd_make_random, "write a random-weight gemma4_unified checkpoint"},
    {"quantize", conflux::app::cmd_quantize, "write a checkpoint folder with q8 (Q8_0) or q4 (Q4_0) weights"},
};

void print_usage(FILE* out) {
  std::fprintf(out, "usage: conflux [run options]             the live assistant (same as conflux run)\n"
                   "       conflux <command> [options]   (conflux <command> --help for details)\n\ncommands:\n");
  for (const auto& s : kSubcommands) std::fprintf(out, "  %-12s %s\n", s.name, s.summary);
}

}  // namespace

int main(int argc, char** argv) {
  // `conflux` alone, or `conflux --model DIR ...`, is the live assistant.
  if (argc < 2 || (argv[1][0] == '-' && argv[1][1] == '-' && std::strcmp(argv[1], "--help") != 0)) {
    try {
      return conflux::app::cmd_run(argc, argv);
    } catch (const conflux::app::CliError& e) {
      std::fprintf(stderr, "conflux: %s\n", e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "conflux: error: %s\n", e.what());
      return 1;
    }
  }
  if (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_usage(stdout);
    return 0;
  }
  for (const auto& s : kSubcommands) {
    if (std::strcmp(argv[1], s.name) != 0) continue;
    try {
      return s.fn(argc - 1, argv + 1);
    } catch (const conflux::app::CliError& e) {
      std::fprintf(stderr, "conflux %s: %s\n", s.name, e.what());
      return 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "conflux %s: error: %s\n", s.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "conflux: unknown command '%s'\n", argv[1]);
  print_usage(stderr);
  return 2;
}
