// Running programs from tests: a shell command's exit code and output, and the one-question demo clip
// (espeak-ng speech between silences, muxed with a moving videotestsrc ball by gst-launch-1.0) that
// the end-to-end tests feed to the `conflux` binary.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace conflux::testing_support {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline CommandResult run_shell(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Writes DIR/demo.webm: 1 s of silence, "what do you see in front of you", 2 s of silence, with a
// 320x240 moving ball at 25 fps as the camera: one spoken turn.
inline CommandResult make_one_question_media(const std::filesystem::path& dir) {
  const std::string d = dir.string();
  return run_shell(
      "espeak-ng -v en-us -s 150 -w " + d + "/q.wav 'what do you see in front of you' && "
      "sox -n -r 22050 -c 1 " + d + "/s.wav trim 0 1.0 && sox " + d + "/s.wav " + d + "/q.wav " + d + "/s.wav " + d +
      "/s.wav " + d + "/speech.wav && gst-launch-1.0 -q webmmux name=m ! filesink location=" + d +
      "/demo.webm filesrc location=" + d + "/speech.wav ! wavparse ! audioconvert ! audioresample ! vorbisenc ! m. "
      "videotestsrc pattern=ball num-buffers=100 ! video/x-raw,width=320,height=240,framerate=25/1 ! vp8enc deadline=1 ! m.");
}

}  // namespace conflux::testing_support
