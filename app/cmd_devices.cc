// `conflux devices`: the audio inputs PortAudio sees and the video devices GStreamer's v4l2src can open.
#include <cstdio>
#include <filesystem>

#include "app/cli.h"
#include "capture/microphone.h"

namespace conflux::app {

int cmd_devices(int argc, char** argv) {
  Args args(argc, argv);
  if (args.help()) {
    std::printf("usage: conflux devices\n\nLists microphones (use with --mic NAME|INDEX) and cameras (use with\n"
                "--camera \"v4l2src device=PATH\"; any GStreamer source works, e.g. ximagesrc for the screen).\n");
    return 0;
  }
  args.reject_unknown({});
  const auto mics = capture::Microphone::list_devices();
  std::printf("microphones (PortAudio):\n");
  if (mics.empty()) std::printf("  none\n");
  for (const auto& d : mics)
    std::printf("  %2d  %-40s %-10s %d ch, %.0f Hz%s\n", d.index, d.name.c_str(), d.host_api.c_str(), d.max_input_channels,
                d.default_sample_rate, d.is_default_input ? "  (default)" : "");
  std::printf("cameras (v4l2):\n");
  int cameras = 0;
  for (const auto& e : std::filesystem::directory_iterator("/dev", std::filesystem::directory_options::skip_permission_denied)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("video", 0) != 0) continue;
    std::printf("  %s   --camera \"v4l2src device=%s\"\n", e.path().c_str(), e.path().c_str());
    ++cameras;
  }
  if (!cameras) std::printf("  none\n");
  return 0;
}

}  // namespace conflux::app
