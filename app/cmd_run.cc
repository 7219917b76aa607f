// `conflux run` and `conflux record`: the live assistant in the terminal (microphone, camera or a media
// file into the streaming session, answers streamed to stdout), optionally recording what it consumed.
#include <cstdio>

#include "app/cli.h"
#include "app/live.h"

namespace conflux::app {

namespace {

std::vector<std::string> live_names() {
  std::vector<std::string> names = kLiveOptionNames;
  names.insert(names.end(), kLiveFlagNames.begin(), kLiveFlagNames.end());
  return names;
}

}  // namespace

int cmd_run(int argc, char** argv) {
  Args args(argc, argv, kLiveFlagNames);
  if (args.help()) {
    std::printf("usage: conflux run [options]\n\nThe live assistant in the terminal: speak (and show), it answers.\n\n%s",
                kLiveOptionsHelp);
    return 0;
  }
  args.reject_unknown(live_names());
  return run_live(parse_live_options(args));
}

int cmd_record(int argc, char** argv) {
  Args args(argc, argv, kLiveFlagNames);
  if (args.help() || args.positional().size() != 1) {
    std::printf("usage: conflux record DIR [options]\n\nRuns the live assistant and records into DIR exactly what the\n"
                "model consumed: the audio, the sampled video frames and the timeline (docs/recording-format.md).\n\n%s",
                kLiveOptionsHelp);
    return args.help() ? 0 : 2;
  }
  args.reject_unknown(live_names());
  LiveOptions o = parse_live_options(args);
  o.record_dir = args.positional()[0];
  return run_live(o);
}

}  // namespace conflux::app
