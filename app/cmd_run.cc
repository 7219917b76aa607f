// `conflux run` and `conflux record`: the live assistant (microphone, camera or a media file into the
// streaming session). `run` opens the desktop window when a display is available and falls back to the
// terminal (answers streamed to stdout) with a one-line reason otherwise; `record` runs in the terminal
// and records what the model consumed.
#include <cstdio>

#include "app/cli.h"
#include "app/live.h"
#include "ui/window.h"

namespace conflux::app {

namespace {

std::vector<std::string> live_names() {
  std::vector<std::string> names = kLiveOptionNames;
  names.insert(names.end(), kLiveFlagNames.begin(), kLiveFlagNames.end());
  return names;
}

const char* const kWindowOptionsHelp =
    "  --headless             the terminal front end even when a display is available\n"
    "  --overlay              show the latency overlay from the start (F1 toggles it)\n"
    "  --screenshot FILE.png  save the window as a PNG and exit: with --media, after the input ended and\n"
    "                         the session is idle, then --frames N more frames (default 3); live: after N frames\n";

}  // namespace

int cmd_run(int argc, char** argv) {
  std::vector<std::string> flags = kLiveFlagNames;
  flags.insert(flags.end(), {"headless", "overlay"});
  Args args(argc, argv, flags);
  if (args.help()) {
    std::printf("usage: conflux run [options]\n\nThe live assistant: speak (and show), it answers. Opens a window when a\n"
                "display is available, else runs in the terminal.\n\n%s%s",
                kLiveOptionsHelp, kWindowOptionsHelp);
    return 0;
  }
  std::vector<std::string> names = live_names();
  names.insert(names.end(), {"headless", "overlay", "screenshot", "frames"});
  args.reject_unknown(names);
  const LiveOptions live = parse_live_options(args);
  ui::WindowOptions window;
  window.overlay = args.flag("overlay");
  window.screenshot_path = args.get_or("screenshot", "");
  window.screenshot_frames = args.get_int("frames", window.screenshot_frames);
  if (window.screenshot_frames < 1) throw CliError("--frames must be at least 1");
  if (args.flag("headless")) {
    if (!window.screenshot_path.empty()) throw CliError("--screenshot needs the window; drop --headless");
    return run_live(live);
  }
  std::string why;
  if (ui::display_available(&why)) {
    try {
      LiveOptions in_window = live;
      in_window.record_toggle = true;  // the window's Record checkbox keeps or discards it
      return ui::run_window(in_window, window);
    } catch (const ui::WindowSetupError& e) {  // nothing was loaded yet: the terminal can still run
      why = e.what();
    }
  }
  if (!window.screenshot_path.empty()) throw CliError("--screenshot needs a window, and none can open here: " + why);
  std::fprintf(stderr, "conflux: no window (%s); running in the terminal\n", why.c_str());
  return run_live(live);
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
